"""Experiment designs: which settings (and inputs) to query to learn a device.

Global designs fill the control box (a periodic control's whole circle, uniformly):
:func:`sobol` (scrambled Sobol, low discrepancy), :func:`latin_hypercube` (one point per stratum
in every control) and :func:`uniform`. A
:func:`local` design samples around an iterate, to refresh a surrogate where the optimizer is.
Every design returns settings ``(n, d)`` inside the :class:`~blacksat.ParamSpace` bounds, snapped
to its discrete ``levels`` when it has them, and is a pure function of its ``seed`` (``None``,
an int or a ``numpy.random.Generator``).

:func:`input_subset` picks which inputs to send with them (stratified by label), and
:func:`collect` sends a design through a device in batched chunks, spending a budget exactly
and never past it, and returns what was measured as :class:`~blacksat.QueryData`.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import qmc

from blacksat.device import Device, check_inputs
from blacksat.errors import BudgetExhausted, ConfigError, ShapeError
from blacksat.meter import Ledger
from blacksat.querydata import QueryData
from blacksat.space import ParamSpace
from blacksat.validation import as_generator, check_int

Seed = int | np.random.Generator | None

# scipy >= 1.15 names the generator argument of its QMC engines ``rng`` (``seed`` before).
_QMC_RNG = "rng" if "rng" in inspect.signature(qmc.Sobol.__init__).parameters else "seed"


# ---------------------------------------------------------------------- global designs
def sobol(space: ParamSpace, n: int, *, seed: Seed) -> np.ndarray:
    """``n`` scrambled Sobol points in the box, ``(n, d)``.

    The first ``n`` points of a scrambled sequence of ``2**ceil(log2 n)`` points: any prefix of
    a Sobol sequence is low-discrepancy; the full power of two is balanced.
    """
    n = _check_n(n)
    engine = qmc.Sobol(_check_space(space).dim, scramble=True, **{_QMC_RNG: _rng(seed)})
    unit = engine.random_base2(max(math.ceil(math.log2(n)), 0))[:n]
    return _to_space(space, unit)


def latin_hypercube(space: ParamSpace, n: int, *, seed: Seed) -> np.ndarray:
    """``n`` Latin-hypercube points, ``(n, d)``: every control's range is cut into ``n`` equal
    strata and each stratum holds exactly one point (before snapping to levels)."""
    n = _check_n(n)
    engine = qmc.LatinHypercube(_check_space(space).dim, **{_QMC_RNG: _rng(seed)})
    return _to_space(space, engine.random(n))


def uniform(space: ParamSpace, n: int, *, seed: Seed) -> np.ndarray:
    """``n`` independent uniform points in the box, ``(n, d)``."""
    n = _check_n(n)
    return _to_space(space, _rng(seed).random((n, _check_space(space).dim)))


# ---------------------------------------------------------------------- local design
def local(
    space: ParamSpace,
    center: ArrayLike,
    radius: float | ArrayLike,
    n: int,
    *,
    seed: Seed,
    kind: Literal["sobol", "latin_hypercube", "gaussian"] = "latin_hypercube",
) -> np.ndarray:
    """``n`` settings around ``center``, ``(n, d)``, projected into the space (clipped into
    the box; a periodic control wraps around its circle).

    Args:
        space: the control space.
        center: the iterate, ``(d,)``, finite and inside the bounds.
        radius: in control units, a scalar or one per control ``(d,)``, all ``> 0``.
        n: number of settings.
        seed: ``None``, an int or a ``numpy.random.Generator``.
        kind: ``"latin_hypercube"`` (default): Latin-hypercube points filling the cube
            ``|theta - center| <= radius`` (per control; every control's range cut into ``n``
            strata, one point in each, the controls varying independently); ``"sobol"``:
            scrambled Sobol points in the same cube (a prefix of few points in many dimensions
            moves pairs of controls together: at 100 settings of 320 controls a pair correlates
            at 0.94, and a physics-free fit around the centre of the crossbar predicts fresh
            settings of the cube with R² 0.42 against 0.87 from a Latin hypercube,
            ``benchmarks/designs.py``); ``"gaussian"``: independent normal draws with
            standard deviation ``radius`` per control.
    """
    space = _check_space(space)
    n = _check_n(n)
    c = np.array(center, dtype=np.float64)
    if c.shape != space.shape:
        raise ShapeError(f"center must have shape {space.shape}, got {c.shape}")
    if not space.contains(c):
        raise ConfigError("center must be finite and inside the bounds of the space")
    r = np.broadcast_to(_check_radius(radius, space.dim), space.shape)
    if kind == "sobol":
        engine = qmc.Sobol(space.dim, scramble=True, **{_QMC_RNG: _rng(seed)})
        step = 2.0 * engine.random_base2(max(math.ceil(math.log2(n)), 0))[:n] - 1.0
    elif kind == "latin_hypercube":
        engine = qmc.LatinHypercube(space.dim, **{_QMC_RNG: _rng(seed)})
        step = 2.0 * engine.random(n) - 1.0
    elif kind == "gaussian":
        step = _rng(seed).standard_normal((n, space.dim))
    else:
        raise ConfigError(
            f"local design kind must be 'sobol', 'latin_hypercube' or 'gaussian', got {kind!r}"
        )
    return space.snap(space.project(c + r * step))


# ---------------------------------------------------------------------- inputs
def input_subset(
    x: ArrayLike, n: int, *, seed: Seed, labels: ArrayLike | None = None
) -> np.ndarray:
    """Indices of ``n`` distinct inputs of ``x (B, *in)``, sorted, ``(n,)`` int64.

    With ``labels (B,)`` the subset is stratified: when ``n`` is at least the number of
    classes every class gets one input, and the rest is shared in proportion to the class
    sizes (largest remainders, ties broken at random); without, a uniform draw.
    """
    b = check_inputs(x).shape[0]
    n = _check_n(n)
    if n > b:
        raise ConfigError(f"cannot pick {n} distinct inputs from a batch of {b}")
    rng = _rng(seed)
    if labels is None:
        return np.sort(rng.choice(b, size=n, replace=False)).astype(np.int64)
    lab = np.asarray(labels)
    if lab.shape != (b,):
        raise ShapeError(f"labels must have shape ({b},) to match x, got {lab.shape}")
    classes, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
    inverse = np.asarray(inverse).ravel()
    base = np.ones_like(counts) if n >= classes.size else np.zeros_like(counts)
    spare = counts - base
    share = (n - int(base.sum())) * spare  # quota = share / total, in exact integers
    total = max(int(spare.sum()), 1)
    take = base + share // total
    left = n - int(take.sum())
    order = np.lexsort((rng.permutation(classes.size), -(share % total)))  # largest remainder
    take[order[:left]] += 1
    picked = [
        rng.choice(np.flatnonzero(inverse == c), size=int(k), replace=False)
        for c, k in enumerate(take)
        if k > 0
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64)


# ---------------------------------------------------------------------- collection
@dataclass(frozen=True, eq=False)
class Collected:
    """What :func:`collect` gathered.

    Attributes:
        data: the settings sent and their readings, one group ``(thetas (N', d), x, y)``
            (empty when nothing was sent).
        reason: ``"completed"`` (the whole design was sent) or ``"budget"`` (the budget ran
            out; ``data`` holds the prefix of the design that it afforded).
        ledger_spent: what the collection cost (the meter's ledger difference; for a plain
            device, counted here with the first setting as a reconfiguration).
    """

    data: QueryData
    reason: Literal["completed", "budget"]
    ledger_spent: Ledger

    @property
    def n_sent(self) -> int:
        """Number of settings of the design that were sent."""
        return self.data.n_settings


def collect(device: Device, thetas: ArrayLike, x: ArrayLike, *, chunk: int = 64) -> Collected:
    """Send the design ``thetas (N, d)`` with inputs ``x (B, *in)`` in ``query_many`` chunks.

    With a metered device (one that offers ``cost``, ``can_afford`` and ``ledger``, such as
    :class:`~blacksat.MeteredDevice`), each chunk is first shrunk to the longest prefix the
    remaining budgets afford, so the budget is spent exactly and never exceeded; collection
    then stops with ``reason="budget"``, as it does on a :class:`~blacksat.BudgetExhausted`.
    A plain device gets every chunk. Device errors propagate (queries already completed are in
    any query log observing the meter).

    Returns:
        :class:`Collected` with one group ``(thetas (N', d), x (B, *in), y (N', B, *out))``.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ConfigError(f"chunk must be a positive integer, got {chunk!r}")
    space = _check_space(getattr(device, "space", None))
    policy = getattr(device, "policy", "raise")
    design = space.validate_many(thetas, policy=policy if policy in ("raise", "clip") else "raise")
    xs = check_inputs(x, getattr(device, "input_shape", None))
    b = xs.shape[0]
    metered = all(callable(getattr(device, a, None)) for a in ("cost", "can_afford"))
    start_ledger: Ledger | None = getattr(device, "ledger", None) if metered else None
    sent: list[np.ndarray] = []
    readings: list[np.ndarray] = []
    reason: Literal["completed", "budget"] = "completed"
    i = 0
    while i < design.shape[0] and reason == "completed":
        part = design[i : i + int(chunk)]
        m = _affordable(device, part, b) if metered else part.shape[0]
        if m < part.shape[0]:
            reason = "budget"  # send what the budget affords, then stop
        if m == 0:
            break
        try:
            y = np.asarray(device.query_many(part[:m], xs), dtype=np.float64)
        except BudgetExhausted:
            reason = "budget"
            break
        sent.append(part[:m])
        readings.append(y)
        i += m
    data = QueryData()
    if sent:
        data = QueryData.from_arrays(np.concatenate(sent), xs, np.concatenate(readings))
    return Collected(data, reason, _spent(device, start_ledger, sent, b))


def _affordable(device: Any, part: np.ndarray, b: int) -> int:
    """Longest prefix of ``part`` whose cost the device's budgets afford (cost is monotone)."""
    if device.can_afford(device.cost(part, b)):
        return part.shape[0]
    lo, hi = 0, part.shape[0]  # lo affordable (empty prefix), hi not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if device.can_afford(device.cost(part[:mid], b)):
            lo = mid
        else:
            hi = mid
    return lo


def _spent(device: Any, start: Ledger | None, sent: list[np.ndarray], b: int) -> Ledger:
    end = getattr(device, "ledger", None)
    if isinstance(start, Ledger) and isinstance(end, Ledger):
        return end - start
    if not sent:
        return Ledger()
    t = np.concatenate(sent)
    changes = 1 + int(np.sum(np.any(t[1:] != t[:-1], axis=1)))
    return Ledger(changes, t.shape[0] * b, len(sent), 0)


# ---------------------------------------------------------------------- helpers
def _rng(seed: Seed) -> np.random.Generator:
    """A generator from ``seed`` (:func:`~blacksat.validation.as_generator`; ``None``: fresh
    entropy, an unseeded design)."""
    return np.random.default_rng() if seed is None else as_generator(seed, "seed")


def _check_n(n: Any) -> int:
    return int(check_int("n", n, low=1))


def _check_space(space: Any) -> ParamSpace:
    if not isinstance(space, ParamSpace):
        raise ConfigError(f"expected a ParamSpace, got {type(space).__name__}")
    return space


def _check_radius(radius: Any, d: int) -> np.ndarray:
    try:
        r = np.array(radius, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"radius must be a number or a ({d},) array, got {radius!r}") from exc
    if r.shape not in ((), (d,)):
        raise ConfigError(f"radius must be a scalar or have shape ({d},), got {r.shape}")
    if not (np.all(np.isfinite(r)) and np.all(r > 0)):
        raise ConfigError(f"radius must be finite and > 0, got {radius!r}")
    return r


def _to_space(space: ParamSpace, unit: np.ndarray) -> np.ndarray:
    """Map ``unit (n, d)`` in ``[0, 1)`` to ``[lower, lower + span)`` (the box; a periodic
    control's whole circle) and snap to levels (on the circle)."""
    return space.snap(space.project(space.lower + unit * space.span))


__all__ = [
    "Collected",
    "collect",
    "input_subset",
    "latin_hypercube",
    "local",
    "sobol",
    "uniform",
]
