"""Robustness evaluation: accuracy on a full split, sweeps over nuisance values and perturbation
radii (averaged over many random draws), and transfer to fresh fabrication draws.

A *target* is a query-only :class:`~blacksat.Device` or a differentiable
:class:`~blacksat.Model`; every accuracy is taken on the **full** split (in batches), never on a
single small batch. Results are tidy: a :class:`Table` of plain rows (JSON-serialisable) that
renders as markdown, or a small frozen dataclass with ``to_dict``.

The sharpness measures (Hessian spectrum, Hutchinson trace, query-only sharpness) live in
:mod:`blacksat.sharpness` and are re-exported here.
"""

from __future__ import annotations

import itertools
import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from blacksat.errors import ConfigError
from blacksat.perturbations import Perturbation, PerturbationModel
from blacksat.sharpness import (
    HessianEigen,
    QuerySharpness,
    TraceEstimate,
    hessian_top_eigenvalues,
    hutchinson_trace,
    query_sharpness,
)
from blacksat.space import ParamSpace
from blacksat.validation import as_generator, check_int

#: ``family(**{name: value}) -> Device | Model``, e.g. ``chip.perturbed``
Family = Callable[..., Any]


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Table:
    """A tidy result: one dict per row with the keys ``columns`` (plus optional extras).

    Values are plain Python scalars, strings, ``None`` or lists: ``to_dict()`` is
    JSON-serialisable.
    """

    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def column(self, name: str) -> list[Any]:
        """The values of one column, in row order."""
        if not any(name in r for r in self.rows) and name not in self.columns:
            raise ConfigError(f"no column {name!r}; columns: {list(self.columns)}")
        return [r.get(name) for r in self.rows]

    def to_dict(self) -> dict[str, Any]:
        """``{"columns": [...], "rows": [...]}``."""
        return {"columns": list(self.columns), "rows": [dict(r) for r in self.rows]}

    def to_markdown(self, digits: int = 4) -> str:
        """A GitHub markdown table of ``columns`` (floats to ``digits`` significant digits;
        ``None`` shown as ``-``, meaning nominal / not varied)."""
        return markdown_table(self.rows, self.columns, digits=digits)


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *, digits: int = 4
) -> str:
    """Render ``rows`` (dicts) as a markdown table of ``columns``."""
    cols = list(columns)
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c), digits) for c in cols) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Summary:
    """Accuracies over draws or chips: the values and their mean, std (``ddof=1``; 0 for a
    single value), min and max."""

    accuracies: tuple[float, ...]
    mean: float
    std: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        """Summarise a non-empty sequence of accuracies."""
        a = np.asarray([float(v) for v in values], dtype=np.float64)
        if a.size == 0:
            raise ConfigError("nothing to summarise: no accuracies")
        if np.all(a == a[0]):  # exact for identical values (no rounding residue)
            mean, std = float(a[0]), 0.0
        else:
            mean, std = float(a.mean()), float(a.std(ddof=1))
        return cls(tuple(float(v) for v in a), mean, std, float(a.min()), float(a.max()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fields."""
        return {
            "accuracies": list(self.accuracies),
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
        }


def standard_error(values: Iterable[float]) -> float:
    """The standard error of the values' mean: sample std (``ddof=1``) over ``sqrt(n)``;
    ``nan`` below two values."""
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    return float(v.std(ddof=1)) / math.sqrt(v.size) if v.size > 1 else math.nan


def paired_difference(a: Mapping[Any, float], b: Mapping[Any, float]) -> tuple[float, float, int]:
    """``a - b`` over the keys both have (runs of two methods on the same seed and chip, say):
    the mean difference, its standard error (sample std, ``ddof=1``, over ``sqrt(n)``; ``nan``
    below two pairs) and the number of pairs (``(nan, nan, 0)`` for none). Pairing removes what
    the two share (the chip, the seed's data), so it resolves differences that the spread of
    either side alone hides."""
    diffs = [float(a[k]) - float(b[k]) for k in a if k in b]
    if not diffs:
        return math.nan, math.nan, 0
    return float(np.mean(diffs)), standard_error(diffs), len(diffs)


@dataclass(frozen=True)
class TransferResult(Summary):
    """Accuracy on each chip (``labels``: the chips' seeds where known, else their positions)."""

    labels: tuple[Any, ...] = ()

    def table(self) -> Table:
        """One row per chip: ``{"chip": label, "accuracy": a}``."""
        rows = tuple(
            {"chip": c, "accuracy": a} for c, a in zip(self.labels, self.accuracies, strict=True)
        )
        return Table(("chip", "accuracy"), rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fields."""
        return {**super().to_dict(), "labels": list(self.labels)}

    def to_markdown(self, digits: int = 4) -> str:
        """Per-chip table followed by a mean +- std line."""
        return (
            self.table().to_markdown(digits)
            + f"\n\nmean {self.mean:.{digits}g} +- {self.std:.{digits}g} over {len(self.labels)}"
            " chips"
        )


# ---------------------------------------------------------------------------- accuracy
def _theta_np(theta: Any) -> np.ndarray:
    if torch.is_tensor(theta):
        theta = theta.detach().cpu().numpy()
    arr = np.array(theta, dtype=np.float64)
    if arr.ndim != 1:
        raise ConfigError(f"theta must have shape (d,), got {arr.shape}")
    return arr


def _split_size(split: str, batch_size: int | None) -> None:
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    check_int("batch_size", batch_size, low=1, none_ok=True)


def accuracy(
    task: Any, target: Any, theta: Any, split: str = "test", batch_size: int | None = 512
) -> float:
    """Accuracy of ``theta (d,)`` on the **full** ``split`` through ``target``.

    A thin wrapper over :meth:`Task.accuracy <blacksat.task.Task.accuracy>`: a device (anything
    with ``query``) is queried once per batch at ``theta`` (one reconfiguration in all on a
    metered device); a model is evaluated without gradients. ``theta`` may be numpy or torch and
    is never modified.
    """
    _split_size(split, batch_size)
    return float(task.accuracy(target, _theta_np(theta), split=split, batch_size=batch_size))


def accuracy_many(
    task: Any,
    target: Any,
    thetas: Any,
    *,
    split: str = "test",
    batch_size: int | None = 512,
    chunk: int = 32,
) -> np.ndarray:
    """Accuracies of several settings ``thetas (K, d)`` on the full split -> ``(K,)``.

    Vectorized: per batch, ``chunk`` settings at a time go through one ``query_many`` call
    (device) or one batched model call. On a metered device this costs ``K`` reconfigurations
    per batch (pass ``batch_size=None`` for one batch: ``K`` in all).
    """
    _split_size(split, batch_size)
    ts = np.array(thetas.detach().cpu() if torch.is_tensor(thetas) else thetas, dtype=np.float64)
    if ts.ndim != 2 or ts.shape[0] == 0:
        raise ConfigError(f"thetas must have shape (K, d) with K >= 1, got {ts.shape}")
    check_int("chunk", chunk, low=1)
    dtype = getattr(task, "dtype", torch.float32)
    is_device = hasattr(target, "query")
    correct = np.zeros(ts.shape[0], dtype=np.int64)
    total = 0
    with torch.no_grad():
        for xb, yb in task.batches(split, batch_size):
            x = task.encode(xb)
            x_np = x.double().numpy() if is_device else None
            for i in range(0, ts.shape[0], int(chunk)):
                part = ts[i : i + int(chunk)]
                if is_device:
                    y = torch.as_tensor(np.asarray(target.query_many(part, x_np))).to(dtype)
                else:
                    y = target(torch.as_tensor(part, dtype=dtype), x)
                logits = task.decode(y)  # (k, B, C)
                correct[i : i + part.shape[0]] += (logits.argmax(-1) == yb).sum(-1).numpy()
            total += len(yb)
    return correct / total


# ---------------------------------------------------------------------------- sweeps
def _grid(grid: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    if not isinstance(grid, Mapping) or not grid:
        raise ConfigError("grid must be a non-empty mapping {nuisance name: values}")
    out: dict[str, list[float]] = {}
    for name, values in grid.items():
        vals = [float(v) for v in np.atleast_1d(np.asarray(values, dtype=np.float64))]
        if not vals or not all(math.isfinite(v) for v in vals):
            raise ConfigError(f"grid values of {name!r} must be a non-empty finite sequence")
        out[str(name)] = vals
    return out


def _is_setting(value: Any) -> bool:
    """Whether ``value`` looks like controls (an array, or a list of numbers), not a target."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return True
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(v, numbers.Real) for v in value)
    )


def _target_first(target: Any, theta: Any, what: str) -> tuple[Any, Any]:
    """``(target, theta)``; a call in the old order ``(task, theta, target, ...)`` still works,
    with a ``DeprecationWarning``."""
    if _is_setting(target) and not _is_setting(theta):
        warnings.warn(
            f"{what}(task, theta, target, ...) is the old argument order; every evaluation "
            f"function takes (task, target, theta, ...) like accuracy()",
            DeprecationWarning,
            stacklevel=3,
        )
        return theta, target
    return target, theta


def nuisance_sweep(
    task: Any,
    family: Family,
    theta: Any,
    grid: Mapping[str, Sequence[float]],
    *,
    product: bool = False,
    split: str = "test",
    batch_size: int | None = 512,
) -> Table:
    """Accuracy of ``theta (d,)`` on ``family(**{name: value})`` over a grid of nuisance values.

    Each named nuisance is swept one at a time (the others left at the family's nominal
    value); with ``product=True`` the full cartesian product of the grid is evaluated as well.

    Args:
        family: builds the perturbed target, e.g. ``chip.perturbed`` (a device) or a function
            returning a model.
        grid: ``{name: values}``, e.g. ``{"temperature": [0, 0.5, 1, 1.5, 2]}``.

    Returns:
        A :class:`Table` with columns ``["sweep", *names, "accuracy"]``: ``sweep`` is the varied
        name (or ``"product"``); names not varied in a row hold ``None`` (nominal).
    """
    family, theta = _target_first(family, theta, "nuisance_sweep")
    g = _grid(grid)
    names = list(g)
    th = _theta_np(theta)
    rows: list[dict[str, Any]] = []

    def evaluate(values: dict[str, float], sweep: str) -> None:
        acc = accuracy(task, family(**values), th, split=split, batch_size=batch_size)
        rows.append({"sweep": sweep, **{n: values.get(n) for n in names}, "accuracy": acc})

    for name in names:
        for v in g[name]:
            evaluate({name: v}, name)
    if product:
        for combo in itertools.product(*(g[n] for n in names)):
            evaluate(dict(zip(names, combo, strict=True)), "product")
    return Table(("sweep", *names, "accuracy"), tuple(rows))


def _shifted(theta: np.ndarray, p: Perturbation, space: ParamSpace | None) -> np.ndarray:
    t = theta if p.delta is None else theta + p.delta.detach().cpu().numpy().astype(np.float64)
    return space.project(t) if space is not None else t


def perturbation_sweep(
    task: Any,
    target: Any,
    theta: Any,
    perturbation: PerturbationModel,
    factors: Sequence[float],
    *,
    draws: int = 20,
    rng: np.random.Generator | int,
    family: Family | None = None,
    space: ParamSpace | None = None,
    split: str = "test",
    batch_size: int | None = 512,
) -> Table:
    """Accuracy under random perturbations of growing size, averaged over many draws.

    For each factor ``f``: ``draws`` perturbations
    ``p ~ perturbation.scaled(f).sample(theta, rng)``;
    each is evaluated on the full split at ``theta + p.delta`` projected (clipped) onto the
    target's space, on ``target`` or, when the draw carries nuisance values, on
    ``family(**p.nuisance)``.

    Args:
        target: the device or model evaluated for control-space draws.
        perturbation: a :class:`~blacksat.perturbations.PerturbationModel`.
        factors: radius multipliers, e.g. ``[0, 0.5, 1, 2]`` (0: the unperturbed accuracy).
        draws: random draws per factor (``>= 1``).
        rng: generator or seed of the draws.
        family: builds the target for nuisance draws (e.g. ``chip.perturbed``).
        space: the box to clip into; default ``target.space`` (or the built target's) if any.

    Returns:
        A :class:`Table` with columns ``factor, mean, std, min, max, draws``; each row also
        holds the per-draw ``accuracies``.
    """
    target, theta = _target_first(target, theta, "perturbation_sweep")
    check_int("draws", draws, low=1)
    facs = [float(f) for f in factors]
    if not facs or not all(math.isfinite(f) and f >= 0 for f in facs):
        raise ConfigError(f"factors must be a non-empty sequence of finite values >= 0: {factors}")
    gen = as_generator(rng)
    th = _theta_np(theta)
    t64 = torch.as_tensor(th)
    rows: list[dict[str, Any]] = []
    for f in facs:
        scaled = perturbation.scaled(f)
        perts = [scaled.sample(t64.clone(), gen) for _ in range(int(draws))]
        accs = np.empty(len(perts))
        plain = [i for i, p in enumerate(perts) if not p.nuisance]
        if plain:
            box = space if space is not None else getattr(target, "space", None)
            thetas = np.stack([_shifted(th, perts[i], box) for i in plain])
            accs[plain] = accuracy_many(task, target, thetas, split=split, batch_size=batch_size)
        for i, p in enumerate(perts):
            if not p.nuisance:
                continue
            if family is None:
                raise ConfigError(
                    f"the perturbation model drew nuisance values {dict(p.nuisance)}; pass "
                    "family=... (e.g. chip.perturbed) to build the perturbed target"
                )
            tgt = family(**p.nuisance)
            box = space if space is not None else getattr(tgt, "space", None)
            accs[i] = accuracy(task, tgt, _shifted(th, p, box), split=split, batch_size=batch_size)
        s = Summary.of(accs)
        rows.append(
            {
                "factor": f,
                "mean": s.mean,
                "std": s.std,
                "min": s.min,
                "max": s.max,
                "draws": int(draws),
                "accuracies": list(s.accuracies),
            }
        )
    return Table(("factor", "mean", "std", "min", "max", "draws"), tuple(rows))


def transfer(
    task: Any,
    chips: Iterable[Any],
    theta: Any,
    *,
    split: str = "test",
    batch_size: int | None = 512,
) -> TransferResult:
    """Accuracy of ``theta (d,)`` on each chip, e.g. ``[chip.fresh_chip(s) for s in seeds]``
    (fresh fabrication draws); devices or models. Returns the per-chip accuracies (labelled by
    each chip's ``seed`` where it has one, else its position) and their mean/std."""
    chips, theta = _target_first(chips, theta, "transfer")
    th = _theta_np(theta)
    accs: list[float] = []
    labels: list[Any] = []
    for i, chip in enumerate(chips):
        accs.append(accuracy(task, chip, th, split=split, batch_size=batch_size))
        seed = getattr(chip, "seed", None)
        labels.append(int(seed) if isinstance(seed, (int, np.integer)) else i)
    if not accs:
        raise ConfigError("transfer needs at least one chip")
    s = Summary.of(accs)
    return TransferResult(s.accuracies, s.mean, s.std, s.min, s.max, labels=tuple(labels))


#: fresh chip ``i`` of a run on chip seed ``s`` is the fabrication draw ``s + 1000 + i``
FRESH_CHIP_OFFSET = 1000


def fresh_chip_seeds(chip_seed: int, n: int) -> list[int]:
    """The fabrication draws a setting trained on chip ``chip_seed`` is deployed on: ``n`` seeds
    ``chip_seed + 1000 + i``. One rule for ``blacksat train``, the demo, ``compare`` and every
    benchmark, so "fresh chips" mean the same draws everywhere; training chips (seeds below 1000,
    tuning chips 100-102 included) are never among them."""
    s = check_int("chip_seed", chip_seed, low=0)
    return [int(s) + FRESH_CHIP_OFFSET + i for i in range(check_int("n", n, low=0))]


__all__ = [
    "FRESH_CHIP_OFFSET",
    "HessianEigen",
    "QuerySharpness",
    "Summary",
    "Table",
    "TraceEstimate",
    "TransferResult",
    "accuracy",
    "accuracy_many",
    "fresh_chip_seeds",
    "hessian_top_eigenvalues",
    "hutchinson_trace",
    "markdown_table",
    "nuisance_sweep",
    "paired_difference",
    "perturbation_sweep",
    "query_sharpness",
    "standard_error",
    "transfer",
]
