"""A PNN task: data + encoding into the device + optional digital layers + readout + loss.

The forward path of a hybrid physical/digital network::

    features (B, f) --front--> (B, m) --encoder--> device inputs (B, *in)
        --device or model(theta)--> outputs (B, *out) --readout--> (B, C) --back--> logits (B, C)

``front`` and ``back`` are optional trainable digital layers (``torch.nn.Module``); ``encoder`` and
``readout`` are fixed, differentiable maps. The same :class:`Task` runs against a differentiable
:class:`~blacksat.Model` (torch, gradients flow to ``theta`` and to the digital layers) and against
a query-only :class:`~blacksat.Device` (numpy at the edge, no gradients).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from blacksat.data import Dataset
from blacksat.errors import ConfigError
from blacksat.objective import Batch

TensorMap = Callable[[torch.Tensor], torch.Tensor]


class Identity(nn.Module):
    """``x -> x``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class UnitPower(nn.Module):
    """Normalise each input field to unit optical power: ``(B, m) -> x / ||x||_2``.

    Negative values are allowed (a coherent field's real amplitude). All-zero rows map to a
    uniform field, never to NaN.
    """

    def __init__(self, eps: float = 1e-12) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.norm(dim=-1, keepdim=True)
        uniform = torch.full_like(x, 1.0 / np.sqrt(x.shape[-1]))
        return torch.where(norm > self.eps, x / norm.clamp_min(self.eps), uniform)


class ImageToGrid(nn.Module):
    """Place a flattened ``(h, w)`` image centred on an ``(n, n)`` grid: ``(B, h*w) -> (B, n, n)``.

    The image is resized (bilinear) to ``round(fill * n)`` pixels square and zero-padded.
    """

    def __init__(self, image_shape: tuple[int, int], grid: int, fill: float = 0.5) -> None:
        super().__init__()
        if not 0 < fill <= 1:
            raise ConfigError(f"fill must be in (0, 1], got {fill!r}")
        self.image_shape = tuple(image_shape)
        self.grid = int(grid)
        self.size = max(1, round(fill * grid))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        img = x.reshape(-1, 1, *self.image_shape)
        img = F.interpolate(img, size=(self.size, self.size), mode="bilinear", align_corners=False)
        lo = (self.grid - self.size) // 2
        hi = self.grid - self.size - lo
        return F.pad(img, (lo, hi, lo, hi))[:, 0]


class Ports(nn.Module):
    """Read class scores off the first ``n`` output channels: ``(..., m) -> (..., n)``.

    With ``normalize=True`` the class channels are divided by the total detected power (the
    fraction of it on each class port; ``total=False``: by the class channels' own sum), then
    multiplied by ``scale`` (a softmax temperature).

    Dividing by the total matters on a noisy detector: normalised by their own sum, the class
    scores are blind to how much light reaches the class ports, so training free to route almost
    all power elsewhere finds solutions that readout noise destroys (a white-box-trained 16-mode
    mesh put 1 % of the power on its class ports and fell from 95 % to 35 % on the noisy chip).
    """

    def __init__(
        self, n: int, *, normalize: bool = True, scale: float = 1.0, total: bool = True
    ) -> None:
        super().__init__()
        self.n = int(n)
        self.normalize = normalize
        self.scale = float(scale)
        self.total = bool(total)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            norm = y if self.total else y[..., : self.n]
            y = y[..., : self.n] / norm.abs().sum(dim=-1, keepdim=True).clamp_min(1e-12)
            return self.scale * y
        return self.scale * y[..., : self.n]


class Task:
    """Data, encoding, digital layers, readout and loss of a PNN.

    Args:
        data: the dataset (train/test split).
        input_shape: shape of one device input (no batch axis); checked on every encode.
        encoder: fixed map from (front-end) features to device inputs; default identity.
        readout: fixed map from device outputs to class scores; default identity.
        front: optional trainable digital layer(s) before the device.
        back: optional trainable digital layer(s) after the readout.
    """

    def __init__(
        self,
        data: Dataset,
        *,
        input_shape: tuple[int, ...],
        encoder: TensorMap | None = None,
        readout: TensorMap | None = None,
        front: nn.Module | None = None,
        back: nn.Module | None = None,
    ) -> None:
        self.data = data
        self.input_shape = tuple(int(s) for s in input_shape)
        self.encoder = encoder if encoder is not None else Identity()
        self.readout = readout if readout is not None else Identity()
        self.front = front
        self.back = back
        self.dtype = torch.float32
        #: how the task was chosen (e.g. a generic task's front end, encoding and readout)
        self.choices: dict[str, Any] = {}

    def to(self, dtype: torch.dtype) -> Task:
        """Cast every tensor the task owns (the digital layers, and the parameters and buffers
        of an encoder or readout that is a module) and the features it produces to ``dtype``
        (in place); returns ``self``."""
        for m in (self.front, self.back, self.encoder, self.readout):
            if isinstance(m, nn.Module):
                m.to(dtype)
        self.dtype = dtype
        return self

    # ------------------------------------------------------------------ pieces
    def digital_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters of the digital layers (empty without any)."""
        mods = [m for m in (self.front, self.back) if m is not None]
        return [p for m in mods for p in m.parameters()]

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """``features (B, f)`` -> device inputs ``(B, *in)`` (differentiable in ``front``)."""
        h = self.front(features) if self.front is not None else features
        x = self.encoder(h)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ConfigError(
                f"the task encodes inputs of shape {tuple(x.shape[1:])}, but the device expects "
                f"{self.input_shape}: check the front end / encoder"
            )
        return x

    def decode(self, outputs: torch.Tensor) -> torch.Tensor:
        """Device outputs ``(..., B, *out)`` -> logits ``(..., B, C)``."""
        z = self.readout(outputs)
        return self.back(z) if self.back is not None else z

    @staticmethod
    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy; ``logits (B, C)`` or ``(K, B, C)`` -> scalar or ``(K,)``."""
        if logits.ndim == 2:
            return F.cross_entropy(logits, labels)
        k, b, c = logits.shape
        per = F.cross_entropy(logits.reshape(k * b, c), labels.repeat(k), reduction="none")
        return per.reshape(k, b).mean(dim=1)

    # ------------------------------------------------------------------ forward paths
    def logits_model(self, model: Any, theta: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Differentiable logits through a model: ``theta (d,)|(K, d)`` -> ``(B, C)|(K, B, C)``."""
        return self.decode(model(theta, self.encode(features)))

    def logits_device(self, device: Any, theta: np.ndarray, features: torch.Tensor) -> torch.Tensor:
        """Logits from one query of ``device`` at ``theta (d,)`` (no gradient): ``(B, C)``."""
        with torch.no_grad():
            x = self.encode(features).double().numpy()
            y = torch.as_tensor(device.query(theta, x))
            return self.decode(y.to(features.dtype))

    def batches(
        self, split: str, batch_size: int | None, rng: np.random.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Minibatches ``(features (B, f) in self.dtype, labels (B,) int64)``; shuffled iff
        ``rng``."""
        for b in self.minibatches(split, batch_size, rng):
            yield b.features, b.labels

    def batch(self, split: str, index: np.ndarray) -> Batch:
        """The :class:`~blacksat.objective.Batch` of samples ``index`` of ``split``."""
        x, y = self.data.split(split)
        idx = np.asarray(index, dtype=np.int64)
        return Batch(
            torch.as_tensor(x[idx], dtype=self.dtype), torch.as_tensor(y[idx]), torch.as_tensor(idx)
        )

    def minibatches(
        self, split: str, batch_size: int | None, rng: np.random.Generator | None = None
    ) -> Iterator[Batch]:
        """One epoch of :class:`~blacksat.objective.Batch` es; shuffled iff ``rng``."""
        n = len(self.data.split(split)[1])
        order = rng.permutation(n) if rng is not None else np.arange(n)
        step = n if batch_size is None else int(batch_size)
        if step < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
        for i in range(0, n, step):
            yield self.batch(split, order[i : i + step])

    def accuracy(
        self, target: Any, theta: Any, *, split: str = "test", batch_size: int | None = 512
    ) -> float:
        """Accuracy on the *full* split through a device (``query``) or a differentiable model.

        A device sees one query per batch at the same ``theta`` (one reconfiguration in all on
        a metered device).
        """
        correct = 0
        total = 0
        with torch.no_grad():
            for xb, yb in self.batches(split, batch_size):
                if hasattr(target, "query"):
                    logits = self.logits_device(target, np.asarray(theta, dtype=np.float64), xb)
                else:
                    t = torch.as_tensor(theta, dtype=self.dtype)
                    logits = self.logits_model(target, t, xb)
                correct += int((logits.argmax(-1) == yb).sum())
                total += len(yb)
        return correct / total


__all__ = ["Identity", "ImageToGrid", "Ports", "Task", "UnitPower"]
