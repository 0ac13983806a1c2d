"""CMA-ES variants of the ``cmaes`` package (CyberAgent) behind the generation interface.

- ``LRACMA``: CMA-ES with learning-rate adaptation (Nomura, Akimoto, Ono, GECCO 2023, "Can
  CMA-ES with default population size solve multimodal and noisy problems?"):
  ``cmaes.CMA(..., lr_adapt=True)``, designed for noisy objectives such as minibatch losses;
- ``SepCMA``: separable (diagonal) CMA-ES (Ros and Hansen 2008): ``cmaes.SepCMA``, linear
  cost in the dimension.

One generation is ``population_size`` settings (default ``4 + floor(3 ln d)``), told together.
The search starts at the parametrization's initial value with step size ``sigma`` in standardized
units (1 = a quarter of each control's range: the prior nevergrad's CMA uses). Bounds are left to
the parametrization (it bounces a candidate back into the box); the optimizer sees the
candidates it proposed. Failed evaluations are told as the worst finite loss of the generation
plus one (cmaes needs a number for every member); a generation without any finite loss is told
nothing and re-proposed. The recommendation is the distribution mean, not the best sample (under
minibatch noise the best sample is biased low).
"""

from __future__ import annotations

from typing import Any

import cmaes
import numpy as np
from nevergrad.optimization import base

from blacksat.baselines.generation import GenerationOptimizer, check_number


def fill_failed(losses: np.ndarray) -> np.ndarray | None:
    """``losses (n,)`` with NaN replaced by the worst finite loss + 1; ``None`` if none is
    finite."""
    ok = np.isfinite(losses)
    if not ok.any():
        return None
    return np.where(ok, losses, float(losses[ok].max()) + 1.0)


class _CMAes(GenerationOptimizer):
    _factory: Any = None

    def __init__(
        self,
        parametrization: base.IntOrParameter,
        budget: int | None = None,
        num_workers: int = 1,
        *,
        sigma: float = 1.0,
        population_size: int | None = None,
    ) -> None:
        super().__init__(parametrization, budget=budget, num_workers=num_workers)
        self.sigma = check_number("sigma", sigma)
        if population_size is not None:
            population_size = check_number(
                "population_size", population_size, integer=True, low=2, strict=False
            )
        seed = int(self._rng.randint(2**31 - 1))
        self.es = self._build(np.zeros(self.dimension), self.sigma, seed, population_size)
        self._pending: np.ndarray | None = None

    def _build(self, mean: np.ndarray, sigma: float, seed: int, popsize: int | None) -> Any:
        raise NotImplementedError  # pragma: no cover

    @property
    def popsize(self) -> int:
        return int(self.es.population_size)

    @property
    def center(self) -> np.ndarray:
        return self.project(np.asarray(self.es.mean, dtype=np.float64))

    def _propose(self) -> np.ndarray:
        if self._pending is None:  # a generation whose losses all failed is asked again
            self._pending = np.stack([self.es.ask() for _ in range(self.popsize)])
        return self._pending

    def _update(self, x: np.ndarray, losses: np.ndarray) -> None:
        filled = fill_failed(losses)
        if filled is None:
            return
        self.es.tell([(xi, float(fi)) for xi, fi in zip(x, filled, strict=True)])
        self._pending = None


class LRACMA(_CMAes):
    """CMA-ES with learning-rate adaptation (``cmaes.CMA(lr_adapt=True)``; see the module doc).

    Args:
        sigma: initial step size, standardized units.
        population_size: settings per generation (default ``4 + floor(3 ln d)``).
    """

    def _build(self, mean: np.ndarray, sigma: float, seed: int, popsize: int | None) -> Any:
        return cmaes.CMA(mean=mean, sigma=sigma, seed=seed, population_size=popsize, lr_adapt=True)


class SepCMA(_CMAes):
    """Separable CMA-ES (``cmaes.SepCMA``; see the module doc and :class:`LRACMA`)."""

    def _build(self, mean: np.ndarray, sigma: float, seed: int, popsize: int | None) -> Any:
        return cmaes.SepCMA(mean=mean, sigma=sigma, seed=seed, population_size=popsize)


__all__ = ["LRACMA", "SepCMA", "fill_failed"]
