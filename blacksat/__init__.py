"""blacksat: sharpness-aware training of physical neural networks on opaque devices.

The core (this package) holds the protocols and machinery; simulated devices live in
:mod:`blacksat.devices`, learned device models in :mod:`blacksat.surrogates`.
"""

from blacksat.device import Device, Model, check_inputs, query_many_by_loop
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
from blacksat.estimators import Autograd, PhysicsAware, ZerothOrder
from blacksat.meter import Budget, Ledger, MeteredDevice
from blacksat.nonfinite import NonFinitePolicy
from blacksat.objective import Batch, Estimate, GradientEstimator, StepContext
from blacksat.querydata import QueryData
from blacksat.querylog import QueryLog
from blacksat.retry import RetryPolicy
from blacksat.sat import SAT, FreeAscent, sat
from blacksat.space import ParamSpace
from blacksat.task import Task
from blacksat.train_config import TrainConfig
from blacksat.trainer import Trainer, TrainResult

__version__ = "0.1.0"

__all__ = [
    "SAT",
    "Autograd",
    "Batch",
    "BlacksatError",
    "Budget",
    "BudgetExhausted",
    "ConfigError",
    "Device",
    "DeviceError",
    "DeviceTimeout",
    "Estimate",
    "FreeAscent",
    "GradientEstimator",
    "InvalidReading",
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
    "query_many_by_loop",
    "sat",
]
