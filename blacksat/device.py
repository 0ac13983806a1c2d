"""The ``Device`` and ``Model`` protocols: the user boundary of blacksat.

A :class:`Device` is a query-only black box: set controls ``theta``, forward a batch of inputs
``x``, read outputs. numpy in, numpy out; no gradients, no internals. A lab's hardware driver
satisfies it without importing blacksat (it is a :class:`typing.Protocol`).

A :class:`Model` is a differentiable torch function ``model(theta, x) -> y``: known physics
(exact or imprecise) or a surrogate learned from queries.

Shapes (``d`` controls, ``B`` inputs, ``K`` settings):

- ``query(theta (d,), x (B, *in)) -> (B, *out)``
- ``query_many(thetas (K, d), x (B, *in)) -> (K, B, *out)``: the same ``B`` inputs forwarded
  through each of the ``K`` settings.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from numpy.typing import ArrayLike

from blacksat.errors import ConfigError, NonFiniteError, ShapeError
from blacksat.space import ParamSpace


@runtime_checkable
class Device(Protocol):
    """A query-only device.

    Attributes:
        space: the :class:`~blacksat.ParamSpace` of the controls.

    Optional attributes that blacksat uses when present:

    - ``input_shape`` and ``output_shape`` (shape of one input / one output, without the batch
      axis), used to validate inputs before they are sent and readings after they come back, and
      to build a generic task;
    - ``reprograms_on_query`` (bool, default False): whether the driver programs every setting it
      is sent, even the one the device already holds. False: re-sending the held setting is free
      (no reconfiguration is charged); True: every setting sent is charged one reconfiguration;
    - ``reprogram(theta)``: program ``theta`` again even if it is held (a driver whose
      ``reprograms_on_query`` is False offers it for an explicit, charged re-program, e.g. to
      measure programming noise);
    - ``input_range`` (``(lo, hi)``): the limits of the inputs the device accepts, and
      ``output_kind`` (``"power"``: non-negative optical powers, ``"signed"``: signed
      electrical readings), used to choose a generic task's encoding and readout;
    - ``weight_banks``: the wiring of a device built from weight banks in sequence (micro-ring
      banks, crossbar arrays), ``((rows, cols[, blocks]), ...)`` in control order, each control
      setting one weight (``blocks`` controls per weight, e.g. 2 for a differential pair); the
      query-only default then trains it with
      :class:`~blacksat.estimators.LayeredResponse` (:mod:`blacksat.layered_response`).
    """

    space: ParamSpace

    def query(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``theta (d,)``, ``x (B, *in)`` -> ``(B, *out)``."""
        ...

    def query_many(self, thetas: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``thetas (K, d)``, ``x (B, *in)`` -> ``(K, B, *out)``."""
        ...


@runtime_checkable
class Model(Protocol):
    """A differentiable model of a device.

    ``model(theta (d,), x (B, *in)) -> (B, *out)`` and
    ``model(thetas (K, d), x (B, *in)) -> (K, B, *out)``; torch tensors in and out,
    differentiable in ``theta`` (and in ``x``).
    """

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...


def check_inputs(x: ArrayLike, input_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Validate a batch of device inputs and return it as a float array ``(B, *in)``.

    Raises:
        ShapeError: not an array with a non-empty batch axis, or (when ``input_shape`` is
            given) the trailing shape differs.
        NonFiniteError: NaN or +-inf in the inputs.
    """
    try:
        arr = np.asarray(x)
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError(arr.dtype)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"inputs x must be a numeric array, got {type(x).__name__}") from exc
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise ShapeError(f"inputs x must be a non-empty batch (B, ...), got shape {arr.shape}")
    if input_shape is not None and tuple(arr.shape[1:]) != tuple(input_shape):
        raise ShapeError(
            f"inputs x must have shape (B, {', '.join(map(str, input_shape))}), got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"inputs x hold {int(np.sum(~np.isfinite(arr)))} NaN/inf value(s)")
    return arr


def device_shapes(device: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(input_shape, output_shape)`` of a device; a ConfigError when it declares none."""
    out = []
    for name in ("input_shape", "output_shape"):
        s = getattr(device, name, None)
        try:
            shape = tuple(int(v) for v in s)  # type: ignore[union-attr]
            ok = len(shape) >= 1 and all(v >= 1 for v in shape)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(
                f"{type(device).__name__} declares no valid {name} (got {s!r}); a task needs "
                "the device's input_shape and output_shape (shapes of one input / one reading)"
            )
        out.append(shape)
    return out[0], out[1]


def query_many_by_loop(device: Any, thetas: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``query_many`` for a device that only implements ``query``: one call per setting.

    ``thetas (K, d)``, ``x (B, *in)`` -> ``(K, B, *out)``.
    """
    return np.stack([np.asarray(device.query(t, x)) for t in np.asarray(thetas)])


__all__ = ["Device", "Model", "check_inputs", "device_shapes", "query_many_by_loop"]
