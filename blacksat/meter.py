"""Metering: count what a device costs and enforce hard budgets *before* a query goes out.

:class:`MeteredDevice` wraps any :class:`~blacksat.Device`. Every setting is validated against the
device's :class:`~blacksat.ParamSpace` and every input batch is checked before anything is sent;
the cost of the query is computed and compared with the budgets; only then is the device called.
Readings are checked on the way back (shape, finiteness).

Two units are counted (see ``DESIGN.md``):

- **reconfigurations**: settings programmed into the device. What re-sending the held setting
  costs follows the driver (its ``reprograms_on_query`` attribute, default False): a device that
  keeps its setting is not programmed again, so applying the setting it holds costs nothing and
  within ``query_many`` each setting that differs from the one before it costs one; a device that
  re-programs on every call is charged one per setting sent, equal or not. An explicit re-program
  of the held setting (:meth:`MeteredDevice.reprogram`, ``query(..., reprogram=True)``) costs one.
- **samples**: inputs forwarded through a configured device: ``B`` per setting, ``K * B`` for a
  ``query_many`` of ``K`` settings.

A query that reached the device is charged even if the device then raised or returned garbage:
device time was spent. With a :class:`~blacksat.retry.RetryPolicy` a failed query is re-sent
(after a backoff pause); each attempt is charged, and the budget is checked again before each one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from blacksat.device import Device, check_inputs, query_many_by_loop
from blacksat.errors import (
    BlacksatError,
    BudgetExhausted,
    ConfigError,
    DeviceError,
    DeviceTimeout,
    InvalidReading,
    ValidationError,
)
from blacksat.retry import RetryPolicy
from blacksat.space import ParamSpace, Policy


@dataclass(frozen=True)
class Ledger:
    """What a metered device has spent so far.

    Attributes:
        reconfigurations: distinct settings applied.
        samples: inputs forwarded (summed over settings).
        queries: calls that reached the device (``query`` or ``query_many``).
        failures: calls that reached the device and raised or returned an invalid reading.
    """

    reconfigurations: int = 0
    samples: int = 0
    queries: int = 0
    failures: int = 0

    def __sub__(self, earlier: Ledger) -> Ledger:
        """What was spent between ``earlier`` and this ledger, field by field."""
        return Ledger(
            self.reconfigurations - earlier.reconfigurations,
            self.samples - earlier.samples,
            self.queries - earlier.queries,
            self.failures - earlier.failures,
        )


@dataclass(frozen=True)
class Budget:
    """Hard limits; ``None`` means unlimited."""

    reconfigurations: int | None = None
    samples: int | None = None

    def __post_init__(self) -> None:
        for name in ("reconfigurations", "samples"):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, (float, np.floating)) and np.isposinf(v):
                object.__setattr__(self, name, None)  # +inf: unlimited, like None
                continue
            ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            if not ok or not np.isfinite(v) or int(v) != v or v < 0:
                raise ConfigError(
                    f"budget {name} must be an integer >= 0, or None / inf for unlimited, got {v!r}"
                )
            object.__setattr__(self, name, int(v))


@dataclass(frozen=True)
class QueryRecord:
    """One completed query, passed to observers (e.g. a query log) before it is used.

    Attributes:
        thetas: settings sent, ``(K, d)`` (as validated: clipped/snapped where the policy says).
        x: inputs, ``(B, *in)``.
        y: readings, ``(K, B, *out)``.
        cost: the ledger increment of this query.
        ledger: the ledger after this query.
    """

    thetas: np.ndarray
    x: np.ndarray
    y: np.ndarray
    cost: Ledger
    ledger: Ledger


Observer = Callable[[QueryRecord], None]


class MeteredDevice:
    """A :class:`~blacksat.Device` that validates, counts and enforces budgets.

    Args:
        device: any object with ``space`` and ``query``; ``query_many`` (one call for ``K``
            settings) when it has one, else the meter loops over ``query``
            (:func:`~blacksat.device.query_many_by_loop`), with the same accounting.
        max_reconfigurations: hard budget on reconfigurations (``None`` or ``math.inf``:
            unlimited; NaN, negative or fractional values are a :class:`ConfigError`).
        max_samples: hard budget on samples (``None`` or ``math.inf``: unlimited).
        policy: what to do with out-of-bounds settings: ``"raise"`` (default) or ``"clip"``
            (explicit opt-in). NaN/inf is always an error.
        observers: callables receiving a :class:`QueryRecord` after each successful query and
            before the reading is returned (e.g. to persist it).
        retry: a :class:`~blacksat.retry.RetryPolicy` for device errors and time-outs
            (``None``: a failed query raises at once). Every attempt is charged and counted in
            ``ledger.failures`` when it fails; a retry that would exceed a budget is not sent.

    The wrapper exposes only ``space``, the shapes, ``query``, ``query_many`` and the accounting;
    the wrapped device is not reachable through it.
    """

    def __init__(
        self,
        device: Device,
        *,
        max_reconfigurations: int | None = None,
        max_samples: int | None = None,
        policy: Policy = "raise",
        observers: Sequence[Observer] = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        if not isinstance(getattr(device, "space", None), ParamSpace):
            raise ConfigError(
                f"device must have a `space` attribute of type ParamSpace, got "
                f"{type(getattr(device, 'space', None)).__name__}"
            )
        if not callable(getattr(device, "query", None)):
            raise ConfigError(f"device must implement query(); {type(device).__name__} does not")
        many = getattr(device, "query_many", None)
        self._query_many: Callable[[np.ndarray, np.ndarray], Any] = (
            many if callable(many) else lambda t, x: query_many_by_loop(device, t, x)
        )
        if policy not in ("raise", "clip"):
            raise ConfigError(f"policy must be 'raise' or 'clip', got {policy!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigError(f"retry must be a RetryPolicy or None, got {type(retry).__name__}")
        self.retry = retry
        self._device = device
        self._space: ParamSpace = device.space
        self.budget = Budget(max_reconfigurations, max_samples)
        self.policy: Policy = policy
        self._observers = list(observers)
        self._ledger = Ledger()
        self._applied: np.ndarray | None = None
        flag = getattr(device, "reprograms_on_query", False)
        if not isinstance(flag, (bool, np.bool_)):
            raise ConfigError(f"device.reprograms_on_query must be True or False, got {flag!r}")
        #: whether the device programs every setting it is sent, even the one it holds
        self.reprograms_on_query = bool(flag)
        #: the device's declarations a task is built from (``None`` when it makes none)
        self.output_kind: str | None = getattr(device, "output_kind", None)
        self.input_range: tuple[float, float] | None = getattr(device, "input_range", None)
        self.input_shape: tuple[int, ...] | None = _shape_attr(device, "input_shape")
        self.output_shape: tuple[int, ...] | None = _shape_attr(device, "output_shape")
        #: the device's declared wiring (:mod:`blacksat.layered_response`; ``None``: none)
        self.weight_banks: Any = getattr(device, "weight_banks", None)

    # ------------------------------------------------------------------ accounting
    @property
    def space(self) -> ParamSpace:
        """The wrapped device's control space."""
        return self._space

    @property
    def cost_model(self) -> Any:
        """The wrapped driver's declared cost model (seconds per reconfiguration and per
        sample, :class:`~blacksat.query_plan.CostModel` or a mapping), ``None`` if it declares
        none."""
        return getattr(self._device, "cost_model", None)

    @property
    def ledger(self) -> Ledger:
        """What has been spent so far (an immutable snapshot)."""
        return self._ledger

    def remaining(self) -> Ledger:
        """What is left of each budget (unlimited budgets report ``-1``)."""
        b, u = self.budget, self._ledger
        return Ledger(
            reconfigurations=-1
            if b.reconfigurations is None
            else b.reconfigurations - u.reconfigurations,
            samples=-1 if b.samples is None else b.samples - u.samples,
        )

    def cost(self, thetas: ArrayLike, batch_size: int, *, reprogram: bool = False) -> Ledger:
        """The cost of sending validated settings ``thetas (K, d)`` with ``batch_size`` inputs
        (``reprogram``: the first setting is programmed even if the device holds it)."""
        t = np.asarray(thetas, dtype=np.float64)
        changed = np.ones(t.shape[0], dtype=bool)
        if not self.reprograms_on_query:
            changed[1:] = np.any(t[1:] != t[:-1], axis=1)
            if self._applied is not None and not reprogram:
                changed[0] = bool(np.any(t[0] != self._applied))
        return Ledger(int(changed.sum()), int(t.shape[0] * batch_size), 1, 0)

    def can_afford(self, cost: Ledger) -> bool:
        """Whether a query of this cost fits in the remaining budgets."""
        try:
            self._check_budget(cost)
        except BudgetExhausted:
            return False
        return True

    def add_observer(self, observer: Observer) -> None:
        """Register a callable that receives every completed :class:`QueryRecord`."""
        self._observers.append(observer)

    # ------------------------------------------------------------------ Device protocol
    def query(self, theta: ArrayLike, x: ArrayLike, *, reprogram: bool = False) -> np.ndarray:
        """``theta (d,)``, ``x (B, *in)`` -> ``(B, *out)``; validated, budgeted, counted.

        ``reprogram=True`` reads a fresh programming of ``theta`` even when the device holds it
        (one reconfiguration; a device that keeps its setting must offer ``reprogram(theta)``)."""
        _real_settings(theta)
        t = self._space.validate(theta, policy=self.policy)[None]
        if reprogram and not self.reprograms_on_query:
            self._reprogrammer()
        return self._send(t, x, single=True, reprogram=bool(reprogram))[0]

    def reprogram(self, theta: ArrayLike) -> None:
        """Program ``theta (d,)`` again, even if the device holds it: one reconfiguration, no
        samples (e.g. to measure programming noise). Needs the device's ``reprogram(theta)``."""
        t = self._space.validate(theta, policy=self.policy)
        write = self._reprogrammer()
        cost = Ledger(1, 0, 1, 0)
        self._check_budget(cost)
        try:
            write(t)
        except BaseException as exc:
            self._charge(cost, failed=True)
            self._applied = None
            if isinstance(exc, (KeyboardInterrupt, SystemExit, BlacksatError)):
                raise
            wrapper = DeviceTimeout if isinstance(exc, TimeoutError) else DeviceError
            raise wrapper(
                f"device raised {type(exc).__name__} re-programming: {exc}; it was charged"
            ) from exc
        self._charge(cost, failed=False)
        self._applied = t.copy()

    def query_many(self, thetas: ArrayLike, x: ArrayLike) -> np.ndarray:
        """``thetas (K, d)``, ``x (B, *in)`` -> ``(K, B, *out)``; one device call."""
        _real_settings(thetas)
        t = self._space.validate_many(thetas, policy=self.policy)
        return self._send(t, x, single=False)

    # ------------------------------------------------------------------ internals
    def _check_budget(self, cost: Ledger) -> None:
        b, u = self.budget, self._ledger
        if (
            b.reconfigurations is not None
            and u.reconfigurations + cost.reconfigurations > b.reconfigurations
        ):
            raise BudgetExhausted(
                "reconfigurations", u.reconfigurations, cost.reconfigurations, b.reconfigurations
            )
        if b.samples is not None and u.samples + cost.samples > b.samples:
            raise BudgetExhausted("samples", u.samples, cost.samples, b.samples)

    def _charge(self, cost: Ledger, failed: bool) -> None:
        u = self._ledger
        self._ledger = Ledger(
            u.reconfigurations + cost.reconfigurations,
            u.samples + cost.samples,
            u.queries + 1,
            u.failures + int(failed),
        )

    def _reprogrammer(self) -> Callable[[np.ndarray], Any]:
        write = getattr(self._device, "reprogram", None)
        if not callable(write):
            raise ConfigError(
                f"{type(self._device).__name__} keeps the setting it holds "
                "(reprograms_on_query is False) and has no reprogram(theta) method: "
                "it cannot re-program the same setting on demand"
            )
        return write

    def _send(
        self, thetas: np.ndarray, x: ArrayLike, *, single: bool, reprogram: bool = False
    ) -> np.ndarray:
        xs = check_inputs(x, self.input_shape)
        if self.retry is None:
            return self._attempt(thetas, xs, single, reprogram)
        return self.retry.call(
            lambda: self._attempt(thetas, xs, single, reprogram),
            before_retry=lambda: self._check_budget(
                self.cost(thetas, xs.shape[0], reprogram=reprogram)
            ),
        )

    def _attempt(
        self, thetas: np.ndarray, xs: np.ndarray, single: bool, reprogram: bool = False
    ) -> np.ndarray:
        cost = self.cost(thetas, xs.shape[0], reprogram=reprogram)
        self._check_budget(cost)
        try:
            if reprogram and not self.reprograms_on_query:
                self._device.reprogram(thetas[0])  # type: ignore[attr-defined]
            raw = self._device.query(thetas[0], xs) if single else self._query_many(thetas, xs)
        except BaseException as exc:
            self._charge(cost, failed=True)
            self._applied = None  # the device state is unknown after a failure
            if isinstance(exc, (KeyboardInterrupt, SystemExit, BlacksatError)):
                raise
            wrapper = DeviceTimeout if isinstance(exc, TimeoutError) else DeviceError
            raise wrapper(
                f"device raised {type(exc).__name__}: {exc}; the query was charged"
            ) from exc
        self._applied = thetas[-1].copy()
        try:
            y = self._check_reading(raw, thetas.shape[0], xs.shape[0], single)
        except InvalidReading:
            self._charge(cost, failed=True)
            raise
        self._charge(cost, failed=False)
        if self._observers:
            record = QueryRecord(thetas, xs, y, replace(cost, queries=1), self._ledger)
            for obs in self._observers:
                obs(record)
        return y

    def _check_reading(self, raw: Any, k: int, b: int, single: bool) -> np.ndarray:
        try:
            y = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidReading(
                f"device returned a reading of type {type(raw).__name__}, expected a numeric array",
                raw,
            ) from exc
        if single:
            y = y[None]
        lead = (k, b)
        want = lead + (tuple(self.output_shape) if self.output_shape is not None else ())
        ok = y.shape[:2] == lead and (self.output_shape is None or y.shape == want)
        if not ok:
            shown = want if self.output_shape is not None else (*lead, "...")
            got = y.shape[1:] if single else y.shape
            exp = shown[1:] if single else shown
            raise InvalidReading(f"device returned a reading of shape {got}, expected {exp}", raw)
        if not np.all(np.isfinite(y)):
            n = int(np.sum(~np.isfinite(y)))
            raise InvalidReading(f"device returned {n} non-finite value(s) (NaN/inf)", raw)
        return y

    def __repr__(self) -> str:
        return f"MeteredDevice(space={self._space!r}, budget={self.budget}, ledger={self._ledger})"

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def rng_state(self) -> dict[str, Any] | None:
        """The random state of a simulated device behind the meter (its ``rng_state()``: noise
        streams and what it holds between queries), for training checkpoints; ``None`` for a
        device that has none (a physical one). It tells nothing about the device's response."""
        fn = getattr(self._device, "rng_state", None)
        return fn() if callable(fn) else None

    def set_rng_state(self, state: Any) -> None:
        """Restore a state :meth:`rng_state` returned (resuming a run on a fresh simulator, so
        that it meets the noise an uninterrupted run would); nothing for a device without one."""
        fn = getattr(self._device, "set_rng_state", None)
        if callable(fn):
            fn(state)

    def restore(self, ledger: Ledger) -> None:
        """Set what has been spent to ``ledger`` (resuming a run from its checkpoint in a new
        process: the budgets then count the run's whole spend). Replaces the current ledger;
        the setting the device holds is unchanged (still unknown to a fresh wrapper)."""
        if not isinstance(ledger, Ledger):
            raise ConfigError(f"restore needs a Ledger, got {type(ledger).__name__}")
        for name in ("reconfigurations", "samples", "queries", "failures"):
            v = getattr(ledger, name)
            if isinstance(v, bool) or int(v) != v or v < 0:
                raise ConfigError(f"ledger {name} must be a non-negative integer, got {v!r}")
        self._ledger = Ledger(
            int(ledger.reconfigurations),
            int(ledger.samples),
            int(ledger.queries),
            int(ledger.failures),
        )


def _real_settings(thetas: Any) -> None:
    """Refuse complex and boolean settings before validation would cast them (NumPy drops an
    imaginary part with only a warning, and turns ``True`` into 1.0)."""
    dtype = getattr(thetas, "dtype", None)
    if dtype is None:  # a list or a scalar
        try:
            dtype = np.asarray(thetas).dtype
        except (TypeError, ValueError):
            return  # ragged or odd: the space's validation says what is wrong
    if isinstance(dtype, np.dtype):
        kind = dtype.kind
    else:  # a torch dtype
        kind = (
            "c"
            if getattr(dtype, "is_complex", False)
            else "b"
            if str(dtype) == "torch.bool"
            else "f"
        )
    if kind in ("c", "b"):
        what = "complex" if kind == "c" else "boolean"
        raise ValidationError(
            f"settings must be real numbers, got a {what} array; nothing was sent to the device"
        )


def _shape_attr(device: Any, name: str) -> tuple[int, ...] | None:
    shape = getattr(device, name, None)
    return None if shape is None else tuple(int(s) for s in shape)


__all__ = ["Budget", "Ledger", "MeteredDevice", "Observer", "QueryRecord"]
