"""Where tensors live: torch devices for simulations, models and surrogates.

blacksat's interfaces speak numpy (a :class:`~blacksat.Device` answers float64 arrays) or CPU
tensors (the trainer's controls). Models and simulations may run elsewhere (``"cuda"``): they
take inputs from wherever the caller keeps them, compute where their own tensors live, and hand
results back to the caller's torch device. These helpers implement that convention once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from blacksat.errors import ConfigError, ShapeError


def resolve_torch_device(value: torch.device | str) -> torch.device:
    """A usable torch device from a name (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).

    Raises:
        ConfigError: not a torch device name, or a CUDA / MPS device this machine lacks.
    """
    try:
        where = torch.device(value)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"torch_device must name a torch device ('cpu', 'cuda', 'cuda:1'), got {value!r}"
        ) from None
    if where.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"torch_device must be a cpu, cuda or mps device, got {str(where)!r}")
    if where.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"torch_device {str(where)!r}: no CUDA device is available here")
    if where.type == "cuda" and where.index is not None:
        if where.index >= torch.cuda.device_count():
            raise ConfigError(
                f"torch_device {str(where)!r}: this machine has {torch.cuda.device_count()} "
                "CUDA device(s)"
            )
    if where.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("torch_device 'mps': no MPS device is available here")
    return where


def module_device(module: nn.Module) -> torch.device | None:
    """The torch device of a module's first buffer or parameter (``None`` if it has none)."""
    for t in module.buffers():
        return t.device
    for t in module.parameters():
        return t.device
    return None


def call_batched(
    forward_many: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    theta: torch.Tensor,
    x: torch.Tensor,
    where: torch.device | None,
) -> torch.Tensor:
    """The model call convention: ``theta (d,)``, ``x (B, *in)`` -> ``(B, *out)``, or
    ``theta (K, d)`` -> ``(K, B, *out)`` through ``forward_many`` (batched form only).

    Inputs move to ``where`` (the model's torch device) when they live elsewhere, and the
    result comes back to ``theta``'s torch device; autograd follows the moves.
    """
    theta = torch.as_tensor(theta)
    x = torch.as_tensor(x)
    home = theta.device
    if where is not None and where != home:
        theta, x = theta.to(where), x.to(where)
    if theta.ndim == 1:
        return forward_many(theta[None], x)[0].to(home)
    if theta.ndim != 2:
        raise ShapeError(f"theta must be (d,) or (K, d), got shape {tuple(theta.shape)}")
    return forward_many(theta, x).to(home)


__all__ = ["call_batched", "module_device", "resolve_torch_device"]
