"""Keeping the best setting a run has measured, not only its last one.

A gradient estimator reports the loss *at the setting it was called with* alongside its gradient:
a device read that the run has paid for anyway. A run whose estimates stop pointing downhill near
its end (a layered response's first-order model near the plateau, where its gradient's cosine
with the exact one falls to 0.3-0.4 while the exact gradient is not small,
``benchmarks/layered_gradient.py``; or a step too large for the device) climbs back up while its
budget lasts, and its last setting is then worse than one it passed. :class:`BestSetting` follows
an exponential moving average of the steps' losses, ``m_t = s m_(t-1) + (1 - s) loss_t``
(``m_1 = loss_1``), and keeps the setting (and the digital layers) of the step where ``m`` was
lowest: the average damps a single lucky reading (a small batch's loss), at no query. The setting
after the last step is never read; where the lowest average is the last reading's, the run was
still descending and returns that unread last setting (:func:`kept_step`).
:class:`~blacksat.trainer.Trainer` uses it with ``TrainConfig(keep="best")``; its state is part
of the checkpoint, so a resumed run keeps the same setting as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from blacksat.errors import ConfigError

#: what a run returns: its last setting, or the best one it measured
KEEP_CHOICES = ("last", "best")
#: the moving average's weight of the past (``TrainConfig.keep_smoothing``): a window of about
#: five steps, set before the tuning runs (``benchmarks/query_plan_tuning.py``) and not varied
KEEP_SMOOTHING = 0.8


class BestSetting:
    """The best setting seen so far by the smoothed step loss (module docstring).

    Args:
        smoothing: the moving average's weight of the past, in ``[0, 1)`` (0: the raw loss).
    """

    def __init__(self, smoothing: float = KEEP_SMOOTHING) -> None:
        s = float(smoothing)
        if not 0.0 <= s < 1.0:
            raise ConfigError(f"keep_smoothing must be in [0, 1), got {smoothing!r}")
        self.smoothing = s
        #: the moving average after the last step (``nan`` before the first)
        self.average = math.nan
        #: the kept setting ``(d,)`` (``None`` before the first step)
        self.theta: torch.Tensor | None = None
        #: the digital layers' state dicts at the kept setting (``{}`` without any)
        self.digital: dict[str, dict[str, torch.Tensor]] = {}
        #: the moving average at the kept setting, and the steps completed before it was read
        self.best = math.inf
        self.step = -1

    def improves(self, loss: float) -> bool:
        """Fold ``loss`` (the step's, finite) into the average; ``True`` if the setting it was
        read at is now the best (the caller then :meth:`keep` s it)."""
        loss = float(loss)
        if not math.isfinite(loss):
            raise ConfigError(f"the step's loss must be finite to rank settings, got {loss}")
        s = self.smoothing
        self.average = loss if math.isnan(self.average) else s * self.average + (1.0 - s) * loss
        return self.average < self.best

    def keep(
        self,
        step: int,
        theta: torch.Tensor,
        digital: dict[str, dict[str, torch.Tensor]] | None = None,
    ) -> None:
        """Record ``theta (d,)`` (and ``digital`` state dicts) as the best, read after ``step``
        completed steps, at the current average."""
        self.best, self.step = self.average, int(step)
        self.theta = theta.detach().to(torch.float64).clone()
        self.digital = {
            name: {k: v.detach().clone() for k, v in sd.items()}
            for name, sd in (digital or {}).items()
        }

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values (a checkpoint's ``best``)."""
        return {
            "smoothing": self.smoothing,
            "average": self.average,
            "best": self.best,
            "step": self.step,
            "theta": None if self.theta is None else self.theta.clone(),
            "digital": {n: {k: v.clone() for k, v in sd.items()} for n, sd in self.digital.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        try:
            self.smoothing = float(state["smoothing"])
            self.average, self.best = float(state["average"]), float(state["best"])
            self.step = int(state["step"])
            theta = state["theta"]
            self.theta = None if theta is None else torch.as_tensor(theta).to(torch.float64)
            self.digital = {
                str(n): {str(k): torch.as_tensor(v).clone() for k, v in sd.items()}
                for n, sd in dict(state.get("digital") or {}).items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"the checkpoint's best setting is malformed ({exc!r})") from None


def kept_step(best: dict[str, Any] | None, steps: int) -> int | None:
    """Which setting a run of ``steps`` completed steps returns, from its
    :meth:`BestSetting.state_dict` ``best``: the steps completed before the kept setting was
    read, or ``steps`` (the setting after the last step) when the best was the last step's
    reading: the average was still falling, so the run was still descending and its last move,
    which no estimate has read, is taken too (a short run that is still leaving its start must
    not lose its last step). ``None`` without a best (``keep="last"``)."""
    if best is None or best.get("theta") is None:
        return None
    step = int(best["step"])
    return steps if step >= steps - 1 else step


def progressed(losses: Sequence[float], z: float, smoothing: float = KEEP_SMOOTHING) -> bool:
    """Did a run lower its loss by more than its own noise? ``losses``: its step losses, in
    order. The lowest moving average of the finite losses (weight ``smoothing`` on the past, as
    :class:`BestSetting`'s) must lie more than ``z`` standard deviations of one step's loss below
    the first loss (itself one noisy reading), the deviation estimated robustly from the
    step-to-step changes (their median absolute deviation, ``1.4826 MAD / sqrt(2)``: a jump of
    the loss, which a backtrack answers, does not inflate it). Under three finite losses:
    whether any average lies below the first."""
    values = np.asarray([float(v) for v in losses], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return False
    s = float(smoothing)
    average = lowest = float(values[0])
    for loss in values[1:]:
        average = s * average + (1.0 - s) * float(loss)
        lowest = min(lowest, average)
    gain = float(values[0]) - lowest
    if values.size < 3:
        return gain > 0.0
    changes = np.diff(values)
    mad = float(np.median(np.abs(changes - np.median(changes))))
    return gain > float(z) * 1.4826 * mad / math.sqrt(2.0)


__all__ = ["KEEP_CHOICES", "KEEP_SMOOTHING", "BestSetting", "kept_step", "progressed"]
