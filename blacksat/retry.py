"""Bounded retries with exponential backoff for device calls that fail transiently.

Real hardware drops connections and misses deadlines. A :class:`RetryPolicy` given to
:class:`~blacksat.MeteredDevice` (``MeteredDevice(device, retry=RetryPolicy(...))``) re-sends a
query that failed with one of the errors it names, after a pause that grows geometrically:
``min(max_backoff, backoff * factor**i)`` seconds before retry ``i`` (0-based).

The meter keeps its guarantees across retries:

- every attempt that reached the device is charged (``ledger.queries``) and each failed one is
  counted (``ledger.failures``): device time was spent;
- the budget is checked again before every retry, so a retry never overshoots it: when the next
  attempt does not fit, :class:`~blacksat.BudgetExhausted` is raised (chained from the last
  device error) and nothing more is sent;
- when the retries are exhausted, the last device error propagates unchanged (a
  :class:`~blacksat.Trainer` then rolls its step back).

Errors that never reached the device (invalid settings, a refused budget) and interrupts
(``KeyboardInterrupt``, ``SystemExit``) are never retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from blacksat.errors import (
    BudgetExhausted,
    ConfigError,
    DeviceError,
    DeviceTimeout,
    InvalidReading,
    ValidationError,
)
from blacksat.validation import check_int, check_real

T = TypeVar("T")

#: errors a device call may fail with that are worth a second try, by default
DEFAULT_RETRY_ON: tuple[type[BaseException], ...] = (DeviceTimeout, DeviceError)


@dataclass(frozen=True)
class RetryPolicy:
    """How often, after how long, and on which errors a failed device call is re-sent.

    Args:
        max_retries: retries after the first attempt (``0``: never retry); at most
            ``1 + max_retries`` attempts per query.
        backoff: pause before the first retry, in seconds (``>= 0``).
        factor: growth of the pause per retry (``>= 1``).
        max_backoff: cap on any single pause, in seconds (``>= 0``).
        retry_on: error classes to retry. An error is retried when it is an instance of one of
            them, or when the raw device exception it wraps (its ``__cause__``) is: e.g.
            ``(DeviceTimeout,)`` retries time-outs only, ``(ConnectionError,)`` retries a driver's
            dropped connections. :class:`~blacksat.InvalidReading` (a reading of the wrong shape
            or with NaN/inf) is a :class:`~blacksat.DeviceError` too, but is retried only when
            ``retry_on`` names it (or a subclass) explicitly: a device that answers garbage
            usually answers it again, and non-finite readings have their own policy
            (:class:`~blacksat.nonfinite.NonFinitePolicy`).
        sleep: the function that pauses (``time.sleep``); inject a recorder in tests.

    Raises:
        ConfigError: a hyperparameter out of range.
    """

    max_retries: int = 3
    backoff: float = 0.5
    factor: float = 2.0
    max_backoff: float = 30.0
    retry_on: tuple[type[BaseException], ...] = DEFAULT_RETRY_ON
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_int("max_retries", self.max_retries, low=0)
        for name, low in (("backoff", 0.0), ("factor", 1.0), ("max_backoff", 0.0)):
            object.__setattr__(self, name, check_real(name, getattr(self, name), low=low))
        on = self.retry_on
        if isinstance(on, type):
            on = (on,)
        if not isinstance(on, (tuple, list)) or not on:
            raise ConfigError(
                f"retry_on must be a non-empty tuple of exception classes, got {on!r}"
            )
        for cls in on:
            if not (isinstance(cls, type) and issubclass(cls, Exception)):
                raise ConfigError(f"retry_on must hold Exception subclasses, got {cls!r}")
            if issubclass(cls, (BudgetExhausted, ValidationError)):
                raise ConfigError(
                    f"{cls.__name__} is raised before anything is sent; it cannot be retried"
                )
        object.__setattr__(self, "retry_on", tuple(on))
        if not callable(self.sleep):
            raise ConfigError(f"sleep must be callable, got {type(self.sleep).__name__}")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if self.backoff == 0.0:
            return 0.0
        try:
            return min(self.max_backoff, self.backoff * self.factor**retry)
        except OverflowError:  # factor**retry past the float range: the cap applies
            return self.max_backoff

    def should_retry(self, error: BaseException) -> bool:
        """Whether ``error`` is one this policy retries (never interrupts, never errors raised
        before the device was reached)."""
        if not isinstance(error, Exception) or isinstance(
            error, (BudgetExhausted, ValidationError)
        ):
            return False
        if isinstance(error, InvalidReading) and not any(
            issubclass(c, InvalidReading) for c in self.retry_on
        ):
            return False
        cause = error.__cause__
        return isinstance(error, self.retry_on) or (
            cause is not None and isinstance(cause, self.retry_on)
        )

    def call(
        self, attempt: Callable[[], T], *, before_retry: Callable[[], None] | None = None
    ) -> T:
        """Run ``attempt()`` until it succeeds, an error is not retryable, or the retries are
        spent. ``before_retry()`` runs before each pause (the meter checks its budget there; an
        error it raises ends the loop, chained from the last failure)."""
        retry = 0
        while True:
            try:
                return attempt()
            except Exception as exc:
                if retry >= self.max_retries or not self.should_retry(exc):
                    raise
                last = exc
            if before_retry is not None:
                try:
                    before_retry()
                except Exception as exc:
                    raise exc from last
            self.sleep(self.delay(retry))
            retry += 1


__all__ = ["DEFAULT_RETRY_ON", "RetryPolicy"]
