"""The training loop: a ``torch.optim`` optimizer on the controls (and on the digital layers of a
hybrid task), driven by any :class:`~blacksat.objective.GradientEstimator`.

One step (``DESIGN.md``, data flow)::

    batch  <- next minibatch of the epoch's permutation (drawn from the run's generator)
    est    <- estimator(theta, batch, StepContext(rng, momentum, extra_loss=SAF term))
    theta.grad, digital .grad <- est.grad, est.digital_grads
    keep="best": theta (the setting est.loss was read at) kept if the loss average is lowest
    optimizer step; scheduler step; theta <- space.project(theta)   (clip, or wrap a periodic
    control; no level snapping)
    SAF records est.logits (readings already paid for); JSONL log line; checkpoint every N steps

A step is a transaction: the estimator is the only call that reaches a device, and it runs before
anything is mutated. If it raises (budget exhausted, device failure, Ctrl-C), the run's generator
and data position are rolled back, so the trainer holds the last good state exactly. A
:class:`~blacksat.errors.BudgetExhausted` ends the run cleanly with reason ``"budget"``; other
errors propagate after a checkpoint of the last good state is written (when a path is set).

All state lives in one :class:`~blacksat.checkpoint.TrainState`; :meth:`Trainer.resume` from a
checkpoint ends bitwise identical to an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from blacksat.checkpoint import TrainState, load_checkpoint, save_checkpoint
from blacksat.errors import BudgetExhausted, ConfigError, NonFiniteError, ShapeError
from blacksat.estimators import estimator_state, load_estimator_state
from blacksat.keep_best import BestSetting, kept_step
from blacksat.meter import Ledger
from blacksat.objective import Batch, Estimate, StepContext, add_costs
from blacksat.space import ParamSpace
from blacksat.train_config import ScheduleFactory, TrainConfig, make_schedule, optimizers

StopReason = Literal["completed", "budget", "plateau", "no progress"]


@dataclass(frozen=True)
class TrainResult:
    """The end of a run.

    Attributes:
        state: the final :class:`TrainState` (the last good state when stopped by the budget).
        reason: ``"completed"`` (epochs / max_steps reached), ``"budget"``, ``"plateau"``
            (``TrainConfig.patience`` steps without a new kept setting) or ``"no progress"``
            (a stall before the loss ever fell by more than its noise:
            ``TrainConfig.no_progress_z``).
        error: the :class:`~blacksat.errors.BudgetExhausted` that stopped the run, if any.
    """

    state: TrainState
    reason: StopReason
    error: BudgetExhausted | None = None

    @property
    def theta(self) -> np.ndarray:
        """The controls the run returns ``(d,)``, a fresh float64 array: the last step's, or
        with ``TrainConfig(keep="best")`` the best measured (:attr:`best_step`)."""
        kept, best = self.best_step, self.state.best
        if kept is not None and best is not None and kept < self.state.step:
            return torch.as_tensor(best["theta"]).detach().numpy().copy()
        return self.last_theta

    @property
    def last_theta(self) -> np.ndarray:
        """The controls after the last step ``(d,)`` (what a resume continues from)."""
        return self.state.theta.detach().numpy().copy()

    @property
    def best_step(self) -> int | None:
        """With ``keep="best"``: the steps completed before the kept setting was read (0: the
        start), else ``None``. When the best was the last step's reading, the run was still
        descending and the setting after its last step, which no estimate read, is returned
        (:func:`~blacksat.keep_best.kept_step`): ``best_step`` is then :attr:`steps`."""
        return kept_step(self.state.best, self.state.step)

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per completed step (``step``, ``epoch``, ``loss``, ``lr``, ``grad_norm``)."""
        return self.state.history

    @property
    def ledger(self) -> Ledger:
        """Cumulative device cost (everything charged, including a refused step's queries)."""
        return self.state.ledger

    @property
    def steps(self) -> int:
        """Optimization steps completed."""
        return self.state.step


def _device_rng(meter: Any) -> dict[str, Any] | None:
    """The random state of the simulator behind ``meter`` (``None`` without a meter, or for a
    device that has none)."""
    fn = getattr(meter, "rng_state", None)
    return fn() if callable(fn) else None


class Trainer:
    """Trains the controls (and digital layers) of a PNN task with a gradient estimator.

    Args:
        task: the :class:`~blacksat.task.Task` (``task.batch("train", index)`` builds batches;
            its digital layers are trained **in place**).
        estimator: a :class:`~blacksat.objective.GradientEstimator` over ``task``.
        space: the controls' :class:`~blacksat.ParamSpace`; ``theta`` is projected onto it
            after every step (:meth:`~blacksat.ParamSpace.project`: clipped into the bounds, a
            periodic control wrapped; the continuous relaxation is kept: no level snapping).
        config: a :class:`TrainConfig` (default ``TrainConfig()``).
        meter: the :class:`~blacksat.meter.MeteredDevice` the estimator queries, if any: its
            ledger is the run's ledger, saved in checkpoints and restored on resume.
        saf: a :class:`~blacksat.saf.TrajectoryLoss` to add the SAF term to the task loss.
        log_path: JSONL log file (appended to): a ``start`` line, one ``step`` line every
            ``log_every`` steps, an ``end`` line.
        checkpoint_path: where checkpoints go (every ``checkpoint_every`` steps, at the end of a
            run, and when a step fails).
    """

    #: what the progress bar says (e.g. the phase of a longer job)
    label: str = "train"

    def __init__(
        self,
        task: Any,
        estimator: Any,
        space: ParamSpace,
        config: TrainConfig | None = None,
        *,
        meter: Any = None,
        saf: Any = None,
        log_path: str | os.PathLike[str] | None = None,
        checkpoint_path: str | os.PathLike[str] | None = None,
    ) -> None:
        config = TrainConfig() if config is None else config
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}")
        if not isinstance(space, ParamSpace):
            raise ConfigError(f"space must be a ParamSpace, got {type(space).__name__}")
        if not callable(estimator):
            raise ConfigError(f"estimator must be callable, got {type(estimator).__name__}")
        if getattr(estimator, "task", task) is not task:
            raise ConfigError("the estimator was built for a different task object")
        if not (hasattr(task, "batch") and hasattr(task, "data")):
            raise ConfigError("task must provide data and batch(split, index) (a blacksat Task)")
        if meter is not None and not isinstance(getattr(meter, "ledger", None), Ledger):
            raise ConfigError("meter must be a MeteredDevice (an object with a Ledger `ledger`)")
        dev_space = getattr(meter, "space", None)
        if isinstance(dev_space, ParamSpace) and (
            dev_space.dim != space.dim
            or np.any(space.lower < dev_space.lower)
            or np.any(space.upper > dev_space.upper)
        ):
            raise ConfigError(
                f"the training space {space!r} must lie within the device's {dev_space!r}"
            )
        if saf is not None and not all(
            callable(getattr(saf, m, None)) for m in ("extra", "record", "state_dict")
        ):
            raise ConfigError("saf must be a TrajectoryLoss (extra, record, state_dict)")
        if config.checkpoint_every is not None and checkpoint_path is None:
            raise ConfigError("checkpoint_every needs a checkpoint_path")
        if config.on_nonfinite is not None:
            from blacksat.nonfinite import NonFinitePolicy

            estimator = NonFinitePolicy(
                estimator,
                config.on_nonfinite,  # type: ignore[arg-type]
                max_consecutive=config.max_consecutive_failures,
                meter=meter,
            )
        self.task, self.estimator, self.space, self.config = task, estimator, space, config
        self.meter, self.saf = meter, saf
        #: a simulated device's random state before the step that failed (None after a good one)
        self._device_rng_good: dict[str, Any] | None = None
        self.log_path = None if log_path is None else Path(log_path)
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.n_train = len(task.data.split("train")[1])
        bs = config.batch_size
        self.batch_size = self.n_train if bs is None else min(int(bs), self.n_train)
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        by_epochs = math.inf if config.epochs is None else config.epochs * self.steps_per_epoch
        by_steps = math.inf if config.max_steps is None else config.max_steps
        self.total_steps = int(min(by_epochs, by_steps))
        all_digital = list(task.digital_parameters()) if hasattr(task, "digital_parameters") else []
        self._all_digital = all_digital
        self._digital = [p for p in all_digital if p.requires_grad] if config.train_digital else []
        self._theta: torch.nn.Parameter = None  # type: ignore[assignment]  # set by _build
        self._clean = True
        self._best: BestSetting | None = None

    # ------------------------------------------------------------------ public API
    def fit(self, theta0: Any) -> TrainResult:
        """Train from controls ``theta0 (d,)`` (in bounds, finite), a fresh optimizer and the
        task's current digital layers; returns the :class:`TrainResult`."""
        theta = self._initial(theta0)
        if self.saf is not None:
            self.saf.reset()
        self._build(theta)
        self._rng = np.random.default_rng(self.config.seed)
        self._step = self._epoch = self._offset = 0
        self._order: np.ndarray | None = None
        self._ledger = self.meter.ledger if self.meter is not None else Ledger()
        self._history: list[dict[str, Any]] = []
        self._elapsed = 0.0
        self._best = self._new_best()
        return self._run(resumed=False)

    def resume(self, source: str | os.PathLike[str] | TrainState) -> TrainResult:
        """Continue a run from a checkpoint file or a :class:`TrainState` (e.g. the state of a
        run stopped by its budget, after the budget was raised)."""
        state = source if isinstance(source, TrainState) else load_checkpoint(source)
        self.load_state(state)
        return self._run(resumed=True)

    def snapshot(self) -> TrainState:
        """The current state (deep copy). Between steps this is always a consistent state."""
        self._require_started()
        state = TrainState(
            theta=self._theta.detach(),
            step=self._step,
            epoch=self._epoch,
            order=None if self._order is None else torch.as_tensor(self._order),
            offset=self._offset,
            rng=dict(self._rng.bit_generator.state),
            optimizer=self._opt.state_dict(),
            scheduler=None if self._sched is None else self._sched.state_dict(),
            digital=self._digital_state(),
            ledger=self._ledger,
            history=self._history,
            saf=None if self.saf is None else self.saf.state_dict(),
            estimator=estimator_state(self.estimator),
            device_rng=self._device_rng_now(),
            elapsed=self._elapsed,
            meta=self._meta(),
            best=None if self._best is None else self._best.state_dict(),
        )
        return state.copy()

    def _digital_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """The task's digital layers' state dicts (``front``, ``back``; live tensors)."""
        return {
            name: m.state_dict()
            for name in ("front", "back")
            if (m := getattr(self.task, name, None)) is not None
        }

    def _backtrack(self, loss: float) -> bool:
        """``TrainConfig.backtrack``: after a step whose ``loss`` jumped above that many times
        the kept setting's moving average (or, with ``backtrack_patience``, once the kept
        setting or the last backtrack is that many steps old), continue from the kept setting
        (the digital layers too) with the optimizer's moments cleared and half the step;
        ``True`` if it did."""
        factor, best = self.config.backtrack, self._best
        if factor is None or best is None or best.theta is None:
            return False
        patience = self.config.backtrack_patience
        stalled = (
            patience is not None and self._step - max(best.step, self._last_backtrack()) >= patience
        )
        if not (loss > factor * best.best or stalled):
            return False
        with torch.no_grad():
            self._theta.copy_(best.theta.to(self._theta.dtype))
        for name, sd in best.digital.items():
            getattr(self.task, name).load_state_dict(sd)
        self._opt.state.clear()
        for group in self._opt.param_groups:
            group["lr"] *= 0.5
        if self._sched is not None and hasattr(self._sched, "base_lrs"):
            self._sched.base_lrs = [0.5 * lr for lr in self._sched.base_lrs]
        best.average = best.best  # the average starts again from the kept setting's
        return True

    def _gives_up(self, loss: float) -> bool:
        """``TrainConfig.no_progress_z``: after the step that read ``loss``, the run is at a
        stall (``backtrack_patience`` steps after its kept setting or its last backtrack), has
        backtracked before, and its step losses never fell by more than their noise
        (:func:`~blacksat.keep_best.progressed`): it ends here instead of backtracking again."""
        from blacksat.keep_best import progressed

        z, patience, best = self.config.no_progress_z, self.config.backtrack_patience, self._best
        if z is None or patience is None or best is None or best.theta is None:
            return False
        last = self._last_backtrack()
        if last < 0 or self._step - max(best.step, last) < patience:
            return False
        losses = [*(h["loss"] for h in self._history), loss]
        return not progressed(losses, z, self.config.keep_smoothing)

    def _no_progress(self) -> bool:
        """The last step gave up (:meth:`_gives_up`; recorded in the history, which the
        checkpoint keeps)."""
        return bool(self._history) and bool(self._history[-1].get("no_progress"))

    def _last_backtrack(self) -> int:
        """The steps completed before the run's last backtrack (-1: none), from its history
        (which the checkpoint keeps)."""
        for h in reversed(self._history):
            if h.get("backtracked"):
                return int(h["step"]) - 1
        return -1

    def _new_best(self) -> BestSetting | None:
        cfg = self.config
        return BestSetting(cfg.keep_smoothing) if cfg.keep == "best" else None

    def _device_rng_now(self) -> dict[str, Any] | None:
        """A simulated device's random state for a snapshot: as it was before the step that
        just failed (the snapshot is then the last good state), else as it is now."""
        if self._device_rng_good is not None:
            return self._device_rng_good
        return _device_rng(self.meter)

    def load_state(self, state: TrainState) -> None:
        """Make ``state`` the trainer's live state (controls, optimizer, scheduler, digital
        layers, position, generator, ledger, SAF memory)."""
        self._check_meta(state)
        self._build(state.theta)
        for name, sd in state.digital.items():
            module = getattr(self.task, name, None)
            if module is None:
                raise ConfigError(
                    f"the checkpoint holds a digital layer {name!r}, but the task has none"
                )
            module.load_state_dict(sd)
        self._opt.load_state_dict(state.optimizer)
        if (self._sched is None) != (state.scheduler is None):
            raise ConfigError("the checkpoint and this config disagree on having a schedule")
        if self._sched is not None:
            self._sched.load_state_dict(state.scheduler)
        self._rng = state.make_rng()
        self._step, self._epoch, self._offset = state.step, state.epoch, state.offset
        self._order = None if state.order is None else state.order.numpy().copy()
        self._history = [dict(h) for h in state.history]
        self._elapsed = state.elapsed
        self._best = self._new_best()
        if self._best is not None and state.best is not None:
            self._best.load_state_dict(state.best)
        if self.saf is not None:
            if state.saf is None:
                self.saf.reset()
            else:
                self.saf.load_state_dict(state.saf)
        load_estimator_state(self.estimator, state.estimator)
        restore_rng = getattr(self.meter, "set_rng_state", None)
        if callable(restore_rng) and state.device_rng is not None:
            restore_rng(state.device_rng)
        self._device_rng_good = None
        self._ledger = state.ledger
        if self.meter is not None:
            self._ledger = self._restore_meter(state.ledger)

    def save_checkpoint(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the current state atomically to ``path`` (default: the checkpoint path)."""
        target = path if path is not None else self.checkpoint_path
        if target is None:
            raise ConfigError("no checkpoint path given")
        return save_checkpoint(self.snapshot(), target)

    # ------------------------------------------------------------------ the loop
    def _run(self, *, resumed: bool) -> TrainResult:
        cfg = self.config
        t0, base = time.perf_counter(), self._elapsed
        reason: StopReason = "completed"
        error: BudgetExhausted | None = None
        total = self.total_steps
        bar = tqdm(
            total=total,
            initial=min(self._step, total),
            disable=not cfg.progress,
            desc=self.label,
            unit="step",
            dynamic_ncols=True,
        )
        with bar, self._logger() as log:
            log(
                {
                    "event": "start",
                    "step": self._step,
                    "epoch": self._epoch,
                    "resumed": resumed,
                    "config": cfg.describe(),
                    "ledger": _ledger_dict(self._ledger),
                }
            )
            while not self._finished():
                try:
                    rec = self._one_step()
                except BudgetExhausted as exc:
                    reason, error = "budget", exc
                    break
                except BaseException as exc:
                    self._sync_ledger()
                    self._elapsed = base + time.perf_counter() - t0
                    if self.checkpoint_path is not None and self._clean:
                        with contextlib.suppress(Exception):
                            self.save_checkpoint()
                    log(self._end_record("error", repr(exc)))
                    raise
                self._elapsed = base + time.perf_counter() - t0
                rec["wall_time"] = self._elapsed
                if self._step % cfg.log_every == 0:
                    log(rec)
                bar.update(1)
                if cfg.progress:
                    bar.set_postfix(loss=f"{rec['loss']:.4g}", epoch=rec["epoch"], refresh=False)
                if cfg.checkpoint_every is not None and self._step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
            if reason == "completed" and self._no_progress():
                reason = "no progress"
            elif reason == "completed" and self._stalled():
                reason = "plateau"
            self._sync_ledger()
            self._elapsed = base + time.perf_counter() - t0
            state = self.snapshot()
            if self.checkpoint_path is not None:
                save_checkpoint(state, self.checkpoint_path)
            log(self._end_record(reason, None if error is None else str(error)))
        kept = kept_step(state.best, state.step)
        if self._best is not None and self._digital and kept is not None and kept < state.step:
            # the task's digital layers end as they were at the kept setting (the state keeps
            # the last ones, which a resume continues from)
            for name, sd in self._best.digital.items():
                getattr(self.task, name).load_state_dict(sd)
        return TrainResult(state=state, reason=reason, error=error)

    def _one_step(self) -> dict[str, Any]:
        rng_before = self._rng.bit_generator.state
        order_before = self._order
        device_before = _device_rng(self.meter)  # a simulator's noise, for a failed step
        try:  # nothing below mutates the run before the estimate is in and checked
            if self._order is None:
                self._order = self._rng.permutation(self.n_train)
            index = self._order[self._offset : self._offset + self.batch_size]
            batch = self.task.batch("train", index.copy())
            epoch = self._epoch
            extra = None if self.saf is None else functools.partial(self.saf.extra, epoch=epoch)
            ctx = StepContext(rng=self._rng, momentum=self._momentum(), extra_loss=extra)
            theta_read = self._theta.detach().clone()  # the setting the estimate's loss is of
            est = self.estimator(theta_read.clone(), batch, ctx)
            grad, digital, loss = self._checked(est, batch)
        except BaseException:
            self._rng.bit_generator.state = rng_before
            self._order = order_before
            # the last good state holds the simulator's streams as they were before this step
            self._device_rng_good = device_before
            raise
        self._device_rng_good = None
        # ---- commit (no call below reaches a device)
        self._clean = False  # a failure from here on leaves no state worth checkpointing
        if self._best is not None and self._best.improves(loss):
            layers = self._digital_state() if self._digital else None
            self._best.keep(self._step, theta_read, layers)  # before the step moves them
        lr = float(self._opt.param_groups[0]["lr"])
        self._theta.grad = grad
        for p in self._digital:
            p.grad = None
        for p, g in digital:
            p.grad = g
        self._opt.step()
        with torch.no_grad():
            self._theta.copy_(torch.as_tensor(self.space.project(self._theta)))  # clip or wrap
        self._opt.zero_grad(set_to_none=True)
        if not all(bool(torch.isfinite(p).all()) for p in (self._theta, *self._digital)):
            raise NonFiniteError(
                f"the {self.config.optimizer} step produced non-finite parameters (lr too "
                "large?); the last checkpoint is kept"
            )
        if self._sched is not None:
            if isinstance(self._sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self._sched.step(loss)
            else:
                self._sched.step()
        gave_up = self._gives_up(loss)
        backtracked = not gave_up and self._backtrack(loss)
        if self.saf is not None and est.logits is not None:
            self.saf.record(batch, est.logits, epoch)
        self._offset += len(index)
        if self._offset >= self.n_train:
            self._epoch, self._offset, self._order = self._epoch + 1, 0, None
        self._step += 1
        if self.meter is not None:
            self._ledger = self.meter.ledger
        else:
            self._ledger = add_costs(self._ledger, est.cost)
        grad_norm = float(torch.linalg.vector_norm(grad))
        hist = {"step": self._step, "epoch": epoch, "loss": loss, "lr": lr, "grad_norm": grad_norm}
        if backtracked:
            hist["backtracked"] = True
        if gave_up:
            hist["no_progress"] = True
        self._history.append(hist)
        self._clean = True
        return {"event": "step", **hist, "batch": len(batch), "ledger": _ledger_dict(self._ledger)}

    def _checked(
        self, est: Estimate, batch: Batch
    ) -> tuple[torch.Tensor, list[tuple[torch.nn.Parameter, torch.Tensor]], float]:
        """Validate an estimate before anything is applied."""
        d = self.space.dim
        grad = torch.as_tensor(est.grad).detach().to(torch.float64).clone()
        if grad.shape != (d,):
            raise ShapeError(
                f"the estimator returned a gradient of shape {tuple(grad.shape)}, expected ({d},)"
            )
        if not bool(torch.isfinite(grad).all()):
            raise NonFiniteError("the estimator returned a non-finite gradient; nothing applied")
        loss = float(est.loss)
        if not math.isfinite(loss):
            raise NonFiniteError(f"the estimator returned a non-finite loss ({loss})")
        if self.saf is not None and est.logits is not None:
            shape = tuple(est.logits.shape)
            if len(shape) != 2 or shape[0] != len(batch):
                raise ShapeError(
                    f"Estimate.logits must be (B, C) with B = {len(batch)}, got {shape}"
                )
        pairs: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        dg = est.digital_grads
        if self._digital and dg is not None:
            dg = list(dg)
            if len(dg) == len(self._all_digital):  # aligned with task.digital_parameters()
                trainable = {id(p) for p in self._digital}
                aligned = [
                    (p, g) for p, g in zip(self._all_digital, dg, strict=True) if id(p) in trainable
                ]
            elif len(dg) == len(self._digital):  # aligned with the trainable ones only
                aligned = list(zip(self._digital, dg, strict=True))
            else:
                raise ShapeError(
                    f"the estimator returned {len(dg)} digital gradients for "
                    f"{len(self._all_digital)} digital parameters"
                )
            for p, g in aligned:
                if g is None:
                    continue
                g = torch.as_tensor(g).detach().to(p.dtype).clone()
                if g.shape != p.shape:
                    raise ShapeError(
                        f"a digital gradient has shape {tuple(g.shape)}, its parameter "
                        f"{tuple(p.shape)}; nothing applied"
                    )
                if not bool(torch.isfinite(g).all()):
                    raise NonFiniteError("a digital gradient holds NaN/inf; nothing applied")
                pairs.append((p, g))
        return grad, pairs, loss

    # ------------------------------------------------------------------ helpers
    def _finished(self) -> bool:
        cfg = self.config
        return (
            (cfg.max_steps is not None and self._step >= cfg.max_steps)
            or (cfg.epochs is not None and self._epoch >= cfg.epochs)
            or self._stalled()
            or self._no_progress()
        )

    def _stalled(self) -> bool:
        """``TrainConfig.patience``: the kept setting is that many steps old (read after
        ``best.step`` completed steps; the last estimate read the setting after
        ``self._step - 1``)."""
        patience, best = self.config.patience, self._best
        return (
            patience is not None
            and best is not None
            and best.step >= 0
            and self._step - 1 - best.step >= patience
        )

    def _initial(self, theta0: Any) -> torch.Tensor:
        arr = theta0.detach().cpu().numpy() if isinstance(theta0, torch.Tensor) else theta0
        self.space.validate(arr)  # shape, finiteness, bounds (raises); snapping is not kept
        return torch.tensor(np.array(arr, dtype=np.float64))

    def _build(self, theta: torch.Tensor) -> None:
        cfg = self.config
        if tuple(theta.shape) != (self.space.dim,):
            raise ShapeError(f"theta has shape {tuple(theta.shape)}, the space ({self.space.dim},)")
        self._theta = torch.nn.Parameter(theta.detach().to(torch.float64).clone())
        self._clean = True
        groups: list[dict[str, Any]] = [{"params": [self._theta], "lr": cfg.lr}]
        if self._digital:
            groups.append({"params": self._digital, "lr": cfg.digital_lr or cfg.lr})
        make: Any = cfg.optimizer_class()
        self._opt = make(groups, lr=cfg.lr, **cfg.optimizer_kwargs)
        self._sched = make_schedule(
            cfg, self._opt, total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch
        )

    def _momentum(self) -> torch.Tensor | None:
        st = self._opt.state.get(self._theta)
        if not st:
            return None
        m = st.get("exp_avg", st.get("momentum_buffer"))
        return None if m is None else m.detach().to(torch.float64).clone()

    def _meta(self) -> dict[str, Any]:
        return {
            "d": self.space.dim,
            "n_train": self.n_train,
            "batch_size": self.batch_size,
            "optimizer": self.config.optimizer,
            "n_digital": len(self._digital),
            "space": self.space.to_dict(),  # bounds, levels, periods: TrainState.space
        }

    def _check_meta(self, state: TrainState) -> None:
        mine = self._meta()
        saved = state.space  # None for a checkpoint written before spaces were kept
        if saved is not None and saved != self.space:
            raise ConfigError(
                f"the checkpoint was trained in {saved!r}, this trainer's space is "
                f"{self.space!r} (bounds, levels or periodic controls differ)"
            )
        mine.pop("space")
        bad = {k: (v, mine[k]) for k, v in state.meta.items() if k in mine and v != mine[k]}
        if bad:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in bad.items())
            raise ConfigError(f"the checkpoint does not fit this trainer ({detail})")

    def _restore_meter(self, saved: Ledger) -> Ledger:
        """The same meter (its ledger already covers ``saved``) keeps counting; a fresh one
        (new process) is restored to ``saved`` plus whatever it spent meanwhile."""
        cur = self.meter.ledger
        names = [f.name for f in dataclasses.fields(Ledger)]
        if all(getattr(cur, n) >= getattr(saved, n) for n in names):
            return cur
        if not callable(getattr(self.meter, "restore", None)):
            raise ConfigError("the meter cannot restore a ledger (needs MeteredDevice.restore)")
        self.meter.restore(add_costs(saved, cur))
        return self.meter.ledger

    def _sync_ledger(self) -> None:
        if self.meter is not None:
            self._ledger = self.meter.ledger

    def _end_record(self, reason: str, detail: str | None) -> dict[str, Any]:
        rec = {
            "event": "end",
            "reason": reason,
            "detail": detail,
            "step": self._step,
            "epoch": self._epoch,
            "ledger": _ledger_dict(self._ledger),
            "wall_time": self._elapsed,
        }
        if self._best is not None and self._best.theta is not None:
            # what TrainResult.best_step says: the last setting when the run was still descending
            rec["kept_step"] = kept_step(
                {"theta": self._best.theta, "step": self._best.step}, self._step
            )
        return rec

    @contextlib.contextmanager
    def _logger(self) -> Iterator[Callable[[dict[str, Any]], None]]:
        if self.log_path is None:
            yield lambda rec: None
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as fh:

            def write(rec: dict[str, Any]) -> None:
                fh.write(json.dumps(rec) + "\n")
                fh.flush()

            yield write

    def _require_started(self) -> None:
        if self._theta is None:
            raise ConfigError("the trainer holds no state yet: call fit() or resume() first")

    def __repr__(self) -> str:
        return (
            f"Trainer(estimator={self.estimator!r}, space={self.space!r}, "
            f"optimizer={self.config.optimizer!r}, lr={self.config.lr}, saf={self.saf!r})"
        )


def _ledger_dict(ledger: Ledger) -> dict[str, int]:
    return dataclasses.asdict(ledger)


__all__ = [
    "ScheduleFactory",
    "StopReason",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "Trainer",
    "make_schedule",
    "optimizers",
]
