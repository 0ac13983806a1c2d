"""Test doubles: plain devices that satisfy the Device protocol without importing blacksat's
device machinery (only ParamSpace, which a lab driver would build too).

- :class:`LinearDevice`: ``y = x @ W(theta)``, records every setting it receives.
- :class:`CountingDevice`: an independent tally of reconfigurations and samples (a driver that
  keeps its setting, or with ``reprograms_on_query=True`` one that programs every setting sent).
- :class:`FaultyDevice`: a LinearDevice whose k-th call misbehaves in a chosen way.
- Wrappers around any device, counting calls (``query`` and ``query_many`` alike, 0-based):
  :class:`RaisingDevice` (raises at chosen calls), :class:`TimeoutDevice` (raises
  ``TimeoutError``, optionally after a short sleep), :class:`NonFiniteDevice` (NaN / +inf / -inf
  readings), :class:`WrongShapeDevice`, :class:`DriftingDevice` (an output offset that changes
  at every call), :class:`FlakyDevice` (fails the first ``n`` attempts, then answers) and
  :class:`RecordingDevice` (records every setting and flags any outside the space).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from blacksat import ParamSpace


class LinearDevice:
    """``y = x @ W(theta)``: ``theta (d = n_in * n_out,)``, ``x (B, n_in)`` -> ``(B, n_out)``."""

    def __init__(self, n_in: int = 3, n_out: int = 2, bound: float = 1.0) -> None:
        self.n_in, self.n_out = n_in, n_out
        self.space = ParamSpace.box(n_in * n_out, -bound, bound)
        self.input_shape = (n_in,)
        self.output_shape = (n_out,)
        self.received: list[np.ndarray] = []

    def query(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        self.received.append(np.array(theta))
        return x @ np.asarray(theta).reshape(self.n_in, self.n_out)

    def query_many(self, thetas: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.stack([self.query(t, x) for t in thetas])


class _ForwardsRandomState:
    """A wrapper of ``self.inner`` that passes a simulator's random state through (what a
    training checkpoint saves), like :class:`~blacksat.meter.MeteredDevice`."""

    inner: Any

    def rng_state(self):
        """The wrapped simulator's random state (``None`` when it has none)."""
        fn = getattr(self.inner, "rng_state", None)
        return fn() if callable(fn) else None

    def set_rng_state(self, state) -> None:
        fn = getattr(self.inner, "set_rng_state", None)
        if callable(fn):
            fn(state)


class CountingDevice(_ForwardsRandomState):
    """Wraps a device and tallies reconfigurations and samples independently of the meter.

    Every setting sent counts (also when the device then fails: it was commanded). After the
    device raised, the setting it holds is unknown, so the next one counts as a reconfiguration
    (the meter's rule too); :meth:`forget` does the same after a reconnect (a resumed run).
    """

    def __init__(self, inner, *, reprograms_on_query: bool = False) -> None:
        self.inner = inner
        #: True: the driver programs every setting it is sent, the held one included
        self.reprograms_on_query = reprograms_on_query
        self.space = inner.space
        self.input_shape = getattr(inner, "input_shape", None)
        self.output_shape = getattr(inner, "output_shape", None)
        self.reconfigurations = 0
        self.samples = 0
        self.calls = 0
        self._last: np.ndarray | None = None

    def _apply(self, theta: np.ndarray, b: int) -> None:
        if self.reprograms_on_query or self._last is None or np.any(theta != self._last):
            self.reconfigurations += 1
        self._last = np.array(theta)
        self.samples += b

    def reprogram(self, theta) -> None:
        """Program ``theta`` again, held or not (one reconfiguration)."""
        self.reconfigurations += 1
        self._last = np.array(theta)

    def forget(self) -> None:
        """The held setting becomes unknown (the next setting counts as a reconfiguration)."""
        self._last = None

    def query(self, theta, x):
        self.calls += 1
        self._apply(theta, len(x))
        try:
            return self.inner.query(theta, x)
        except BaseException:
            self._last = None
            raise

    def query_many(self, thetas, x):
        self.calls += 1
        for t in thetas:
            self._apply(t, len(x))
        try:
            return self.inner.query_many(thetas, x)
        except BaseException:
            self._last = None
            raise


class FaultyDevice(LinearDevice):
    """A LinearDevice whose k-th call (0-based) misbehaves in a chosen way."""

    def __init__(self, fault: str, at: int = 0, **kw) -> None:
        super().__init__(**kw)
        self.fault, self.at, self.calls = fault, at, 0

    def query_many(self, thetas, x):
        k = self.calls
        self.calls += 1
        y = np.stack([LinearDevice.query(self, t, x) for t in thetas])
        if k != self.at:
            return y
        if self.fault == "raise":
            raise OSError("instrument disconnected")
        if self.fault == "timeout":
            raise TimeoutError("no answer in 5 s")
        if self.fault == "nan":
            y[..., 0] = np.nan
            return y
        if self.fault == "inf":
            y[..., 0] = -np.inf
            return y
        if self.fault == "shape":
            return y[..., :1]
        if self.fault == "object":
            return "garbage"
        raise ValueError(self.fault)

    def query(self, theta, x):
        return self.query_many(np.asarray(theta)[None], x)[0]


# ---------------------------------------------------------------------- fault-injecting wrappers
Calls = int | Iterable[int] | Callable[[int], bool] | None


def _when(at: Calls) -> Callable[[int], bool]:
    """``at``: one call index, several, a predicate of the index, or ``None`` (every call)."""
    if at is None:
        return lambda k: True
    if callable(at):
        return at
    if isinstance(at, int):
        return lambda k: k == at
    chosen = frozenset(int(a) for a in at)
    return lambda k: k in chosen


class _Wrapper(_ForwardsRandomState):
    """Forwards to ``inner``; counts calls (``query`` and ``query_many`` alike, 0-based) and
    lets a subclass act before the call (:meth:`_before`) or on the reading (:meth:`_after`,
    always ``(K, B, *out)``)."""

    def __init__(self, inner, *, reprograms_on_query: bool = False) -> None:
        self.inner = inner
        #: True: the driver programs every setting it is sent, the held one included
        self.reprograms_on_query = reprograms_on_query
        self.space = inner.space
        self.input_shape = getattr(inner, "input_shape", None)
        self.output_shape = getattr(inner, "output_shape", None)
        self.calls = 0

    def _before(self, k: int) -> None:
        pass

    def _after(self, k: int, y: np.ndarray) -> np.ndarray:
        return y

    def query_many(self, thetas, x):
        k = self.calls
        self.calls += 1
        self._before(k)
        y = np.array(self.inner.query_many(thetas, x), dtype=np.float64)
        return self._after(k, y)

    def query(self, theta, x):
        k = self.calls
        self.calls += 1
        self._before(k)
        y = np.array(self.inner.query(theta, x), dtype=np.float64)[None]
        out = self._after(k, y)
        return out[0] if isinstance(out, np.ndarray) and out.ndim >= 1 else out


class RaisingDevice(_Wrapper):
    """Raises ``error`` (default ``OSError``) at the chosen calls, before reaching ``inner``.

    ``armed`` may be switched on and off by a test (a crash "from now on")."""

    def __init__(self, inner, at: Calls = 0, error: BaseException | None = None) -> None:
        super().__init__(inner)
        self.hit = _when(at)
        self.error = error if error is not None else OSError("instrument disconnected")
        self.armed = True
        self.raised = 0

    def _before(self, k: int) -> None:
        if self.armed and self.hit(k):
            self.raised += 1
            raise self.error


class TimeoutDevice(_Wrapper):
    """Raises ``TimeoutError`` at the chosen calls, after sleeping ``delay`` seconds."""

    def __init__(self, inner, at: Calls = 0, delay: float = 0.0) -> None:
        super().__init__(inner)
        self.hit, self.delay = _when(at), float(delay)

    def _before(self, k: int) -> None:
        if self.hit(k):
            if self.delay > 0:
                time.sleep(self.delay)
            raise TimeoutError(f"no answer within {self.delay:g} s")


class NonFiniteDevice(_Wrapper):
    """Puts ``value`` (NaN, +inf or -inf) into the first output of every reading at the chosen
    calls (all settings of a ``query_many`` unless ``settings`` picks some)."""

    def __init__(self, inner, at: Calls = 0, value: float = np.nan, settings=None) -> None:
        super().__init__(inner)
        self.hit, self.value, self.settings = _when(at), float(value), settings

    def _after(self, k: int, y: np.ndarray) -> np.ndarray:
        if self.hit(k):
            rows = slice(None) if self.settings is None else self.settings
            y[rows, ..., 0] = self.value
        return y


class WrongShapeDevice(_Wrapper):
    """Drops the last output channel of the reading at the chosen calls."""

    def __init__(self, inner, at: Calls = 0) -> None:
        super().__init__(inner)
        self.hit = _when(at)

    def _after(self, k: int, y: np.ndarray) -> np.ndarray:
        return y[..., :-1] if self.hit(k) else y


class DriftingDevice(_Wrapper):
    """Adds an offset that changes at every call: ``y + rate * k`` at call ``k`` (a slow drift
    of the readout between the ascent and the descent queries of a step)."""

    def __init__(self, inner, rate: float = 0.01) -> None:
        super().__init__(inner)
        self.rate = float(rate)

    def _after(self, k: int, y: np.ndarray) -> np.ndarray:
        return y + self.rate * k


class FlakyDevice(_Wrapper):
    """Fails the first ``failures`` attempts (``error``, default ``ConnectionError``), then
    answers; :meth:`reset` arms it again."""

    def __init__(self, inner, failures: int = 1, error: BaseException | None = None) -> None:
        super().__init__(inner)
        self.failures, self.left = int(failures), int(failures)
        self.error = error if error is not None else ConnectionError("link dropped")

    def reset(self, failures: int | None = None) -> None:
        self.left = self.failures if failures is None else int(failures)

    def _before(self, k: int) -> None:
        if self.left > 0:
            self.left -= 1
            raise self.error


class RecordingDevice(_Wrapper):
    """Records every setting received (``(d,)`` each) and every one outside ``space`` (the
    inner device's by default): a test asserts ``outside == []`` after the fact, so a violation
    is seen even where the caller would swallow an exception."""

    def __init__(self, inner, space: ParamSpace | None = None) -> None:
        super().__init__(inner)
        self.check = space if space is not None else inner.space
        self.received: list[np.ndarray] = []
        self.outside: list[np.ndarray] = []
        self.dtypes: set[np.dtype] = set()

    def _record(self, thetas) -> None:
        arr = np.asarray(thetas)
        self.dtypes.add(arr.dtype)
        for t in arr.reshape(-1, arr.shape[-1]):
            self.received.append(np.array(t))
            if not self.check.contains(t):
                self.outside.append(np.array(t))

    def query_many(self, thetas, x):
        self._record(thetas)
        return super().query_many(thetas, x)

    def query(self, theta, x):
        self._record(np.asarray(theta)[None])
        return super().query(theta, x)
