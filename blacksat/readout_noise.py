"""``ReadoutNoise``: a differentiable model of a device's *readings*, not of its noise-free truth.

Offline training (on an exact model, a grey box or a physics-free surrogate) sees outputs
without the detector's noise, so it is free to find settings whose class readings differ by
less than that noise: on the device they read as chance (the query-efficiency study's
16 x 16 diffractive network, ``BENCHMARKS.md``, shows it).

``ReadoutNoise(model, std)`` adds independent Gaussian noise of standard deviation ``std``
(output units, what :func:`blacksat.characterize.characterize` reports as ``readout_noise``)
to every output at every call, so that training pays for readings the detector cannot tell
apart. Gradients flow through ``model`` unchanged (the noise does not depend on ``theta``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from blacksat.errors import ConfigError
from blacksat.validation import check_int


class ReadoutNoise(nn.Module):
    """``model``'s outputs plus fresh Gaussian readout noise at every call.

    ``forward(theta (d,), x (B, *in)) -> (B, *out)`` and ``forward(thetas (K, d), x) ->
    (K, B, *out)``, as ``model``; the noise has the output's shape, dtype and torch device.

    Args:
        model: a :class:`~blacksat.Model` (``model(theta, x)``; e.g. ``chip.exact_model()``,
            a grey box, a fitted surrogate).
        std: the readout noise's standard deviation in output units: one number, or one per
            output (an array broadcastable to ``(*out,)``); finite, ``>= 0`` (0 adds nothing).
        seed: seed of the noise stream (the same seed draws the same noise, call for call).

    Raises:
        ConfigError: ``model`` is not callable, or ``std`` is negative, non-finite or complex.
    """

    std: torch.Tensor  # a buffer: follows the module's dtype and device

    def __init__(self, model: Any, std: float | np.ndarray, *, seed: int = 0) -> None:
        super().__init__()
        if not callable(model):
            raise ConfigError(
                f"model must be callable as model(theta, x), got {type(model).__name__}"
            )
        arr = np.asarray(std)
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ConfigError(f"std must be a real number or array, got {std!r}")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ConfigError(f"std must be finite and >= 0, got {std!r}")
        self.model = model
        self.register_buffer("std", torch.as_tensor(arr), persistent=False)
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    def reset(self) -> None:
        """Restart the noise stream (the next call draws what the first call drew)."""
        self._gen = torch.Generator().manual_seed(self.seed)

    def forward(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.add(self.model(theta, x))

    def add(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` (real readings of any shape ending in the outputs') plus the next draw of
        this stream's noise."""
        if not bool(torch.any(self.std > 0)):
            return y
        if y.is_complex():
            raise ConfigError("ReadoutNoise wraps a model of real readings, got complex outputs")
        try:
            torch.broadcast_shapes(y.shape, self.std.shape)
        except RuntimeError:
            raise ConfigError(
                f"ReadoutNoise std of shape {tuple(self.std.shape)} does not fit readings of "
                f"shape {tuple(y.shape)} (one value, or one per output)"
            ) from None
        noise = torch.randn(y.shape, generator=self._gen, dtype=y.dtype).to(y.device)
        return y + noise * self.std.to(device=y.device, dtype=y.dtype)

    def family(self, family: Callable[..., Any]) -> Callable[..., Any]:
        """``family(**nuisance) -> model`` (e.g. ``chip.model_family()``) with this noise
        stream added to the readings of every model it builds (one stream for all of them)."""

        def build(**nuisance: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
            model = family(**nuisance)
            return lambda theta, x: self.add(model(theta, x))

        return build

    def extra_repr(self) -> str:
        s = self.std
        return f"std={float(s):.4g}" if s.ndim == 0 else f"std=<per output, shape {tuple(s.shape)}>"


def pooled_readout_variance(readings: np.ndarray) -> tuple[float, int]:
    """``readings (copies, B, ...)``: the same ``B`` inputs read ``copies`` times within one
    query (one programming) -> the pooled variance of the copies (the read noise alone, output
    units squared) and its degrees of freedom."""
    y = np.asarray(readings, dtype=np.float64)
    if y.ndim < 2 or y.shape[0] < 2:
        raise ConfigError(f"readings must be (copies >= 2, B, ...), got shape {y.shape}")
    y = y.reshape(y.shape[0], y.shape[1], -1)
    var = float(np.mean(np.var(y, axis=0, ddof=1)))
    return var, (y.shape[0] - 1) * y.shape[1] * y.shape[2]


def measure_readout_noise(
    device: Any, x: np.ndarray, theta: np.ndarray | None = None, *, copies: int = 4
) -> float:
    """The readout noise's standard deviation (output units) from **one** query of ``device``:
    the inputs ``x (B, *in)`` repeated ``copies`` times at ``theta (d,)`` (default: the centre
    of ``device.space``); what :class:`ReadoutNoise` takes. Metered like any query (one
    reconfiguration, ``copies * B`` samples). :func:`blacksat.characterize.characterize`
    reports the same figure with its confidence interval."""
    copies = int(check_int("copies", copies, low=2))
    x = np.asarray(x, dtype=np.float64)
    theta = device.space.center.copy() if theta is None else np.asarray(theta, dtype=np.float64)
    y = np.asarray(device.query(theta, np.concatenate([x] * copies)))
    var, _ = pooled_readout_variance(y.reshape(copies, x.shape[0], -1))
    return math.sqrt(var)


__all__ = ["ReadoutNoise", "measure_readout_noise", "pooled_readout_variance"]
