"""Arithmetic on periodic controls (phases): the circle behind :class:`~blacksat.ParamSpace`'s
``period``.

Every function takes per-control arrays ``lower (d,)`` and ``period (d,)`` (``0`` = a bounded
control, left alone) and values ``(..., d)``. A periodic control's canonical range is
``[lower, lower + period)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from blacksat.errors import ConfigError


def periods(period: Any, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``period`` (None, a bool, a bool mask, a number or ``(d,)`` numbers; 0 = bounded) as a
    ``(d,)`` float64 array of periods, 0 for bounded controls (``True``: ``upper - lower``)."""
    d = lower.size
    if period is None or period is False:
        return np.zeros(d)
    raw = np.asarray(period)
    if raw.dtype == bool:
        if raw.shape not in ((), (d,)):
            raise ConfigError(f"ParamSpace period mask must have shape ({d},), got {raw.shape}")
        return np.where(np.broadcast_to(raw, (d,)), upper - lower, 0.0)
    try:
        per = np.array(np.broadcast_to(np.asarray(raw, dtype=np.float64), (d,)))
    except (TypeError, ValueError):
        raise ConfigError(
            f"ParamSpace period must be None, a bool (mask) or a number per control ({d},), "
            f"got {period!r}"
        ) from None
    if not np.all(np.isfinite(per)) or np.any(per < 0):
        raise ConfigError(
            f"ParamSpace periods must be finite and >= 0 (0 = bounded), got {period!r}"
        )
    return per


def wrap(arr: np.ndarray, lower: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Periodic values reduced modulo their period into ``[lower, lower + period)``; values
    already there (and bounded controls) unchanged, bit for bit."""
    on = period > 0
    if not on.any():
        return arr.copy()
    p = np.where(on, period, 1.0)
    top = lower + p
    inside = (arr >= lower) & (arr < top)
    wrapped = lower + np.mod(arr - lower, p)
    wrapped = np.where(wrapped >= top, lower, wrapped)  # rounding up to the period
    return np.where(on & ~inside, wrapped, arr)


def difference(a: Any, b: Any, period: np.ndarray) -> Any:
    """``a - b`` with periodic controls the short way round, in ``[-period / 2, period / 2)``.
    Numpy, or torch when either is a tensor (differentiable)."""
    on = period > 0
    p = np.where(on, period, 1.0)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        ref = a if isinstance(a, torch.Tensor) else b
        diff = torch.as_tensor(a, dtype=ref.dtype) - torch.as_tensor(b, dtype=ref.dtype)
        if not on.any():
            return diff
        pt = torch.as_tensor(p, dtype=diff.dtype)
        return torch.where(torch.as_tensor(on), diff - pt * torch.floor(diff / pt + 0.5), diff)
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not on.any():
        return d
    return np.where(on, d - p * np.floor(d / p + 0.5), d)


def snap_on_circle(
    arr: np.ndarray, snapped: np.ndarray, levels: np.ndarray, period: np.ndarray
) -> np.ndarray:
    """Correct ``snapped`` (the nearest level of ``arr`` on the line, ``arr`` wrapped) for the
    circle: past the last level the first one (one period on) may be nearer, below the first
    level the last one (one period back)."""
    on = period > 0
    p = np.where(on, period, np.inf)
    err = np.abs(arr - snapped)
    to_first = on & (levels[0] + p - arr < err)
    to_last = on & (arr - (levels[-1] - p) < err)
    return np.where(to_first, levels[0], np.where(to_last, levels[-1], snapped))


__all__ = ["difference", "periods", "snap_on_circle", "wrap"]
