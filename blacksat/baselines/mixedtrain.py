"""MixedTrain (Gu et al., AAAI 2021): sparse in-situ tuning by stochastic greedy coordinate steps.

Two levels of sparsity: a fixed random mask leaves a fraction ``1 - param_sparsity`` of the
controls trainable (the rest stay at their initial values), and each step tries each trainable
coordinate with probability ``1 - grad_sparsity``. A step first measures the loss at the current
setting, then, for each chosen coordinate ``i`` in turn:

    try x + lr e_i: keep it if the loss improved;
    otherwise set x - lr e_i and keep it unconditionally.

This is ``MixedTrainOptimizer.zo_coordinate_descent`` of the authors' code (JeremieMelo/L2ight
``core/optimizer/mixedtrain.py``; published configuration: param_sparsity 0.85, grad_sparsity
0.9, lr 0.0245 rad, i.e. ``0.0245 / (pi / 2) = 0.0156`` standardized units for a ``2 pi``
range: the defaults here). The method is sequential: every setting depends on the loss of the one
before, so each generation is one setting (one reconfiguration, one device call). A failed
evaluation counts as "not improved" for ``+`` and is not kept for ``-``.
"""

from __future__ import annotations

import math

import numpy as np
from nevergrad.optimization import base

from blacksat.baselines.generation import GenerationOptimizer, check_number
from blacksat.errors import ConfigError

#: the published coordinate step in standardized units (see the module doc)
LR = 0.0245 / (math.pi / 2)


class MixedTrain(GenerationOptimizer):
    """MixedTrain stochastic greedy coordinate descent (see the module doc).

    Args:
        param_sparsity: fraction of controls frozen for the whole run, in ``[0, 1)``.
        grad_sparsity: probability of skipping a trainable coordinate in a step, in ``[0, 1)``.
        lr: coordinate step, standardized units.

    Attributes:
        mask: ``(d,)`` bool, the trainable controls (at least one).
    """

    def __init__(
        self,
        parametrization: base.IntOrParameter,
        budget: int | None = None,
        num_workers: int = 1,
        *,
        param_sparsity: float = 0.85,
        grad_sparsity: float = 0.9,
        lr: float = LR,
    ) -> None:
        super().__init__(parametrization, budget=budget, num_workers=num_workers)
        self.param_sparsity = check_number("param_sparsity", param_sparsity, strict=False)
        self.grad_sparsity = check_number("grad_sparsity", grad_sparsity, strict=False)
        for name, v in (("param_sparsity", param_sparsity), ("grad_sparsity", grad_sparsity)):
            if v >= 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {v!r}")
        self.lr = check_number("lr", lr)
        d = self.dimension
        n_train = max(1, round((1.0 - self.param_sparsity) * d))
        self.mask = np.zeros(d, dtype=bool)
        self.mask[self._rng.choice(d, size=n_train, replace=False)] = True
        self._x = np.zeros(d)
        self._f: float = math.nan  # loss at the current setting (this step's measurement)
        self._queue: list[int] = []  # coordinates left in this step
        self._trial: tuple[int, float] | None = None  # (coordinate, sign) being evaluated
        self.steps = 0

    @property
    def center(self) -> np.ndarray:
        return self._x.copy()

    def _choose(self) -> list[int]:
        idx = np.flatnonzero(self.mask)
        keep = idx[self._rng.random_sample(idx.size) >= self.grad_sparsity]
        if keep.size == 0:  # a step always tries at least one coordinate
            keep = idx[[self._rng.randint(idx.size)]]
        return [int(i) for i in keep]

    def _propose(self) -> np.ndarray:
        if self._trial is not None and self._trial[1] < 0:  # the - half of a coordinate
            i = self._trial[0]
        elif not self._queue or not np.isfinite(self._f):  # a new step: measure the center
            self._trial = None
            return self._x[None].copy()
        else:
            i = self._queue.pop(0)
            self._trial = (i, 1.0)
        x = self._x.copy()
        x[i] += self._trial[1] * self.lr
        return self.project(x)[None]

    def _update(self, x: np.ndarray, losses: np.ndarray) -> None:
        loss = float(losses[0])
        if self._trial is None:  # the center of a new step
            self._f = loss
            self._queue = self._choose()
            self.steps += 1
            return
        i, sign = self._trial
        if sign > 0:
            if np.isfinite(loss) and loss < self._f:
                self._x, self._f, self._trial = x[0].copy(), loss, None
            else:
                self._trial = (i, -1.0)
            return
        self._trial = None
        if np.isfinite(loss):
            self._x, self._f = x[0].copy(), loss
        if not self._queue:
            self._f = math.nan  # the next step measures its center on its own minibatch


__all__ = ["LR", "MixedTrain"]
