"""The configuration of a ``blacksat train`` run: frozen, validated dataclasses read from TOML.

A run file has one table per concern; every key is optional (defaults below) and an unknown key
or a value of the wrong type is a :class:`~blacksat.errors.ConfigError` naming the key::

    [device]                       # a device by registry name (`blacksat devices`)
    name = "mzi"
    seed = 0                       # the fabrication draw
    kwargs = { n_modes = 16, s_bs = 0.15, s_ps = 0.15 }
    # or a lab's own device: factory = "labdriver.bench:make_device" (importable from the
    # working directory or the environment), called with kwargs (and seed, if it takes one)

    [task]
    dataset = "digits"             # "digits", "iris" or the path of an MNIST directory / .npz
    seed = 0                       # data split and digital front end
    init = "device"                # initial controls: the device's suggestion, or "center"

    [estimator]                    # absent: name = "auto" (autograd on the device's nominal
                                   # model if it has one, else the query-only default of
                                   # blacksat.query_plan, calibrated on the device and sized
                                   # from [budget]; it sets lr, batch and steps itself)
    name = "zeroth_order"          # "autograd", "physics_aware", "zeroth_order",
                                   # "layered_response" (a device declaring weight_banks) or "auto"
    model = "nominal"              # what autograd / physics_aware differentiate: "exact" or a
                                   # surrogate file from `blacksat calibrate`
    args = { q = 4, sigma = 0.05 } # keyword arguments of the estimator
    region = "covered"             # training on a surrogate file stays in the range its data
                                   # covers ("covered", default) or may go anywhere ("all")
    readout_noise = 0.005          # autograd: train through the device's readout noise (std,
                                   # output units, as `blacksat characterize` reports it)

    [sat]                          # omit rho and perturbation for plain training
    perturbation = "phase_drift"   # a name of the device's perturbation_models(), or rho = 0.3
    mode = "average"               # "worst" or "average"

    [saf]                          # the SAF trajectory loss (off unless lam > 0): flatness
    lam = 0.5                      # from readings already paid for, no extra reconfiguration
    tau = 5.0                      # softmax temperature; lag: epochs back; warmup: first epoch
    lag = 2

    [train]                        # the fields of blacksat.TrainConfig
    lr = 0.01
    max_steps = 200                # given alone, the run has no epoch limit (epochs = None)
    batch_size = 64                # or "full": the whole training split per step

    [budget]                       # hard limits on the metered device (absent: unlimited)
    reconfigurations = 2000
    # or, for the query-only default, device time: seconds = 60 with the device's cost model
    # (declared by its driver, or seconds_per_reconfiguration = 1e-3, seconds_per_sample = 1e-5)

    [log]
    queries = true                 # keep every query in queries.sqlite

TOML has no null: a key left out takes its default, with two exceptions in ``[train]``: when
only one of ``epochs`` and ``max_steps`` is given the other is ``None`` (the run ends by the one
given), and ``batch_size = "full"`` stands for ``None``.

:meth:`RunConfig.to_toml` writes the resolved configuration (every default filled in) so that a
run directory describes itself; ``RunConfig.load`` of that file gives the same configuration.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from blacksat.builder import EstimatorName, EstimatorSpec, SatSpec, estimator_args
from blacksat.errors import ConfigError
from blacksat.product.config_io import dump_toml, load_toml, typed_fields
from blacksat.train_config import BUILT_IN_SCHEDULES, TrainConfig
from blacksat.validation import check_choice, check_int


# ---------------------------------------------------------------------- sections
@dataclass(frozen=True)
class DeviceSpec:
    """``[device]``: a device by registry name (a simulated device, or one another package
    registers under the entry-point group ``blacksat.devices``) or by ``factory``
    (``"package.module:callable"``; ``name`` is then only its label), its fabrication ``seed``
    (passed to a factory that takes one) and its other arguments (``kwargs``)."""

    name: str = ""
    seed: int = 0
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    factory: str = ""

    def __post_init__(self) -> None:
        from blacksat.devices import DEVICES

        if not isinstance(self.factory, str):
            raise ConfigError(f"device.factory must be a string, got {self.factory!r}")
        if self.factory:
            if self.factory.count(":") != 1 or not all(self.factory.split(":")):
                raise ConfigError(
                    f"device.factory must be 'package.module:callable', got {self.factory!r}"
                )
            if not self.name:
                object.__setattr__(self, "name", self.factory.split(":")[1])
        elif not self.name:
            object.__setattr__(self, "name", "mzi")
        check_int("device.seed", self.seed, low=0)
        if not isinstance(self.kwargs, Mapping):
            raise ConfigError(f"device.kwargs must be a table, got {self.kwargs!r}")
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        if self.factory or self.name not in DEVICES:
            if not self.factory:
                from blacksat.product.device_registry import lookup

                lookup(self.name)  # an unknown name fails here, naming the known ones
            return  # a factory's arguments are checked when it is called
        cls = DEVICES[self.name]
        params = inspect.signature(cls.__init__).parameters
        allowed = {n for n, p in params.items() if p.kind == p.KEYWORD_ONLY} - {"seed"}
        if any(p.kind == p.VAR_KEYWORD for p in params.values()):
            allowed |= {n.name for n in cls.nuisances}
        for key in self.kwargs:
            if key not in allowed:
                hint = " (the chip's seed is device.seed)" if key == "seed" else ""
                raise ConfigError(
                    f"unknown key device.kwargs.{key} for {cls.__name__}{hint}; expected one of "
                    f"{sorted(allowed)}"
                )

    @property
    def builtin(self) -> bool:
        """Whether this is one of blacksat's simulated devices."""
        from blacksat.devices import DEVICES

        return not self.factory and self.name in DEVICES

    def build(self, seed: int | None = None) -> Any:
        """The device (``seed``: another fabrication draw than :attr:`seed`)."""
        from blacksat.devices import DEVICES
        from blacksat.product.device_registry import make_device

        s = self.seed if seed is None else int(seed)
        if self.builtin:
            try:
                return DEVICES[self.name](seed=s, **self.kwargs)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"device.kwargs: {exc}") from None
        return make_device(self.factory or self.name, seed=s, kwargs=self.kwargs)


@dataclass(frozen=True)
class TaskSpec:
    """``[task]``: the dataset (a registry name or an MNIST path), the seed of its split and of
    the digital front end, an optional ``test_size`` (digits, iris) and the initial controls
    (``"device"``: the device's suggestion for ``seed``; ``"center"``: the middle of the box)."""

    dataset: str = "digits"
    seed: int = 0
    test_size: float | None = None
    init: Literal["device", "center"] = "device"

    def __post_init__(self) -> None:
        from blacksat.data import DATASETS

        if self.dataset not in DATASETS and not Path(self.dataset).exists():
            raise ConfigError(
                f"task.dataset must be one of {sorted(DATASETS)} or an existing MNIST path, "
                f"got {self.dataset!r}"
            )
        check_int("task.seed", self.seed, low=0)
        if self.test_size is not None:
            if self.dataset not in DATASETS:
                raise ConfigError("task.test_size applies to digits and iris only")
            if not 0.0 < self.test_size < 1.0:
                raise ConfigError(f"task.test_size must lie in (0, 1), got {self.test_size!r}")
        check_choice("task.init", self.init, ("device", "center"))

    def load(self) -> Any:
        """The :class:`~blacksat.data.Dataset`."""
        from blacksat.data import DATASETS, load_dataset

        kwargs: dict[str, Any] = {"seed": self.seed} if self.dataset in DATASETS else {}
        if self.test_size is not None:
            kwargs["test_size"] = self.test_size
        return load_dataset(self.dataset, **kwargs)


@dataclass(frozen=True)
class BudgetSpec:
    """``[budget]``: hard limits of the metered device (absent: unlimited).

    ``seconds`` is a budget in device time for the query-only default (``[estimator] name =
    "auto"`` on a device without a model); it needs a cost model: the device's declared
    ``cost_model``, or ``seconds_per_reconfiguration`` and ``seconds_per_sample`` here. The
    plan turns it into a hard reconfiguration limit."""

    reconfigurations: int | None = None
    samples: int | None = None
    seconds: float | None = None
    seconds_per_reconfiguration: float | None = None
    seconds_per_sample: float | None = None

    def __post_init__(self) -> None:
        for name in ("reconfigurations", "samples"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(
                    f"budget.{name} must be an integer >= 1 (a budget of 0 allows no query; "
                    f"leave the key out for no limit), got {v!r}"
                )
        for name in ("seconds", "seconds_per_reconfiguration", "seconds_per_sample"):
            v = getattr(self, name)
            ok = v is None or (
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 and v < 1e300
            )
            if not ok or (name == "seconds" and v == 0):
                raise ConfigError(f"budget.{name} must be a finite number > 0, got {v!r}")
        given = (self.seconds_per_reconfiguration is None, self.seconds_per_sample is None)
        if given[0] != given[1]:
            raise ConfigError(
                "budget.seconds_per_reconfiguration and budget.seconds_per_sample go together "
                "(the device's cost model)"
            )

    def cost_model(self) -> Any:
        """The :class:`~blacksat.query_plan.CostModel` given here, or ``None``."""
        if self.seconds_per_reconfiguration is None or self.seconds_per_sample is None:
            return None
        from blacksat.query_plan import CostModel

        return CostModel(float(self.seconds_per_reconfiguration), float(self.seconds_per_sample))


@dataclass(frozen=True)
class LogSpec:
    """``[log]``: keep every query in ``queries.sqlite`` (``queries``), recorded under the
    identity ``device_id`` (default ``"<device name>-<seed>"``)."""

    queries: bool = True
    device_id: str = ""


@dataclass(frozen=True)
class SafSpec:
    """``[saf]``: the SAF trajectory loss (:class:`~blacksat.saf.TrajectoryLoss`), off while
    ``lam`` is 0."""

    lam: float = 0.0
    tau: float = 5.0
    lag: int = 2
    warmup: int = 0

    def __post_init__(self) -> None:
        self.build()  # validates every field with TrajectoryLoss's own checks

    @property
    def enabled(self) -> bool:
        return self.lam > 0

    def build(self) -> Any:
        """A fresh :class:`~blacksat.saf.TrajectoryLoss`, or ``None`` when off."""
        from blacksat.saf import TrajectoryLoss

        try:
            saf = TrajectoryLoss(self.lam, self.tau, self.lag, self.warmup)
        except ConfigError as exc:
            raise ConfigError(f"saf: {exc}") from None
        return saf if self.enabled else None


_SECTIONS = ("device", "task", "estimator", "sat", "saf", "train", "budget", "log")


@dataclass(frozen=True)
class RunConfig:
    """A whole run: one field per TOML table (see the module docstring)."""

    device: DeviceSpec = field(default_factory=DeviceSpec)
    task: TaskSpec = field(default_factory=TaskSpec)
    estimator: EstimatorSpec = field(default_factory=EstimatorSpec)
    sat: SatSpec = field(default_factory=SatSpec)
    saf: SafSpec = field(default_factory=SafSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    log: LogSpec = field(default_factory=LogSpec)

    def __post_init__(self) -> None:
        kinds = {
            "device": DeviceSpec,
            "task": TaskSpec,
            "estimator": EstimatorSpec,
            "sat": SatSpec,
            "saf": SafSpec,
            "train": TrainConfig,
            "budget": BudgetSpec,
            "log": LogSpec,
        }
        for name, kind in kinds.items():
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"RunConfig.{name} must be a {kind.__name__}")
        if not self.log.device_id:
            ident = f"{self.device.name}-{self.device.seed}"
            object.__setattr__(self, "log", dataclasses.replace(self.log, device_id=ident))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RunConfig:
        """Build from parsed TOML (``{table: {key: value}}``)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a run config must be a mapping of tables, got {type(data)}")
        unknown = [k for k in data if k not in _SECTIONS]
        if unknown:
            raise ConfigError(f"unknown section {unknown[0]!r}; expected one of {list(_SECTIONS)}")
        parts: dict[str, Any] = {}
        for name, kind in (
            ("device", DeviceSpec),
            ("task", TaskSpec),
            ("estimator", EstimatorSpec),
            ("sat", SatSpec),
            ("saf", SafSpec),
            ("budget", BudgetSpec),
            ("log", LogSpec),
        ):
            parts[name] = kind(**typed_fields(kind, data.get(name, {}), name))
        if "estimator" not in data:  # the best the device allows (resolved when it is built)
            parts["estimator"] = EstimatorSpec(name="auto")
        parts["train"] = train_config(data.get("train", {}))
        return cls(**parts)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read and validate a TOML run file. A run file must name its device (a ``[device]``
        table): the default device is a convenience of the library, not something a run file
        may train on by omission."""
        data = load_toml(path)
        config = cls.from_mapping(data)
        if "device" not in data:
            raise ConfigError(
                f"{str(path)!r} has no [device] table; name the device to train on, e.g. "
                '[device] name = "mzi" (`blacksat devices` lists them)'
            )
        return config

    def to_mapping(self) -> dict[str, dict[str, Any]]:
        """``{table: {key: value}}`` with every default filled in (``None`` kept)."""
        out: dict[str, dict[str, Any]] = {}
        for name in _SECTIONS:
            part = getattr(self, name)
            out[name] = {f.name: _plain(getattr(part, f.name)) for f in dataclasses.fields(part)}
        if out["train"]["batch_size"] is None:
            out["train"]["batch_size"] = "full"
        return out

    def to_toml(self) -> str:
        """The resolved configuration as TOML (``None`` values left out)."""
        sched = self.train.schedule
        if sched is not None and not isinstance(sched, str):
            raise ConfigError("a schedule factory cannot be written to TOML; use a name")
        return dump_toml(self.to_mapping())


def train_config(data: Any) -> TrainConfig:
    """A :class:`~blacksat.TrainConfig` from a ``[train]`` table (see the module docstring for
    the keys that stand for ``None``)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"train must be a table, got {type(data).__name__} {data!r}")
    raw = dict(data)
    if raw.get("batch_size") == "full":
        raw["batch_size"] = None
    kwargs = typed_fields(TrainConfig, raw, "train")
    if "schedule" in kwargs and kwargs["schedule"] not in (None, *BUILT_IN_SCHEDULES):
        names = ", ".join(repr(n) for n in BUILT_IN_SCHEDULES)
        raise ConfigError(f"train.schedule must be one of {names}, got {kwargs['schedule']!r}")
    if "max_steps" in kwargs and "epochs" not in kwargs:
        kwargs["epochs"] = None
    try:
        return TrainConfig(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"train: {exc}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


__all__ = [
    "BudgetSpec",
    "DeviceSpec",
    "EstimatorName",
    "EstimatorSpec",
    "LogSpec",
    "RunConfig",
    "SafSpec",
    "SatSpec",
    "TaskSpec",
    "dump_toml",
    "estimator_args",
    "load_toml",
    "train_config",
    "typed_fields",
]
