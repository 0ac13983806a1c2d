"""The vocabulary of one training step: minibatch, step context, estimate, estimator protocol.

``L(theta) = mean_b loss(task.decode(source(theta, task.encode(x_b))), y_b) + extra terms``
on one minibatch, where the source is a differentiable :class:`~blacksat.Model` or a metered,
query-only :class:`~blacksat.Device`. A **gradient estimator** returns an :class:`Estimate` of
``dL/dtheta`` (and of the gradients of the task's digital layers where the chain rule allows)
together with the device cost it spent.

Controls inside the training core are torch float64 tensors ``(d,)``; they become numpy arrays
only at the device edge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from blacksat.meter import Ledger

#: ``extra(logits (..., B, C), batch) -> (...)``: a term added to the task loss per setting
ExtraLoss = Callable[[torch.Tensor, "Batch"], torch.Tensor]


@dataclass(frozen=True)
class Batch:
    """A minibatch.

    Attributes:
        features: ``(B, f)`` features (the task's dtype).
        labels: ``(B,)`` int64 labels.
        index: ``(B,)`` int64 positions of the samples in their split (used by losses that
            remember per-sample outputs, e.g. the SAF trajectory loss).
    """

    features: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class StepContext:
    """What an estimator may use besides ``theta`` and the batch; owned by the trainer.

    Attributes:
        rng: the run's generator (random directions, random perturbations). Never a global.
        nuisance: nuisance-parameter values to evaluate at (e.g. ``{"temperature": 1.5}``);
            empty for the nominal condition. Only sources built with a ``family`` accept them.
        momentum: the optimizer's first-moment estimate for the controls ``(d,)`` if known
            (a free ascent direction for SAT), else ``None``.
        extra_loss: a term added to the task loss of every evaluated setting (e.g. SAF).
    """

    rng: np.random.Generator
    nuisance: Mapping[str, float] = field(default_factory=dict)
    momentum: torch.Tensor | None = None
    extra_loss: ExtraLoss | None = None

    def with_nuisance(self, nuisance: Mapping[str, float]) -> StepContext:
        """A copy evaluating at other nuisance values (same generator)."""
        return StepContext(self.rng, dict(nuisance), self.momentum, self.extra_loss)


@dataclass
class Estimate:
    """The result of one gradient estimate.

    Attributes:
        grad: ``(d,)`` float64 estimate of ``dL/dtheta``.
        loss: the objective at ``theta`` (or the best estimate the queries allow).
        cost: device cost of this estimate (reconfigurations, samples, queries).
        digital_grads: gradients of the task's *trainable* digital parameters (those of
            ``task.digital_parameters()`` with ``requires_grad``), in order, with ``None``
            entries where no gradient is available (e.g. a front end under zeroth-order
            estimation); ``None`` if the task has no trainable digital layers.
        logits: ``(B, C)`` logits at ``theta`` (or their best estimate), detached; for losses
            that remember outputs (SAF) and for monitoring.
    """

    grad: torch.Tensor
    loss: float
    cost: Ledger = field(default_factory=Ledger)
    digital_grads: list[torch.Tensor | None] | None = None
    logits: torch.Tensor | None = None


@runtime_checkable
class TrainingTask(Protocol):
    """What a gradient estimator needs of a task (:class:`~blacksat.task.Task` is one).

    ``encode(features (B, f)) -> x (B, *in)`` (the digital front end), ``decode(readings
    (..., B, *out)) -> logits (..., B, C)`` (readout and back end), ``loss(logits, labels)``,
    ``logits_model(model, theta, features)`` (the whole path through a model),
    ``digital_parameters()``; ``dtype`` of the computation and the ``back`` layers (or
    ``None``)."""

    dtype: torch.dtype
    back: torch.nn.Module | None

    def encode(self, features: torch.Tensor) -> torch.Tensor: ...

    def decode(self, outputs: torch.Tensor) -> torch.Tensor: ...

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...

    def logits_model(
        self, model: Any, theta: torch.Tensor, features: torch.Tensor
    ) -> torch.Tensor: ...

    def digital_parameters(self) -> Any: ...


@runtime_checkable
class GradientEstimator(Protocol):
    """Estimates ``dL/dtheta`` on a minibatch; never mutates ``theta``.

    ``estimator(theta (d,), batch, ctx) -> Estimate`` and
    ``estimator.evaluate(thetas (K, d), batch, ctx) -> (losses (K,), cost)``: the objective at
    several settings (one device call where a device is involved), used by SAT's adversaries.
    ``task`` is the :class:`~blacksat.task.Task` the estimator differentiates.

    Cost, before any query: ``settings_per_step() -> int`` (settings one estimate sends to the
    device) and ``settings_per_evaluation`` (settings per row of ``evaluate``: 1 on a device, 0
    through a model). Every estimator of blacksat has both (SAT and the wrappers included);
    :mod:`blacksat.builder` sizes schedules from them. A wrapper's memory nests: its
    ``state_dict()`` holds what it wraps under ``"inner_state"``
    (:func:`blacksat.estimators.estimator_state`).
    """

    name: str
    task: Any

    def __call__(self, theta: torch.Tensor, batch: Batch, ctx: StepContext) -> Estimate: ...

    def evaluate(
        self, thetas: torch.Tensor, batch: Batch, ctx: StepContext
    ) -> tuple[torch.Tensor, Ledger]: ...


def objective(
    task: TrainingTask, logits: torch.Tensor, batch: Batch, ctx: StepContext
) -> torch.Tensor:
    """Task loss plus the context's extra term: ``logits (B, C)`` -> scalar,
    ``(K, B, C)`` -> ``(K,)``."""
    loss = task.loss(logits, batch.labels)
    if ctx.extra_loss is not None:
        loss = loss + ctx.extra_loss(logits, batch)
    return loss


def add_costs(*costs: Ledger) -> Ledger:
    """Sum ledgers field by field."""
    return Ledger(
        sum(c.reconfigurations for c in costs),
        sum(c.samples for c in costs),
        sum(c.queries for c in costs),
        sum(c.failures for c in costs),
    )


__all__ = [
    "Batch",
    "Estimate",
    "ExtraLoss",
    "GradientEstimator",
    "StepContext",
    "TrainingTask",
    "add_costs",
    "objective",
]
