"""blacksat: sharpness-aware training of physical neural networks on opaque devices.

The core (this package) holds the protocols and machinery; simulated devices live in
:mod:`blacksat.devices`, learned device models in :mod:`blacksat.surrogates`.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from blacksat.errors import (
    BlacksatError,
    BudgetExhausted,
    ConfigError,
    DeviceError,
    DeviceTimeout,
    InvalidReading,
    NonFiniteError,
    OutOfBoundsError,
    ShapeError,
    ValidationError,
)

#: where each public name lives; imported on first use (PEP 562), so that ``import blacksat``
#: (and ``blacksat --help``) does not pay for torch until something needs it
_LAZY = {
    "Device": "blacksat.device",
    "Model": "blacksat.device",
    "check_inputs": "blacksat.device",
    "query_many_by_loop": "blacksat.device",
    "Autograd": "blacksat.estimators",
    "PhysicsAware": "blacksat.estimators",
    "ZerothOrder": "blacksat.estimators",
    "LayeredResponse": "blacksat.estimators",
    "Budget": "blacksat.meter",
    "Ledger": "blacksat.meter",
    "MeteredDevice": "blacksat.meter",
    "NonFinitePolicy": "blacksat.nonfinite",
    "Batch": "blacksat.objective",
    "Estimate": "blacksat.objective",
    "GradientEstimator": "blacksat.objective",
    "StepContext": "blacksat.objective",
    "CostModel": "blacksat.query_plan",
    "QueryPlan": "blacksat.query_plan",
    "plan_query_only": "blacksat.query_plan",
    "QueryData": "blacksat.querydata",
    "QueryLog": "blacksat.querylog",
    "ReadoutNoise": "blacksat.readout_noise",
    "RetryPolicy": "blacksat.retry",
    "SAT": "blacksat.sat",
    "FreeAscent": "blacksat.sat",
    "sat": "blacksat.sat",
    "ParamSpace": "blacksat.space",
    "Task": "blacksat.task",
    "TrainConfig": "blacksat.train_config",
    "Trainer": "blacksat.trainer",
    "TrainResult": "blacksat.trainer",
}

if TYPE_CHECKING:
    from blacksat.device import Device, Model, check_inputs, query_many_by_loop
    from blacksat.estimators import Autograd, LayeredResponse, PhysicsAware, ZerothOrder
    from blacksat.meter import Budget, Ledger, MeteredDevice
    from blacksat.nonfinite import NonFinitePolicy
    from blacksat.objective import Batch, Estimate, GradientEstimator, StepContext
    from blacksat.query_plan import CostModel, QueryPlan, plan_query_only
    from blacksat.querydata import QueryData
    from blacksat.querylog import QueryLog
    from blacksat.readout_noise import ReadoutNoise
    from blacksat.retry import RetryPolicy
    from blacksat.sat import SAT, FreeAscent, sat
    from blacksat.space import ParamSpace
    from blacksat.task import Task
    from blacksat.train_config import TrainConfig
    from blacksat.trainer import Trainer, TrainResult


class _Package(types.ModuleType):
    """``blacksat.sat`` is both a submodule and the function :func:`blacksat.sat.sat`: importing
    the submodule sets the package attribute to the module; reading it gives the function, as
    the eager ``from blacksat.sat import sat`` of earlier versions did."""

    def __getattribute__(self, name: str) -> Any:
        if name in _SHADOWED:
            return getattr(importlib.import_module(_LAZY[name]), name)
        return super().__getattribute__(name)


#: public names that are also submodule names
_SHADOWED = frozenset(n for n, m in _LAZY.items() if m.rsplit(".", 1)[-1] == n)
sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'blacksat' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "SAT",
    "Autograd",
    "Batch",
    "BlacksatError",
    "Budget",
    "BudgetExhausted",
    "ConfigError",
    "CostModel",
    "Device",
    "DeviceError",
    "DeviceTimeout",
    "Estimate",
    "FreeAscent",
    "GradientEstimator",
    "InvalidReading",
    "LayeredResponse",
    "Ledger",
    "MeteredDevice",
    "Model",
    "NonFiniteError",
    "NonFinitePolicy",
    "OutOfBoundsError",
    "ParamSpace",
    "PhysicsAware",
    "QueryData",
    "QueryLog",
    "QueryPlan",
    "ReadoutNoise",
    "RetryPolicy",
    "ShapeError",
    "StepContext",
    "Task",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "ValidationError",
    "ZerothOrder",
    "__version__",
    "check_inputs",
    "plan_query_only",
    "query_many_by_loop",
    "sat",
]
