"""The demo's on-chip phase: query-only SAT fine-tuning and a nevergrad baseline, each under the
same hard reconfiguration budget on its own :class:`~blacksat.MeteredDevice` around the chip,
each from the same start, each recording its iterates so that accuracy can be traced against
the reconfigurations spent.

- :func:`zo_sat`: :class:`~blacksat.estimators.ZerothOrder` descent inside :func:`~blacksat.sat`
  (minibatch estimates from queries alone), Adam with a cosine schedule over the steps the
  budget allows, digital layers frozen. Iterate ``i`` is recorded with the reconfigurations
  spent before it existed.
- :func:`nevergrad`: :func:`blacksat.ng.adapter.minimize` with a registry optimizer on the loss
  over the full training split. Its anytime iterate after each device call is the best
  candidate measured so far (lowest loss told); the final one is the optimizer's recommendation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from blacksat.meter import Ledger, MeteredDevice
from blacksat.ng.adapter import DeviceObjective, minimize


@dataclass
class OnlineRun:
    """The outcome of an on-chip method.

    Attributes:
        theta: final controls ``(d,)``.
        ledger: what the method spent on its metered device.
        stop: why it stopped (``"budget"``, ``"completed"``).
        steps: optimizer steps (blacksat) or device calls (nevergrad).
        final_loss: last minibatch loss (blacksat) or lowest loss told (nevergrad).
        iterates: ``(reconfigurations spent, theta (d,))`` in order of spending.
    """

    theta: np.ndarray
    ledger: Ledger
    stop: str
    steps: int
    final_loss: float
    iterates: list[tuple[int, np.ndarray]] = field(default_factory=list)

    def at(self, budgets: Any) -> np.ndarray:
        """The iterates held after spending each of ``budgets`` reconfigurations, ``(K, d)``:
        the last iterate whose spend is at most the checkpoint."""
        spent = np.array([r for r, _ in self.iterates])
        out = []
        for b in np.asarray(budgets, dtype=np.int64):
            i = int(np.searchsorted(spent, b, side="right")) - 1
            out.append(self.iterates[max(i, 0)][1])
        return np.stack(out)


class _Iterates:
    """Wraps an estimator; records ``(reconfigurations spent, theta)`` before each estimate."""

    def __init__(self, inner: Any, meter: MeteredDevice) -> None:
        self.inner, self.meter = inner, meter
        self.task, self.name = inner.task, getattr(inner, "name", "estimator")
        self.rows: list[tuple[int, np.ndarray]] = []

    def __call__(self, theta: torch.Tensor, batch: Any, ctx: Any) -> Any:
        spent = self.meter.ledger.reconfigurations
        self.rows.append((spent, theta.detach().numpy().astype(np.float64).copy()))
        return self.inner(theta, batch, ctx)

    def evaluate(self, thetas: torch.Tensor, batch: Any, ctx: Any) -> Any:
        return self.inner.evaluate(thetas, batch, ctx)


def zo_sat(
    task: Any,
    chip: Any,
    theta0: np.ndarray,
    *,
    budget: int,
    q: int,
    sigma: float,
    lr: float,
    batch_size: int,
    perturbation: Any,
    seed: int,
    progress: bool,
    label: str = "query-only SAT",
) -> OnlineRun:
    """Query-only SAT (average case over ``perturbation``, one draw per step; ``None``: plain
    zeroth-order descent) from ``theta0`` with at most ``budget`` reconfigurations; the task's
    digital layers stay as they are. ``label``: what the progress bar says."""
    from blacksat.builder import EstimatorSpec, SatSpec, build_estimator
    from blacksat.train_config import TrainConfig
    from blacksat.trainer import Trainer

    meter = MeteredDevice(chip, max_reconfigurations=budget)
    built = build_estimator(
        EstimatorSpec("zeroth_order", args={"q": q, "sigma": sigma}),
        None if perturbation is None else SatSpec(perturbation="demo", mode="average"),
        task=task,
        device=meter,
        chip=chip,
        perturbations=None if perturbation is None else {"demo": perturbation},
    )
    rec = _Iterates(built.estimator, meter)
    cfg = TrainConfig(
        lr=lr,
        schedule="cosine",
        epochs=None,
        max_steps=built.max_steps(budget),
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        train_digital=False,
    )
    trainer = Trainer(task, rec, chip.space, cfg, meter=meter)
    trainer.label = label
    res = trainer.fit(theta0)
    iterates = [*rec.rows, (meter.ledger.reconfigurations, res.theta)]
    loss = res.history[-1]["loss"] if res.history else float("nan")
    return OnlineRun(res.theta, meter.ledger, res.reason, res.steps, loss, iterates)


class _Tracked(DeviceObjective):
    """A :class:`DeviceObjective` that remembers the best setting measured so far after each
    device call (and advances a progress bar by the reconfigurations spent)."""

    def __init__(self, *args: Any, bar: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows: list[tuple[int, np.ndarray]] = []
        self.best = (np.inf, None)
        self.bar = bar

    def losses(self, thetas: np.ndarray) -> np.ndarray:
        before = self.device.ledger.reconfigurations
        out = super().losses(thetas)
        i = int(np.argmin(out))
        if np.isfinite(out[i]) and out[i] < self.best[0]:
            self.best = (float(out[i]), self.space.project(thetas[i]))
        spent = self.device.ledger.reconfigurations
        if self.best[1] is not None:
            self.rows.append((spent, self.best[1].copy()))
        if self.bar is not None:
            self.bar.update(spent - before)
        return out


def nevergrad(
    task: Any,
    chip: Any,
    theta0: np.ndarray,
    *,
    budget: int,
    optimizer: str,
    workers: int,
    seed: int,
    progress: bool,
    label: str | None = None,
    batch_size: int | None = None,
) -> OnlineRun:
    """A nevergrad optimizer from ``theta0`` on the full-training-split loss of the chip, at
    most ``budget`` reconfigurations (``batch_size``: minibatches of the training split
    instead); the task's digital layers are frozen."""
    meter = MeteredDevice(chip, max_reconfigurations=budget)
    with tqdm(
        total=budget,
        disable=not progress,
        desc=label or f"nevergrad {optimizer}",
        unit="reconf",
        dynamic_ncols=True,
    ) as bar:
        obj = _Tracked(task, meter, batch_size=batch_size, seed=seed, bar=bar)
        res = minimize(obj, optimizer, budget=budget, num_workers=workers, seed=seed, init=theta0)
    iterates = [(0, np.asarray(theta0, dtype=np.float64).copy()), *obj.rows]
    iterates.append((meter.ledger.reconfigurations, res.theta))
    return OnlineRun(res.theta, meter.ledger, res.stop, len(res.trace), res.best_loss, iterates)


__all__ = ["OnlineRun", "nevergrad", "zo_sat"]
