"""blacksat's zeroth-order optimizers as nevergrad optimizers, registered by name on import.

``import blacksat.ng.optimizers`` registers, in ``nevergrad.optimizers.registry``:

- ``"BlacksatZOAdam"``: antithetic Gaussian finite differences + Adam;
- ``"BlacksatZOSAT"``: the same with a sharpness-aware (SAM) step: the gradient is taken at the
  worst point ``x + rho g1 / ||g1||`` of an L2 ball around the center.

Both work on *any* nevergrad problem, through nevergrad's conventions: ``ask`` / ``tell`` /
``provide_recommendation``, ``num_workers`` parallel asks, out-of-order tells, randomness drawn
from the parametrization's ``random_state`` (``self._rng``), and ``dump`` / ``load`` (pickle)
that continue exactly like an uninterrupted run. ``ConfiguredZOAdam(...)`` and
``ConfiguredZOSAT(...)`` build configured variants (``nevergrad``'s ``ConfiguredOptimizer``),
e.g. ``ConfiguredZOSAT(rho=0.2).set_name("MySAT", register=True)``.

Everything happens in nevergrad's **standardized data space** (``x (d,)``, 0 at the
parametrization's initial value, one unit = one ``sigma`` of the parametrization's mutation;
:mod:`blacksat.ng.adapter` builds PNN parametrizations whose unit prior spans the device box).
Nevergrad's parametrization maps data to values (bounds by clipping or bouncing, log scales...).

One **set** is ``m`` candidates ``c +- sigma u_i`` around a center ``c`` (antithetic pairs,
interleaved ``+u_1, -u_1, +u_2, ...``). Once every member is told the set yields the central
difference gradient ``g = 1/n sum_i (f(c + sigma u_i) - f(c - sigma u_i)) / (2 sigma) u_i``
over its ``n`` complete pairs. ``m`` is the smallest multiple of ``lcm(2, num_workers)`` that is
``>= 2q``, so a batch of ``num_workers`` asks never straddles two sets (with ``num_workers > 2q``
each set holds more pairs than ``q``: no evaluation is wasted). Asks made while the current set is
fully asked but not fully told (asynchronous use) cannot wait: they get a **probe** of the
current center, recorded by nevergrad (archive, bests) but not used in the gradient.

Failed evaluations: a loss that is NaN/inf or ``>= 5e20`` (nevergrad clips NaN and huge losses to
``5e20`` in ``tell``) voids its pair; a candidate that will never be told (a driver skipped it)
must be given to :meth:`BlacksatZOAdam.drop`, else its set never completes. A set without any
complete pair makes no step. Tells of candidates that were not asked (or of probes and stale
candidates) only feed nevergrad's archive.

The recommendation is the current center, the iterate (as nevergrad's gradient-like methods
recommend their iterate, or SPSA its running average), not the best-seen sample: over noisy or
minibatch losses the best sample is biased low. The parametrization maps it to a value, so it
always satisfies the bounds (it is not guaranteed to have been evaluated).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from nevergrad.optimization import base
from nevergrad.parametrization import parameter as p

from blacksat.errors import ConfigError

#: nevergrad's ``tell`` clips NaN and losses >= this to it: such a loss is a failed evaluation
FAILED_LOSS = 5.0e20
_DIRECTIONS = ("gaussian", "rademacher")


@dataclass
class _Set:
    """One set of ``m`` antithetic candidates around ``center``.

    Attributes:
        index: running number of the set (members told after their set closed are ignored).
        phase: 0 (ZO-Adam, or SAT's ascent) or 1 (SAT's descent).
        center: ``(d,)`` standardized data.
        u: ``(m // 2, d)`` directions.
        losses: ``(m,)`` told losses (NaN: failed, dropped or not told yet).
        done: ``(m,)`` whether each member was told or dropped.
        asked: members handed out so far.
    """

    index: int
    phase: int
    center: np.ndarray
    u: np.ndarray
    losses: np.ndarray
    done: np.ndarray
    asked: int = 0

    @property
    def size(self) -> int:
        return int(self.losses.size)

    @property
    def complete(self) -> bool:
        return self.asked == self.size and bool(self.done.all())


def set_size(q: int, num_workers: int) -> int:
    """Candidates per set: the smallest multiple of ``lcm(2, num_workers)`` that is ``>= 2q``."""
    unit = math.lcm(2, int(num_workers))
    return unit * math.ceil(2 * int(q) / unit)


def central_difference(u: np.ndarray, losses: np.ndarray, sigma: float) -> np.ndarray | None:
    """``u (n, d)``, interleaved ``losses (2n,)`` of ``c + sigma u_i``, ``c - sigma u_i`` ->
    ``g (d,)`` averaged over the pairs whose two losses are valid; ``None`` if none is."""
    lp, lm = losses[0::2], losses[1::2]
    ok = np.isfinite(lp) & np.isfinite(lm) & (lp < FAILED_LOSS) & (lm < FAILED_LOSS)
    if not ok.any():
        return None
    coef = (lp[ok] - lm[ok]) / (2.0 * sigma)
    return coef @ u[ok] / int(ok.sum())


def project_data(parametrization: p.Parameter, data: np.ndarray) -> np.ndarray:
    """Map standardized ``data (d,)`` to a value of ``parametrization`` and back: bounds (and
    periodic wrapping) applied, in standardized units."""
    child = parametrization.spawn_child()
    with p.helpers.deterministic_sampling(child):
        child.set_standardized_data(np.asarray(data, dtype=np.float64))
        _ = child.value  # bound layers reset the underlying data to the bounded value
    return np.asarray(child.get_standardized_data(reference=parametrization), float)


def _positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> Any:
    bad = isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
    if not bad:
        bad = not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero)
        bad = bad or (integer and int(value) != value)
    if bad:
        kind = "integer" if integer else "number"
        limit = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite {kind} {limit}, got {value!r}")
    return int(value) if integer else float(value)


class BlacksatZOAdam(base.Optimizer):
    """Zeroth-order Adam: antithetic random-direction finite differences, then an Adam step.

    Args:
        parametrization, budget, num_workers: nevergrad's (the budget is not used: the method
            runs until it is no longer asked).
        q: minimum number of direction pairs per gradient (``2q`` evaluations; more when
            ``num_workers > 2q``, see the module doc).
        sigma: finite-difference radius in standardized units.
        lr: Adam learning rate (``torch.optim.Adam``), standardized units per step.
        betas, eps: Adam's.
        directions: ``"gaussian"`` (``u ~ N(0, I)``) or ``"rademacher"`` (``+-1``); both have
            ``E[u u^T] = I``, so ``g`` estimates the gradient of the sigma-smoothed loss.

    After each step the center is mapped through the parametrization and back (for bounded
    arrays: clipped or bounced into the box), so it never leaves the bounds.
    """

    def __init__(
        self,
        parametrization: base.IntOrParameter,
        budget: int | None = None,
        num_workers: int = 1,
        *,
        q: int = 4,
        sigma: float = 0.1,
        lr: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        directions: str = "gaussian",
    ) -> None:
        super().__init__(parametrization, budget=budget, num_workers=num_workers)
        self.q = _positive("q", q, integer=True)
        self.sigma = _positive("sigma", sigma)
        self.lr = _positive("lr", lr)
        self.eps = _positive("eps", eps)
        try:
            b1, b2 = (float(b) for b in betas)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"betas must be two numbers in [0, 1), got {betas!r}") from exc
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = (b1, b2)
        if directions not in _DIRECTIONS:
            raise ConfigError(f"directions must be one of {_DIRECTIONS}, got {directions!r}")
        self.directions = directions
        self.set_size = set_size(self.q, self.num_workers)
        self._penalize_cheap_violations = True  # constraint-rejected asks are told inf (void)
        self._x = torch.zeros(self.dimension, dtype=torch.float64, requires_grad=True)
        self._adam = torch.optim.Adam([self._x], lr=self.lr, betas=self.betas, eps=self.eps)
        self._set: _Set | None = None
        self._sets_opened = 0
        self._phase = 0
        self._phase_center: np.ndarray | None = None
        self._members: dict[str, tuple[int, int]] = {}
        self.steps = 0
        self.name = self._describe()

    # ------------------------------------------------------------------ public
    @property
    def center(self) -> np.ndarray:
        """The current iterate, ``(d,)`` standardized data (a copy)."""
        return self._x.detach().numpy().copy()

    def drop(self, candidate: p.Parameter) -> None:
        """Declare an asked ``candidate`` as never to be told (its evaluation failed or was
        skipped): its pair is void and its set may complete without it."""
        self._asked.discard(candidate.uid)
        self._settle(candidate.uid, float("nan"))

    # ------------------------------------------------------------------ nevergrad hooks
    def _internal_ask_candidate(self) -> p.Parameter:
        s = self._set
        if s is None:
            s = self._set = self._open_set()
        if s.asked >= s.size:  # the set is out, not yet told: probe the center
            return self.parametrization.spawn_child().set_standardized_data(self.center)
        i = s.asked
        s.asked += 1
        sign = 1.0 if i % 2 == 0 else -1.0
        data = s.center + sign * self.sigma * s.u[i // 2]
        cand = self.parametrization.spawn_child().set_standardized_data(data)
        self._members[cand.uid] = (s.index, i)
        return cand

    def _internal_tell_candidate(self, candidate: p.Parameter, loss: float) -> None:
        self._settle(candidate.uid, float(loss))

    def _internal_tell_not_asked(self, candidate: p.Parameter, loss: float) -> None:
        """Points the optimizer did not ask carry no direction: archive only."""

    def _internal_provide_recommendation(self) -> np.ndarray:
        return self.center

    # ------------------------------------------------------------------ internals
    #: hyperparameters and their defaults (the name shows those that differ)
    _DEFAULTS: ClassVar[dict[str, Any]] = {
        "q": 4,
        "sigma": 0.1,
        "lr": 0.05,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "directions": "gaussian",
    }

    def _describe(self) -> str:
        changed = [
            f"{k}={getattr(self, k)!r}" for k, v in self._DEFAULTS.items() if getattr(self, k) != v
        ]
        return f"{type(self).__name__}({', '.join(changed)})" if changed else type(self).__name__

    def _draw(self, n: int) -> np.ndarray:
        shape = (n, self.dimension)
        if self.directions == "gaussian":
            return self._rng.standard_normal(shape)
        return self._rng.choice(np.array([-1.0, 1.0]), size=shape)

    def _open_set(self) -> _Set:
        m = self.set_size
        center = self.center if self._phase_center is None else self._phase_center
        s = _Set(
            self._sets_opened,
            self._phase,
            center.copy(),
            self._draw(m // 2),
            np.full(m, np.nan),
            np.zeros(m, dtype=bool),
        )
        self._sets_opened += 1
        return s

    def _settle(self, uid: str, loss: float) -> None:
        key = self._members.pop(uid, None)
        s = self._set
        if key is None or s is None or key[0] != s.index:
            return  # a probe, a stale member or an unknown candidate
        i = key[1]
        s.losses[i] = loss
        s.done[i] = True
        if s.complete:
            self._set = None
            self._on_gradient(s.phase, central_difference(s.u, s.losses, self.sigma))

    def _on_gradient(self, phase: int, grad: np.ndarray | None) -> None:
        """A set completed with ``grad (d,)`` (``None``: no valid pair)."""
        if grad is not None:
            self._step(grad)

    def _step(self, grad: np.ndarray) -> None:
        self._x.grad = torch.as_tensor(grad, dtype=torch.float64).clone()
        self._adam.step()
        self._x.grad = None
        with torch.no_grad():
            self._x.copy_(torch.as_tensor(self._project(self.center)))
        self.steps += 1

    def _project(self, data: np.ndarray) -> np.ndarray:
        return project_data(self.parametrization, data)


class BlacksatZOSAT(BlacksatZOAdam):
    """Zeroth-order sharpness-aware training: each iteration spends one set at the center ``x``
    (ascent gradient ``g1``), then one set at ``x + rho g1 / ||g1||`` (descent gradient ``g2``),
    and takes an Adam step with ``g2``.

    Args:
        rho: radius of the L2 ball in standardized units (for :mod:`blacksat.ng.adapter`
            parametrizations one unit is a quarter of each control's range). ``rho = 0`` skips the
            ascent: plain ZO-Adam. If the ascent set has no valid pair (or ``g1 = 0``), the
            descent set is taken at ``x`` itself.
        Others: see :class:`BlacksatZOAdam`.
    """

    _DEFAULTS: ClassVar[dict[str, Any]] = {**BlacksatZOAdam._DEFAULTS, "rho": 0.1}

    def __init__(
        self,
        parametrization: base.IntOrParameter,
        budget: int | None = None,
        num_workers: int = 1,
        *,
        q: int = 4,
        sigma: float = 0.1,
        lr: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        directions: str = "gaussian",
        rho: float = 0.1,
    ) -> None:
        self.rho = _positive("rho", rho, allow_zero=True)
        super().__init__(
            parametrization,
            budget=budget,
            num_workers=num_workers,
            q=q,
            sigma=sigma,
            lr=lr,
            betas=betas,
            eps=eps,
            directions=directions,
        )

    def _on_gradient(self, phase: int, grad: np.ndarray | None) -> None:
        if self.rho == 0.0:
            super()._on_gradient(phase, grad)
            return
        if phase == 0:
            x = self.center
            norm = 0.0 if grad is None else float(np.linalg.norm(grad))
            self._phase_center = x if norm == 0.0 else x + self.rho * grad / norm
            self._phase = 1
            return
        self._phase, self._phase_center = 0, None
        super()._on_gradient(phase, grad)


class ConfiguredZOAdam(base.ConfiguredOptimizer):
    """A configured :class:`BlacksatZOAdam` (nevergrad's ``ConfiguredOptimizer``): call it with
    ``(parametrization, budget, num_workers)``; ``.set_name(name, register=True)`` registers it.
    """

    def __init__(
        self,
        *,
        q: int = 4,
        sigma: float = 0.1,
        lr: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        directions: str = "gaussian",
    ) -> None:
        super().__init__(BlacksatZOAdam, locals())


class ConfiguredZOSAT(base.ConfiguredOptimizer):
    """A configured :class:`BlacksatZOSAT` (see :class:`ConfiguredZOAdam`)."""

    def __init__(
        self,
        *,
        q: int = 4,
        sigma: float = 0.1,
        lr: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        directions: str = "gaussian",
        rho: float = 0.1,
    ) -> None:
        super().__init__(BlacksatZOSAT, locals())


def _register(obj: Any, name: str) -> None:
    if name in base.registry:
        base.registry.unregister(name)  # a module reload replaces our own entries
    base.registry.register_name(name, obj)


#: the names this module registers in ``nevergrad.optimizers.registry``
REGISTERED = ("BlacksatZOAdam", "BlacksatZOSAT")
_register(BlacksatZOAdam, "BlacksatZOAdam")
_register(BlacksatZOSAT, "BlacksatZOSAT")

__all__ = [
    "FAILED_LOSS",
    "REGISTERED",
    "BlacksatZOAdam",
    "BlacksatZOSAT",
    "ConfiguredZOAdam",
    "ConfiguredZOSAT",
    "central_difference",
    "project_data",
    "set_size",
]
