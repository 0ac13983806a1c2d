"""Perturbation models: the geometry of a disturbance as it acts on the controls or on nuisance
parameters (see DESIGN.md, "Why the perturbation model is first-class").

- :mod:`blacksat.perturbations.base`: a disturbance (:class:`Perturbation`), the
  :class:`PerturbationModel` protocol and what SAT asks of a model (zero, needs a gradient, probes);
- :mod:`blacksat.perturbations.models`: control-space models (L2 ball, ASAM, per-control noise,
  common mode, subspace) and their combination;
- :mod:`blacksat.perturbations.nuisance`: nuisance parameters a simulated device exposes
  (temperature, misalignment), with the paper's finite-difference adversary.
"""

from blacksat.perturbations.base import (
    Perturbation,
    PerturbationModel,
    Probe,
    is_zero,
    needs_gradient,
    probe_evaluations,
)
from blacksat.perturbations.models import (
    Adaptive,
    Combined,
    CommonMode,
    L2Ball,
    PerControl,
    Sampled,
    Subspace,
)
from blacksat.perturbations.nuisance import NuisanceModel

__all__ = [
    "Adaptive",
    "Combined",
    "CommonMode",
    "L2Ball",
    "NuisanceModel",
    "PerControl",
    "Perturbation",
    "PerturbationModel",
    "Probe",
    "Sampled",
    "Subspace",
    "is_zero",
    "needs_gradient",
    "probe_evaluations",
]
