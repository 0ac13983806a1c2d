"""Sharpness-aware training as a transformer of gradient estimators.

``sat(descent=..., ascent=..., rho=..., perturbation=..., mode=...)`` reads like the math
(DESIGN.md, "Data flow of one SAT step")::

    g1    = ascent(theta)                          (any estimator, or the optimizer's momentum)
    eps   = worst case of the perturbation model given g1     (L2 ball: rho g1 / ||g1||, ...)
    g_sat = descent(theta + eps)                   on the same minibatch

``mode="average"`` replaces the worst case by draws from the same perturbation model (noise-aware
training is its special case). ``rho = 0`` reduces exactly to plain descent: no ascent is spent.
Nor is one spent when the perturbation model finds its worst case by probing the loss alone
(``CommonMode(r, grid=n)``, :class:`~blacksat.perturbations.nuisance.NuisanceModel`: their
``needs_gradient`` is false): ``ZerothOrder(q=4)`` with ``CommonMode(r, grid=9)`` spends
``9 + 8 = 17`` settings per step. :meth:`SAT.settings_per_step` says what a step spends.

State nests optax-style: :meth:`SAT.state_dict` holds the descent estimator's memory under
``"inner_state"`` (and a separate ascent estimator's under ``"ascent_state"``), so
``sat(NonFinitePolicy(zo))`` checkpoints and resumes the policy's memory.

Drift: a step neither detects nor corrects a device that drifts between its queries. Each half
is evaluated on whatever the device does when its query goes out, and the queries,
reconfigurations and samples of a step are fixed by the estimators and the perturbation model,
whatever the device does in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from blacksat.errors import ConfigError
from blacksat.estimators import _clip, estimator_state, load_estimator_state
from blacksat.meter import Ledger
from blacksat.objective import Batch, Estimate, StepContext, add_costs
from blacksat.perturbations import (
    L2Ball,
    Perturbation,
    PerturbationModel,
    is_zero,
    needs_gradient,
    probe_evaluations,
)
from blacksat.validation import check_choice, check_int

Mode = Literal["worst", "average"]


class FreeAscent:
    """A query-free ascent direction: the optimizer's momentum (``ctx.momentum``).

    Costs nothing on the device; falls back to the descent gradient's own ascent when no
    momentum exists yet (first step).
    """

    name = "free_ascent"
    settings_per_evaluation = 0

    def settings_per_step(self) -> int:
        """Settings per step once the optimizer has momentum: none."""
        return 0


@dataclass
class SAT:
    """A gradient estimator that returns the descent gradient at the sharpest nearby point.

    Build it with :func:`sat`. ``__call__(theta (d,), batch, ctx) -> Estimate`` whose ``grad`` is
    the descent gradient at the perturbed point, ``loss`` the loss at ``theta`` (as reported by the
    ascent, when it measured it), and ``cost`` the sum of every query spent (ascent, adversary
    probes, descent).
    """

    descent: Any
    ascent: Any
    perturbation: PerturbationModel
    mode: Mode = "worst"
    draws: int = 1
    space: Any = None
    name: str = field(default="sat", init=False)

    @property
    def task(self) -> Any:
        return self.descent.task

    @property
    def uses_ascent(self) -> bool:
        """Whether a step spends the ascent estimator: only for a worst case read off the
        gradient (not for ``rho = 0``, ``mode="average"`` or a probe-only model)."""
        return (
            not is_zero(self.perturbation)
            and self.mode == "worst"
            and needs_gradient(self.perturbation)
        )

    @property
    def settings_per_evaluation(self) -> int:
        return int(self.descent.settings_per_evaluation)

    def settings_per_step(self) -> int:
        """Settings one step sends to the device: the descent's, plus the ascent's when a
        gradient is needed, plus ``probe_evaluations`` rows of the descent's ``evaluate``
        (``mode="worst"``); ``draws`` descents (``mode="average"``). With
        :class:`FreeAscent` the first step (no momentum yet) also spends one descent ascent."""
        descent = int(self.descent.settings_per_step())
        if is_zero(self.perturbation):
            return descent
        if self.mode == "average":
            return self.draws * descent
        probes = probe_evaluations(self.perturbation) * self.settings_per_evaluation
        ascent = int(self.ascent.settings_per_step()) if self.uses_ascent else 0
        return ascent + probes + descent

    def state_dict(self) -> dict[str, Any]:
        """The memory of the wrapped estimators: ``{"inner_state": descent's, "ascent_state":
        a separate ascent's}`` (``None`` where one has none)."""
        separate = self.ascent is not self.descent
        return {
            "inner_state": estimator_state(self.descent),
            "ascent_state": estimator_state(self.ascent) if separate else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        load_estimator_state(self.descent, state.get("inner_state"))
        if self.ascent is not self.descent:
            load_estimator_state(self.ascent, state.get("ascent_state"))

    def evaluate(
        self, thetas: torch.Tensor, batch: Batch, ctx: StepContext
    ) -> tuple[torch.Tensor, Ledger]:
        return self.descent.evaluate(thetas, batch, ctx)

    # ------------------------------------------------------------------ the step
    def __call__(self, theta: torch.Tensor, batch: Batch, ctx: StepContext) -> Estimate:
        if is_zero(self.perturbation):
            return self.descent(theta, batch, ctx)
        if self.mode == "average":
            return self._average(theta, batch, ctx)
        return self._worst(theta, batch, ctx)

    def _at(self, theta: torch.Tensor, p: Perturbation) -> torch.Tensor:
        t = theta if p.delta is None else theta + p.delta.to(theta.dtype)
        return _clip(self.space, t)

    def _probe(self, theta: torch.Tensor, batch: Batch, ctx: StepContext, spent: list[Ledger]):
        def probe(perts: list[Perturbation]) -> torch.Tensor:
            out = torch.empty(len(perts), dtype=torch.float64)
            groups: dict[tuple, list[int]] = {}
            for i, p in enumerate(perts):
                groups.setdefault(tuple(sorted(p.nuisance.items())), []).append(i)
            for key, idx in groups.items():
                thetas = torch.stack([self._at(theta, perts[i]) for i in idx])
                sub = ctx.with_nuisance(dict(key)) if key else ctx
                losses, cost = self.descent.evaluate(thetas, batch, sub)
                spent.append(cost)
                out[idx] = losses.to(torch.float64)
            return out

        return probe

    def _worst(self, theta: torch.Tensor, batch: Batch, ctx: StepContext) -> Estimate:
        spent: list[Ledger] = []
        first: Estimate | None = None
        g1: torch.Tensor | None = None
        if not self.uses_ascent:
            pass  # the model probes the loss: no gradient to estimate
        elif isinstance(self.ascent, FreeAscent) and ctx.momentum is not None:
            g1 = ctx.momentum.detach().to(torch.float64)
        else:
            asc = self.descent if isinstance(self.ascent, FreeAscent) else self.ascent
            first = asc(theta, batch, ctx)
            spent.append(first.cost)
            g1 = first.grad
        p = self.perturbation.worst(theta, g1, self._probe(theta, batch, ctx, spent), ctx.rng)
        sub = ctx.with_nuisance(p.nuisance) if p.nuisance else ctx
        second = self.descent(self._at(theta, p), batch, sub)
        spent.append(second.cost)
        return Estimate(
            grad=second.grad,
            loss=first.loss if first is not None else second.loss,
            cost=add_costs(*spent),
            digital_grads=second.digital_grads,
            logits=first.logits
            if first is not None and first.logits is not None
            else second.logits,
        )

    def _average(self, theta: torch.Tensor, batch: Batch, ctx: StepContext) -> Estimate:
        ests = []
        for _ in range(self.draws):
            p = self.perturbation.sample(theta, ctx.rng)
            sub = ctx.with_nuisance(p.nuisance) if p.nuisance else ctx
            ests.append(self.descent(self._at(theta, p), batch, sub))
        digital = None
        if ests[0].digital_grads is not None:
            digital = [
                None if gs[0] is None else torch.stack(gs).mean(0)
                for gs in zip(*(e.digital_grads for e in ests), strict=True)
            ]
        return Estimate(
            grad=torch.stack([e.grad for e in ests]).mean(0),
            loss=float(np.mean([e.loss for e in ests])),
            cost=add_costs(*(e.cost for e in ests)),
            digital_grads=digital,
            logits=ests[0].logits,
        )

    def __repr__(self) -> str:
        return (
            f"SAT(descent={self.descent!r}, ascent={self.ascent!r}, "
            f"perturbation={self.perturbation!r}, mode={self.mode!r})"
        )


def sat(
    descent: Any,
    ascent: Any = None,
    *,
    rho: float | None = None,
    perturbation: PerturbationModel | None = None,
    mode: Mode = "worst",
    draws: int = 1,
    space: Any = None,
) -> SAT:
    """Sharpness-aware training around any estimator.

    Args:
        descent: the estimator of the descent gradient (taken at the perturbed point).
        ascent: the estimator of the ascent direction (default: ``descent``); e.g. a surrogate's
            :class:`~blacksat.estimators.Autograd` for a cheap ascent, or :class:`FreeAscent`.
        rho: radius of the plain L2 ball (SAM) when no ``perturbation`` is given.
        perturbation: the set to be flat against (:mod:`blacksat.perturbations`); exclusive with
            ``rho``.
        mode: ``"worst"`` (SAM-style ascent within the set) or ``"average"`` (expected loss over
            ``draws`` random perturbations from the set per step).
        space: control space the perturbed point is clipped into (default: the descent
            estimator's ``space``).
    """
    if perturbation is None and rho is None:
        raise ConfigError("sat needs rho (plain L2 ball) or a perturbation model")
    if perturbation is not None and rho is not None:
        raise ConfigError("give either rho or perturbation, not both")
    check_choice("mode", mode, ("worst", "average"))
    check_int("draws", draws, low=1)
    for est, what in ((descent, "descent"), (ascent, "ascent")):
        if est is None or isinstance(est, FreeAscent):
            continue
        if not (callable(est) and hasattr(est, "evaluate") and hasattr(est, "task")):
            raise ConfigError(f"{what} must be a gradient estimator, got {type(est).__name__}")
    model: PerturbationModel = (
        perturbation if perturbation is not None else L2Ball(rho)  # type: ignore[arg-type]
    )
    return SAT(
        descent=descent,
        ascent=descent if ascent is None else ascent,
        perturbation=model,
        mode=mode,
        draws=int(draws),
        space=space if space is not None else getattr(descent, "space", None),
    )


__all__ = ["SAT", "FreeAscent", "Mode", "sat"]
