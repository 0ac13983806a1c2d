"""FLOPS (Gu et al., DAC 2020): zeroth-order SGD with one-sided Gaussian smoothing and very few
samples, the in-situ training method of photonic neural networks.

One step spends ``1 + n_sample`` settings (one generation, one device call, one minibatch): the
center ``x`` and ``x + sigma u_i`` with ``u_i ~ N(0, I)``; then

    g = 1/n sum_i (f(x + sigma u_i) - f(x)) / sigma * u_i,     x <- x - lr_t g,

with ``lr_t = lr * gamma**t`` (the published exponential decay; ``gamma = 1`` keeps it fixed).
This is the algorithm of ``FLOPSOptimizer.zo_gradient_descent`` in the authors' code
(JeremieMelo/L2ight ``core/optimizer/flops.py``); its published configuration (phases in
radians, sigma 0.1, lr 2, one sample) maps to standardized units (a quarter of a ``2 pi`` range is
``pi / 2`` rad) as ``sigma = 0.1 / (pi / 2) = 0.064`` and ``lr = 2 / (pi / 2)**2 = 0.81``: the
defaults here. Failed evaluations are left out of the mean; a failed center makes no step.
"""

from __future__ import annotations

import math

import numpy as np
from nevergrad.optimization import base

from blacksat.baselines.generation import GenerationOptimizer, check_number

#: the published configuration in standardized units (see the module doc)
SIGMA = 0.1 / (math.pi / 2)
LR = 2.0 / (math.pi / 2) ** 2


def flops_gradient(f0: float, losses: np.ndarray, u: np.ndarray, sigma: float) -> np.ndarray:
    """``f0`` at the center, ``losses (n,)`` at ``x + sigma u_i``, ``u (n, d)`` -> ``g (d,)``
    averaged over the finite losses (zero if none)."""
    ok = np.isfinite(losses)
    if not ok.any():
        return np.zeros(u.shape[1])
    return ((losses[ok] - f0) / sigma) @ u[ok] / int(ok.sum())


class FLOPS(GenerationOptimizer):
    """FLOPS zeroth-order SGD (see the module doc).

    Args:
        n_sample: Gaussian directions per step (``1 + n_sample`` settings per step).
        sigma: smoothing radius, standardized units.
        lr: SGD learning rate, standardized units.
        gamma: per-step learning-rate decay factor in ``(0, 1]``.
    """

    def __init__(
        self,
        parametrization: base.IntOrParameter,
        budget: int | None = None,
        num_workers: int = 1,
        *,
        n_sample: int = 1,
        sigma: float = SIGMA,
        lr: float = LR,
        gamma: float = 1.0,
    ) -> None:
        super().__init__(parametrization, budget=budget, num_workers=num_workers)
        self.n_sample = check_number("n_sample", n_sample, integer=True)
        self.sigma = check_number("sigma", sigma)
        self.lr = check_number("lr", lr)
        self.gamma = check_number("gamma", gamma, high=1.0)
        self._x = np.zeros(self.dimension)
        self._u = np.zeros((0, self.dimension))
        self.steps = 0

    @property
    def center(self) -> np.ndarray:
        return self._x.copy()

    def _propose(self) -> np.ndarray:
        self._u = self._rng.standard_normal((self.n_sample, self.dimension))
        return np.vstack([self._x[None], self._x + self.sigma * self._u])

    def _update(self, x: np.ndarray, losses: np.ndarray) -> None:
        if not np.isfinite(losses[0]):
            return
        g = flops_gradient(float(losses[0]), losses[1:], self._u, self.sigma)
        lr = self.lr * self.gamma**self.steps
        self._x = self.project(self._x - lr * g)
        self.steps += 1


__all__ = ["FLOPS", "LR", "SIGMA", "flops_gradient"]
