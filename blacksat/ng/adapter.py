"""The nevergrad bridge: a PNN task on a metered device as a nevergrad problem.

:class:`DeviceObjective` turns a :class:`~blacksat.task.Task` on a
:class:`~blacksat.MeteredDevice` into a black-box loss of the controls and a nevergrad
parametrization of them. :func:`minimize` drives any optimizer of ``nevergrad``'s registry (and
blacksat's own, :mod:`blacksat.ng.optimizers`) with an ask/tell batch loop: up to
``num_workers`` candidates per batch, evaluated by **one** ``query_many`` on the *same* metered
device, so every method pays reconfigurations and samples through the same ledger and stops at
the same budget. Non-finite losses are never told.

Shapes: ``theta (d,)`` controls; ``thetas (K, d)`` settings -> ``losses (K,)``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import nevergrad as ng
import numpy as np
import torch
from nevergrad.common import errors as ng_errors
from nevergrad.optimization import base as ng_base

from blacksat.errors import BudgetExhausted, ConfigError, InvalidReading, ShapeError
from blacksat.meter import Ledger, MeteredDevice
from blacksat.ng import compat as ng_compat
from blacksat.space import ParamSpace

ng_compat.install()  # nevergrad 1.0.12 meta-model vs NumPy >= 2.4

BoundMethod = Literal["bouncing", "clipping"]

#: the prior's standard deviation is the range over this: ``z = +-2`` of nevergrad's unit
#: (standardized) prior reaches the faces of the box from its center
PRIOR_SPAN = 4.0
#: A periodic control's nevergrad bounds extend this many periods beyond its canonical range on
#: each side (nevergrad has no circular scalar, and only clipping takes open bounds): the
#: objective wraps every value, so the landscape nevergrad sees is periodic and nothing sticks
#: or bounces at ``lower``/``upper``; a bound is met only after ``PERIODIC_TURNS`` full turns,
#: and uniform sampling over the ``2 PERIODIC_TURNS + 1`` whole periods is uniform on the circle.
PERIODIC_TURNS = 2


@contextmanager
def frozen(task: Any) -> Iterator[None]:
    """Evaluate ``task`` with its digital layers in eval mode and without gradients; every
    submodule's training flag is restored afterwards."""
    mods = [m for m in (getattr(task, "front", None), getattr(task, "back", None)) if m is not None]
    flags = [(sub, sub.training) for m in mods for sub in m.modules()]
    try:
        for m in mods:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for sub, flag in flags:
            sub.training = flag


class DeviceObjective:
    """The loss of a PNN task on a (metered) device as a black-box function of the controls.

    Args:
        task: the :class:`~blacksat.task.Task` (encoding, frozen digital layers, readout, loss).
        device: the :class:`~blacksat.MeteredDevice` whose ledger counts for this method.
        batch_size: ``None``: the full training split at every evaluation (the same inputs for
            all ``K`` settings of one call); else a random minibatch of this size per call
            (``min(batch_size, n_train)``, without replacement, drawn from
            ``np.random.default_rng(seed)``), shared by the ``K`` settings of that call.
        seed: seed of the minibatch draws.

    The task's digital layers are frozen for nevergrad runs: evaluated in eval mode under
    ``no_grad`` (their training flags are restored after each call) and never updated.

    Attributes:
        space: the device's :class:`~blacksat.ParamSpace`.
        evaluations: settings evaluated so far (``K`` per :meth:`losses` call).
    """

    def __init__(
        self, task: Any, device: MeteredDevice, *, batch_size: int | None = None, seed: int = 0
    ) -> None:
        if not isinstance(device, MeteredDevice):
            raise ConfigError(
                "DeviceObjective needs a MeteredDevice (its ledger is the method's budget), got "
                f"{type(device).__name__}: wrap it with blacksat.MeteredDevice(device, ...)"
            )
        for attr in ("encode", "decode", "loss", "accuracy", "data"):
            if not hasattr(task, attr):
                raise ConfigError(f"task must be a blacksat Task; it has no {attr!r}")
        n_train = len(task.data.split("train")[1])
        if batch_size is not None:
            if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
                raise ConfigError(
                    f"batch_size must be a positive integer or None, got {batch_size!r}"
                )
            batch_size = min(int(batch_size), n_train)
        if isinstance(seed, bool) or int(seed) != seed:
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        self.task = task
        self.device = device
        self.batch_size = batch_size
        self.seed = int(seed)
        self.space: ParamSpace = device.space
        self.n_train = n_train
        self.evaluations = 0
        self._rng = np.random.default_rng(self.seed)

    @property
    def inputs_per_call(self) -> int:
        """``B``: inputs forwarded per setting (the samples one setting costs)."""
        return self.n_train if self.batch_size is None else self.batch_size

    # ------------------------------------------------------------------ nevergrad problem
    def parametrization(
        self, init: np.ndarray | None = None, *, method: BoundMethod = "bouncing"
    ) -> ng.p.Array:
        """A nevergrad ``Array`` of the controls, ``theta (d,)`` in device units.

        - bounds: the device's per-control ``[lower, upper]`` via ``set_bounds(method=...)``.
          ``"bouncing"`` (default, nevergrad's own) reflects a step that crosses a bound once
          (then clips): the map from standardized data to values stays continuous and does not
          pile samples on the faces, and a finite difference straddling a face still sees a
          slope. ``"clipping"`` clips (flat outside the box, more samples on the faces).
        - sigma: ``(upper - lower) / 4`` per control, so nevergrad's *standardized* space
          (``data = (value - init) / sigma``) has a unit prior over the box: from the center,
          ``z = +-2`` reaches each face and a ``N(0, 1)`` draw lands inside with probability
          95 % per control; nevergrad's default ``/ 6`` keeps 68 % of the prior on the central
          third (too timid for a device box a PNN uses fully, e.g. phases over ``[0, 2 pi]``),
          while ``/ 2`` would put a third of the draws outside. Optimizers' step sizes
          (mutation scales, blacksat's ``sigma``, ``lr``, ``rho``) are then in quarter-ranges.
        - periodic controls (:attr:`ParamSpace.periodic`): bounds ``PERIODIC_TURNS`` whole
          periods wider on each side and sigma ``period / 4``; :meth:`losses` wraps every value
          into the canonical range, so a step across ``lower``/``upper`` comes out on the other
          side of the circle instead of bouncing or sticking.
        - init: ``init`` (validated, in bounds, copied) or the box center.
        - uniform full-range sampling for sampling-based optimizers (nevergrad's default
          with both bounds set).

        Raises:
            ConfigError: a control with ``lower == upper`` (nevergrad needs open boxes), or an
                ``init`` of the wrong shape, non-finite or out of bounds.
        """
        sp = self.space
        if np.any(sp.width <= 0):
            bad = np.flatnonzero(sp.width <= 0)[:10].tolist()
            raise ConfigError(f"nevergrad needs lower < upper for every control; equal at {bad}")
        if method not in ("bouncing", "clipping"):
            raise ConfigError(f"method must be 'bouncing' or 'clipping', got {method!r}")
        x0 = sp.center if init is None else self._init(init)
        param = ng.p.Array(init=x0)
        param.set_mutation(sigma=sp.span / PRIOR_SPAN)
        # a generator of its own (shared with the sigma sub-parameter) before anything reads
        # one: nevergrad would otherwise seed it from numpy's global RNG
        param.random_state = np.random.RandomState(self.seed)
        turns = np.where(sp.periodic, PERIODIC_TURNS * sp.period, 0.0)
        param.set_bounds(
            sp.lower - turns, np.maximum(sp.upper, sp.lower + sp.period) + turns, method=method
        )
        param.function.deterministic = self.batch_size is None
        return param

    def _init(self, init: Any) -> np.ndarray:
        arr = np.array(init, dtype=np.float64)
        if arr.shape != self.space.shape:
            raise ConfigError(f"init must have shape {self.space.shape}, got {arr.shape}")
        if not self.space.contains(arr):
            raise ConfigError("init must be finite and inside the device's bounds")
        return arr

    # ------------------------------------------------------------------ evaluation
    def losses(self, thetas: np.ndarray) -> np.ndarray:
        """``thetas (K, d)`` -> float64 ``losses (K,)`` from ONE ``query_many`` call.

        Settings are projected into the space before sending (clipped into the bounds, a
        periodic control wrapped; the input is not modified); a
        setting holding NaN or +-inf is never sent (clipping would turn an infinity into a
        bound) and gets ``+inf``, like a setting whose reading (or loss) is non-finite: never
        an exception, the driver decides what to tell (the meter charges a call with a bad
        reading and counts it as a failure).

        Raises:
            ShapeError: ``thetas`` is not ``(K, d)`` with ``K >= 1``.
            BudgetExhausted: the meter refused the call (nothing was sent).
        """
        arr = np.array(thetas, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.space.dim or arr.shape[0] == 0:
            raise ShapeError(f"thetas must have shape (K, {self.space.dim}), got {arr.shape}")
        finite = np.isfinite(arr).all(axis=1)
        out = np.full(arr.shape[0], np.inf)
        if not finite.any():
            return out
        t = self.space.project(arr[finite])
        batch = self._batch()
        with frozen(self.task):
            x = self.task.encode(batch.features).to(torch.float64).numpy()
            try:
                y = self.device.query_many(t, x)
            except InvalidReading as exc:
                y = _per_setting(exc, t.shape[0], x.shape[0])
            self.evaluations += t.shape[0]
            bad = ~np.isfinite(y.reshape(y.shape[0], -1)).all(axis=1)
            y = np.where(np.isfinite(y), y, 0.0)
            logits = self.task.decode(torch.as_tensor(y, dtype=self.task.dtype))
            sent = self.task.loss(logits, batch.labels).to(torch.float64).numpy().copy()
        sent[bad | ~np.isfinite(sent)] = np.inf
        out[finite] = sent
        return out

    def __call__(self, theta: np.ndarray) -> float:
        """The loss at one setting ``theta (d,)`` (one query of one setting)."""
        arr = np.asarray(theta, dtype=np.float64)
        if arr.shape != self.space.shape:
            raise ShapeError(f"theta must have shape {self.space.shape}, got {arr.shape}")
        return float(self.losses(arr[None])[0])

    def accuracy(self, theta: np.ndarray, *, device: Any = None, split: str = "test") -> float:
        """Accuracy of ``theta (d,)`` (clipped into bounds) on the *full* ``split``, through
        ``task.accuracy``.

        ``device``: where to evaluate; pass the bare (unmetered) chip so evaluation does not
        spend the training budget. ``None`` evaluates through this objective's metered device
        (charged: one reconfiguration, ``n_split`` samples, and subject to its budgets).
        """
        arr = np.asarray(theta, dtype=np.float64)
        if arr.shape != self.space.shape:
            raise ShapeError(f"theta must have shape {self.space.shape}, got {arr.shape}")
        target = self.device if device is None else device
        with frozen(self.task):
            return float(self.task.accuracy(target, self.space.project(arr), split=split))

    def _batch(self) -> Any:
        if self.batch_size is None:
            return self.task.batch("train", np.arange(self.n_train))
        idx = self._rng.choice(self.n_train, size=self.batch_size, replace=False)
        return self.task.batch("train", idx)

    def __repr__(self) -> str:
        b = "full" if self.batch_size is None else self.batch_size
        return f"DeviceObjective(d={self.space.dim}, batch={b}, device={self.device!r})"


def _per_setting(exc: InvalidReading, k: int, b: int) -> np.ndarray:
    """The raw reading of a call the meter rejected for NaN/inf, as ``(K, B, ...)``; a reading
    that is not even shaped right is re-raised (a device fault, not a non-finite value)."""
    try:
        y = np.asarray(exc.reading, dtype=np.float64)
    except (TypeError, ValueError):
        raise exc from None
    if y.ndim < 2 or y.shape[:2] != (k, b):
        raise exc
    return y


@dataclass(frozen=True)
class NGResult:
    """The outcome of :func:`minimize`.

    Attributes:
        theta: the recommendation ``(d,)``, in bounds (the init if nothing finite was told).
        optimizer: the registry name that ran.
        trace: one row per batch, after it: ``reconfigurations``, ``samples`` (spent by the run
            so far: the last row equals :attr:`ledger`), ``batch_reconfigurations``,
            ``batch_samples`` (that batch's device cost: they sum to :attr:`ledger`), ``told``
            (finite losses told in that batch), ``skipped`` (non-finite, not told),
            ``best_loss`` (lowest finite loss told so far).
        ledger: the device cost of the run (the metered device's ledger difference).
        told: finite losses told in all; skipped_nonfinite: evaluations not told.
        stop: ``"budget"`` (reconfiguration/sample budget spent, or the meter refused) or
            ``"completed"`` (the optimizer stopped early, or it was asked
            :data:`ASK_LIMIT` times the budget, repeating settings, before the budget was spent).
        best_loss: lowest finite loss told (``inf`` if none).
        repeats: evaluations that cost no reconfiguration (a setting equal to the one the
            device held: optimizers such as nevergrad's OnePlusOne re-propose a point now and
            then); the run keeps asking until its reconfigurations are spent.
    """

    theta: np.ndarray
    optimizer: str
    trace: list[dict[str, Any]]
    ledger: Ledger
    told: int
    skipped_nonfinite: int
    stop: str
    best_loss: float = field(default=float("inf"))
    repeats: int = 0


def build_optimizer(
    name: str,
    parametrization: Any,
    *,
    budget: int,
    num_workers: int,
    optimizer_kwargs: dict[str, Any] | None = None,
) -> ng_base.Optimizer:
    """``ng.optimizers.registry[name](parametrization, budget, num_workers)``; with
    ``optimizer_kwargs`` a configured entry (``ConfiguredOptimizer``) is rebuilt with its config
    updated, a plain optimizer class gets them as keyword arguments."""
    import blacksat.baselines  # (registers the in-situ baselines)
    import blacksat.ng.optimizers  # noqa: F401  (registers blacksat's optimizers)

    registry = ng.optimizers.registry
    if name not in registry:
        raise ConfigError(f"unknown nevergrad optimizer {name!r} (see ng.optimizers.registry)")
    entry = registry[name]
    kwargs = dict(optimizer_kwargs or {})
    try:
        if kwargs and isinstance(entry, ng_base.ConfiguredOptimizer):
            entry = type(entry)(**{**entry.config(), **kwargs})
            kwargs = {}
        return entry(
            parametrization=parametrization, budget=budget, num_workers=num_workers, **kwargs
        )
    except ConfigError:
        raise
    except TypeError as exc:
        if optimizer_kwargs:
            raise ConfigError(f"{name} does not take {sorted(optimizer_kwargs)}: {exc}") from exc
        raise
    except ValueError as exc:  # e.g. "SPSA does not support parallelization"
        raise ConfigError(f"cannot build {name}: {exc}") from exc


def minimize(
    objective: DeviceObjective,
    optimizer: str,
    *,
    budget: int,
    num_workers: int = 16,
    seed: int = 0,
    init: np.ndarray | None = None,
    optimizer_kwargs: dict[str, Any] | None = None,
) -> NGResult:
    """Minimize the objective with a nevergrad optimizer, in batches of one device call.

    ``budget`` counts reconfigurations (the device's expensive unit) spent by this run, and is
    the evaluation budget the optimizer is built with. A setting equal to the one the device
    holds costs no reconfiguration, so the run keeps asking until its reconfigurations are spent
    (up to :data:`ASK_LIMIT` times the budget in asks): every run spends its whole budget.
    Generation-based optimizers (CMA, :mod:`blacksat.baselines`) get batches cut at their
    generation boundary. The parametrization (:meth:`DeviceObjective.
    parametrization` at ``init``) gets ``np.random.RandomState(seed)`` before the optimizer is
    built. Each batch asks ``k = min(num_workers, reconfigurations left (this run and the
    meter's hard budget), samples left // B, asks left)`` candidates, evaluates them with
    ONE :meth:`DeviceObjective.losses` call, tells every finite loss and skips the others (never
    telling NaN/inf; optimizers with a ``drop(candidate)`` method, blacksat's, are told of the
    skip), and records a trace row. It stops when a budget is spent, when the meter raises
    :class:`~blacksat.BudgetExhausted` (caught: a clean stop), or when the optimizer stops.

    Returns:
        :class:`NGResult`; ``theta`` is ``optimizer.provide_recommendation().value`` clipped into
        the bounds, or the init if nothing finite was ever told.
    """
    if isinstance(budget, bool) or int(budget) != budget or budget < 1:
        raise ConfigError(f"budget must be a positive integer, got {budget!r}")
    if isinstance(num_workers, bool) or int(num_workers) != num_workers or num_workers < 1:
        raise ConfigError(f"num_workers must be a positive integer, got {num_workers!r}")
    budget, num_workers = int(budget), int(num_workers)
    param = objective.parametrization(init)
    x0 = np.array(param.value, dtype=np.float64)
    param.random_state = np.random.RandomState(int(seed))
    opt = build_optimizer(
        optimizer, param, budget=budget, num_workers=num_workers, optimizer_kwargs=optimizer_kwargs
    )
    drop = getattr(opt, "drop", None)
    meter = objective.device
    start = meter.ledger
    trace: list[dict[str, Any]] = []
    told = skipped = 0
    best = float("inf")
    stop = "budget"
    while True:
        k, why = _batch_size(objective, opt, start, budget, num_workers)
        if k == 0:
            stop = why
            break
        cands = []
        for _ in range(k):
            try:
                cands.append(opt.ask())
            except ng_errors.NevergradEarlyStopping:
                stop = "completed"
                break
        if not cands:
            break
        thetas = np.stack([np.asarray(c.value, dtype=np.float64) for c in cands])
        before = meter.ledger
        try:
            losses = objective.losses(thetas)
        except BudgetExhausted:
            stop = "budget"
            break
        n_told = n_skip = 0
        for cand, loss in zip(cands, losses, strict=True):
            if np.isfinite(loss):
                opt.tell(cand, float(loss))
                best = min(best, float(loss))
                n_told += 1
            else:
                if callable(drop):
                    drop(cand)
                n_skip += 1
        told, skipped = told + n_told, skipped + n_skip
        after = meter.ledger
        trace.append(
            {
                "reconfigurations": after.reconfigurations - start.reconfigurations,
                "samples": after.samples - start.samples,
                "batch_reconfigurations": after.reconfigurations - before.reconfigurations,
                "batch_samples": after.samples - before.samples,
                "told": n_told,
                "skipped": n_skip,
                "best_loss": best,
            }
        )
        if stop == "completed":
            break
    if told:
        rec = np.asarray(opt.provide_recommendation().value, dtype=np.float64)
        theta = objective.space.project(rec)
    else:
        theta = x0
    ledger = meter.ledger - start
    repeats = told + skipped - ledger.reconfigurations
    return NGResult(theta, optimizer, trace, ledger, told, skipped, stop, best, max(repeats, 0))


def _batch_size(
    objective: DeviceObjective, opt: Any, start: Ledger, budget: int, num_workers: int
) -> tuple[int, str]:
    """How many candidates the next batch may ask, and why it is 0 when it is."""
    meter = objective.device
    left = meter.remaining()
    spent = meter.ledger.reconfigurations - start.reconfigurations
    reconf = budget - spent
    if left.reconfigurations >= 0:
        reconf = min(reconf, left.reconfigurations)
    if left.samples >= 0:
        reconf = min(reconf, left.samples // objective.inputs_per_call)
    if reconf <= 0:
        return 0, "budget"
    evals = ASK_LIMIT * budget - opt.num_ask
    if evals <= 0:
        return 0, "completed"
    k = min(num_workers, reconf, evals)
    return min(k, _generation_left(opt) or k), ""


#: a run keeps asking while reconfigurations remain (repeated settings are free), up to this many
#: times its budget in asks
ASK_LIMIT = 4


def _generation_left(opt: Any) -> int | None:
    """Candidates left in a CMA optimizer's current generation, if it has one pending.

    nevergrad's CMA wrappers draw a whole generation (``popsize`` candidates) at the first
    ask and tell cma once all of it has been told. A batch that crosses the generation boundary
    (``num_workers`` not a divisor of ``popsize``) makes the wrapper draw the next generation
    before the current one is told, which cma's TPA step-size adaptation refuses ("Mean shift
    samples are expected but missing", e.g. DiagonalCMA in 480 dimensions with 16 workers).
    Cutting such a batch at the boundary keeps the ask/tell order cma expects. Meta-optimizers
    (NGOpt and kin) are looked through to the optimizer they chose; ``None`` for every other.
    """
    for _ in range(4):  # NGOpt -> chosen optimizer -> ...
        left = getattr(opt, "generation_left", None)
        if callable(left):  # blacksat's generation optimizers say it themselves
            return int(left()) or None
        pending = getattr(opt, "_to_be_asked", None)
        if isinstance(pending, deque):
            return len(pending) if pending and hasattr(opt, "es") else None
        try:
            opt = opt.optim if "optim" in dir(type(opt)) else None
        except Exception:  # a meta-optimizer that cannot choose yet
            return None
        if opt is None:
            return None
    return None


__all__ = [
    "PRIOR_SPAN",
    "BoundMethod",
    "DeviceObjective",
    "NGResult",
    "build_optimizer",
    "frozen",
    "minimize",
]
