"""Shared machinery of the surrogates: data handling, the fitting loop, fit-quality reports.

A surrogate is a differentiable :class:`~blacksat.Model` learned from recorded queries
(scikit-learn style: ``__init__`` stores and checks arguments and builds nothing; every
:meth:`Surrogate.fit` builds the fitted parts afresh, unless ``warm_start=True`` continues from
the last fit; :meth:`Surrogate.fit` returns ``self``; fitted attributes end in ``_``; a model
given to a surrogate is copied, never modified):

- ``surrogate.fit(data)`` with ``data`` a :class:`~blacksat.querydata.QueryData` (e.g.
  ``QueryLog(path).data()``) or any sequence of groups ``(thetas (K, d), x (B, *in),
  y (K, B, *out))``; a held-out fraction of the *settings* is kept apart and the fit quality
  on it is reported in :attr:`Surrogate.report_`;
- ``surrogate(theta, x)``: ``theta (d,)``, ``x (B, *in)`` -> ``(B, *out)``; batched
  ``thetas (K, d)`` -> ``(K, B, *out)``; differentiable in ``theta`` (and in ``x``), so it
  plugs into :class:`~blacksat.estimators.Autograd` and
  :class:`~blacksat.estimators.PhysicsAware` like any physics model.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from blacksat.errors import ConfigError, NonFiniteError, ShapeError
from blacksat.torch_device import call_batched, module_device
from blacksat.validation import check_int, check_real

Group = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class FitReport:
    """How well a surrogate fits the readings (on settings it was trained on, and on settings
    it never saw).

    Attributes:
        n_settings: settings used for fitting.
        n_held_out: settings kept apart for validation (0: no validation).
        train_rmse: root-mean-square error of the readings on the training settings.
        held_out_rmse: the same on the held-out settings (``nan`` without any).
        held_out_r2: coefficient of determination on the held-out readings (1 is perfect).
        relative_error: ``held_out_rmse`` divided by the readings' standard deviation.
        steps: optimizer steps taken; ``seconds``: wall time of the fit.
    """

    n_settings: int
    n_held_out: int
    train_rmse: float
    held_out_rmse: float
    held_out_r2: float
    relative_error: float
    steps: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"fit on {self.n_settings} settings: train RMSE {self.train_rmse:.3g}, held-out "
            f"({self.n_held_out} settings) RMSE {self.held_out_rmse:.3g}, "
            f"R^2 {self.held_out_r2:.4f}, relative error {self.relative_error:.3g}"
        )


@dataclass(frozen=True)
class Coverage:
    """The region a surrogate's data covers: per control, the range and spread of the settings
    it was fitted on; per input feature, the range of the inputs.

    A surrogate is evidence about the device only there. :meth:`spread` tells a space-filling
    design (about 1) from the log of one training run (the neighbourhood of one trajectory:
    typically well below 0.25); :meth:`inside` tells how much of a setting lies in the range.

    Attributes:
        theta_low, theta_high, theta_std: ``(d,)`` range and standard deviation of the settings.
        x_low, x_high: ``(n_x,)`` range of the (flattened) inputs.
        n_settings: settings the surrogate was fitted on.
    """

    theta_low: tuple[float, ...]
    theta_high: tuple[float, ...]
    theta_std: tuple[float, ...]
    x_low: tuple[float, ...]
    x_high: tuple[float, ...]
    n_settings: int

    @classmethod
    def of(cls, groups: Sequence[Group]) -> Coverage:
        thetas = np.concatenate([g[0] for g in groups])
        xs = np.concatenate([g[1].reshape(len(g[1]), -1) for g in groups])
        return cls(
            tuple(thetas.min(0).tolist()),
            tuple(thetas.max(0).tolist()),
            tuple(thetas.std(0).tolist()),
            tuple(xs.min(0).tolist()),
            tuple(xs.max(0).tolist()),
            len(thetas),
        )

    def spread(self, space: Any = None) -> float:
        """Median over the controls of the settings' standard deviation relative to that of a
        uniform draw over the control's range (``space``'s bounds; without a space, the data's
        own range): about 1 for a space-filling design, near 0 for settings along one path."""
        std = np.asarray(self.theta_std)
        if space is not None:
            span = np.asarray(space.upper, dtype=float) - np.asarray(space.lower, dtype=float)
        else:
            span = np.asarray(self.theta_high) - np.asarray(self.theta_low)
        ok = span > 0
        if not ok.any():
            return 0.0
        return float(np.median(std[ok] / (span[ok] / math.sqrt(12.0))))

    def inside(self, thetas: Any, margin: float = 0.0) -> np.ndarray:
        """``thetas (K, d)`` (or ``(d,)``) -> ``(K,)`` share of each setting's controls inside
        the covered range, widened by ``margin`` times the range on each side."""
        t = np.atleast_2d(np.asarray(thetas, dtype=float))
        lo, hi = np.asarray(self.theta_low), np.asarray(self.theta_high)
        pad = margin * (hi - lo)
        return np.mean((t >= lo - pad) & (t <= hi + pad), axis=1)

    def region(self, space: Any, margin: float = 0.05) -> Any:
        """The part of ``space`` (a :class:`~blacksat.ParamSpace`) the data covers, widened by
        ``margin`` of each control's full range on each side: a trust region for training on
        the surrogate. ``space`` itself where the data spans (nearly) every control's range; a
        periodic control that is narrowed becomes bounded; discrete levels are kept (each end
        moved outward to a level, :func:`sub_space`)."""
        span = np.asarray(space.upper, float) - np.asarray(space.lower, float)
        lo = np.asarray(self.theta_low) - margin * span
        hi = np.asarray(self.theta_high) + margin * span
        return sub_space(space, lo, hi)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> Coverage:
        try:
            return cls(
                *(tuple(float(v) for v in d[k]) for k in
                  ("theta_low", "theta_high", "theta_std", "x_low", "x_high")),
                int(d["n_settings"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"a damaged coverage record: {exc}") from None


def sub_space(space: Any, lo: Any, hi: Any) -> Any:
    """``space`` cut to the box ``[lo, hi]`` (clipped to its bounds): a periodic control keeps its
    period only where the box spans all of it, a narrowed one becomes bounded. ``space`` itself
    when nothing is narrowed.

    Discrete levels are kept: each narrowed control's ends move outward to the nearest levels
    (so the cut box holds at least two levels, and a value in it snaps to a level in it), and the
    levels outside every control's box are dropped."""
    from blacksat.space import ParamSpace

    lower, upper = np.asarray(space.lower, float), np.asarray(space.upper, float)
    lo, hi = np.maximum(lower, lo), np.minimum(upper, hi)
    levels = space.levels
    if levels is not None:
        lo, hi = _outward_to_levels(np.asarray(levels, float), lo, hi, lower, upper)
    narrowed = (lo > lower + 1e-12) | (hi < upper - 1e-12)
    if not narrowed.any():
        return space
    period = np.where(narrowed, 0.0, np.asarray(space.period, float))
    if levels is not None:
        tol = 1e-12 * max(1.0, float(np.max(np.abs(levels))))
        levels = levels[(levels >= lo.min() - tol) & (levels <= hi.max() + tol)]
    return ParamSpace(lo, hi, levels, names=space.names, period=period)


def _outward_to_levels(
    lv: np.ndarray, lo: np.ndarray, hi: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``[lo, hi]`` (per control) widened to the largest level <= ``lo`` and the smallest level
    >= ``hi`` (an end stays where no such level exists), holding at least two levels, within
    ``[lower, upper]``."""
    tol = 1e-12 * max(1.0, float(np.max(np.abs(lv))))
    n = lv.size
    i = np.searchsorted(lv, lo + tol, side="right") - 1  # the largest level <= lo, or -1
    j = np.searchsorted(lv, hi - tol, side="left")  # the smallest level >= hi, or n
    a, b = np.maximum(i, 0), np.minimum(j, n - 1)  # the first and last level inside
    one = b <= a  # fewer than two levels inside: one more above, else below
    up = one & (a < n - 1)
    b = np.where(up, a + 1, b)
    a = np.where(one & ~up, n - 2, a)
    new_lo = np.where((i >= 0) | one, lv[a], lo)
    new_hi = np.where((j < n) | one, lv[b], hi)
    return np.maximum(lower, np.minimum(new_lo, lo)), np.minimum(upper, np.maximum(new_hi, hi))


def narrow_data_warning(
    coverage: Coverage | None, space: Any, *, floor: float = 0.25
) -> str | None:
    """A sentence for the user when ``coverage`` is too narrow for training across ``space``
    (spread below ``floor``: e.g. the query log of one training run), else ``None``."""
    if coverage is None:
        return None
    spread = coverage.spread(space)
    if spread >= floor:
        return None
    return (
        f"the surrogate's data covers a narrow region: the settings spread {spread:.2f} of a "
        f"space-filling design over the controls' range (median over controls; below {floor} "
        f"reads as the neighbourhood of one trajectory, e.g. the query log of one training "
        f"run). Trained on across the whole space it predicts where it has no data; collect a "
        f"space-filling design (blacksat.surrogates.designs) or train inside the covered range"
    )


def input_coverage_warning(
    coverage: Coverage | None, x: Any, *, tolerance: float = 0.1
) -> str | None:
    """A sentence for the user when the inputs ``x (B, *in)`` a task will drive the device
    with leave the range of the inputs the surrogate was fitted on (by more than ``tolerance``
    of that range on any feature that varies), else ``None``."""
    if coverage is None:
        return None
    xs = np.asarray(x, dtype=float).reshape(len(x), -1)
    lo, hi = np.asarray(coverage.x_low), np.asarray(coverage.x_high)
    if xs.shape[1] != lo.size:
        return None
    pad = tolerance * np.maximum(hi - lo, 1e-12)
    out = (xs.min(0) < lo - pad) | (xs.max(0) > hi + pad)
    if not out.any():
        return None
    return (
        f"the task drives {int(out.sum())} of {lo.size} input features outside the range the "
        f"surrogate's data covers (e.g. feature {int(np.argmax(out))}: task "
        f"[{xs[:, np.argmax(out)].min():.3g}, {xs[:, np.argmax(out)].max():.3g}], data "
        f"[{lo[np.argmax(out)]:.3g}, {hi[np.argmax(out)]:.3g}]); its readings there are "
        f"extrapolated"
    )


def as_groups(data: Any) -> list[Group]:
    """``QueryData`` or a sequence of ``(thetas (K, d), x (B, *in), y (K, B, *out))`` ->
    a validated list of float64 groups (all ``d``, input and output shapes consistent)."""
    raw = getattr(data, "groups", data)
    if isinstance(raw, (np.ndarray, torch.Tensor)) or not isinstance(raw, Iterable):
        raise ConfigError(
            "data must be a QueryData or a sequence of (thetas, x, y) groups, got "
            f"{type(data).__name__}"
        )
    groups: list[Group] = []
    ref: tuple[int, tuple[int, ...], tuple[int, ...]] | None = None
    for i, item in enumerate(raw):
        try:
            thetas, x, y = (np.asarray(a, dtype=np.float64) for a in item)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"group {i} must be (thetas, x, y) numeric arrays: {exc}") from None
        if (
            thetas.ndim != 2
            or x.ndim < 1
            or y.ndim < 2
            or y.shape[:2] != (len(thetas), len(x))
            or 0 in thetas.shape
            or len(x) == 0
        ):
            raise ShapeError(
                f"group {i}: expected thetas (K, d), x (B, *in), y (K, B, *out) with K, d, B "
                f">= 1; got {thetas.shape}, {x.shape}, {y.shape}"
            )
        shapes = (thetas.shape[1], x.shape[1:], y.shape[2:])
        if ref is not None and shapes != ref:
            raise ShapeError(f"group {i} has (d, in, out) = {shapes}, the first group {ref}")
        ref = shapes
        for name, a in (("thetas", thetas), ("x", x), ("y", y)):
            if not np.all(np.isfinite(a)):
                raise NonFiniteError(f"group {i}: {name} contains NaN or inf")
        groups.append((thetas, x, y))
    if not groups:
        raise ConfigError("data holds no queries")
    return groups


def split_groups(
    groups: Sequence[Group], held_out: float, seed: int | np.random.Generator | None
) -> tuple[list[Group], list[Group]]:
    """Split by *settings*: a fraction ``held_out`` of all settings (at least one when
    ``held_out > 0`` and there are two or more, and never all of them) is kept apart; each
    held-out setting keeps its whole input batch."""
    if not (isinstance(held_out, (int, float)) and 0.0 <= held_out < 1.0):
        raise ConfigError(f"held_out must be a fraction in [0, 1), got {held_out!r}")
    n = sum(len(g[0]) for g in groups)
    n_out = 0 if held_out == 0 or n < 2 else min(n - 1, max(1, round(held_out * n)))
    rng = np.random.default_rng(seed)
    out_mask = np.zeros(n, dtype=bool)
    out_mask[rng.choice(n, size=n_out, replace=False)] = True
    train: list[Group] = []
    test: list[Group] = []
    start = 0
    for thetas, x, y in groups:
        m = out_mask[start : start + len(thetas)]
        start += len(thetas)
        if (~m).any():
            train.append((thetas[~m], x, y[~m]))
        if m.any():
            test.append((thetas[m], x, y[m]))
    return train, test


def batches(groups: Sequence[Group], max_samples: int, rng: np.random.Generator) -> Iterator[Group]:
    """One epoch over the groups in random order, each cut into chunks of at most
    ``max_samples`` readings (``K * B``) along the settings axis."""
    for gi in rng.permutation(len(groups)):
        thetas, x, y = groups[gi]
        per = max(1, max_samples // max(1, len(x)))
        order = rng.permutation(len(thetas))
        for s in range(0, len(thetas), per):
            idx = order[s : s + per]
            yield thetas[idx], x, y[idx]


def _check_int(name: str, value: Any, low: int) -> int:
    return int(check_int(name, value, low=low))


def _check_pos(name: str, value: Any, *, zero_ok: bool = False) -> float:
    return float(check_real(name, value, low=0.0, low_open=not zero_ok))


class Surrogate(nn.Module):
    """Base class: the fitting loop (Adam on the mean squared reading error, best held-out
    state kept), the batched call convention and the report.

    Subclasses implement :meth:`forward_many` and may override :meth:`_prepare` (called once
    with the training groups before the loop, e.g. to fix normalisations), :meth:`_loss` and
    :meth:`_penalty` (a regulariser added to the loss).

    Args:
        steps: optimizer steps of a fit.
        lr: Adam learning rate.
        batch_samples: readings (``K * B``) per optimizer step.
        held_out: fraction of the settings kept for validation (0 disables it).
        seed: seeds the split, the batch order and any initialisation.
        dtype: ``torch.float32`` or ``torch.float64``.
        weight_decay: decoupled weight decay (``torch.optim.AdamW``); 0 is plain Adam.
        warm_start: a second :meth:`fit` continues from the first (default: starts afresh).
    """

    def __init__(
        self,
        *,
        steps: int = 500,
        lr: float = 1e-2,
        batch_samples: int = 8192,
        held_out: float = 0.2,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        weight_decay: float = 0.0,
        warm_start: bool = False,
    ) -> None:
        super().__init__()
        self.warm_start = bool(warm_start)
        self.steps = _check_int("steps", steps, 0)
        self.lr = _check_pos("lr", lr)
        self.batch_samples = _check_int("batch_samples", batch_samples, 1)
        if not (isinstance(held_out, (int, float)) and 0.0 <= held_out < 1.0):
            raise ConfigError(f"held_out must be a fraction in [0, 1), got {held_out!r}")
        self.held_out = float(held_out)
        self.seed = _check_int("seed", seed, 0)
        if dtype not in (torch.float32, torch.float64):
            raise ConfigError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        self.dtype = dtype
        self.weight_decay = _check_pos("weight_decay", weight_decay, zero_ok=True)
        self.report_: FitReport | None = None
        self.coverage_: Coverage | None = None

    #: whether the kind is built around a physics model (``cls(physics, ...)``)
    needs_physics: bool = False

    # ------------------------------------------------------------------ call convention
    def forward(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``theta (d,)``, ``x (B, *in)`` -> ``(B, *out)``; ``(K, d)`` -> ``(K, B, *out)``.

        Evaluated on the surrogate's torch device (``surrogate.to("cuda")``, or the device of
        the physics model it was built on); the result comes back to ``theta``'s."""
        return call_batched(self.forward_many, theta, x, self.torch_device)

    @property
    def torch_device(self) -> torch.device | None:
        """The torch device of this surrogate's tensors (``None`` before any exist)."""
        return module_device(self)

    def forward_many(self, thetas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``thetas (K, d)``, ``x (B, *in)`` -> ``(K, B, *out)``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ fitting
    def fit(self, data: Any) -> Surrogate:
        """Fit to recorded queries (a ``QueryData`` or ``(thetas, x, y)`` groups); returns
        ``self`` with :attr:`report_` set."""
        t0 = time.perf_counter()
        groups = as_groups(data)
        train, test = split_groups(groups, self.held_out, self.seed)
        self.coverage_ = Coverage.of(groups)
        self._prepare(train)
        steps = self._fit_loop(train, test)
        self.report_ = self._report(train, test, steps, time.perf_counter() - t0)
        return self

    def uncertainty(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A standard deviation of each reading, shaped like ``self(theta, x)`` (no autograd).

        The default for every kind: the held-out RMSE of the fit where the data is (inside the
        covered range), growing with the distance outside it: ``rmse * (1 + 10 m)`` with ``m``
        the mean over controls of how far the setting lies beyond the covered range, in units
        of that range. Kinds with a better measure (the ensemble's disagreement) override it."""
        if self.report_ is None or self.coverage_ is None:
            raise ConfigError(f"{type(self).__name__} is not fitted: call fit(data) first")
        rmse = self.report_.held_out_rmse
        if not math.isfinite(rmse):
            rmse = self.report_.train_rmse
        theta = torch.as_tensor(theta, dtype=torch.float64)
        batched = theta if theta.ndim == 2 else theta[None]
        lo = torch.as_tensor(self.coverage_.theta_low, dtype=torch.float64)
        hi = torch.as_tensor(self.coverage_.theta_high, dtype=torch.float64)
        width = (hi - lo).clamp_min(1e-12)
        beyond = ((lo - batched).clamp_min(0) + (batched - hi).clamp_min(0)) / width
        factor = 1.0 + 10.0 * beyond.mean(-1)  # (K,)
        x = torch.as_tensor(x)
        with torch.no_grad():  # the reading's shape, from one setting and one input
            shape = (len(batched), len(x), *self(batched[:1], x[:1]).shape[2:])
        out = (rmse * factor).reshape(-1, *([1] * (len(shape) - 1))).expand(shape).clone()
        return out if theta.ndim == 2 else out[0]

    def score(self, data: Any) -> dict[str, float]:
        """``{"rmse", "r2", "relative_error"}`` of this surrogate on other recorded queries."""
        return quality(self, data)

    def _prepare(self, groups: list[Group]) -> None:
        """Hook: called with the training groups before the loop; builds the fitted parts
        afresh (or keeps them, with ``warm_start`` after a first fit)."""

    @property
    def _warm(self) -> bool:
        """Whether this fit continues the last one (``warm_start`` and fitted before)."""
        return self.warm_start and self.report_ is not None

    # ------------------------------------------------------------------ persistence
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON values (a model argument left out: it is rebuilt
        from the device, see :mod:`blacksat.surrogates.files`)."""
        params = inspect.signature(type(self).__init__).parameters
        out: dict[str, Any] = {}
        for name, p in params.items():
            if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            value = getattr(self, name)
            if isinstance(value, nn.Module):
                continue
            if isinstance(value, torch.dtype):
                value = str(value).removeprefix("torch.")
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    def fitted_shapes(self) -> dict[str, Any]:
        """What :meth:`allocate` needs to rebuild the fitted parts without data (JSON values)."""
        return {}

    def allocate(self, shapes: dict[str, Any]) -> None:
        """Build the fitted parts of the sizes in ``shapes`` (values to be loaded after)."""

    def _loss(self, thetas: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Hook: the training loss of one batch (default: mean squared reading error)."""
        return torch.mean((self.forward_many(thetas, x) - y) ** 2)

    def _penalty(self) -> torch.Tensor | float:
        """Hook: a regulariser added to the mean squared error."""
        return 0.0

    def _trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    #: show a progress bar (stderr) over the fit's optimizer steps
    progress: bool = False

    def _fit_loop(self, train: list[Group], test: list[Group]) -> int:
        from tqdm import tqdm

        params = self._trainable()
        if not params or self.steps == 0:
            return 0
        bar = tqdm(total=self.steps, disable=not self.progress, desc=f"fit {type(self).__name__}")
        with bar:
            return self._fit_steps(params, train, test, bar)

    def _fit_steps(
        self, params: list[nn.Parameter], train: list[Group], test: list[Group], bar: Any
    ) -> int:
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.steps, eta_min=self.lr / 20)
        rng = np.random.default_rng([self.seed, 1])
        check_every = max(1, self.steps // 20)
        best = (math.inf, None)
        step = 0
        while step < self.steps:
            for thetas, x, y in batches(train, self.batch_samples, rng):
                loss = self._loss(self._t(thetas), self._t(x), self._t(y)) + self._penalty()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                bar.update(1)
                if test and (step % check_every == 0 or step == self.steps):
                    val = _mse(self, test)
                    if val < best[0]:
                        best = (val, copy.deepcopy(self.state_dict()))
                if step >= self.steps:
                    break
        if best[1] is not None:
            self.load_state_dict(best[1])
        return step

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=self.dtype, device=self.torch_device)

    def _report(self, train: list[Group], test: list[Group], steps: int, secs: float) -> FitReport:
        tr_rmse, _, _ = _quality(self, train)
        te_rmse, r2, rel = _quality(self, test) if test else (math.nan, math.nan, math.nan)
        return FitReport(
            n_settings=sum(len(g[0]) for g in train),
            n_held_out=sum(len(g[0]) for g in test),
            train_rmse=tr_rmse,
            held_out_rmse=te_rmse,
            held_out_r2=r2,
            relative_error=rel,
            steps=steps,
            seconds=secs,
        )


def predict(model: Any, thetas: np.ndarray, x: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """``model(thetas (K, d), x (B, *in))`` as float64 numpy, without autograd, in chunks."""
    out = []
    per = max(1, 65536 // max(1, len(x)))
    with torch.no_grad():
        for s in range(0, len(thetas), per):
            t = torch.tensor(thetas[s : s + per], dtype=dtype)
            out.append(model(t, torch.tensor(x, dtype=dtype)).double().cpu().numpy())
    return np.concatenate(out)


def _mse(model: Any, groups: Sequence[Group]) -> float:
    num = den = 0.0
    dtype = getattr(model, "dtype", torch.float32)
    for thetas, x, y in groups:
        num += float(np.sum((predict(model, thetas, x, dtype) - y) ** 2))
        den += y.size
    return num / max(den, 1)


def _quality(model: Any, groups: Sequence[Group]) -> tuple[float, float, float]:
    """(RMSE, R^2, RMSE / std) of a model's readings on the groups."""
    if not groups:
        return math.nan, math.nan, math.nan
    ys = np.concatenate([g[2].ravel() for g in groups])
    mse = _mse(model, groups)
    var = float(np.var(ys))
    rmse = math.sqrt(mse)
    return rmse, 1.0 - mse / var if var > 0 else math.nan, rmse / math.sqrt(var) if var else 0.0


def quality(model: Any, data: Any) -> dict[str, float]:
    """Fit quality of *any* model (a physics model, a surrogate) on recorded queries:
    ``{"rmse", "r2", "relative_error"}``."""
    rmse, r2, rel = _quality(model, as_groups(data))
    return {"rmse": rmse, "r2": r2, "relative_error": rel}


__all__ = [
    "Coverage",
    "FitReport",
    "Group",
    "Surrogate",
    "as_groups",
    "input_coverage_warning",
    "narrow_data_warning",
    "predict",
    "quality",
    "split_groups",
    "sub_space",
]
