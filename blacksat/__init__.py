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
from blacksat.space import ParamSpace

__version__ = "0.1.0"

__all__ = [
    "BlacksatError",
    "BudgetExhausted",
    "ConfigError",
    "Device",
    "DeviceError",
    "DeviceTimeout",
    "InvalidReading",
    "Model",
    "NonFiniteError",
    "OutOfBoundsError",
    "ParamSpace",
    "ShapeError",
    "ValidationError",
    "__version__",
    "check_inputs",
    "query_many_by_loop",
]
