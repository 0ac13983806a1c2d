"""The blacksat error hierarchy.

Every error blacksat raises derives from :class:`BlacksatError` *and* from the builtin a
caller would naturally catch (``ValueError`` for bad input, ``RuntimeError`` for a run that
cannot continue, ``TimeoutError`` for a device that does not answer). Errors carry the state a
caller needs to continue: a :class:`BudgetExhausted` says what was ``used`` and what the
``budget`` was; a :class:`InvalidReading` keeps the offending reading.
"""

from __future__ import annotations

from typing import Any


class BlacksatError(Exception):
    """Base class of every error blacksat raises."""


class ConfigError(BlacksatError, ValueError):
    """An invalid hyperparameter, argument or configuration value."""


class ValidationError(BlacksatError, ValueError):
    """A control setting or input failed validation before reaching a device."""


class ShapeError(ValidationError):
    """An array has the wrong shape."""


class NonFiniteError(ValidationError):
    """An array holds NaN or +-inf where finite values are required."""


class OutOfBoundsError(ValidationError):
    """A control setting lies outside its :class:`~blacksat.ParamSpace` bounds.

    Attributes:
        indices: flat indices of the offending controls (at most the first 10 are named in the
            message; all are kept here).
    """

    def __init__(self, message: str, indices: Any = None) -> None:
        super().__init__(message)
        self.indices = indices


class BudgetExhausted(BlacksatError, RuntimeError):
    """A query would exceed a hard budget; it was **not** sent.

    Attributes:
        kind: ``"reconfigurations"`` or ``"samples"``.
        used: amount already spent before the refused query.
        requested: amount the refused query would have spent.
        budget: the hard limit.
    """

    def __init__(self, kind: str, used: int, requested: int, budget: int) -> None:
        self.kind = kind
        self.used = used
        self.requested = requested
        self.budget = budget
        super().__init__(
            f"{kind} budget exhausted: {used} used + {requested} requested > budget {budget}; "
            "the query was not sent"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.kind, self.used, self.requested, self.budget))


class DeviceError(BlacksatError, RuntimeError):
    """The device raised while answering a query (the query is still charged)."""


class DeviceTimeout(DeviceError, TimeoutError):
    """The device did not answer in time (the query is still charged)."""


class InvalidReading(DeviceError, ValueError):
    """The device answered with a reading of the wrong shape or with NaN/inf values.

    Attributes:
        reading: the offending array as returned by the device (may be ``None``).
    """

    def __init__(self, message: str, reading: Any = None) -> None:
        super().__init__(message)
        self.reading = reading


__all__ = [
    "BlacksatError",
    "BudgetExhausted",
    "ConfigError",
    "DeviceError",
    "DeviceTimeout",
    "InvalidReading",
    "NonFiniteError",
    "OutOfBoundsError",
    "ShapeError",
    "ValidationError",
]
