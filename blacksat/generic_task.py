"""A task for any device that declares its shapes, built from the data alone.

``generic_task(device, data)`` needs only ``device.input_shape`` and ``device.output_shape``;
it reads, when present, ``device.input_range`` (the limits of the inputs it accepts) and
``device.output_kind`` (``"power"``: non-negative optical powers; ``"signed"``: signed electrical
readings). The pieces:

- **front end** (fixed, ``features (B, f) -> (B, n)`` with ``n`` the device's input size):
  ``"pca"`` (principal components fitted on the training split only), ``"dct"`` (the first
  ``n`` DCT-II basis vectors, data-free), ``"random"`` (a seeded Gaussian projection,
  data-free) or ``"none"`` (``f == n``). Outputs are standardised with training-split
  statistics;
- **encoding** into the device's input limits: ``lo + (hi - lo) sigmoid(z)`` (always inside);
- **readout**: ``"fractions"`` (the power fraction on each class output, times a softmax
  temperature: optical), ``"signed"`` (the first ``C`` readings as logits, times ``scale``:
  electrical) or ``"linear"`` (a trainable digital back end ``Linear(m, C)`` on all ``m``
  readings; its gradient is exact from the paid readings).

Defaults come from what the device declares, never silently optical: ``"pca"`` when
``f > n`` (``"random"`` when ``f < n``), input limits ``[0, 1]`` when undeclared, ``"fractions"``
only for ``output_kind == "power"``, else ``"signed"`` (``"linear"`` when the device has fewer
outputs than classes). :attr:`Task.choices` records what was chosen.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from blacksat.data import Dataset
from blacksat.errors import ConfigError
from blacksat.task import Ports, Task

FRONTS = ("auto", "pca", "dct", "random", "none")
READOUTS = ("auto", "fractions", "signed", "linear")


class Projection(nn.Module):
    """A fixed affine front end ``z = ((x - mean) @ matrix) / scale``: ``(B, f) -> (B, n)``
    (buffers, moved by :meth:`Task.to`)."""

    matrix: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, matrix: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix.to(torch.float32))
        self.register_buffer("mean", mean.to(torch.float32))
        self.register_buffer("scale", scale.to(torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) @ self.matrix) / self.scale


class RangeEncoder(nn.Module):
    """Map standardised features into ``[lo, hi]``: ``lo + (hi - lo) sigmoid(z)``, then
    reshape to the device's input shape."""

    def __init__(self, lo: float, hi: float, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.lo, self.hi, self.shape = float(lo), float(hi), tuple(shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.lo + (self.hi - self.lo) * torch.sigmoid(z)
        return x.reshape(x.shape[0], *self.shape)


class Flatten(nn.Module):
    """``(..., B, *out) -> (..., B, m)`` for a readout on a flat reading, then ``inner``."""

    def __init__(self, n_out_dims: int, inner: nn.Module) -> None:
        super().__init__()
        self.n_out_dims, self.inner = int(n_out_dims), inner

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.inner(y.flatten(start_dim=y.ndim - self.n_out_dims))


def dct_matrix(f: int, n: int) -> torch.Tensor:
    """``(f, n)``: the first ``n`` orthonormal DCT-II basis vectors of length ``f``."""
    i = torch.arange(f, dtype=torch.float64)[:, None]
    k = torch.arange(n, dtype=torch.float64)[None, :]
    m = torch.cos(math.pi * (i + 0.5) * k / f) * math.sqrt(2.0 / f)
    m[:, 0] /= math.sqrt(2.0)
    return m


def front_end(kind: str, train_x: np.ndarray, n: int, seed: int) -> Projection:
    """A fixed front end of ``kind`` (``"pca"``, ``"dct"``, ``"random"``, ``"none"``) from
    ``f`` features to ``n``, standardised on the training features ``train_x (N, f)``."""
    x = torch.as_tensor(np.asarray(train_x, dtype=np.float64))
    f = x.shape[1]
    mean = x.mean(0)
    if kind == "none":
        if f != n:
            raise ConfigError(f"front end 'none' needs as many features ({f}) as inputs ({n})")
        m = torch.eye(f, dtype=torch.float64)
    elif kind == "pca":
        if n > min(x.shape):
            raise ConfigError(f"PCA cannot give {n} components from {tuple(x.shape)} data")
        _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
        m = vh[:n].T
    elif kind == "dct":
        if n > f:
            raise ConfigError(f"a DCT front end gives at most {f} components, {n} asked")
        m = dct_matrix(f, n)
    elif kind == "random":
        gen = torch.Generator().manual_seed(int(seed))
        m = torch.randn(f, n, generator=gen, dtype=torch.float64) / math.sqrt(f)
    else:
        raise ConfigError(f"front must be one of {list(FRONTS)}, got {kind!r}")
    z = (x - mean) @ m
    scale = z.std(0).clamp_min(1e-8)
    return Projection(m, mean, scale)


def _seeded_linear(n_in: int, n_out: int, seed: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    gen = torch.Generator().manual_seed(int(seed))
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        layer.weight.copy_(torch.empty(n_out, n_in).uniform_(-bound, bound, generator=gen))
        layer.bias.copy_(torch.empty(n_out).uniform_(-bound, bound, generator=gen))
    return layer


def generic_task(
    device: Any,
    data: Dataset,
    *,
    front: str = "auto",
    readout: str = "auto",
    scale: float | None = None,
    seed: int = 0,
) -> Task:
    """The task of ``device`` for ``data`` from the device's declarations (module docstring).

    Args:
        front: ``"auto"``, ``"pca"``, ``"dct"``, ``"random"`` or ``"none"``.
        readout: ``"auto"``, ``"fractions"``, ``"signed"`` or ``"linear"``.
        scale: logits per unit of the readout (default 10 for fractions, 1 for signed).
        seed: of the random projection and the back end's initialisation.
    """
    from blacksat.device import device_shapes as shapes

    in_shape, out_shape = shapes(device)
    n, m, c = int(np.prod(in_shape)), int(np.prod(out_shape)), data.n_classes
    f = data.n_features
    if front not in FRONTS:
        raise ConfigError(f"front must be one of {list(FRONTS)}, got {front!r}")
    if readout not in READOUTS:
        raise ConfigError(f"readout must be one of {list(READOUTS)}, got {readout!r}")
    kind = getattr(device, "output_kind", None)
    if kind not in (None, "power", "signed"):
        raise ConfigError(f"device.output_kind must be 'power' or 'signed', got {kind!r}")
    raw_range = getattr(device, "input_range", None)
    lo, hi = (0.0, 1.0) if raw_range is None else (float(raw_range[0]), float(raw_range[1]))
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(
            f"device.input_range must be finite (lo, hi) with lo < hi, got {raw_range!r}"
        )
    if front == "auto":
        front = "none" if f == n else ("pca" if f > n else "random")
    if readout == "auto":
        readout = "fractions" if kind == "power" else ("signed" if m >= c else "linear")
    if readout in ("fractions", "signed") and m < c:
        raise ConfigError(
            f"the device has {m} outputs, fewer than the {c} classes: use readout='linear'"
        )
    train_x = data.split("train")[0]
    proj = front_end(front, train_x, n, seed)
    encoder = nn.Sequential(proj, RangeEncoder(lo, hi, in_shape))
    back = None
    if readout == "fractions":
        s = 10.0 if scale is None else float(scale)
        head: nn.Module = Flatten(len(out_shape), Ports(c, normalize=True, scale=s))
    elif readout == "signed":
        s = 1.0 if scale is None else float(scale)
        head = Flatten(len(out_shape), Ports(c, normalize=False, scale=s))
    else:
        s = 1.0 if scale is None else float(scale)
        head = Flatten(len(out_shape), Ports(m, normalize=False, scale=s))
        back = _seeded_linear(m, c, seed)
    task = Task(data, input_shape=in_shape, encoder=encoder, readout=head, back=back)
    task.choices = {
        "front": front,
        "encoding": f"sigmoid into [{lo:g}, {hi:g}]"
        + ("" if raw_range is not None else " (device declares no input_range)"),
        "readout": readout,
        "scale": s,
        "output_kind": kind,
    }
    return task


__all__ = [
    "FRONTS",
    "READOUTS",
    "Flatten",
    "Projection",
    "RangeEncoder",
    "dct_matrix",
    "front_end",
    "generic_task",
]
