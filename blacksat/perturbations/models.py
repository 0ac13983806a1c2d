"""Perturbation models: the geometry of a disturbance, first-class (see DESIGN.md).

SAT is flat *with respect to a perturbation model*. A model says how a disturbance acts: as a
shift ``delta (d,)`` of the controls (an L2 ball, a magnitude-scaled ball, independent per-control
noise, a common-mode shift of a group, a low-rank subspace) and/or as values of nuisance physical
parameters a simulated device exposes (temperature, misalignment). The worst-case ascent of SAT is
taken *within* the model's set (:meth:`PerturbationModel.worst`); the average-case variant injects
draws from the same model (:meth:`PerturbationModel.sample`), so noise-aware training is the
average-case special case; robustness sweeps take the same objects.

Every control-space ``worst`` maximises the linearised loss ``g . delta`` over its set (exactly;
a zero radius or ``g = 0`` gives an exactly zero delta, never NaN). Deltas are tensors of
``theta``'s shape ``(d,)`` and floating dtype (float64 in the training core); no model mutates
``theta`` or ``grad``. Randomness comes only from the ``rng`` passed in.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from blacksat.errors import ConfigError, NonFiniteError, ShapeError
from blacksat.perturbations.base import (
    Kind,
    Perturbation,
    PerturbationModel,
    Probe,
    _factor,
    _radius,
    needs_gradient,
    probe_evaluations,
)
from blacksat.validation import check_choice

_KINDS = ("box", "gaussian")
_MAX_CORNER_DIMS = 4
_MAX_GRID_POINTS = 4096


# ---------------------------------------------------------------------- helpers
def _kind(kind: str) -> str:
    return check_choice("kind", kind, _KINDS)


def _dtype(theta: torch.Tensor) -> torch.dtype:
    return theta.dtype if theta.is_floating_point() else torch.float64


def _theta(theta: torch.Tensor) -> torch.Tensor:
    """``theta`` as a detached 1-D tensor (ShapeError otherwise)."""
    theta = torch.as_tensor(theta).detach()
    if theta.ndim != 1:
        raise ShapeError(f"theta must be a vector (d,), got shape {tuple(theta.shape)}")
    return theta


def _grad(theta: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
    """``grad`` as a detached float64 ``(d,)`` tensor matching ``theta``."""
    if grad is None:
        raise ConfigError("this perturbation model needs the loss gradient (grad is None)")
    g = torch.as_tensor(grad).detach().to(torch.float64)
    if g.shape != theta.shape:
        raise ShapeError(f"grad has shape {tuple(g.shape)}, theta {tuple(theta.shape)}")
    if not torch.isfinite(g).all():
        raise NonFiniteError("grad holds NaN or inf; cannot form a worst-case perturbation")
    return g


def _out(theta: torch.Tensor, delta: torch.Tensor) -> Perturbation:
    return Perturbation(delta.to(_dtype(theta)))


def _draw(rng: np.random.Generator, kind: str, size: int) -> torch.Tensor:
    """``size`` draws from U[-1, 1] (``box``) or N(0, 1) (``gaussian``), float64."""
    u = rng.uniform(-1.0, 1.0, size) if kind == "box" else rng.standard_normal(size)
    return torch.as_tensor(u, dtype=torch.float64)


def _weights(value: Any, name: str) -> np.ndarray | None:
    """An optional per-control vector ``(d,)`` as a read-only float64 array."""
    if value is None:
        return None
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a numeric vector (d,), got {value!r}") from None
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name} must be a non-empty finite vector (d,), got shape {arr.shape}")
    arr.setflags(write=False)
    return arr


def _vec(arr: np.ndarray | None, d: int, name: str) -> torch.Tensor | None:
    if arr is None:
        return None
    if arr.shape != (d,):
        raise ShapeError(f"{name} has {arr.size} entries but theta has {d} controls")
    return torch.tensor(arr, dtype=torch.float64)


# ---------------------------------------------------------------------- control-space models
@dataclass(frozen=True)
class L2Ball:
    """Plain SAM: ``||delta||_2 <= rho``. Worst case ``rho * g / ||g||``; draws uniform on the
    sphere of radius ``rho``."""

    rho: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "rho", _radius("rho", self.rho))

    @property
    def radius(self) -> float:
        """The size of the set, under the name every model shares (``rho`` here)."""
        return self.rho

    needs_gradient = True  # the worst case is read off the loss gradient

    @property
    def is_zero(self) -> bool:
        """True when every perturbation of the set is zero."""
        return self.rho == 0

    def worst(
        self,
        theta: torch.Tensor,
        grad: torch.Tensor | None,
        probe: Probe,
        rng: np.random.Generator,
    ) -> Perturbation:
        theta = _theta(theta)
        g = _grad(theta, grad)
        norm = torch.linalg.vector_norm(g)
        if self.rho == 0 or norm == 0:
            return _out(theta, torch.zeros_like(g))
        return _out(theta, self.rho * g / norm)

    def sample(self, theta: torch.Tensor, rng: np.random.Generator) -> Perturbation:
        theta = _theta(theta)
        u = _draw(rng, "gaussian", theta.shape[-1])
        return _out(theta, self.rho * u / torch.linalg.vector_norm(u))

    def scaled(self, factor: float) -> L2Ball:
        return L2Ball(self.rho * _factor(factor))


@dataclass(frozen=True)
class Adaptive:
    """ASAM (Kwon et al., ICML 2021): the ellipsoid ``||delta / T||_2 <= rho``,
    ``T = |theta| + eta`` elementwise (large controls may move more).

    Worst case ``rho * T^2 g / ||T g||``; draws ``rho * T * u / ||u||`` with ``u ~ N(0, I)``
    (on the ellipsoid's surface).
    """

    rho: float
    eta: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "rho", _radius("rho", self.rho))
        object.__setattr__(self, "eta", _radius("eta", self.eta))

    @property
    def radius(self) -> float:
        """The size of the set, under the name every model shares (``rho`` here)."""
        return self.rho

    needs_gradient = True  # the worst case is read off the loss gradient

    @property
    def is_zero(self) -> bool:
        return self.rho == 0

    def _t(self, theta: torch.Tensor) -> torch.Tensor:
        return theta.to(torch.float64).abs() + self.eta

    def worst(
        self,
        theta: torch.Tensor,
        grad: torch.Tensor | None,
        probe: Probe,
        rng: np.random.Generator,
    ) -> Perturbation:
        theta = _theta(theta)
        t = self._t(theta)
        tg = t * _grad(theta, grad)
        norm = torch.linalg.vector_norm(tg)
        if self.rho == 0 or norm == 0:
            return _out(theta, torch.zeros_like(tg))
        return _out(theta, self.rho * t * tg / norm)

    def sample(self, theta: torch.Tensor, rng: np.random.Generator) -> Perturbation:
        theta = _theta(theta)
        u = _draw(rng, "gaussian", theta.shape[-1])
        return _out(theta, self.rho * self._t(theta) * u / torch.linalg.vector_norm(u))

    def scaled(self, factor: float) -> Adaptive:
        return Adaptive(self.rho * _factor(factor), self.eta)


@dataclass(frozen=True, eq=False)
class PerControl:
    """Independent disturbance of every control: the box ``|delta_i| <= radius * w_i``,
    ``w = |scale| * mask`` (ones by default).

    Worst case (both kinds) the box corner ``radius * w * sign(g)``. Draws: uniform in the box
    (``kind="box"``) or ``N(0, (radius w_i)^2)`` per control (``kind="gaussian"``: fabrication
    spread, noise-aware training).

    Args:
        radius: half width of the box / standard deviation, in control units.
        kind: ``"box"`` or ``"gaussian"``.
        mask: optional ``(d,)`` booleans: only these controls are disturbed.
        scale: optional ``(d,)`` per-control weights of the radius.
    """

    radius: float
    kind: Kind = "box"
    mask: Any = field(default=None, repr=False)
    scale: Any = field(default=None, repr=False)
    _w: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius", _radius("radius", self.radius))
        _kind(self.kind)
        mask = None
        if self.mask is not None:
            raw = np.asarray(self.mask)
            if raw.dtype != bool and not np.isin(raw, (0, 1)).all():
                raise ConfigError("mask must hold booleans (or 0/1)")
            mask = _weights(raw.astype(np.float64), "mask")
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "scale", _weights(self.scale, "scale"))
        if self.mask is not None and self.scale is not None and self.mask.shape != self.scale.shape:
            raise ConfigError(f"mask {self.mask.shape} and scale {self.scale.shape} differ")
        w = None
        for part in (self.mask, None if self.scale is None else np.abs(self.scale)):
            if part is not None:
                w = part if w is None else w * part
        object.__setattr__(self, "_w", w)

    needs_gradient = True  # the worst case is read off the loss gradient

    @property
    def is_zero(self) -> bool:
        return self.radius == 0 or (self._w is not None and not self._w.any())

    def _width(self, theta: torch.Tensor) -> torch.Tensor:
        w = _vec(self._w, theta.shape[-1], "mask/scale")
        r = torch.full(theta.shape, self.radius, dtype=torch.float64)
        return r if w is None else r * w

    def worst(
        self,
        theta: torch.Tensor,
        grad: torch.Tensor | None,
        probe: Probe,
        rng: np.random.Generator,
    ) -> Perturbation:
        theta = _theta(theta)
        return _out(theta, self._width(theta) * torch.sign(_grad(theta, grad)))

    def sample(self, theta: torch.Tensor, rng: np.random.Generator) -> Perturbation:
        theta = _theta(theta)
        return _out(theta, self._width(theta) * _draw(rng, self.kind, theta.shape[-1]))

    def scaled(self, factor: float) -> PerControl:
        return PerControl(self.radius * _factor(factor), self.kind, self.mask, self.scale)

    def __repr__(self) -> str:
        extra = "".join(
            f", {n}=<{v.size}>" for n in ("mask", "scale") if (v := getattr(self, n)) is not None
        )
        return f"PerControl(radius={self.radius!r}, kind={self.kind!r}{extra})"


@dataclass(frozen=True, eq=False)
class CommonMode:
    """A common shift of each group of controls: ``delta_G = s_G * scale_G``, ``|s_G| <= r``
    (thermal drift moves every ring of a bank together).

    Worst case ``s_G = r * sign(sum_{i in G} scale_i g_i)`` (DESIGN.md: ``r sign(1.T g) 1`` for
    one group without scale). Draws ``s_G ~ U[-r, r]`` (``kind="box"``) or ``N(0, r^2)``
    (``kind="gaussian"``), independent per group. Groups may overlap (their shifts add).

    The linearised worst case is always an end of the range, so SAT against it trains for the
    ends and can lose the middle (``benchmarks/mrr_drift.py``: 22 % at dT = 0, 83 % at 2 K).
    ``grid=n`` instead *probes* the loss at ``n`` evenly spaced shifts in ``[-r, r]`` (per group,
    every combination: ``n ** n_groups`` points, at most 4096) and takes the largest: a worst
    case over a set that covers the range, centre included (same benchmark: 89.9 % at dT = 0,
    89.5 % at 2 K). It costs ``n ** n_groups`` loss evaluations per ascent
    (:attr:`probe_evaluations`), on a device that many evaluations of the minibatch.

    Args:
        radius: ``r``, the largest shift (box) or its standard deviation, in control units.
        groups: index arrays of the groups; ``None`` = one group of all controls.
        kind: ``"box"`` or ``"gaussian"``.
        scale: optional ``(d,)`` per-control coefficient of the shift (e.g. a thermal
            coefficient per control; may be negative).
        grid: ``0`` (default) for the linearised worst case, or ``n >= 2`` shifts per group whose
            probed losses decide the worst case.
    """

    radius: float
    groups: Any = field(default=None, repr=False)
    kind: Kind = "box"
    scale: Any = field(default=None, repr=False)
    grid: int = 0
    _idx: torch.Tensor = field(default=None, init=False, repr=False, compare=False)  # type: ignore[assignment]
    _gid: torch.Tensor = field(default=None, init=False, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius", _radius("radius", self.radius))
        _kind(self.kind)
        g = self.grid
        if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 0 or g == 1:
            raise ConfigError(
                f"grid must be 0 (linearised worst case) or an integer >= 2, got {g!r}"
            )
        object.__setattr__(self, "grid", int(g))
        object.__setattr__(self, "scale", _weights(self.scale, "scale"))
        if self.groups is None:
            return
        groups = []
        for i, g in enumerate(self.groups):
            arr = np.asarray(g)
            if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
                raise ConfigError(f"group {i} must be a non-empty 1-D integer index array")
            if arr.min() < 0 or np.unique(arr).size != arr.size:
                raise ConfigError(f"group {i} has negative or repeated indices")
            groups.append(arr.astype(np.int64))
        if not groups:
            raise ConfigError("groups must hold at least one group (or be None: all controls)")
        object.__setattr__(self, "groups", tuple(groups))
        object.__setattr__(self, "_idx", torch.as_tensor(np.concatenate(groups)))
        gid = np.concatenate([np.full(g.size, k) for k, g in enumerate(groups)])
        object.__setattr__(self, "_gid", torch.as_tensor(gid, dtype=torch.int64))
        if self.grid and self.grid ** len(groups) > _MAX_GRID_POINTS:
            raise ConfigError(
                f"grid={self.grid} over {len(groups)} groups is {self.grid ** len(groups)} probe "
                f"points, more than {_MAX_GRID_POINTS}; use fewer points or groups"
            )

    @property
    def n_groups(self) -> int:
        return 1 if self.groups is None else len(self.groups)

    @property
    def probe_evaluations(self) -> int:
        """Loss evaluations one :meth:`worst` spends (0 for the linearised worst case)."""
        return 0 if not self.grid or self.is_zero else self.grid**self.n_groups

    @property
    def needs_gradient(self) -> bool:
        """The linearised worst case reads the gradient; ``grid=n`` probes the loss only."""
        return not self.grid

    @property
    def is_zero(self) -> bool:
        return self.radius == 0 or (self.scale is not None and not self.scale.any())

    def _spread(self, theta: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        """Group shifts ``(n_groups,)`` -> ``delta (d,)``."""
        d = theta.shape[-1]
        scale = _vec(self.scale, d, "scale")
        if self.groups is None:
            delta = shifts.expand(d).clone()
        else:
            if int(self._idx.max()) >= d:
                raise ShapeError(f"a group indexes control {int(self._idx.max())} >= d = {d}")
            delta = torch.zeros(d, dtype=torch.float64).index_add_(0, self._idx, shifts[self._gid])
        return delta if scale is None else delta * scale

    def worst(
        self,
        theta: torch.Tensor,
        grad: torch.Tensor | None,
        probe: Probe,
        rng: np.random.Generator,
    ) -> Perturbation:
        theta = _theta(theta)
        if self.grid:
            return self._grid_worst(theta, probe)
        g = _grad(theta, grad)
        scale = _vec(self.scale, theta.shape[-1], "scale")
        sg = g if scale is None else g * scale
        if self.groups is None:
            slope = sg.sum().reshape(1)
        else:
            self._spread(theta, torch.zeros(self.n_groups, dtype=torch.float64))  # index check
            slope = torch.zeros(self.n_groups, dtype=torch.float64)
            slope.index_add_(0, self._gid, sg[self._idx])
        return _out(theta, self._spread(theta, self.radius * torch.sign(slope)))

    def _grid_worst(self, theta: torch.Tensor, probe: Probe) -> Perturbation:
        if self.is_zero:
            return _out(theta, torch.zeros_like(theta, dtype=_dtype(theta)))
        levels = np.linspace(-self.radius, self.radius, self.grid)
        points = [
            torch.as_tensor(np.array(p), dtype=torch.float64)
            for p in itertools.product(levels, repeat=self.n_groups)
        ]
        deltas = [self._spread(theta, p) for p in points]
        losses = torch.as_tensor(probe([Perturbation(d) for d in deltas]), dtype=torch.float64)
        if losses.shape != (len(deltas),):
            raise ShapeError(
                f"probe returned {tuple(losses.shape)} losses, expected ({len(deltas)},)"
            )
        losses = torch.nan_to_num(losses, nan=-np.inf)
        if not (losses > -np.inf).any():
            raise NonFiniteError("every probed common-mode shift gave a non-finite loss")
        return _out(theta, deltas[int(torch.argmax(losses))])

    def sample(self, theta: torch.Tensor, rng: np.random.Generator) -> Perturbation:
        theta = _theta(theta)
        shifts = self.radius * _draw(rng, self.kind, self.n_groups)
        return _out(theta, self._spread(theta, shifts))

    def scaled(self, factor: float) -> CommonMode:
        return CommonMode(
            self.radius * _factor(factor), self.groups, self.kind, self.scale, self.grid
        )

    def __repr__(self) -> str:
        extra = "" if self.scale is None else f", scale=<{self.scale.size}>"
        extra += f", grid={self.grid}" if self.grid else ""
        return (
            f"CommonMode(radius={self.radius!r}, groups={self.n_groups}, kind={self.kind!r}{extra})"
        )


@dataclass(frozen=True, eq=False)
class Subspace:
    """A low-rank subspace: ``delta = Q z``, ``||z||_2 <= rho``, ``Q (d, k)`` an orthonormal
    basis of ``span(basis)`` (QR, computed once).

    Worst case ``rho * P g / ||P g||`` with ``P = Q Q^T`` (the projected SAM direction); draws
    ``rho * Q z / ||z||``, ``z ~ N(0, I_k)``.
    """

    basis: Any = field(repr=False)
    rho: float
    _q: torch.Tensor = field(default=None, init=False, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "rho", _radius("rho", self.rho))
        try:
            b = torch.as_tensor(self.basis).detach().cpu().to(torch.float64).numpy().copy()
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError("basis must be a numeric (d, k) array") from None
        if b.ndim == 1:
            b = b[:, None]
        if b.ndim != 2 or b.shape[1] == 0 or b.shape[1] > b.shape[0]:
            raise ConfigError(f"basis must be (d, k) with 1 <= k <= d, got shape {b.shape}")
        if not np.all(np.isfinite(b)):
            raise ConfigError("basis holds NaN or inf")
        q, r = np.linalg.qr(b)
        diag = np.abs(np.diag(r))
        if diag.min() <= 1e-10 * max(diag.max(), 1e-300):
            raise ConfigError("basis columns are linearly dependent (rank < k)")
        object.__setattr__(self, "basis", torch.as_tensor(q))
        object.__setattr__(self, "_q", torch.as_tensor(q))

    @property
    def rank(self) -> int:
        return int(self._q.shape[1])

    @property
    def radius(self) -> float:
        """The size of the set, under the name every model shares (``rho`` here)."""
        return self.rho

    needs_gradient = True  # the worst case is read off the loss gradient

    @property
    def is_zero(self) -> bool:
        return self.rho == 0

    def _check(self, theta: torch.Tensor) -> None:
        if theta.shape[-1] != self._q.shape[0]:
            raise ShapeError(
                f"basis has {self._q.shape[0]} rows but theta has {theta.shape[-1]} controls"
            )

    def worst(
        self,
        theta: torch.Tensor,
        grad: torch.Tensor | None,
        probe: Probe,
        rng: np.random.Generator,
    ) -> Perturbation:
        theta = _theta(theta)
        self._check(theta)
        pg = self._q @ (self._q.T @ _grad(theta, grad))
        norm = torch.linalg.vector_norm(pg)
        if self.rho == 0 or norm == 0:
            return _out(theta, torch.zeros_like(pg))
        return _out(theta, self.rho * pg / norm)

    def sample(self, theta: torch.Tensor, rng: np.random.Generator) -> Perturbation:
        theta = _theta(theta)
        self._check(theta)
        z = _draw(rng, "gaussian", self.rank)
        return _out(theta, self.rho * (self._q @ z) / torch.linalg.vector_norm(z))

    def scaled(self, factor: float) -> Subspace:
        return Subspace(self._q, self.rho * _factor(factor))

    def __repr__(self) -> str:
        return f"Subspace(d={self._q.shape[0]}, k={self.rank}, rho={self.rho!r})"


# ---------------------------------------------------------------------- combinations
def _nuisance_names(model: Any) -> set[str]:
    if isinstance(model, Combined):
        return set().union(*(_nuisance_names(m) for m in model.models))
    return set(getattr(model, "ranges", {}) or {})  # NuisanceModel (duck-typed: no cycle)


@dataclass(frozen=True, init=False)
class Combined:
    """Several disturbances at once: ``worst`` is the sum of each member's worst case (all from
    the same ``grad`` / ``probe`` / ``rng``), ``sample`` the sum of their draws, ``scaled``
    scales every member. Members may not share a nuisance parameter."""

    models: tuple[PerturbationModel, ...]

    def __init__(self, *models: PerturbationModel) -> None:
        if not models:
            raise ConfigError("Combined needs at least one perturbation model")
        seen: set[str] = set()
        for m in models:
            if not isinstance(m, PerturbationModel):
                raise ConfigError(f"{type(m).__name__} is not a perturbation model")
            names = _nuisance_names(m)
            if names & seen:
                raise ConfigError(f"nuisance parameter(s) {sorted(names & seen)} appear twice")
            seen |= names
        object.__setattr__(self, "models", tuple(models))

    @property
    def is_zero(self) -> bool:
        return all(getattr(m, "is_zero", False) for m in self.models)

    @property
    def needs_gradient(self) -> bool:
        return any(needs_gradient(m) for m in self.models)

    @property
    def probe_evaluations(self) -> int:
        return sum(probe_evaluations(m) for m in self.models)

    def worst(
        self,
        theta: torch.Tensor,
        grad: torch.Tensor | None,
        probe: Probe,
        rng: np.random.Generator,
    ) -> Perturbation:
        out = Perturbation()
        for m in self.models:
            out = out + m.worst(theta, grad, probe, rng)
        return out

    def sample(self, theta: torch.Tensor, rng: np.random.Generator) -> Perturbation:
        out = Perturbation()
        for m in self.models:
            out = out + m.sample(theta, rng)
        return out

    def scaled(self, factor: float) -> Combined:
        return Combined(*(m.scaled(factor) for m in self.models))

    def __repr__(self) -> str:
        return f"Combined({', '.join(repr(m) for m in self.models)})"


@dataclass(frozen=True)
class Sampled:
    """A disturbance taken at random even when SAT asks for the worst case: ``worst`` is a
    draw of ``model`` (no gradient, no probe). Inside :class:`Combined` it gives the worst case
    over one disturbance and the average case over another, e.g.
    ``Combined(CommonMode(0.16, grid=9), Sampled(PerControl(0.08, "gaussian")))``: the worst
    ambient drift on top of a random fabrication spread."""

    model: PerturbationModel

    def __post_init__(self) -> None:
        if not isinstance(self.model, PerturbationModel):
            raise ConfigError(f"{type(self.model).__name__} is not a perturbation model")

    needs_gradient = False
    probe_evaluations = 0

    @property
    def is_zero(self) -> bool:
        return bool(getattr(self.model, "is_zero", False))

    def worst(
        self,
        theta: torch.Tensor,
        grad: torch.Tensor | None,
        probe: Probe,
        rng: np.random.Generator,
    ) -> Perturbation:
        return self.model.sample(theta, rng)

    def sample(self, theta: torch.Tensor, rng: np.random.Generator) -> Perturbation:
        return self.model.sample(theta, rng)

    def scaled(self, factor: float) -> Sampled:
        return Sampled(self.model.scaled(factor))


__all__ = ["Adaptive", "Combined", "CommonMode", "L2Ball", "PerControl", "Sampled", "Subspace"]
