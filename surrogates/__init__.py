"""Learned device models (surrogates) and the designs that choose which queries to make.

- :class:`GreyBox`: the nominal physics with learnable error parameters (system identification);
- :class:`Residual`: a physics base plus a learned correction of its readings;
- :class:`Ensemble`: a black-box ensemble of MLPs, with the members' disagreement as uncertainty;
- :class:`LinearResponse`: physics-free, from structure a lab can state (a linear or intensity
  response to the inputs, local controls, smooth tuning curves), each assumption checked;
- :mod:`~blacksat.surrogates.designs`: space-filling and local designs, budgeted collection;
- :mod:`~blacksat.surrogates.workflows`: calibrate, refine actively, train.

Every surrogate is fitted from recorded queries (``fit(data)`` returns ``self``, with the
held-out fit quality in ``report_``) and is a differentiable :class:`~blacksat.Model`:
``surrogate(theta (d,), x (B, *in)) -> (B, *out)``, batched ``(K, d) -> (K, B, *out)``.
"""

from blacksat.surrogates.base import (
    Coverage,
    FitReport,
    Surrogate,
    input_coverage_warning,
    narrow_data_warning,
    quality,
)
from blacksat.surrogates.designs import (
    Collected,
    collect,
    input_subset,
    latin_hypercube,
    local,
    sobol,
    uniform,
)
from blacksat.surrogates.ensemble import Ensemble
from blacksat.surrogates.greybox import GreyBox
from blacksat.surrogates.linear_response import LinearResponse, StructureCheck
from blacksat.surrogates.residual import Residual
from blacksat.surrogates.workflows import (
    ActiveResult,
    Calibration,
    TrustRegionResult,
    calibrate,
    refine,
    train_active,
    train_trust_region,
)

#: surrogate kinds by name (benchmarks and the CLI iterate over them)
SURROGATES = {
    "greybox": GreyBox,
    "residual": Residual,
    "ensemble": Ensemble,
    "linear_response": LinearResponse,
}

__all__ = [
    "SURROGATES",
    "ActiveResult",
    "Calibration",
    "Collected",
    "Coverage",
    "Ensemble",
    "FitReport",
    "GreyBox",
    "LinearResponse",
    "Residual",
    "StructureCheck",
    "Surrogate",
    "TrustRegionResult",
    "calibrate",
    "collect",
    "input_coverage_warning",
    "input_subset",
    "latin_hypercube",
    "local",
    "narrow_data_warning",
    "quality",
    "refine",
    "sobol",
    "train_active",
    "train_trust_region",
    "uniform",
]
