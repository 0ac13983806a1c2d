"""Training configuration: the optimizer by name, learning rates, schedules, run length, seeds.

A frozen, validated dataclass (``STYLE.md``, lesson 12): a bad value fails at construction, not
halfway through a run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from blacksat.errors import ConfigError
from blacksat.keep_best import KEEP_CHOICES, KEEP_SMOOTHING
from blacksat.validation import check_int, check_real

#: ``factory(optimizer) -> scheduler``; stepped once per optimization step
ScheduleFactory = Callable[[torch.optim.Optimizer], Any]

_NOT_STEPWISE = {"lbfgs", "sparseadam"}  # need a closure / sparse gradients


def optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    """The ``torch.optim`` optimizers usable by name (lower case: ``"adam"``, ``"sgd"``, ...)."""
    out = {}
    for name, obj in vars(torch.optim).items():
        if (
            isinstance(obj, type)
            and issubclass(obj, torch.optim.Optimizer)
            and obj is not torch.optim.Optimizer
            and name.lower() not in _NOT_STEPWISE
        ):
            out[name.lower()] = obj
    return out


def _int_or_none(name: str, value: Any, low: int) -> None:
    check_int(name, value, low=low, none_ok=True)


def _positive(name: str, value: Any) -> None:
    check_real(name, value, low=0.0, low_open=True)


@dataclass(frozen=True)
class TrainConfig:
    """How to train (validated at construction).

    Attributes:
        optimizer: a ``torch.optim`` optimizer by name, case-insensitive (``"adam"`` default,
            ``"sgd"``, ``"adamw"``, ``"rmsprop"``, ...; see :func:`optimizers`).
        optimizer_kwargs: extra keyword arguments of the optimizer (not ``lr``).
        lr: learning rate of the controls.
        digital_lr: learning rate of the digital layers (default: ``lr``).
        schedule: ``None``, ``"cosine"`` (``CosineAnnealingLR`` over the run's steps),
            ``"hold-cosine"`` (the learning rate held, then a cosine to zero over the last
            ``decay`` share of the steps: ``schedule_kwargs={"decay": 0.3}``, the default),
            ``"step"`` (``StepLR``, by default every epoch) or a factory
            ``factory(optimizer) -> torch.optim.lr_scheduler.LRScheduler``. Stepped once per
            optimization step (``ReduceLROnPlateau`` receives the step's loss).
        schedule_kwargs: keyword arguments of the built-in schedules (e.g. ``eta_min``,
            ``gamma``, ``step_size``).
        epochs: passes over the training split (``None``: only ``max_steps`` bounds the run).
        max_steps: total optimization steps (``None``: only ``epochs``). At least one is set.
        batch_size: minibatch size (``None``: the full training split); the last batch of an
            epoch may be smaller.
        seed: seed of the run's ``numpy.random.Generator`` (shuffling, estimator draws).
        checkpoint_every: write a checkpoint every this many steps (needs a checkpoint path).
        log_every: write a JSONL log line every this many steps.
        progress: show a ``tqdm`` progress bar.
        train_digital: train the task's digital layers jointly (with the estimator's
            ``digital_grads``); ``False`` leaves them untouched.
        on_nonfinite: ``None`` (default: a non-finite reading, loss or gradient raises and the
            step is rolled back) or a :class:`~blacksat.nonfinite.NonFinitePolicy` the trainer
            wraps its estimator in: ``"raise"``, ``"skip"`` (a zero step) or ``"penalize"``;
            its memory is part of the checkpointed state.
        max_consecutive_failures: with ``on_nonfinite``, non-finite steps in a row tolerated
            before the policy raises.
        keep: what the run returns (:attr:`~blacksat.trainer.TrainResult.theta`): ``"last"``
            (the setting after the last step) or ``"best"`` (the setting, and digital layers,
            where a moving average of the steps' losses was lowest: the losses the estimates
            report at no query; :mod:`blacksat.keep_best`). The run itself, and a resume,
            continue from the last setting either way.
        keep_smoothing: with ``keep="best"``, the moving average's weight of the past, in
            ``[0, 1)`` (0 ranks the raw step losses).
        backtrack: with ``keep="best"``, a step whose loss exceeds this many times the kept
            setting's moving average returns the run to the kept setting, clears the optimizer's
            moments and halves its step for the rest of the run (``None``: never; above 1). A
            held step can walk a run off its plateau; on the MRR network's tuning chips a
            20,000-reconfiguration layered-response run jumped from a training loss of 0.2 to 5
            within 15 steps and never came back.
        backtrack_patience: with ``backtrack``, the run also goes back to its kept setting (at
            half the step, as after a jump) once that setting is this many steps old, or this
            many steps after its last backtrack (``None``: only after a jump; at least 1): a
            step held on a plateau, where the first-order estimate no longer points downhill,
            is then halved (and the best setting restored, which ``ReduceLROnPlateau`` does not
            do).
        patience: with ``keep="best"``, the run ends (reason ``"plateau"``) once its kept
            setting is this many steps old: the moving average of the step losses has set no
            new low for that many steps (``None``: never; at least 1).
        no_progress_z: with ``backtrack_patience``, a run that reaches such a stall after it
            has backtracked once (it went back at half the step and stalled again) without
            having progressed ends there (reason ``"no progress"``) instead of backtracking
            again: the lowest moving average of its step losses is not this many standard
            deviations of one step's loss below its first loss
            (:func:`blacksat.keep_best.progressed`), so its kept setting is a chance low and its
            estimates read noise; the caller decides what runs next (``None``: never; above 0).
    """

    optimizer: str = "adam"
    optimizer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    lr: float = 1e-2
    digital_lr: float | None = None
    schedule: str | ScheduleFactory | None = None
    schedule_kwargs: Mapping[str, Any] = field(default_factory=dict)
    epochs: int | None = 10
    max_steps: int | None = None
    batch_size: int | None = 32
    seed: int = 0
    checkpoint_every: int | None = None
    log_every: int = 1
    progress: bool = True
    train_digital: bool = True
    on_nonfinite: str | None = None
    max_consecutive_failures: int = 3
    keep: str = "last"
    keep_smoothing: float = KEEP_SMOOTHING
    backtrack: float | None = None
    backtrack_patience: int | None = None
    patience: int | None = None
    no_progress_z: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.optimizer, str) or self.optimizer.lower() not in optimizers():
            raise ConfigError(
                f"unknown optimizer {self.optimizer!r}; use one of {sorted(optimizers())}"
            )
        object.__setattr__(self, "optimizer", self.optimizer.lower())
        for name in ("optimizer_kwargs", "schedule_kwargs"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise ConfigError(f"{name} must be a mapping, got {type(value).__name__}")
            object.__setattr__(self, name, dict(value))  # never alias the caller's dict
        if "lr" in self.optimizer_kwargs:
            raise ConfigError("pass the learning rate as TrainConfig(lr=...), not in kwargs")
        _positive("lr", self.lr)
        if self.digital_lr is not None:
            _positive("digital_lr", self.digital_lr)
        _int_or_none("epochs", self.epochs, 1)
        _int_or_none("max_steps", self.max_steps, 1)
        if self.epochs is None and self.max_steps is None:
            raise ConfigError("set epochs, max_steps or both: the run needs an end")
        _int_or_none("batch_size", self.batch_size, 1)
        _int_or_none("checkpoint_every", self.checkpoint_every, 1)
        _int_or_none("seed", self.seed, 0)
        if self.seed is None:
            raise ConfigError("seed must be an integer >= 0")
        if self.log_every is None:
            raise ConfigError("log_every must be an integer >= 1")
        _int_or_none("log_every", self.log_every, 1)
        if self.on_nonfinite not in (None, "raise", "skip", "penalize"):
            raise ConfigError(
                "on_nonfinite must be None, 'raise', 'skip' or 'penalize', got "
                f"{self.on_nonfinite!r}"
            )
        if self.max_consecutive_failures is None:
            raise ConfigError("max_consecutive_failures must be an integer >= 1")
        _int_or_none("max_consecutive_failures", self.max_consecutive_failures, 1)
        if self.keep not in KEEP_CHOICES:
            raise ConfigError(f"keep must be 'last' or 'best', got {self.keep!r}")
        if check_real("keep_smoothing", self.keep_smoothing, low=0.0) >= 1.0:
            raise ConfigError(f"keep_smoothing must be in [0, 1), got {self.keep_smoothing!r}")
        if self.backtrack is not None:
            check_real("backtrack", self.backtrack, low=1.0, low_open=True)
            if self.keep != "best":
                raise ConfigError("backtrack returns the run to its kept setting: keep='best'")
        if self.backtrack_patience is not None:
            _int_or_none("backtrack_patience", self.backtrack_patience, 1)
            if self.backtrack is None:
                raise ConfigError("backtrack_patience needs backtrack (a factor above 1)")
        if self.no_progress_z is not None:
            check_real("no_progress_z", self.no_progress_z, low=0.0, low_open=True)
            if self.backtrack_patience is None:
                raise ConfigError(
                    "no_progress_z is read at a stall: it needs backtrack_patience (and backtrack)"
                )
        if self.patience is not None:
            _int_or_none("patience", self.patience, 1)
            if self.keep != "best":
                raise ConfigError("patience counts the steps since the kept setting: keep='best'")
        for name in ("progress", "train_digital"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if not (self.schedule is None or self.schedule in BUILT_IN_SCHEDULES):
            if isinstance(self.schedule, str) or not callable(self.schedule):
                names = ", ".join(repr(n) for n in BUILT_IN_SCHEDULES)
                raise ConfigError(
                    f"schedule must be None, {names} or a factory(optimizer), got {self.schedule!r}"
                )
        # build throwaway instances so bad kwargs fail here, not mid-run
        probe = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        try:
            make: Any = self.optimizer_class()
            opt = make([probe], lr=self.lr, **self.optimizer_kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid optimizer_kwargs for {self.optimizer}: {exc}") from exc
        if self.schedule in BUILT_IN_SCHEDULES:
            try:
                make_schedule(self, opt, total_steps=1, steps_per_epoch=1)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"invalid schedule_kwargs for {self.schedule}: {exc}") from exc

    def optimizer_class(self) -> type[torch.optim.Optimizer]:
        """The ``torch.optim`` class named by :attr:`optimizer`."""
        return optimizers()[self.optimizer]

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary (callables by ``repr``)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


#: the schedules :class:`TrainConfig` builds by name
BUILT_IN_SCHEDULES = ("cosine", "hold-cosine", "step")
#: the share of the steps a ``"hold-cosine"`` schedule decays over (the last ones)
HOLD_COSINE_DECAY = 0.3


class HoldCosine:
    """The ``"hold-cosine"`` learning-rate factor at step ``t`` of ``total``: 1 for the first
    ``1 - decay`` of the steps, then a cosine to 0 over the rest (a picklable
    ``LambdaLR`` function; ``decay = 1`` is a plain cosine, ``0`` a constant)."""

    def __init__(self, total: int, decay: float) -> None:
        if not 0.0 <= float(decay) <= 1.0:
            raise ValueError(f"hold-cosine decay must be in [0, 1], got {decay!r}")
        self.total, self.decay = int(total), float(decay)
        self.hold = round(self.total * (1.0 - self.decay))

    def __call__(self, t: int) -> float:
        if t < self.hold:
            return 1.0
        span = max(1, self.total - self.hold)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (t - self.hold) / span)))


def make_schedule(
    config: TrainConfig, optimizer: torch.optim.Optimizer, *, total_steps: int, steps_per_epoch: int
) -> Any:
    """The learning-rate scheduler of ``config`` on ``optimizer`` (``None`` without one)."""
    s = config.schedule
    if s is None:
        return None
    kw = dict(config.schedule_kwargs)
    if s == "cosine":
        kw.setdefault("T_max", max(1, total_steps))
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, **kw)
    if s == "hold-cosine":
        decay = kw.pop("decay", HOLD_COSINE_DECAY)
        if kw:
            raise TypeError(f"hold-cosine takes only 'decay', got {sorted(kw)}")
        shape = HoldCosine(max(1, total_steps), decay)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, shape)
    if s == "step":
        kw.setdefault("step_size", max(1, steps_per_epoch))
        return torch.optim.lr_scheduler.StepLR(optimizer, **kw)
    sched = s(optimizer)  # type: ignore[operator]
    if not (
        callable(getattr(sched, "step", None)) and callable(getattr(sched, "state_dict", None))
    ):
        raise ConfigError(
            f"the schedule factory returned {type(sched).__name__}, not a torch lr scheduler"
        )
    return sched


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


__all__ = ["ScheduleFactory", "TrainConfig", "make_schedule", "optimizers"]
