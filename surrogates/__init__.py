"""Learned device models (surrogates) and the designs that choose which queries to make.

- :class:`GreyBox`: the nominal physics with learnable error parameters (system identification);
- :class:`Residual`: a physics base plus a learned correction of its readings;
- :class:`Ensemble`: a black-box ensemble of MLPs, with the members' disagreement as uncertainty;
- :mod:`~blacksat.surrogates.designs`: space-filling and local designs, budgeted collection;
- :mod:`~blacksat.surrogates.workflows`: calibrate, refine actively, train.

Every surrogate is fitted from recorded queries (``fit(data)`` returns ``self``, with the
held-out fit quality in ``report_``) and is a differentiable :class:`~blacksat.Model`:
``surrogate(theta (d,), x (B, *in)) -> (B, *out)``, batched ``(K, d) -> (K, B, *out)``.
"""

from blacksat.surrogates.base import FitReport, Surrogate, quality
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
from blacksat.surrogates.residual import Residual
from blacksat.surrogates.workflows import (
    ActiveResult,
    Calibration,
    calibrate,
    refine,
    train_active,
)

#: surrogate kinds by name (benchmarks and the CLI iterate over them)
SURROGATES = {"greybox": GreyBox, "residual": Residual, "ensemble": Ensemble}

__all__ = [
    "SURROGATES",
    "ActiveResult",
    "Calibration",
    "Collected",
    "Ensemble",
    "FitReport",
    "GreyBox",
    "Residual",
    "Surrogate",
    "calibrate",
    "collect",
    "input_subset",
    "latin_hypercube",
    "local",
    "quality",
    "refine",
    "sobol",
    "train_active",
    "uniform",
]
