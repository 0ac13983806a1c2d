"""Default PNN tasks: how a dataset is encoded into each simulated device and read out.

- ``mzi``: a digital front end ``Linear(f, N)`` (when ``f != N``) maps features to ``N`` real
  field amplitudes, normalised to unit power; class scores are the power fractions on the first
  ``C`` output ports (times a softmax temperature).
- ``mzi-hybrid``: the same encoding (into mesh 1) and readout (on mesh 2's output ports).
- ``mrr``: features in ``[0, 1]`` are the optical powers on the first bank's wavelengths
  (a front end ``Linear`` + sigmoid only if the widths differ); the last bank's photocurrents
  are the class scores.
- any other device (the crossbar, a lab's own): :func:`blacksat.generic_task.generic_task`.
- ``diffractive``: the image is placed centred on the SLM grid as an amplitude pattern; class
  scores are the power fractions in the detector regions (times a softmax temperature).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from blacksat.data import Dataset
from blacksat.errors import ConfigError
from blacksat.task import ImageToGrid, Ports, Task, UnitPower


def seeded_linear(n_in: int, n_out: int, seed: int) -> nn.Linear:
    """``nn.Linear`` initialised like PyTorch's default, from its own generator (the global
    RNG is never touched)."""
    layer = nn.Linear(n_in, n_out)
    gen = torch.Generator().manual_seed(int(seed))
    bound = 1.0 / np.sqrt(n_in)
    with torch.no_grad():
        layer.weight.copy_(torch.empty(n_out, n_in).uniform_(-bound, bound, generator=gen))
        layer.bias.copy_(torch.empty(n_out).uniform_(-bound, bound, generator=gen))
    return layer


def default_task(
    device: Any,
    data: Dataset,
    *,
    seed: int = 0,
    temperature: float = 10.0,
    front: bool | None = None,
) -> Task:
    """The default :class:`~blacksat.task.Task` for a device and a dataset: the tuned encoding
    of each photonic simulator (by its registry name), else
    :func:`~blacksat.generic_task.generic_task` from what the device declares (the crossbar, a
    lab's own device).

    ``temperature`` scales normalised port powers into logits (MZI and diffractive). ``front``
    (MZI, hybrid, MRR): a trainable digital front end ``Linear(features, inputs)`` always
    (``True``, the paper's MZI set-up: a digital layer feeds the mesh), never (``False``: the
    features must match the device's inputs) or only where the widths differ (``None``).
    """
    name = getattr(device, "name", None)
    if name not in ("mzi", "mzi-hybrid", "mrr", "diffractive"):
        from blacksat.generic_task import generic_task

        return generic_task(device, data, seed=seed)
    f, c = data.n_features, data.n_classes
    out = tuple(device.output_shape)
    if out[-1] < c:
        raise ConfigError(f"{name} device has {out[-1]} outputs, fewer than {c} classes")
    if name in ("mzi", "mzi-hybrid", "mrr"):
        n = device.input_shape[0]
        use = f != n if front is None else front
        if not use and f != n:
            raise ConfigError(f"front=False needs {n} features for {name}, the data has {f}")
    if name in ("mzi", "mzi-hybrid"):
        return Task(
            data,
            input_shape=device.input_shape,
            front=seeded_linear(f, n, seed) if use else None,
            encoder=UnitPower(),
            readout=Ports(c, normalize=True, scale=temperature),
        )
    if name == "mrr":
        return Task(
            data,
            input_shape=device.input_shape,
            front=nn.Sequential(seeded_linear(f, n, seed), nn.Sigmoid()) if use else None,
            readout=Ports(c, normalize=False),
        )
    if name == "diffractive":
        if data.image_shape is None:
            raise ConfigError("the diffractive device needs image data (dataset.image_shape)")
        grid = device.input_shape[-1]
        return Task(
            data,
            input_shape=device.input_shape,
            encoder=ImageToGrid(data.image_shape, grid),
            readout=Ports(c, normalize=True, scale=temperature),
        )
    raise ConfigError(f"no default task for device {name!r}")


__all__ = ["default_task", "seeded_linear"]
