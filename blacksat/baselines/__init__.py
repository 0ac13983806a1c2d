"""Optimizer baselines beside nevergrad's, for equal-budget comparisons on a device.

Importing this package registers, in ``nevergrad.optimizers.registry`` (so
:func:`blacksat.ng.adapter.minimize` and ``blacksat compare`` run them like any nevergrad
optimizer, on the same metered device and the same budget):

- ``"FLOPS"``: one-sided Gaussian-smoothing zeroth-order SGD (Gu et al., DAC 2020);
- ``"MixedTrain"``: sparse stochastic greedy coordinate descent (Gu et al., AAAI 2021);
- ``"PEPG"``: parameter-exploring policy gradients with symmetric sampling (Sehnke et al. 2010);
- ``"LRACMA"``: CMA-ES with learning-rate adaptation for noisy problems (``cmaes``);
- ``"SepCMA"``: separable CMA-ES (``cmaes``);
- ``"UHCMA"``: pycma with its uncertainty (noise) handling.

Each is a :class:`~blacksat.baselines.generation.GenerationOptimizer`: one generation (a step's
settings, or a population) is handed out whole and costs as many reconfigurations as it has
settings. Hyperparameters are in nevergrad's standardized units (a quarter of each control's
range for :mod:`blacksat.ng.adapter` parametrizations); pass them as
``minimize(..., optimizer_kwargs={...})`` or a compare method's ``optimizer_kwargs``.
"""

from __future__ import annotations

from nevergrad.optimization import base

from blacksat.baselines.cmaes_family import LRACMA, SepCMA
from blacksat.baselines.flops import FLOPS
from blacksat.baselines.generation import GenerationOptimizer
from blacksat.baselines.mixedtrain import MixedTrain
from blacksat.baselines.pepg import PEPG
from blacksat.baselines.uhcma import UHCMA

#: the names this package registers in ``nevergrad.optimizers.registry``
BASELINES: dict[str, type[GenerationOptimizer]] = {
    "FLOPS": FLOPS,
    "MixedTrain": MixedTrain,
    "PEPG": PEPG,
    "LRACMA": LRACMA,
    "SepCMA": SepCMA,
    "UHCMA": UHCMA,
}
for _name, _cls in BASELINES.items():
    if _name in base.registry:
        base.registry.unregister(_name)  # a module reload replaces our own entries
    base.registry.register_name(_name, _cls)

__all__ = [
    "BASELINES",
    "FLOPS",
    "LRACMA",
    "PEPG",
    "UHCMA",
    "GenerationOptimizer",
    "MixedTrain",
    "SepCMA",
]
