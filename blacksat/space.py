"""``ParamSpace``: the box (and optional discrete levels and periods) a device's controls live in.

Every control setting is validated against its space *before* it reaches a device: a wrong
shape, NaN/inf, or a value outside the bounds raises a clear error. Clipping into the bounds is
an explicit, opt-in policy (``policy="clip"``), never a silent default: a real heater must never
receive a current past its limit because an optimizer overshot.

A control may be **periodic** (a phase shifter or an SLM pixel acts through ``exp(i phi)``: the
phase ``2 pi + 0.1`` *is* the phase ``0.1``). Its ``period`` says so, and then every value names
a valid setting: validation accepts any finite value and wraps it modulo the period into the
canonical range ``[lower, lower + period)`` (values already in ``[lower, upper]`` pass
unchanged), so a driver still receives only in-range values, while optimizers, perturbations,
designs and distances see a circle instead of a box (nothing sticks to a bound). A control whose
actuator cannot wrap (a heater with a power limit, a current source) stays bounded.

Controls are a flat vector ``theta`` of shape ``(d,)``; batches of settings are ``(K, d)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike

from blacksat import circle
from blacksat.errors import ConfigError, NonFiniteError, OutOfBoundsError, ShapeError

Policy = Literal["raise", "clip"]
_POLICIES = ("raise", "clip")
_RTOL = 1e-9


@dataclass(frozen=True, eq=False)
class ParamSpace:
    """Bounds, optional discrete levels, optional periods and names of a device's ``d`` controls.

    Args:
        lower: lower bounds, shape ``(d,)``.
        upper: upper bounds, shape ``(d,)``; ``upper >= lower`` elementwise.
        levels: optional sorted 1-D array of the values every control can take (e.g. the 256
            gray levels of an SLM mapped to phase). Validated settings are snapped to the
            nearest level (on the circle for a periodic control: the first level is the last
            one's neighbour): this is what the hardware applies. Levels must lie in the bounds.
        names: optional names, one per control.
        period: which controls are periodic and their period: ``None``/``False`` (none),
            ``True`` or a ``(d,)`` bool mask (period ``upper - lower``), a number or ``(d,)``
            numbers (``0`` = bounded). A continuous periodic control's range must span its
            period exactly (``upper = lower + period``); a discrete one's levels lie in
            ``[lower, lower + period)`` (e.g. ``L`` SLM levels ``k 2 pi / L``, period ``2 pi``).

    Use :meth:`box` to build a space with the same bounds for every control, :meth:`bounded`
    for the same space without periods.
    """

    lower: np.ndarray
    upper: np.ndarray
    levels: np.ndarray | None = None
    names: tuple[str, ...] | None = field(default=None)
    period: Any = None

    def __post_init__(self) -> None:
        lower = np.array(self.lower, dtype=np.float64)
        upper = np.array(self.upper, dtype=np.float64)
        if lower.ndim != 1 or upper.shape != lower.shape or lower.size == 0:
            raise ConfigError(
                "ParamSpace bounds must be non-empty 1-D arrays of equal shape; got lower "
                f"{lower.shape} and upper {upper.shape}"
            )
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
            raise ConfigError("ParamSpace bounds must be finite")
        if np.any(upper < lower):
            bad = np.flatnonzero(upper < lower)
            raise ConfigError(f"ParamSpace upper < lower at indices {bad[:10].tolist()}")
        lower.flags.writeable = False
        upper.flags.writeable = False
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        if self.levels is not None:
            levels = np.unique(np.asarray(self.levels, dtype=np.float64))
            if levels.ndim != 1 or levels.size < 2 or not np.all(np.isfinite(levels)):
                raise ConfigError("ParamSpace levels must be a finite 1-D array of >= 2 values")
            if levels[0] < lower.min() - 1e-12 or levels[-1] > upper.max() + 1e-12:
                raise ConfigError("ParamSpace levels must lie within the bounds")
            levels.flags.writeable = False
            object.__setattr__(self, "levels", levels)
        if self.names is not None:
            names = tuple(str(n) for n in self.names)
            if len(names) != lower.size:
                raise ConfigError(f"ParamSpace got {len(names)} names for {lower.size} controls")
            object.__setattr__(self, "names", names)
        per = circle.periods(self.period, lower, upper)
        per.flags.writeable = False
        object.__setattr__(self, "period", per)
        self._check_periods(per)

    def _check_periods(self, per: np.ndarray) -> None:
        on = per > 0
        if not on.any():
            return
        lo, hi, p = self.lower[on], self.upper[on], per[on]
        idx = np.flatnonzero(on)
        tol = _RTOL * np.maximum(p, 1.0)
        if self.levels is None:
            bad = np.abs((hi - lo) - p) > tol
            if bad.any():
                j = idx[np.argmax(bad)]
                raise ConfigError(
                    f"periodic control {self._name(j)} must span its period: range "
                    f"[{self.lower[j]:.6g}, {self.upper[j]:.6g}] vs period {per[j]:.6g}; an "
                    "actuator that covers less than a full period is bounded (period 0)"
                )
            return
        bad = (hi - lo > p + tol) | (self.levels[0] < lo - tol) | (self.levels[-1] >= lo + p - tol)
        if bad.any():
            j = idx[np.argmax(bad)]
            raise ConfigError(
                f"periodic control {self._name(j)}: levels and bounds must lie in "
                f"[lower, lower + period) = [{self.lower[j]:.6g}, "
                f"{self.lower[j] + per[j]:.6g}), got levels in [{self.levels[0]:.6g}, "
                f"{self.levels[-1]:.6g}] and bounds [{self.lower[j]:.6g}, {self.upper[j]:.6g}]"
            )

    # ------------------------------------------------------------------ construction
    @classmethod
    def box(
        cls,
        dim: int,
        lower: float,
        upper: float,
        *,
        levels: ArrayLike | None = None,
        names: Sequence[str] | None = None,
        periodic: bool | float = False,
    ) -> ParamSpace:
        """A space of ``dim`` controls sharing the bounds ``[lower, upper]``; ``periodic=True``
        makes every control periodic with period ``upper - lower``, a number gives the period
        (e.g. ``2 pi`` for ``L`` levels ``k 2 pi / L``)."""
        if int(dim) != dim or dim < 1:
            raise ConfigError(f"ParamSpace.box needs a positive integer dim, got {dim!r}")
        dim = int(dim)
        if isinstance(periodic, (bool, np.bool_)):
            period: Any = bool(periodic)
        else:
            period = float(periodic)
        return cls(
            np.full(dim, float(lower)),
            np.full(dim, float(upper)),
            None if levels is None else np.asarray(levels, dtype=np.float64),
            None if names is None else tuple(names),
            period,
        )

    def bounded(self) -> ParamSpace:
        """The same bounds, levels and names with no periodic control (a driver whose
        actuator cannot wrap; the clipping baseline of ``benchmarks/periodic.py``)."""
        return ParamSpace(self.lower, self.upper, self.levels, self.names)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description (``from_dict`` rebuilds an equal space)."""
        return {
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "levels": None if self.levels is None else self.levels.tolist(),
            "names": None if self.names is None else list(self.names),
            "period": self.period.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParamSpace:
        """Rebuild a space from :meth:`to_dict`; a description without ``period`` (written
        before periodic controls existed) is bounded."""
        if not isinstance(data, Mapping) or not {"lower", "upper"} <= set(data):
            raise ConfigError(
                "a ParamSpace description must be a mapping with 'lower' and 'upper', got "
                f"{type(data).__name__}"
            )
        unknown = set(data) - {"lower", "upper", "levels", "names", "period"}
        if unknown:
            raise ConfigError(f"a ParamSpace description has unknown keys {sorted(unknown)}")
        return cls(
            np.asarray(data["lower"], dtype=np.float64),
            np.asarray(data["upper"], dtype=np.float64),
            None if data.get("levels") is None else np.asarray(data["levels"], dtype=np.float64),
            None if data.get("names") is None else tuple(data["names"]),
            None if data.get("period") is None else np.asarray(data["period"], dtype=np.float64),
        )

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Number of controls ``d``."""
        return int(self.lower.size)

    @property
    def shape(self) -> tuple[int]:
        """Shape of one setting, ``(d,)``."""
        return (self.dim,)

    @property
    def width(self) -> np.ndarray:
        """``upper - lower``, shape ``(d,)``."""
        return self.upper - self.lower

    @property
    def periodic(self) -> np.ndarray:
        """``(d,)`` bool mask of the periodic controls."""
        return self.period > 0

    @property
    def span(self) -> np.ndarray:
        """The extent a control covers, ``(d,)``: its period if periodic, else its width
        (uniform designs and draws cover ``[lower, lower + span)``)."""
        return np.where(self.periodic, self.period, self.width)

    @property
    def center(self) -> np.ndarray:
        """Midpoint of the box, shape ``(d,)``."""
        return 0.5 * (self.lower + self.upper)

    def __repr__(self) -> str:
        lo, hi = float(self.lower.min()), float(self.upper.max())
        lv = "" if self.levels is None else f", levels={self.levels.size}"
        n = int(self.periodic.sum())
        per = "" if n == 0 else f", periodic={n}"
        return f"ParamSpace(d={self.dim}, bounds=[{lo:.4g}, {hi:.4g}]{lv}{per})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParamSpace):
            return NotImplemented
        same_levels = (self.levels is None and other.levels is None) or (
            self.levels is not None
            and other.levels is not None
            and np.array_equal(self.levels, other.levels)
        )
        return (
            np.array_equal(self.lower, other.lower)
            and np.array_equal(self.upper, other.upper)
            and same_levels
            and self.names == other.names
            and np.array_equal(self.period, other.period)
        )

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ validation
    def validate(self, theta: ArrayLike, *, policy: Policy = "raise") -> np.ndarray:
        """Check one setting and return it as a fresh float64 array of shape ``(d,)``.

        Raises:
            ShapeError: ``theta`` is not of shape ``(d,)``.
            NonFiniteError: ``theta`` holds NaN or +-inf (never clipped).
            OutOfBoundsError: a bounded value is outside ``[lower, upper]`` and
                ``policy="raise"``.

        With ``policy="clip"`` out-of-bounds values are clipped into the box. A periodic
        control is never out of bounds: a value outside ``[lower, upper]`` is wrapped into
        ``[lower, lower + period)`` (the same phase), whatever the policy. With discrete
        ``levels`` the result is snapped to the nearest level. The input is never modified.
        """
        return self.validate_many(self._as_array(theta, (self.dim,), "theta")[None], policy=policy)[
            0
        ]

    def validate_many(self, thetas: ArrayLike, *, policy: Policy = "raise") -> np.ndarray:
        """Check a batch of settings ``(K, d)``; returns a fresh float64 ``(K, d)`` array."""
        if policy not in _POLICIES:
            raise ConfigError(f"policy must be one of {_POLICIES}, got {policy!r}")
        arr = self._as_array(thetas, (None, self.dim), "thetas")
        if not np.all(np.isfinite(arr)):
            rows, cols = np.nonzero(~np.isfinite(arr))
            raise NonFiniteError(
                f"control settings hold {rows.size} non-finite value(s) (NaN/inf), first at "
                f"setting {rows[0]}, control {self._name(cols[0])}; nothing was sent"
            )
        arr = self._wrap_outside(arr)
        bounded = ~self.periodic  # a periodic value is in range once wrapped (levels: snapped)
        below, above = bounded & (arr < self.lower), bounded & (arr > self.upper)
        if np.any(below) or np.any(above):
            if policy == "raise":
                bad = np.flatnonzero(np.any(below | above, axis=0))
                k, j = np.argwhere(below | above)[0]
                raise OutOfBoundsError(
                    f"{bad.size} control(s) out of bounds, e.g. {self._name(j)} = "
                    f"{arr[k, j]:.6g} not in [{self.lower[j]:.6g}, {self.upper[j]:.6g}] "
                    f"(setting {k}); nothing was sent. Pass policy='clip' to clip explicitly",
                    indices=bad,
                )
            arr = np.where(bounded, np.clip(arr, self.lower, self.upper), arr)
        if self.levels is not None:
            arr = self.snap(arr)
        return arr

    def contains(self, theta: ArrayLike) -> bool:
        """Whether ``theta`` ``(d,)`` or ``(K, d)`` is finite and inside the bounds (a periodic
        control: inside its canonical range ``[lower, lower + period]``)."""
        arr = np.asarray(theta, dtype=np.float64)
        if arr.shape[-1:] != (self.dim,) or arr.ndim > 2:
            return False
        top = np.where(self.periodic, np.maximum(self.upper, self.lower + self.period), self.upper)
        return bool(np.all(np.isfinite(arr)) and np.all(arr >= self.lower) and np.all(arr <= top))

    def project(self, theta: ArrayLike) -> np.ndarray:
        """``(..., d)`` into the space: bounded controls clipped into ``[lower, upper]``,
        periodic ones outside ``[lower, upper]`` wrapped into ``[lower, lower + period)``
        (never stuck on a bound); values inside pass unchanged, so it is idempotent. No level
        snapping: optimizers keep a continuous relaxation; the device snaps when a setting
        is applied. A torch tensor comes back as a tensor of its dtype (no gradient)."""
        if isinstance(theta, torch.Tensor):
            out = self.project(theta.detach().cpu().to(torch.float64).numpy())
            return torch.as_tensor(out, dtype=theta.dtype)  # type: ignore[return-value]
        arr = self._last_axis(theta)
        return np.clip(
            self._wrap_outside(arr), self.lower, np.where(self.periodic, np.inf, self.upper)
        )

    def wrap(self, theta: ArrayLike) -> np.ndarray:
        """``(..., d)`` with every periodic control reduced modulo its period into
        ``[lower, lower + period)`` (its canonical value); bounded controls unchanged (not
        clipped). A torch tensor comes back as a tensor of its dtype (no gradient)."""
        if isinstance(theta, torch.Tensor):
            out = self.wrap(theta.detach().cpu().to(torch.float64).numpy())
            return torch.as_tensor(out, dtype=theta.dtype)  # type: ignore[return-value]
        return circle.wrap(self._last_axis(theta), self.lower, self.period)

    def difference(self, a: Any, b: Any) -> Any:
        """``a - b`` ``(..., d)`` with periodic controls taken the short way round the circle,
        in ``[-period / 2, period / 2)``: the difference of ``6.2`` and ``0.05`` rad is about
        ``-0.13``, not ``6.15``. Numpy or torch (differentiable in ``a`` and ``b``)."""
        diff = circle.difference(a, b, self.period)
        if diff.shape[-1:] != (self.dim,):
            raise ShapeError(f"expected (..., {self.dim}) controls, got shape {tuple(diff.shape)}")
        return diff

    def distance(self, a: ArrayLike, b: ArrayLike) -> np.ndarray | float:
        """Euclidean distance of ``a`` and ``b`` ``(..., d)`` using :meth:`difference` (a
        float for single settings, else ``(...,)``)."""
        dist = np.linalg.norm(self.difference(a, b), axis=-1)
        return float(dist) if np.ndim(dist) == 0 else dist

    def snap(self, theta: ArrayLike) -> np.ndarray:
        """Round ``(..., d)`` to the nearest discrete level (identity without levels); on a
        periodic control the nearest level on the circle (a value just below ``lower +
        period`` snaps to the first level when that is nearer than the last)."""
        arr = np.asarray(theta, dtype=np.float64)
        if self.levels is None:
            return arr.copy()
        lv = self.levels
        on = self.periodic
        if on.any():
            arr = self.wrap(arr)
        idx = np.clip(np.searchsorted(lv, arr), 1, lv.size - 1)
        left, right = lv[idx - 1], lv[idx]
        out = np.where(arr - left <= right - arr, left, right)
        return circle.snap_on_circle(arr, out, lv, self.period) if on.any() else out

    def sample(self, rng: np.random.Generator | int | None, n: int | None = None) -> np.ndarray:
        """Uniform draws: ``(d,)`` if ``n`` is None else ``(n, d)`` (snapped). Bounded controls
        are uniform in ``[lower, upper]``, periodic ones uniform over the circle."""
        gen = np.random.default_rng(rng)
        size = (self.dim,) if n is None else (int(n), self.dim)
        out = self.lower + gen.random(size) * self.span
        return self.snap(out) if self.levels is not None else out

    # ------------------------------------------------------------------ helpers
    def _wrap_outside(self, arr: np.ndarray) -> np.ndarray:
        """Periodic values outside ``[lower, upper]`` wrapped; everything else unchanged."""
        on = self.periodic
        if not on.any():
            return arr
        outside = on & ((arr < self.lower) | (arr > self.upper))
        return np.where(outside, self.wrap(arr), arr) if outside.any() else arr

    def _last_axis(self, theta: ArrayLike) -> np.ndarray:
        arr = np.asarray(theta, dtype=np.float64)
        if arr.shape[-1:] != (self.dim,):
            raise ShapeError(f"expected (..., {self.dim}) controls, got shape {arr.shape}")
        return arr

    def _name(self, j: int) -> str:
        return f"{j} ({self.names[j]!r})" if self.names is not None else str(int(j))

    def _as_array(self, a: ArrayLike, shape: tuple[int | None, ...], what: str) -> np.ndarray:
        try:
            arr = np.array(a, dtype=np.float64)  # copy: never alias the caller's controls
        except (TypeError, ValueError) as exc:
            raise ShapeError(f"{what} must be a numeric array, got {type(a).__name__}") from exc
        want = tuple("K" if s is None else s for s in shape)
        ok = arr.ndim == len(shape) and all(
            s is None or s == n for s, n in zip(shape, arr.shape, strict=False)
        )
        if not ok or (arr.ndim == 2 and arr.shape[0] == 0):
            raise ShapeError(f"{what} must have shape {want}, got {arr.shape}")
        return arr


__all__ = ["ParamSpace", "Policy"]
