"""Tiny tasks and devices whose losses have closed forms, for estimator and SAT tests."""

from __future__ import annotations

import numpy as np
import torch

from blacksat import ParamSpace
from blacksat.objective import Batch


class PlainTask:
    """A task whose loss is the mean over the batch of the summed readings (linear in y)."""

    front = None
    back = None
    dtype = torch.float64

    def digital_parameters(self):
        return []

    def encode(self, features):
        return features

    def decode(self, outputs):
        return outputs

    def loss(self, logits, labels):
        return logits.sum(-1).mean(-1)

    def logits_model(self, model, theta, features):
        return self.decode(model(theta, self.encode(features)))


def batch(b: int = 4, f: int = 3, seed: int = 0) -> Batch:
    x = torch.as_tensor(np.random.default_rng(seed).uniform(0, 1, (b, f)))
    return Batch(x, torch.zeros(b, dtype=torch.int64), torch.arange(b))


class LinearReadout:
    """``y_b = sum(x_b) * (c . theta)``: the PlainTask loss is linear in theta."""

    def __init__(self, c: np.ndarray, bound: float = 10.0) -> None:
        self.c = np.asarray(c, dtype=np.float64)
        self.space = ParamSpace.box(self.c.size, -bound, bound)
        self.sent: list[np.ndarray] = []

    def query_many(self, thetas, x):
        thetas = np.asarray(thetas)
        self.sent.append(thetas.copy())
        return (thetas @ self.c)[:, None, None] * x.sum(1)[None, :, None]

    def query(self, theta, x):
        return self.query_many(np.asarray(theta)[None], x)[0]

    def __call__(self, theta, x):  # the torch twin (a Model)
        c = torch.as_tensor(self.c, dtype=theta.dtype)
        val = theta @ c
        return val[..., None, None] * x.sum(-1)[:, None]


class Quadratic:
    """``y_b = sum((theta - target)^2 * h)``: a quadratic bowl (same for every input)."""

    def __init__(self, target: np.ndarray, h: np.ndarray, bound: float = 5.0) -> None:
        self.target, self.h = np.asarray(target, float), np.asarray(h, float)
        self.space = ParamSpace.box(self.target.size, -bound, bound)

    def query_many(self, thetas, x):
        val = (((np.asarray(thetas) - self.target) ** 2) * self.h).sum(1)
        return np.repeat(val[:, None, None], len(x), axis=1)

    def query(self, theta, x):
        return self.query_many(np.asarray(theta)[None], x)[0]

    def __call__(self, theta, x):
        t = torch.as_tensor(self.target, dtype=theta.dtype)
        h = torch.as_tensor(self.h, dtype=theta.dtype)
        val = (((theta - t) ** 2) * h).sum(-1)
        return val[..., None, None].expand(*theta.shape[:-1], x.shape[0], 1)
