"""``ParamSpace``: the box (and optional discrete levels) a device's controls live in.

Every control setting is validated against its space *before* it reaches a device: a wrong
shape, NaN/inf, or a value outside the bounds raises a clear error. Clipping into the bounds is
an explicit, opt-in policy (``policy="clip"``), never a silent default: a real heater must never
receive a current past its limit because an optimizer overshot.

Controls are a flat vector ``theta`` of shape ``(d,)``; batches of settings are ``(K, d)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from blacksat.errors import ConfigError, NonFiniteError, OutOfBoundsError, ShapeError

Policy = Literal["raise", "clip"]
_POLICIES = ("raise", "clip")


def _describe(a: np.ndarray, limit: int = 6) -> str:
    flat = np.asarray(a).ravel()
    shown = ", ".join(f"{v:.6g}" for v in flat[:limit])
    return f"[{shown}{', ...' if flat.size > limit else ''}]"


@dataclass(frozen=True, eq=False)
class ParamSpace:
    """Bounds, optional discrete levels and names of a device's ``d`` controls.

    Args:
        lower: lower bounds, shape ``(d,)``.
        upper: upper bounds, shape ``(d,)``; ``upper >= lower`` elementwise.
        levels: optional sorted 1-D array of the values every control can take (e.g. the 256
            gray levels of an SLM mapped to phase). Validated settings are snapped to the
            nearest level: this is what the hardware applies. Levels must lie in the bounds.
        names: optional names, one per control.

    Use :meth:`box` to build a space with the same bounds for every control.
    """

    lower: np.ndarray
    upper: np.ndarray
    levels: np.ndarray | None = None
    names: tuple[str, ...] | None = field(default=None)

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
    ) -> ParamSpace:
        """A space of ``dim`` controls sharing the bounds ``[lower, upper]``."""
        if int(dim) != dim or dim < 1:
            raise ConfigError(f"ParamSpace.box needs a positive integer dim, got {dim!r}")
        dim = int(dim)
        return cls(
            np.full(dim, float(lower)),
            np.full(dim, float(upper)),
            None if levels is None else np.asarray(levels, dtype=np.float64),
            None if names is None else tuple(names),
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
    def center(self) -> np.ndarray:
        """Midpoint of the box, shape ``(d,)``."""
        return 0.5 * (self.lower + self.upper)

    def __repr__(self) -> str:
        lo, hi = float(self.lower.min()), float(self.upper.max())
        lv = "" if self.levels is None else f", levels={self.levels.size}"
        return f"ParamSpace(d={self.dim}, bounds=[{lo:.4g}, {hi:.4g}]{lv})"

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
        )

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ validation
    def validate(self, theta: ArrayLike, *, policy: Policy = "raise") -> np.ndarray:
        """Check one setting and return it as a fresh float64 array of shape ``(d,)``.

        Raises:
            ShapeError: ``theta`` is not of shape ``(d,)``.
            NonFiniteError: ``theta`` holds NaN or +-inf (never clipped).
            OutOfBoundsError: a value is outside ``[lower, upper]`` and ``policy="raise"``.

        With ``policy="clip"`` out-of-bounds values are clipped into the box. With discrete
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
        below, above = arr < self.lower, arr > self.upper
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
            arr = np.clip(arr, self.lower, self.upper)
        if self.levels is not None:
            arr = self.snap(arr)
        return arr

    def contains(self, theta: ArrayLike) -> bool:
        """Whether ``theta`` ``(d,)`` or ``(K, d)`` is finite and inside the bounds."""
        arr = np.asarray(theta, dtype=np.float64)
        if arr.shape[-1:] != (self.dim,) or arr.ndim > 2:
            return False
        return bool(
            np.all(np.isfinite(arr)) and np.all(arr >= self.lower) and np.all(arr <= self.upper)
        )

    def project(self, theta: ArrayLike) -> np.ndarray:
        """Clip ``(..., d)`` into the bounds (no level snapping: optimizers keep a continuous
        relaxation; the device snaps when a setting is applied)."""
        arr = np.asarray(theta, dtype=np.float64)
        if arr.shape[-1:] != (self.dim,):
            raise ShapeError(f"expected (..., {self.dim}) controls, got shape {arr.shape}")
        return np.clip(arr, self.lower, self.upper)

    def snap(self, theta: ArrayLike) -> np.ndarray:
        """Round ``(..., d)`` to the nearest discrete level (identity without levels)."""
        arr = np.asarray(theta, dtype=np.float64)
        if self.levels is None:
            return arr.copy()
        lv = self.levels
        idx = np.clip(np.searchsorted(lv, arr), 1, lv.size - 1)
        left, right = lv[idx - 1], lv[idx]
        return np.where(arr - left <= right - arr, left, right)

    def sample(self, rng: np.random.Generator | int | None, n: int | None = None) -> np.ndarray:
        """Uniform draws in the box: ``(d,)`` if ``n`` is None else ``(n, d)`` (snapped)."""
        gen = np.random.default_rng(rng)
        size = (self.dim,) if n is None else (int(n), self.dim)
        out = self.lower + gen.random(size) * self.width
        return self.snap(out) if self.levels is not None else out

    # ------------------------------------------------------------------ helpers
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
