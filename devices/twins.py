"""Noise-aware twins: a nominal model that draws a fresh fabrication of its *known* error types
on every call.

Training through such a twin is noise-aware training with the errors' true statistics (the
baseline SAT is measured against): the loss is averaged over chips of the process, while the
hidden effects a lab cannot state stay unknown. :class:`ErrorTwin` works on any model whose
physics modules hold their error parameters as named tensors (buffers or attributes);
:func:`mzi_error_twin` is the MZI mesh's instance (coupler errors and phase offsets, in one mesh
or in both meshes of a hybrid).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from blacksat.errors import ConfigError
from blacksat.validation import as_generator, check_real

from .mzi import MZIPhysics


class ErrorTwin(nn.Module):
    """``nominal`` with its error tensors redrawn ``N(0, scale^2)`` before every forward call.

    ``twin(theta, x)`` has ``nominal``'s signature and shapes. A deep copy of ``nominal`` is held,
    so the model given is never mutated.

    Args:
        nominal: the nominal model (a ``torch.nn.Module``).
        scales: error tensor name -> standard deviation of its draw (``>= 0``), e.g.
            ``{"bs_errors": 0.15, "phase_offsets": 0.15}``.
        modules: the module type that holds the error tensors (every submodule of that type is
            redrawn, in module order); default every submodule that has all the names.
        bounds: name -> ``(low, high)`` each draw is clipped to (e.g. a splitting error stays
            inside ``(-1, 1)``).
        seed: ``int`` seed or ``numpy.random.Generator`` of the draws.
    """

    def __init__(
        self,
        nominal: nn.Module,
        scales: Mapping[str, float],
        *,
        modules: type[nn.Module] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        seed: Any = 0,
    ) -> None:
        super().__init__()
        if not isinstance(nominal, nn.Module):
            raise ConfigError(f"ErrorTwin wraps a torch.nn.Module, got {type(nominal).__name__}")
        self.scales = {str(k): check_real(f"scales[{k!r}]", v, low=0.0) for k, v in scales.items()}
        if not self.scales:
            raise ConfigError("ErrorTwin needs at least one error tensor name in `scales`")
        self.bounds = dict(bounds or {})
        self.inner = copy.deepcopy(nominal)
        self.rng = as_generator(seed, "seed")
        self._targets = [
            m
            for m in self.inner.modules()
            if (modules is None or isinstance(m, modules))
            and all(isinstance(getattr(m, k, None), torch.Tensor) for k in self.scales)
        ]
        if not self._targets:
            raise ConfigError(
                f"no submodule of {type(nominal).__name__} holds tensors named "
                f"{sorted(self.scales)}"
            )

    def redraw(self) -> None:
        """Draw a new fabrication of every error tensor (what each forward call does first)."""
        for m in self._targets:
            for name, scale in self.scales.items():
                ref = getattr(m, name)
                e = scale * self.rng.standard_normal(tuple(ref.shape))
                if name in self.bounds:
                    e = np.clip(e, *self.bounds[name])
                setattr(m, name, torch.as_tensor(e, dtype=ref.dtype, device=ref.device))

    def forward(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.redraw()
        return self.inner(theta, x)


def mzi_error_twin(nominal: nn.Module, s_bs: float, s_ps: float, *, seed: Any = 0) -> ErrorTwin:
    """The noise-aware twin of an MZI mesh or hybrid: coupler errors ``N(0, s_bs^2)`` (clipped to
    ``(-0.999, 0.999)``) and phase offsets ``N(0, s_ps^2)`` in every :class:`MZIPhysics` of
    ``nominal`` (e.g. ``chip.nominal_model()``), redrawn on every call."""
    return ErrorTwin(
        nominal,
        {"bs_errors": s_bs, "phase_offsets": s_ps},
        modules=MZIPhysics,
        bounds={"bs_errors": (-0.999, 0.999)},
        seed=seed,
    )


__all__ = ["ErrorTwin", "mzi_error_twin"]
