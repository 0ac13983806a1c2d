"""A nevergrad optimizer that thinks in generations: the shared machinery of the baselines.

Population methods (CMA-ES, PEPG) and step-wise zeroth-order methods (FLOPS, MixedTrain) all
propose a *generation* of settings, wait for every loss, then update. :class:`GenerationOptimizer`
turns that into nevergrad's ``ask`` / ``tell``: ``ask`` hands out the members of the current
generation one by one, ``tell`` records each loss, and once every member is told (or
:meth:`~GenerationOptimizer.drop`-ped) the subclass's :meth:`~GenerationOptimizer._update` runs.
An ``ask`` made while the generation is fully handed out but not yet told gets a **probe** of the
current center (archived by nevergrad, unused by the update). :meth:`generation_left` tells a
batch driver (:func:`blacksat.ng.adapter.minimize`) how many members are left, so no batch
straddles two generations: one generation of ``popsize`` settings costs ``popsize``
reconfigurations, and its members share one device call (and so one minibatch).

Everything happens in nevergrad's standardized data space (``x (d,)``, 0 at the
parametrization's initial value; for :mod:`blacksat.ng.adapter` parametrizations one unit is a
quarter of each control's range). Randomness comes from the parametrization's ``random_state``
(``self._rng``), so a seeded parametrization gives a reproducible run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from nevergrad.optimization import base
from nevergrad.parametrization import parameter as p

from blacksat.errors import ConfigError
from blacksat.ng.optimizers import project_data

#: nevergrad's ``tell`` clips NaN and losses >= this to it: such a loss is a failed evaluation
FAILED_LOSS = 5.0e20


@dataclass
class Generation:
    """One generation: ``x (n, d)`` standardized candidates, their ``losses (n,)`` (NaN: failed,
    dropped or not told yet) and which are ``done``; ``asked`` members handed out so far."""

    index: int
    x: np.ndarray
    losses: np.ndarray
    done: np.ndarray
    asked: int = 0

    @property
    def size(self) -> int:
        return int(self.x.shape[0])

    @property
    def complete(self) -> bool:
        return self.asked == self.size and bool(self.done.all())


def check_number(
    name: str,
    value: Any,
    *,
    integer: bool = False,
    low: float = 0.0,
    strict: bool = True,
    high: float | None = None,
) -> Any:
    """``value`` as a finite int/float with ``value > low`` (``>= low`` if not ``strict``) and
    ``value <= high``; :class:`~blacksat.ConfigError` naming ``name`` otherwise."""  # fmt: skip
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if ok:
        ok = bool(np.isfinite(value)) and (value > low if strict else value >= low)
        ok = ok and (high is None or value <= high) and (not integer or int(value) == value)
    if not ok:
        kind = "integer" if integer else "number"
        rng = f"{'>' if strict else '>='} {low}" + ("" if high is None else f" and <= {high}")
        raise ConfigError(f"{name} must be a finite {kind} {rng}, got {value!r}")
    return int(value) if integer else float(value)


def failed(losses: np.ndarray) -> np.ndarray:
    """Mask of failed evaluations: NaN/inf or at nevergrad's failure clip."""
    return ~np.isfinite(losses) | (losses >= FAILED_LOSS)


class GenerationOptimizer(base.Optimizer):
    """Base class: subclasses implement :meth:`_propose`, :meth:`_update` and :attr:`center`.

    Args:
        parametrization, budget, num_workers: nevergrad's (the budget is not used: a method
            runs until it is no longer asked).
    """

    def __init__(
        self, parametrization: base.IntOrParameter, budget: int | None = None, num_workers: int = 1
    ) -> None:
        super().__init__(parametrization, budget=budget, num_workers=num_workers)
        self._penalize_cheap_violations = True
        self._gen: Generation | None = None
        self._members: dict[str, tuple[int, int]] = {}
        self.generations = 0

    # ------------------------------------------------------------------ subclass API
    @property
    def center(self) -> np.ndarray:  # pragma: no cover - abstract
        """The current iterate (the recommendation), ``(d,)`` standardized data."""
        raise NotImplementedError

    def _propose(self) -> np.ndarray:  # pragma: no cover - abstract
        """The next generation, ``(n, d)`` standardized data, ``n >= 1``."""
        raise NotImplementedError

    def _update(self, x: np.ndarray, losses: np.ndarray) -> None:  # pragma: no cover
        """A generation ``x (n, d)`` completed with ``losses (n,)`` (NaN where it failed)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public
    def generation_left(self) -> int:
        """Members of the current generation not yet handed out (opens the next one if none
        is open; 0 while a fully handed-out generation waits for its losses)."""
        g = self._current()
        return g.size - g.asked

    def drop(self, candidate: p.Parameter) -> None:
        """Declare an asked ``candidate`` as never to be told (its evaluation failed or was
        skipped): its loss counts as failed and its generation may complete without it."""
        self._asked.discard(candidate.uid)
        self._settle(candidate.uid, float("nan"))

    def project(self, data: np.ndarray) -> np.ndarray:
        """Map standardized ``data (d,)`` to a value and back (bounds applied)."""
        return project_data(self.parametrization, data)

    # ------------------------------------------------------------------ nevergrad hooks
    def _internal_ask_candidate(self) -> p.Parameter:
        g = self._current()
        if g.asked >= g.size:  # handed out, not yet told: probe the center
            return self.parametrization.spawn_child().set_standardized_data(self.center)
        i = g.asked
        g.asked += 1
        cand = self.parametrization.spawn_child().set_standardized_data(g.x[i])
        self._members[cand.uid] = (g.index, i)
        return cand

    def _internal_tell_candidate(self, candidate: p.Parameter, loss: float) -> None:
        self._settle(candidate.uid, float(loss))

    def _internal_tell_not_asked(self, candidate: p.Parameter, loss: float) -> None:
        """Points the optimizer did not ask carry no information for its update."""

    def _internal_provide_recommendation(self) -> np.ndarray:
        return self.center

    # ------------------------------------------------------------------ internals
    def _current(self) -> Generation:
        if self._gen is None:
            x = np.atleast_2d(np.asarray(self._propose(), dtype=np.float64))
            if x.shape[0] < 1 or x.shape[1] != self.dimension:
                raise RuntimeError(f"{type(self).__name__} proposed a generation of {x.shape}")
            n = x.shape[0]
            self._gen = Generation(self.generations, x, np.full(n, np.nan), np.zeros(n, bool))
            self.generations += 1
        return self._gen

    def _settle(self, uid: str, loss: float) -> None:
        key = self._members.pop(uid, None)
        g = self._gen
        if key is None or g is None or key[0] != g.index:
            return  # a probe, a stale member or an unknown candidate
        g.losses[key[1]] = loss
        g.done[key[1]] = True
        if g.complete:
            self._gen = None
            losses = np.where(failed(g.losses), np.nan, g.losses)
            self._update(g.x, losses)


__all__ = ["FAILED_LOSS", "Generation", "GenerationOptimizer", "check_number", "failed"]
