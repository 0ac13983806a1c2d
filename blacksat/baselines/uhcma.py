"""Uncertainty-handling CMA-ES (Hansen et al., IEEE TEC 2009): pycma's ``CMAEvolutionStrategy``
with its ``NoiseHandler``, as an ask/tell optimizer.

pycma's own loop (``fmin2(..., noise_handler=...)``) calls the objective function itself to
re-evaluate; here each of its two calls becomes a generation of the batch driver:

1. the population ``X`` (``popsize`` settings, each evaluated ``nh.evaluations`` times and
   aggregated by the median, as ``ask_and_eval`` does);
2. the re-evaluations the handler asks for: ``nh.indices(fit)`` members, each disturbed by
   ``epsilon`` through ``es.ask(k, X_i, epsilon)`` (so a re-evaluation is a new setting).

Then ``es.tell(X, fit)``, the handler's rank-change measure (``update_measure``) and ``treat``,
whose factor multiplies ``es.sigma`` (and raises ``nh.evaluations`` while the noise dominates).
Every evaluation is one setting: re-evaluations cost reconfigurations, as on a device.

pycma draws from NumPy's *global* generator; this class runs every pycma call inside a private
global state (saved and restored around the call), so neither the caller's global RNG nor
another optimizer is disturbed, and a seeded parametrization gives a reproducible run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import cma
import numpy as np
from nevergrad.optimization import base

from blacksat.baselines.cmaes_family import fill_failed
from blacksat.baselines.generation import GenerationOptimizer, check_number

T = TypeVar("T")


class UHCMA(GenerationOptimizer):
    """pycma with uncertainty handling (see the module doc).

    Args:
        sigma: initial step size, standardized units.
        popsize: settings per generation (pycma's default ``4 + floor(3 ln d)``).
        max_evaluations: the largest number of evaluations per member the handler may ask for
            (pycma's ``maxevals``; 1 keeps one evaluation per member and adapts sigma only).
        epsilon: the disturbance of a re-evaluated member (pycma's default ``1e-7``).
    """

    def __init__(
        self,
        parametrization: base.IntOrParameter,
        budget: int | None = None,
        num_workers: int = 1,
        *,
        sigma: float = 1.0,
        popsize: int | None = None,
        max_evaluations: int = 30,
        epsilon: float = 1e-7,
    ) -> None:
        super().__init__(parametrization, budget=budget, num_workers=num_workers)
        self.sigma0 = check_number("sigma", sigma)
        self.max_evaluations = check_number(
            "max_evaluations", max_evaluations, integer=True, low=1, strict=False
        )
        self.epsilon = check_number("epsilon", epsilon)
        seed = int(self._rng.randint(1, 2**31 - 1))
        self._state = np.random.RandomState(seed).get_state()
        opts: dict[str, Any] = {"seed": seed, "verbose": -9, "CMA_diagonal": False}
        if popsize is not None:
            opts["popsize"] = check_number("popsize", popsize, integer=True, low=2, strict=False)
        d = self.dimension
        self.es = self._private(lambda: cma.CMAEvolutionStrategy(np.zeros(d), self.sigma0, opts))
        self.nh = cma.NoiseHandler(d, maxevals=[1, 1, self.max_evaluations], epsilon=self.epsilon)
        self._x: np.ndarray | None = None  # the population, (popsize, d)
        self._fit: np.ndarray | None = None  # its aggregated losses
        self._reeval: tuple[np.ndarray, int] | None = None  # (indices, evaluations each)

    @contextmanager
    def _global_rng(self) -> Iterator[None]:
        outer = np.random.get_state()  # noqa: NPY002 (pycma draws from it)
        np.random.set_state(self._state)  # noqa: NPY002
        try:
            yield
        finally:
            self._state = np.random.get_state()  # noqa: NPY002 (pycma draws from it)
            np.random.set_state(outer)  # noqa: NPY002

    def _private(self, fn: Callable[[], T]) -> T:
        with self._global_rng():
            return fn()

    @property
    def center(self) -> np.ndarray:
        return self.project(np.asarray(self.es.mean, dtype=np.float64))

    def _propose(self) -> np.ndarray:
        if self._reeval is None:  # phase 1: the population, each member `evaluations` times
            self._x = np.asarray(self._private(self.es.ask), dtype=np.float64)
            return np.repeat(self._x, self._evals(), axis=0)
        idx, k = self._reeval  # phase 2: the handler's disturbed re-evaluations
        assert self._x is not None
        pts = [self._private(lambda i=i: self.es.ask(k, self._x[i], self.epsilon)) for i in idx]
        return np.asarray(np.concatenate(pts), dtype=np.float64)

    def _evals(self) -> int:
        return max(1, int(self.nh.evaluations))

    def _update(self, x: np.ndarray, losses: np.ndarray) -> None:
        assert self._x is not None
        if self._reeval is None:  # phase 1 done: aggregate, then ask for re-evaluations
            per = losses.reshape(self._x.shape[0], -1)
            agg = np.array([_median(r) for r in per])
            filled = fill_failed(agg)
            if filled is None:
                return  # nothing finite: the next generation is a new population
            self._fit = filled
            idx = np.asarray(self._private(lambda: self.nh.indices(list(filled))), dtype=int)
            if idx.size == 0:
                self._tell(None)
            else:
                self._reeval = (idx, self._evals())
            return
        idx, k = self._reeval
        self._reeval = None
        per = losses.reshape(idx.size, k)
        self._tell((idx, per))

    def _tell(self, reeval: tuple[np.ndarray, np.ndarray] | None) -> None:
        assert self._x is not None and self._fit is not None
        fit = [float(f) for f in self._fit]
        X = list(self._x)
        self._private(lambda: self.es.tell(X, fit))
        if reeval is not None:
            idx, per = reeval
            fitre = list(fit)
            for j, i in enumerate(idx):
                m = _median(per[j])
                fitre[i] = fit[i] if np.isnan(m) else m
            self.nh.fit, self.nh.fitre, self.nh.idx = fit, fitre, idx
            self.nh.evaluations_just_done = int(per.size)
            self._private(self.nh.update_measure)
            self.es.sigma *= float(self.nh.treat())
        self._x = self._fit = None


def _median(row: np.ndarray) -> float:
    ok = np.isfinite(row)
    return float(np.median(row[ok])) if ok.any() else float("nan")


__all__ = ["UHCMA"]
