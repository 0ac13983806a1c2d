"""Test doubles: plain devices that satisfy the Device protocol without importing blacksat's
device machinery (only ParamSpace, which a lab driver would build too)."""

from __future__ import annotations

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


class CountingDevice:
    """Wraps a device and tallies reconfigurations and samples independently of the meter."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.space = inner.space
        self.input_shape = getattr(inner, "input_shape", None)
        self.output_shape = getattr(inner, "output_shape", None)
        self.reconfigurations = 0
        self.samples = 0
        self._last: np.ndarray | None = None

    def _apply(self, theta: np.ndarray, b: int) -> None:
        if self._last is None or np.any(theta != self._last):
            self.reconfigurations += 1
        self._last = np.array(theta)
        self.samples += b

    def query(self, theta, x):
        self._apply(theta, len(x))
        return self.inner.query(theta, x)

    def query_many(self, thetas, x):
        for t in thetas:
            self._apply(t, len(x))
        return self.inner.query_many(thetas, x)


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
