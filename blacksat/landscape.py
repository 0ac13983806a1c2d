"""Loss-landscape slices in control space: the loss along a line through a setting.

``L(theta + a * u)`` for a grid of ``a`` along a direction ``u (d,)``, on the **full** split of
a task through a differentiable model, all ``A`` settings in one batched model call per batch.
Two directions matter for physical devices: a random one (fabrication-like, every control
disturbed independently) and the **common-mode** one (every control shifted by the same amount:
what an ambient temperature change does to a mesh of thermal phase shifters or a ring bank).
Both are scaled to unit root-mean-square per control, so ``a`` is the typical shift of one
control in control units for either.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from blacksat.errors import ConfigError
from blacksat.space import ParamSpace
from blacksat.validation import check_int


def common_mode(d: int) -> np.ndarray:
    """The common-mode direction ``(d,)``: all ones (unit shift of every control)."""
    return np.ones(check_int("d", d, low=1))


def random_direction(d: int, rng: np.random.Generator | int) -> np.ndarray:
    """A Gaussian random direction ``(d,)`` scaled to unit root-mean-square per control
    (norm ``sqrt(d)``, like :func:`common_mode`)."""
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    u = gen.standard_normal(len(common_mode(d)))
    return u * np.sqrt(d) / np.linalg.norm(u)


def loss_slice(
    task: Any,
    model: Any,
    theta: Any,
    direction: Any,
    alphas: Any,
    *,
    split: str = "train",
    batch_size: int = 512,
    space: ParamSpace | None = None,
) -> np.ndarray:
    """Mean loss of ``task`` through ``model`` at ``theta + a * direction`` for each ``a``.

    Args:
        task: a :class:`~blacksat.task.Task` (its digital layers are used as they are).
        model: a differentiable model ``model(thetas (A, d), x (B, *in)) -> (A, B, *out)``.
        theta: ``(d,)`` the centre of the slice.
        direction: ``(d,)`` the direction (not normalised here).
        alphas: ``(A,)`` offsets along it.
        split: ``"train"`` or ``"test"``; the mean is over the **full** split.
        space: if given, every setting is clipped into its bounds (a device never leaves them).

    Returns:
        ``(A,)`` float64 mean losses.
    """
    th = np.asarray(theta, dtype=np.float64)
    u = np.asarray(direction, dtype=np.float64)
    a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if th.ndim != 1 or u.shape != th.shape:
        raise ConfigError(f"theta and direction must both be (d,), got {th.shape} and {u.shape}")
    if a.ndim != 1 or not np.all(np.isfinite(a)) or not np.all(np.isfinite(u)):
        raise ConfigError("alphas must be a finite 1-D sequence and direction finite")
    thetas = th[None] + a[:, None] * u[None]
    if space is not None:
        thetas = space.project(thetas)
    dtype = getattr(task, "dtype", torch.float32)
    t = torch.as_tensor(thetas, dtype=dtype)
    total = np.zeros(len(a))
    n = 0
    with torch.no_grad():
        for xb, yb in task.batches(split, batch_size):
            logits = task.decode(model(t, task.encode(xb)))  # (A, B, C)
            total += task.loss(logits, yb).double().numpy() * len(yb)
            n += len(yb)
    return total / n


__all__ = ["common_mode", "loss_slice", "random_direction"]
