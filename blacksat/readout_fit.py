"""Re-fit the digital readout of a trained PNN on the chip it is deployed to, from one setting.

Offline training on an imprecise model leaves the controls where the *model* separates the
classes; on a chip with fabrication errors the same setting still maps the classes to distinct
output patterns, only not to the ports the fixed readout expects. Configuring the chip once and
reading a labelled set through it is enough to fit a linear classifier on *all* its outputs:
one reconfiguration, no gradient through the chip, no change to the controls.
``benchmarks/mzi_hybrid.py`` measures it on the 0.15/0.15 MZI chips: offline BP 68 -> 91 % on the
two-layer hybrid, 83 -> 93 % on one mesh, from one configuration reading the training split.

The chip is only queried (through a :class:`~blacksat.meter.MeteredDevice`, budgets checked before
the query goes out); the fit itself is digital (L-BFGS on a cross-entropy with a small L2 term).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from blacksat.errors import ConfigError, ShapeError
from blacksat.meter import Ledger, MeteredDevice
from blacksat.task import Ports
from blacksat.validation import check_int


def refit_readout(
    task: Any,
    device: Any,
    theta: Any,
    *,
    n_samples: int | None = None,
    seed: int = 0,
    l2: float = 1e-3,
    normalize: bool | None = None,
) -> tuple[Any, Ledger]:
    """A copy of ``task`` whose readout is a linear classifier fitted on ``device`` at ``theta``.

    The training split (or ``n_samples`` random samples of it, drawn with ``seed``) is encoded
    by the task's front end and sent through the device in ONE query at ``theta``. The readings
    ``(n, n_out)``, divided by their total absolute power when ``normalize`` (the power-fraction
    readout of the MZI and diffractive tasks; ``False`` for signed readings such as MRR
    photocurrents), are standardised and a multinomial logistic regression ``Linear(n_out, C)``
    is fitted with L-BFGS (L2 weight ``l2``); the standardisation is folded into the layer.

    The copy's ``readout`` is ``Ports(n_out, normalize=normalize, scale=1)`` (every output) and
    its ``back`` is the fitted layer, replacing any previous back end; the front end, encoder
    and data are shared with ``task``. Retrain or evaluate with the copy as with any task.

    Args:
        task: the trained :class:`~blacksat.task.Task`.
        device: a :class:`~blacksat.devices`-style ``Device`` or a ``MeteredDevice`` (its budget
            and observers apply; a bare device is metered here).
        theta: ``(d,)`` the deployed controls.
        n_samples: training samples read (``None`` = the whole training split).
        seed: the draw of those samples.
        l2: L2 weight of the fit (>= 0).
        normalize: divide each reading vector by its total absolute power first; ``None``
            (default): when the device declares ``output_kind == "power"`` (optical), never for
            ``"signed"`` readings, and as the task's own readout does when it declares neither.

    Returns:
        ``(new_task, cost)``: the task with the fitted readout and the :class:`Ledger` the query
        spent (one reconfiguration, ``n`` samples on a fresh setting).
    """
    if normalize is None:
        kind = getattr(device, "output_kind", None)
        inner = getattr(task.readout, "inner", task.readout)
        normalize = kind == "power" if kind else bool(getattr(inner, "normalize", False))
    x_tr, y_tr = task.data.split("train")
    n_train = len(y_tr)
    if n_samples is not None:
        check_int("n_samples", n_samples, low=2, high=n_train)  # at most the training split
        idx = np.random.default_rng(seed).permutation(n_train)[: int(n_samples)]
        x_tr, y_tr = x_tr[idx], y_tr[idx]
    number = isinstance(l2, (int, float)) and not isinstance(l2, bool)
    if not (number and math.isfinite(l2) and l2 >= 0):
        raise ConfigError(f"l2 must be a finite number >= 0, got {l2!r}")
    meter = device if isinstance(device, MeteredDevice) else MeteredDevice(device)
    with torch.no_grad():
        x = task.encode(torch.as_tensor(x_tr, dtype=task.dtype)).double().numpy()
    before = meter.ledger
    readings = np.asarray(meter.query(np.asarray(theta, dtype=np.float64), x))
    cost = meter.ledger - before
    if readings.ndim != 2:
        raise ShapeError(
            f"refit_readout needs flat readings (n, n_out), the device returned {readings.shape}"
        )
    z = torch.as_tensor(readings, dtype=torch.float64)
    if normalize:
        z = z / z.abs().sum(-1, keepdim=True).clamp_min(1e-12)
    mu, sd = z.mean(0), z.std(0).clamp_min(1e-6)
    zs = (z - mu) / sd
    labels = torch.as_tensor(np.asarray(y_tr), dtype=torch.int64)
    n_out, c = z.shape[1], task.data.n_classes
    lin = nn.Linear(n_out, c).double()
    with torch.no_grad():  # a deterministic start (the global RNG is never touched)
        lin.weight.zero_()
        lin.bias.zero_()
    opt = torch.optim.LBFGS(lin.parameters(), lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(lin(zs), labels) + l2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    back = nn.Linear(n_out, c)
    with torch.no_grad():  # fold the standardisation into the layer
        back.weight.copy_(lin.weight / sd)
        back.bias.copy_(lin.bias - (lin.weight / sd) @ mu)
    new = copy.copy(task)
    new.readout = Ports(n_out, normalize=normalize, scale=1.0)
    new.back = back.to(task.dtype)
    return new, cost


__all__ = ["refit_readout"]
