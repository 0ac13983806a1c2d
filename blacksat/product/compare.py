"""Comparison runner: blacksat's training methods against nevergrad's black-box optimizers.

Every method gets the same problem: one chip (a simulated device built from ``chip`` seed), the
same dataset split, the same frozen digital front end (seeded by ``seed``), the same initial
controls and the same hard budget of **reconfigurations** on a
:class:`~blacksat.meter.MeteredDevice`. Only the ``d`` controls are optimized. What differs is how
a method spends its budget: nevergrad's optimizers evaluate the loss on the full training split
(``Scenario.ng_batch_size=None``) per setting; blacksat's estimators take minibatch gradient
estimates from queries alone (``"query-only"``) or use the nominal model as a backward twin
(``"twin-assisted"``, physics-aware training).

- :class:`Method` (a named, validated configuration) and the registry :data:`METHODS`
  (:func:`method` looks one up);
- :class:`Scenario`: device, dataset, initialisation, evaluation perturbations;
- :func:`run_one`: one run as a pure function of its arguments, returning a tidy row;
- :func:`compare`: methods x seeds x chips x budgets on any ``concurrent.futures`` executor
  (local processes by default, Dask when given a scheduler address), writing ``results.csv``,
  ``results.json``, ``summary.md`` and the plots (:mod:`blacksat.product.compare_plots`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import platform
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from blacksat.errors import ConfigError
from blacksat.evaluation import FRESH_CHIP_OFFSET
from blacksat.product.compare_methods import BASELINES, METHODS, Method, method, method_fits
from blacksat.product.compare_methods import method as _lookup  # `method` is often an argument name
from blacksat.product.compare_plots import scenario_dict

_TRACE_ROWS = 100  # traces are thinned to at most this many rows per run


# ---------------------------------------------------------------------- scenario
def _default_device_kwargs() -> dict[str, Any]:
    return {"n_modes": 16, "s_bs": 0.05}


def _default_drift() -> dict[str, tuple[float, ...]]:
    return {"temperature": (-2.0, -1.0, 1.0, 2.0)}


@dataclass(frozen=True)
class Scenario:
    """The problem every method is given.

    Attributes:
        device: a registry name (a simulated device of :data:`blacksat.devices.DEVICES` or one
            registered under the entry-point group ``blacksat.devices``) or a factory path
            ``"package.module:callable"`` or a factory (a lab's own device; it gets the chip
            ``seed`` if it takes one; a process executor needs it importable by path).
        device_kwargs: its constructor arguments (the chip's ``seed`` comes from the run);
            default: a 16-mode mesh at s_bs = 0.05 for ``"mzi"``, none otherwise.
        dataset: a dataset name (:data:`blacksat.data.DATASETS`) or MNIST path.
        dataset_kwargs: loader arguments (the split is the same for every run).
        init: initial controls of every method: ``"center"`` (the middle of the box) or
            ``"random"`` (uniform in the box, drawn from the run's ``seed``).
        ng_batch_size: samples per nevergrad loss evaluation (``None``: the full training
            split).
        ng_workers: settings nevergrad proposes per device call (``num_workers``).
        drift: evaluation perturbations: nuisance name -> values other than its nominal one
            (accuracy of the result on ``chip.perturbed(name=value)``); default: the
            temperature at -2, -1, 1, 2 K where the device has one, none otherwise.
        fresh_chip_offset: the fresh chip of run ``chip = c`` has seed ``c + offset`` (default
            the library's rule, :func:`~blacksat.evaluation.fresh_chip_seeds`).
        threads: torch and BLAS / OpenMP threads inside a run (fixed so every executor
            computes alike).
    """

    device: Any = "mzi"
    device_kwargs: Mapping[str, Any] | None = None
    dataset: str = "digits"
    dataset_kwargs: Mapping[str, Any] = field(default_factory=dict)
    init: Literal["center", "random"] = "center"
    ng_batch_size: int | None = None
    ng_workers: int = 16
    drift: Mapping[str, Sequence[float]] | None = None
    fresh_chip_offset: int = FRESH_CHIP_OFFSET
    threads: int = 1

    def __post_init__(self) -> None:
        from blacksat.product.device_registry import lookup

        if not isinstance(self.device, str) and not callable(self.device):
            raise ConfigError(
                "Scenario.device must be a name, a 'package.module:callable' path or a factory "
                f"(a picklable callable returning a device), got {self.device!r}"
            )
        nuisances: tuple[Any, ...] = ()
        if not isinstance(self.device, str):
            pass  # a factory: its arguments and shapes are checked when it is called
        elif ":" in self.device:
            from blacksat.product.device_registry import load_factory

            load_factory(self.device)  # a path that does not import fails here
        else:
            nuisances = tuple(getattr(lookup(self.device), "nuisances", ()))
        if self.device_kwargs is None:
            kw = _default_device_kwargs() if self.device == "mzi" else {}
            object.__setattr__(self, "device_kwargs", kw)
        if self.drift is None:
            has_t = any(n.name == "temperature" for n in nuisances)
            object.__setattr__(self, "drift", _default_drift() if has_t else {})
        for name in ("device_kwargs", "dataset_kwargs", "drift"):
            if not isinstance(getattr(self, name), Mapping):
                raise ConfigError(f"Scenario.{name} must be a mapping")
        if "seed" in self.device_kwargs:
            raise ConfigError("Scenario.device_kwargs must not fix the chip seed (runs set it)")
        object.__setattr__(self, "device_kwargs", dict(self.device_kwargs))
        object.__setattr__(self, "dataset_kwargs", dict(self.dataset_kwargs))
        known = {n.name: n for n in nuisances}
        drift: dict[str, tuple[float, ...]] = {}
        for k, vs in self.drift.items():
            if k not in known:
                raise ConfigError(
                    f"Scenario.drift: device {self.device!r} has no nuisance {k!r}; "
                    f"known: {sorted(known)}"
                )
            try:
                vals = tuple(float(v) for v in vs)
            except (TypeError, ValueError):
                raise ConfigError(f"Scenario.drift[{k!r}] must be a sequence of numbers") from None
            nominal = known[k].default
            if not all(np.isfinite(vals)) or len(set(vals)) != len(vals) or nominal in vals:
                raise ConfigError(
                    f"Scenario.drift[{k!r}] must hold distinct finite values other than the "
                    f"nominal {nominal:g} (that is the test accuracy), got {vals}"
                )
            drift[str(k)] = vals
        object.__setattr__(self, "drift", drift)
        if self.init not in ("center", "random"):
            raise ConfigError(f"Scenario.init must be 'center' or 'random', got {self.init!r}")
        for name, low, allow_none in (
            ("ng_batch_size", 1, True),
            ("ng_workers", 1, False),
            ("fresh_chip_offset", 1, False),
            ("threads", 1, False),
        ):
            v = getattr(self, name)
            if v is None and allow_none:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ConfigError(f"Scenario.{name} must be an integer >= {low}, got {v!r}")

    def nuisance(self, name: str) -> Any:
        """The :class:`~blacksat.devices.Nuisance` ``name`` of the scenario's device (its
        nominal value ``default``, its ``unit``, its ``rated`` range)."""
        from blacksat.product.device_registry import lookup

        d = self.device
        source = () if not isinstance(d, str) or ":" in d else getattr(lookup(d), "nuisances", ())
        for n in source:
            if n.name == name:
                return n
        raise ConfigError(f"device {self.device!r} has no nuisance {name!r}")

    def drift_columns(self) -> list[str]:
        """Row keys of the drift accuracies, e.g. ``"acc_temperature-2"``."""
        return [f"acc_{k}{v:+g}" for k, vs in self.drift.items() for v in vs]

    def build_chip(self, chip_seed: int) -> Any:
        """The chip of seed ``chip_seed``."""
        from blacksat.product.device_registry import make_device

        return make_device(self.device, seed=int(chip_seed), kwargs=self.device_kwargs)

    def build_task(self, chip: Any, seed: int) -> Any:
        """The default task of ``chip`` with its digital layers frozen at their seeded init."""
        from blacksat.data import load_dataset
        from blacksat.devices.tasks import default_task
        from blacksat.product.device_registry import check_task_fits

        task = default_task(chip, load_dataset(self.dataset, **self.dataset_kwargs), seed=seed)
        check_task_fits(task, chip)
        for p in task.digital_parameters():
            p.requires_grad_(False)
        return task

    def initial(self, chip: Any, seed: int) -> np.ndarray:
        """Initial controls ``(d,)``, the same for every method of a run."""
        if self.init == "center":
            return chip.space.center.copy()
        return chip.space.sample(np.random.default_rng([int(seed), 7]))


# ---------------------------------------------------------------------- one run
def run_one(
    method: Method | str,
    scenario: Scenario | None,
    seed: int,
    chip_seed: int,
    budget: int,
) -> dict[str, Any]:
    """One run of ``method`` on chip ``chip_seed`` with ``budget`` reconfigurations.

    A pure function of its arguments (every random stream is seeded from ``seed`` and
    ``chip_seed``), so any executor returns the same row (``wall_s`` aside).

    Returns a tidy row: ``method``, ``kind``, ``label``, ``seed``, ``chip``, ``budget``,
    ``reconfigurations``, ``samples``, ``queries`` (spent on the metered chip), ``stop``,
    ``test_accuracy`` (full test split, bare chip, unmetered), ``train_loss`` (full training
    split, bare chip), one ``acc_<nuisance><value>`` per drift value
    (:meth:`Scenario.drift_columns`), ``fresh_chip_accuracy``, ``wall_s`` and ``trace``: rows
    ``{reconfigurations, samples, loss}`` with the cumulative spend after each step (blacksat:
    the minibatch loss of the step) or device call (nevergrad: the lowest loss told so far, and
    ``told``), thinned to at most 100 rows.
    """
    m = _lookup(method)
    scenario = Scenario() if scenario is None else scenario
    if not isinstance(scenario, Scenario):
        raise ConfigError(f"scenario must be a Scenario, got {type(scenario).__name__}")
    for name, v, low in (("seed", seed, 0), ("chip_seed", chip_seed, 0), ("budget", budget, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {v!r}")
    from blacksat.meter import MeteredDevice

    t0 = time.perf_counter()
    with _threads(scenario.threads):
        chip = scenario.build_chip(chip_seed)
        task = scenario.build_task(chip, seed)
        theta0 = scenario.initial(chip, seed)
        meter = MeteredDevice(chip, max_reconfigurations=int(budget))
        runner = _run_nevergrad if m.kind == "nevergrad" else _run_blacksat
        theta, stop, trace = runner(m, scenario, task, chip, meter, theta0, int(seed), int(budget))
        ledger = meter.ledger
        row: dict[str, Any] = {
            "method": m.name,
            "kind": m.kind,
            "label": m.label,
            "seed": int(seed),
            "chip": int(chip_seed),
            "budget": int(budget),
            "reconfigurations": ledger.reconfigurations,
            "samples": ledger.samples,
            "queries": ledger.queries,
            "stop": stop,
            **evaluate(task, chip, theta, scenario, chip_seed),
        }
    row["wall_s"] = time.perf_counter() - t0
    row["trace"] = _thin(trace)
    return row


_THREADS_LOCK = threading.Lock()
#: [runs inside, torch threads before the first one entered, the BLAS / OpenMP limits it set]
_THREADS_USERS: list[Any] = [0, 0, None]


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads and ``n`` threads in every BLAS / OpenMP pool numpy and
    scipy use (``threadpoolctl``: a baseline's covariance updates and eigendecompositions would
    otherwise take every core, so a process executor's workers would fight over them); the
    process's settings are restored when the last concurrent run (threads of one process, e.g.
    a thread pool) leaves."""
    from threadpoolctl import threadpool_limits

    with _THREADS_LOCK:
        limits = threadpool_limits(limits=n)  # it remembers the limits it replaced
        if _THREADS_USERS[0] == 0:
            _THREADS_USERS[1] = torch.get_num_threads()
            _THREADS_USERS[2] = limits  # the process's own: restored by the last to leave
        _THREADS_USERS[0] += 1
        torch.set_num_threads(n)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_USERS[0] -= 1
            if _THREADS_USERS[0] == 0:
                torch.set_num_threads(_THREADS_USERS[1])
                _THREADS_USERS[2].restore_original_limits()
                _THREADS_USERS[2] = None


def evaluate(
    task: Any, chip: Any, theta: np.ndarray, scenario: Scenario, chip_seed: int
) -> dict[str, float]:
    """Accuracy of ``theta (d,)`` on the full test split of the bare chip, under each drift
    value and on a fresh chip, and the loss on the full training split (nothing metered)."""
    theta = np.asarray(theta, dtype=np.float64)
    out = {
        "test_accuracy": task.accuracy(chip, theta),
        "train_loss": _train_loss(task, chip, theta),
    }
    for (k, v), col in zip(_pairs(scenario), scenario.drift_columns(), strict=True):
        out[col] = task.accuracy(chip.perturbed(**{k: v}), theta)
    fresh_seed = int(chip_seed) + scenario.fresh_chip_offset
    if callable(getattr(chip, "fresh_chip", None)):
        fresh = chip.fresh_chip(fresh_seed)
    else:
        from blacksat.product.device_registry import accepts, load_factory, lookup

        d = scenario.device
        factory = d if not isinstance(d, str) else load_factory(d) if ":" in d else lookup(d)
        fresh = scenario.build_chip(fresh_seed) if accepts(factory, "seed") else None
    out["fresh_chip_accuracy"] = float("nan") if fresh is None else task.accuracy(fresh, theta)
    return out


def _pairs(scenario: Scenario) -> list[tuple[str, float]]:
    return [(k, v) for k, vs in scenario.drift.items() for v in vs]


def _train_loss(task: Any, chip: Any, theta: np.ndarray) -> float:
    total, n = 0.0, 0
    with torch.no_grad():
        for xb, yb in task.batches("train", 512):
            total += float(task.loss(task.logits_device(chip, theta, xb), yb)) * len(yb)
            n += len(yb)
    return total / n


def _run_nevergrad(
    m: Method, scenario: Scenario, task: Any, chip: Any, meter: Any, theta0: np.ndarray,
    seed: int, budget: int,
) -> tuple[np.ndarray, str, list[dict[str, Any]]]:  # fmt: skip
    from blacksat.ng.adapter import DeviceObjective, minimize

    objective = DeviceObjective(task, meter, batch_size=scenario.ng_batch_size, seed=seed)
    res = minimize(
        objective,
        ng_optimizer_name(m),
        budget=budget,
        num_workers=scenario.ng_workers,
        seed=seed,
        init=theta0,
        optimizer_kwargs=dict(m.options.get("optimizer_kwargs", {})) or None,
    )
    trace = [
        {
            "reconfigurations": r.get("total_reconfigurations", r["reconfigurations"]),
            "samples": r.get("total_samples", r["samples"]),
            "loss": r["best_loss"],
            "told": r["told"],
        }
        for r in res.trace
    ]
    return np.asarray(res.theta, dtype=np.float64), str(res.stop), trace


def ng_optimizer_name(m: Method) -> str:
    """The nevergrad registry name of a nevergrad method (checked against the registry, with
    blacksat's own optimizers registered)."""
    import nevergrad as ng

    import blacksat.baselines  # (registers the in-situ baselines)
    import blacksat.ng.optimizers  # noqa: F401  (registers blacksat's optimizers)

    name = m.options["optimizer"]
    if name not in ng.optimizers.registry:
        raise ConfigError(f"method {m.name!r}: {name!r} is not a nevergrad optimizer")
    return name


def _run_blacksat(
    m: Method, scenario: Scenario, task: Any, chip: Any, meter: Any, theta0: np.ndarray,
    seed: int, budget: int,
) -> tuple[np.ndarray, str, list[dict[str, Any]]]:  # fmt: skip
    from blacksat.builder import build_estimator
    from blacksat.trainer import Trainer

    why = method_fits(m, chip)
    if why is not None:
        raise ConfigError(f"method {m.name!r} {why}, which {type(chip).__name__} does not offer")
    estimator, sat_spec = method_specs(m)
    plan = None
    if m.options.get("estimator") == "auto":
        from blacksat.query_plan import plan_query_only

        batch = m.options.get("batch_size", "auto")
        plan = plan_query_only(
            task, meter, theta0, budget=budget, batch_size=batch, seed=[int(seed), 11]
        )
        estimator = plan.estimator_spec()
    rows: list[dict[str, Any]] = []

    def fit(spec: Any, plan: Any, start: np.ndarray) -> Any:
        """One run of ``spec``, sized by ``plan`` (``None``: the method's own settings)."""
        try:
            built = build_estimator(spec, sat_spec, task=task, device=meter, chip=chip)
        except ConfigError as exc:
            raise ConfigError(f"method {m.name!r}: {exc}") from None
        if plan is None:
            cfg = m.train_config(max_steps=built.max_steps(budget), seed=seed)
        else:
            cfg = plan.train_config(
                seed=seed,
                max_steps=built.max_steps(plan.budget, spent=plan.calibration_reconfigurations),
                progress=False,
                train_digital=False,
            )
        recorder = _Recorder(built.estimator, meter, rows)
        return Trainer(task, recorder, chip.space, cfg, meter=meter).fit(start)

    result = fit(estimator, plan, theta0 if plan is None else plan.initial(theta0))
    if plan is not None and result.reason == "no progress":
        # the layered run stalled at chance: zeroth order with what is left (LAYERED_HANDOVER)
        from blacksat.query_plan import plan_handover

        spent = int(meter.ledger.reconfigurations)
        zo = plan_handover(
            plan, task, meter, theta0, spent=spent, seed=[int(seed), 12], steps=result.steps
        )
        result = fit(zo.estimator_spec(), zo, zo.initial(theta0))
    return result.theta, result.reason, rows


def method_specs(m: Method) -> tuple[Any, Any]:
    """A blacksat method's options in the run-file vocabulary: ``(EstimatorSpec, SatSpec)``
    (``estimator = "zo"`` is ``zeroth_order``, ``"pat"`` is ``physics_aware`` through the
    nominal model)."""
    from blacksat.builder import EstimatorSpec, SatSpec

    o = m.options
    if o.get("estimator", "zo") == "pat":
        estimator = EstimatorSpec("physics_aware", "nominal")
    else:
        defaults = {"q": 8, "sigma": 0.05, "directions": "gaussian", "scheme": "central"}
        args = {k: o.get(k, v) for k, v in defaults.items()}
        estimator = EstimatorSpec("zeroth_order", "nominal", args)
    try:
        sat_spec = SatSpec(
            rho=o.get("rho"),
            perturbation=o.get("perturbation"),
            mode=o.get("mode", "worst"),
            draws=o.get("draws", 1),
            ascent=o.get("ascent", "same"),
        )
    except ConfigError as exc:
        raise ConfigError(f"method {m.name!r}: {exc}") from None
    return estimator, sat_spec


class _Recorder:
    """Wraps an estimator; records the ledger and minibatch loss after every estimate."""

    def __init__(self, inner: Any, meter: Any, rows: list[dict[str, Any]] | None = None) -> None:
        self.inner, self.meter = inner, meter
        self.rows: list[dict[str, Any]] = [] if rows is None else rows
        self.task, self.name = inner.task, getattr(inner, "name", "estimator")

    def __call__(self, theta: torch.Tensor, batch: Any, ctx: Any) -> Any:
        est = self.inner(theta, batch, ctx)
        led = self.meter.ledger
        self.rows.append(
            {"reconfigurations": led.reconfigurations, "samples": led.samples, "loss": est.loss}
        )
        return est

    def evaluate(self, thetas: torch.Tensor, batch: Any, ctx: Any) -> Any:
        return self.inner.evaluate(thetas, batch, ctx)


def _thin(trace: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most ``_TRACE_ROWS`` rows, evenly spaced (first and last kept); losses to 6
    significant digits (the JSON stays small)."""
    keep = np.unique(np.linspace(0, len(trace) - 1, min(len(trace), _TRACE_ROWS)).round())
    out = []
    for i in keep.astype(int):
        row = dict(trace[i])
        if isinstance(row.get("loss"), float) and np.isfinite(row["loss"]):
            row["loss"] = float(f"{row['loss']:.6g}")
        out.append(row)
    return out


# ---------------------------------------------------------------------- the sweep
@dataclass
class CompareResult:
    """The rows of a sweep and what produced them.

    Attributes:
        rows: one tidy row per run (see :func:`run_one`), ordered by method (as given),
            budget, seed, chip.
        methods: the methods, in the order given.
        scenario: the scenario.
        seeds, chips, budgets: the sweep's axes (``chips`` lists the chip seeds actually used).
        versions: library versions and machine.
        out_dir: where the files were written (``None`` if nowhere).
        paired: whether seed ``s`` ran on chip ``s`` only (``chips="paired"``) rather than on
            every chip.
    """

    rows: list[dict[str, Any]]
    methods: list[Method]
    scenario: Scenario
    seeds: list[int]
    chips: list[int]
    budgets: list[int]
    versions: dict[str, str]
    out_dir: Path | None = None
    paired: bool = False

    def columns(self) -> list[str]:
        """The CSV columns (every row key except ``trace``)."""
        return csv_columns(self.scenario)

    def summary(self) -> list[dict[str, Any]]:
        """Mean/std/min/max of every metric per method x budget
        (:func:`blacksat.product.compare_plots.aggregate`)."""
        from blacksat.product.compare_plots import aggregate

        return aggregate(self.rows, self.scenario)

    def head_to_head(self) -> list[dict[str, Any]]:
        """Per budget: the best query-only blacksat method against the best nevergrad
        baseline (:func:`blacksat.product.compare_plots.head_to_head`)."""
        from blacksat.product.compare_plots import head_to_head

        return head_to_head(self.summary(), rows=self.rows)

    def write(self, out_dir: str | Path) -> Path:
        """Write ``results.csv``, ``results.json``, ``summary.md`` and the plots."""
        from blacksat.product.compare_plots import write_report

        self.out_dir = write_report(self, Path(out_dir))
        return self.out_dir


def csv_columns(scenario: Scenario) -> list[str]:
    """Column order of ``results.csv``."""
    return [
        "method", "kind", "label", "seed", "chip", "budget", "reconfigurations", "samples",
        "queries", "stop", "test_accuracy", "train_loss", *scenario.drift_columns(),
        "fresh_chip_accuracy", "wall_s",
    ]  # fmt: skip


def versions() -> dict[str, str]:
    """Versions of blacksat and its numerical dependencies, and the machine."""
    import blacksat

    out = {
        "blacksat": blacksat.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    try:
        import nevergrad

        out["nevergrad"] = nevergrad.__version__
    except ImportError:  # pragma: no cover - nevergrad is a dependency
        pass
    return out


def _int_list(name: str, values: Any, low: int) -> list[int]:
    try:
        out = list(values)
    except TypeError:
        raise ConfigError(f"{name} must be a sequence of integers, got {values!r}") from None
    if not out:
        raise ConfigError(f"{name} must not be empty")
    for v in out:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ConfigError(f"{name} must hold integers >= {low}, got {v!r}")
    if len(set(out)) != len(out):
        raise ConfigError(f"{name} holds duplicates: {out}")
    return [int(v) for v in out]


def _executor(
    executor: Executor | None, scheduler: str | None, max_workers: int
) -> tuple[Executor, Any]:
    """The executor to use and what to close afterwards (``None``: the caller's)."""
    if executor is not None and scheduler is not None:
        raise ConfigError("give an executor or a scheduler address, not both")
    if executor is not None:
        if not callable(getattr(executor, "submit", None)):
            raise ConfigError(f"executor must be a concurrent.futures.Executor, got {executor!r}")
        return executor, None
    if scheduler is not None:
        try:
            from dask.distributed import Client
        except ImportError as exc:
            raise ConfigError("a scheduler address needs dask[distributed] installed") from exc
        client = Client(scheduler)
        # pure=False: identical calls are noisy device queries, never deduplicated
        return client.get_executor(pure=False), client
    pool = ProcessPoolExecutor(max_workers, mp_context=multiprocessing.get_context("spawn"))
    return pool, pool


def compare(
    methods: Sequence[Method | str],
    scenario: Scenario | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    chips: Sequence[int] | Literal["paired"] = "paired",
    budgets: Sequence[int] = (1000, 5000, 20000),
    *,
    executor: Executor | None = None,
    scheduler: str | None = None,
    max_workers: int = 2,
    out_dir: str | Path | None = None,
    progress: bool = True,
    force: bool = False,
    resume: bool = False,
) -> CompareResult:
    """Run every (method, seed, chip, budget) and collect the rows.

    With ``out_dir``, the directory is checked before any run starts (writable, not a file;
    results already there are refused unless ``force`` or ``resume``), the sweep's description
    goes to ``sweep.json`` and each finished run's row is appended to ``rows.jsonl`` as it
    completes, so that an interrupted sweep loses only the runs in flight. ``resume`` keeps the
    rows already in ``rows.jsonl`` (for the same scenario and method options; refused
    otherwise) and runs only the missing (method, seed, chip, budget).

    Args:
        methods: :class:`Method` s or registered names (:data:`METHODS`).
        scenario: the problem (default :class:`Scenario`).
        seeds: run seeds (front-end initialisation, optimizer randomness, minibatches).
        chips: chip seeds (every seed runs on every chip), or ``"paired"``: seed ``s`` runs on
            chip ``s`` only.
        budgets: reconfiguration budgets; each is a separate run from the same start.
        executor: any ``concurrent.futures.Executor`` (e.g. a thread pool, or
            ``dask.distributed.Client(...).get_executor(pure=False)``); it is not shut down.
        scheduler: a Dask scheduler address: runs go to
            ``Client(scheduler).get_executor(pure=False)`` (the client is closed afterwards).
        max_workers: processes of the default executor (a spawn-context
            ``ProcessPoolExecutor``, used when neither ``executor`` nor ``scheduler`` is given).
        out_dir: where to write the results (:meth:`CompareResult.write`); ``None``: nowhere.
        progress: show a ``tqdm`` bar over completed runs.
        force: overwrite results already in ``out_dir`` (their rows are discarded).
        resume: keep the finished runs of ``out_dir`` and run the rest.
    """
    from tqdm import tqdm

    ms = [_lookup(m) for m in methods]
    if not ms:
        raise ConfigError("methods must not be empty")
    names = [m.name for m in ms]
    if len(set(names)) != len(names):
        raise ConfigError(f"method names must be unique, got {names}")
    for m in ms:
        if m.kind == "nevergrad":
            ng_optimizer_name(m)  # unknown optimizers fail here, before anything runs
    scenario = Scenario() if scenario is None else scenario
    if not isinstance(scenario, Scenario):
        raise ConfigError(f"scenario must be a Scenario, got {type(scenario).__name__}")
    seed_list = _int_list("seeds", seeds, 0)
    pairs_only = isinstance(chips, str)
    if isinstance(chips, str):
        if chips != "paired":
            raise ConfigError(f"chips must be a sequence of seeds or 'paired', got {chips!r}")
        pairs = [(s, s) for s in seed_list]
        chip_list = list(seed_list)
    else:
        chip_list = _int_list("chips", chips, 0)
        pairs = [(s, c) for s in seed_list for c in chip_list]
    budget_list = _int_list("budgets", budgets, 1)
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ConfigError(f"max_workers must be an integer >= 1, got {max_workers!r}")
    jobs = [(m, s, c, b) for m in ms for b in budget_list for s, c in pairs]
    rows: dict[tuple[str, int, int, int], dict[str, Any]] = {}
    sink = None
    if out_dir is not None:
        from blacksat.product.compare_store import RowStore

        sink = RowStore.open(out_dir, _sweep_doc(ms, scenario), force=force, resume=resume)
        wanted = {(m.name, s, c, b) for m, s, c, b in jobs}
        rows.update({k: r for k, r in sink.rows.items() if k in wanted})
    elif resume or force:
        raise ConfigError("resume and force apply to an out_dir; none was given")
    todo = [j for j in jobs if (j[0].name, j[1], j[2], j[3]) not in rows]
    ex, owned = _executor(executor, scheduler, max(1, min(max_workers, len(todo))))
    try:
        # largest budgets first: the longest runs do not end up last on an idle pool
        order = sorted(todo, key=lambda j: -j[3])
        futures: dict[Future, tuple[str, int, int, int]] = {
            ex.submit(run_one, m, scenario, s, c, b): (m.name, s, c, b) for m, s, c, b in order
        }
        with tqdm(total=len(futures), disable=not progress, desc="compare", unit="run") as bar:
            try:
                for fut in as_completed(futures):
                    key = futures[fut]
                    rows[key] = fut.result()
                    if sink is not None:
                        sink.append(rows[key])
                    bar.update(1)
            except BaseException:
                for f in futures:
                    f.cancel()
                _keep_finished(futures, rows, sink)
                raise
    finally:
        if owned is not None:
            if isinstance(owned, ProcessPoolExecutor):
                owned.shutdown(wait=True, cancel_futures=True)
            else:
                owned.close()
    ordered = [rows[(m.name, s, c, b)] for m in ms for b in budget_list for s, c in pairs]
    result = CompareResult(
        ordered, ms, scenario, seed_list, chip_list, budget_list, versions(), None, pairs_only
    )
    if out_dir is not None:
        result.write(out_dir)
    return result


def _keep_finished(
    futures: dict[Future, tuple[str, int, int, int]],
    rows: dict[tuple[str, int, int, int], dict[str, Any]],
    sink: Any,
) -> None:
    """Record every run that finished but was not yet recorded when the sweep stopped (a run
    that failed, or an interrupt, surfaces before runs that completed alongside it): a stopped
    sweep loses only the runs in flight. A failure to record one is left to the error that
    stopped the sweep."""
    for f, key in futures.items():
        if key in rows or not f.done() or f.cancelled() or f.exception() is not None:
            continue
        try:
            rows[key] = f.result()
            if sink is not None:
                sink.append(rows[key])
        except Exception:  # the sweep's own error is the one to raise
            return


def _sweep_doc(methods: Sequence[Method], scenario: Scenario) -> dict[str, Any]:
    """What the rows of a sweep depend on besides their own key (checked on resume)."""
    return {
        "scenario": scenario_dict(scenario),
        "methods": {m.name: {"kind": m.kind, "options": m.options} for m in methods},
    }


#: Budgets of the quick (smoke) variant of :func:`target`.
QUICK_BUDGETS = (64, 128)


def target(quick: bool = False) -> dict[str, Any]:
    """The benchmark sweep (``compare(**target(), out_dir=...)``): every registered method but
    the in-situ :data:`~blacksat.product.compare_methods.BASELINES` on the default
    :class:`Scenario` (16-mode mesh, s_bs = 0.05, digits, centre init, full-train
    nevergrad losses), seeds 0, 1, 2 each on its own chip (``chips="paired"``), budgets 1000,
    5000 and 20000 reconfigurations. ``quick=True``: two seeds and budgets
    :data:`QUICK_BUDGETS` (a smoke run of a few minutes)."""
    return {
        "methods": [
            m for name, m in METHODS.items() if name not in BASELINES and name != "blacksat"
        ],
        "scenario": Scenario(),
        "seeds": [0, 1] if quick else [0, 1, 2],
        "chips": "paired",
        "budgets": list(QUICK_BUDGETS) if quick else [1000, 5000, 20000],
    }


__all__ = [
    "METHODS",
    "QUICK_BUDGETS",
    "CompareResult",
    "Method",
    "Scenario",
    "compare",
    "csv_columns",
    "evaluate",
    "method",
    "method_fits",
    "ng_optimizer_name",
    "run_one",
    "scenario_dict",
    "target",
    "versions",
]
