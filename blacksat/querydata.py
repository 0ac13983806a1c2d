"""``QueryData``: recorded device queries, grouped, as training data for surrogates.

A query sends ``K`` settings with one batch of ``B`` inputs and reads ``K x B`` outputs, so the
natural unit of recorded data is a *group* ``(thetas (K, d), x (B, *in), y (K, B, *out))``. Many
groups share the same input batch (one minibatch is sent with many settings); the groups keep
references to it rather than copies.

The arrays are float64 and read-only: a :class:`QueryData` is an immutable value that a query
log, a design (:func:`blacksat.surrogates.designs.collect`) or a user builds, and that surrogates
fit on. It holds no storage machinery, so surrogates import it without importing the log.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from blacksat.errors import ConfigError, NonFiniteError, ShapeError

Group = tuple[np.ndarray, np.ndarray, np.ndarray]
Seed = int | np.random.Generator | None


def frozen_array(a: ArrayLike, what: str) -> np.ndarray:
    """``a`` as a read-only float64 array (no copy when it already is one).

    Raises:
        ShapeError: ``a`` is not numeric.
        NonFiniteError: ``a`` holds NaN or +-inf.
    """
    if isinstance(a, np.ndarray) and a.dtype == np.float64 and not a.flags.writeable:
        arr = a
    else:
        try:
            arr = np.array(a, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ShapeError(f"{what} must be a numeric array, got {type(a).__name__}") from exc
        arr.flags.writeable = False
    if not np.all(np.isfinite(arr)):
        n = int(np.sum(~np.isfinite(arr)))
        raise NonFiniteError(f"{what} holds {n} non-finite value(s) (NaN/inf), expected finite")
    return arr


def check_group(thetas: ArrayLike, x: ArrayLike, y: ArrayLike) -> Group:
    """Validate one group and return it as read-only float64 arrays.

    ``thetas (K, d)``, ``x (B, *in)``, ``y (K, B, *out)`` with ``K, B, d >= 1``, all finite.

    Raises:
        ShapeError: the shapes do not fit together.
        NonFiniteError: NaN or +-inf anywhere.
    """
    t = frozen_array(thetas, "thetas")
    xs = frozen_array(x, "inputs x")
    ys = frozen_array(y, "readings y")
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ShapeError(f"thetas must have shape (K, d) with K, d >= 1, got {t.shape}")
    if xs.ndim < 1 or xs.shape[0] == 0:
        raise ShapeError(f"inputs x must have shape (B, *in) with B >= 1, got {xs.shape}")
    k, b = t.shape[0], xs.shape[0]
    if ys.ndim < 2 or ys.shape[:2] != (k, b):
        raise ShapeError(
            f"readings y must have shape (K, B, *out) = ({k}, {b}, ...) for {k} setting(s) and "
            f"{b} input(s), got {ys.shape}"
        )
    return t, xs, ys


@dataclass(frozen=True, eq=False)
class QueryData:
    """Recorded queries as groups ``(thetas (K, d), x (B, *in), y (K, B, *out))``.

    All groups share ``d``, the input shape ``in`` and the output shape ``out``; ``K`` and ``B``
    vary. Arrays are stored as read-only float64 (converted on construction). An empty
    :class:`QueryData` (no groups) is valid and has no shapes.

    Attributes:
        groups: the groups, in recording order.
    """

    groups: tuple[Group, ...] = ()

    def __post_init__(self) -> None:
        checked = []
        for i, group in enumerate(self.groups):
            if not isinstance(group, (tuple, list)) or len(group) != 3:
                raise ShapeError(f"group {i} must be a (thetas, x, y) triple, got {group!r:.80}")
            checked.append(check_group(*group))
        if checked:
            t0, x0, y0 = checked[0]
            for i, (t, x, y) in enumerate(checked[1:], start=1):
                if t.shape[1] != t0.shape[1] or x.shape[1:] != x0.shape[1:]:
                    raise ShapeError(
                        f"group {i} has d = {t.shape[1]} and input shape {x.shape[1:]}; group 0 "
                        f"has d = {t0.shape[1]} and input shape {x0.shape[1:]}"
                    )
                if y.shape[2:] != y0.shape[2:]:
                    raise ShapeError(
                        f"group {i} has output shape {y.shape[2:]}; group 0 has {y0.shape[2:]}"
                    )
        object.__setattr__(self, "groups", tuple(checked))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(cls, thetas: ArrayLike, x: ArrayLike, y: ArrayLike) -> QueryData:
        """One group: ``thetas (K, d)``, ``x (B, *in)``, ``y (K, B, *out)`` (validated)."""
        return cls(((thetas, x, y),))  # type: ignore[arg-type]

    @classmethod
    def concatenate(cls, *datas: QueryData) -> QueryData:
        """All groups of ``datas``, in order (shapes must agree)."""
        for d in datas:
            if not isinstance(d, QueryData):
                raise ConfigError(f"can only concatenate QueryData, got {type(d).__name__}")
        return cls(tuple(g for d in datas for g in d.groups))

    def extend(self, other: QueryData) -> QueryData:
        """A new :class:`QueryData` with the groups of ``other`` after those of ``self``."""
        return QueryData.concatenate(self, other)

    def __add__(self, other: object) -> QueryData:
        if not isinstance(other, QueryData):
            return NotImplemented
        return QueryData.concatenate(self, other)

    # ------------------------------------------------------------------ sizes and shapes
    @property
    def n_groups(self) -> int:
        """Number of groups (recorded queries)."""
        return len(self.groups)

    @property
    def n_settings(self) -> int:
        """Number of settings over all groups, ``sum K``."""
        return sum(t.shape[0] for t, _, _ in self.groups)

    @property
    def n_samples(self) -> int:
        """Number of recorded outputs, ``sum K * B``."""
        return sum(t.shape[0] * x.shape[0] for t, x, _ in self.groups)

    @property
    def dim(self) -> int | None:
        """Number of controls ``d`` (``None`` when empty)."""
        return self.groups[0][0].shape[1] if self.groups else None

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Shape of one input, ``in`` (``None`` when empty)."""
        return tuple(self.groups[0][1].shape[1:]) if self.groups else None

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """Shape of one output, ``out`` (``None`` when empty)."""
        return tuple(self.groups[0][2].shape[2:]) if self.groups else None

    def __iter__(self) -> Iterator[Group]:
        return iter(self.groups)

    def __len__(self) -> int:
        """Number of groups."""
        return len(self.groups)

    # ------------------------------------------------------------------ views
    def settings(self) -> np.ndarray:
        """All settings, ``(N, d)`` with ``N = n_settings`` (``(0, 0)`` when empty)."""
        if not self.groups:
            return np.zeros((0, 0))
        return np.concatenate([t for t, _, _ in self.groups])

    def flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One row per recorded output: ``thetas (M, d)``, ``x (M, *in)``, ``y (M, *out)``.

        ``M = n_samples``; row order is group by group, setting-major. Materializes the
        repetitions, so it costs ``M`` copies of a setting and of an input.
        """
        if not self.groups:
            raise ConfigError("QueryData is empty: there is nothing to flatten")
        ts, xs, ys = [], [], []
        for t, x, y in self.groups:
            k, b = t.shape[0], x.shape[0]
            ts.append(np.repeat(t, b, axis=0))
            xs.append(np.tile(x, (k,) + (1,) * (x.ndim - 1)))
            ys.append(y.reshape((k * b, *y.shape[2:])))
        return np.concatenate(ts), np.concatenate(xs), np.concatenate(ys)

    def split(self, fraction: float, seed: Seed = None) -> tuple[QueryData, QueryData]:
        """Split by *settings* into ``(train, held_out)``.

        A random ``fraction`` of the distinct settings (rounded, at least one and, with two or
        more distinct settings, at most all but one) is held out with every output recorded at
        them; a held-out setting never appears in ``train``, even when it was sent in several
        queries. Groups keep their inputs; groups left without settings are dropped.

        Args:
            fraction: held-out fraction of the distinct settings, in ``(0, 1)``.
            seed: ``None``, an int or a ``numpy.random.Generator``.
        """
        if isinstance(fraction, bool) or not (0.0 < float(fraction) < 1.0):
            raise ConfigError(f"split fraction must be in (0, 1), got {fraction!r}")
        if not self.groups:
            raise ConfigError("cannot split an empty QueryData")
        rng = np.random.default_rng(seed)
        unique, inverse = np.unique(self.settings(), axis=0, return_inverse=True)
        inverse = np.asarray(inverse).ravel()
        n = unique.shape[0]
        n_held = min(max(round(float(fraction) * n), 1), max(n - 1, 1))
        held = np.zeros(n, dtype=bool)
        held[rng.permutation(n)[:n_held]] = True
        held_rows = held[inverse]
        train: list[Group] = []
        test: list[Group] = []
        start = 0
        for t, x, y in self.groups:
            mask = held_rows[start : start + t.shape[0]]
            start += t.shape[0]
            for keep, out in ((~mask, train), (mask, test)):
                if np.all(keep):
                    out.append((t, x, y))
                elif np.any(keep):
                    out.append((frozen_array(t[keep], "thetas"), x, frozen_array(y[keep], "y")))
        return QueryData(tuple(train)), QueryData(tuple(test))

    def __repr__(self) -> str:
        if not self.groups:
            return "QueryData(empty)"
        return (
            f"QueryData(groups={self.n_groups}, settings={self.n_settings}, "
            f"samples={self.n_samples}, d={self.dim}, in={self.input_shape}, "
            f"out={self.output_shape})"
        )


__all__ = ["QueryData", "check_group", "frozen_array"]
