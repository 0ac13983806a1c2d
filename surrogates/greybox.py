"""Grey-box surrogate: the nominal physics with learnable error parameters (system
identification).

The user's physics model (e.g. ``chip.nominal_model()``) is an ``nn.Module`` whose error
parameters are buffers at their nominal values (zero coupler errors, zero phase offsets, no
crosstalk). :class:`GreyBox` copies it, turns the named buffers into trainable parameters and
fits them to recorded queries by least squares on the readings. What the model class cannot
express (effects the physics model does not contain) stays in the residual; see
:class:`~blacksat.surrogates.residual.Residual` for a learned correction on top.

Which buffers are learnable: the ``params`` argument, else the model's ``calibratable``
attribute (physics models declare their identifiable error parameters there, e.g. an MZI
mesh's ``("bs_errors", "phase_offsets", "crosstalk")``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from blacksat.errors import ConfigError
from blacksat.surrogates.base import Surrogate, _check_pos


def _owner(module: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    *path, leaf = dotted.split(".")
    owner = module
    for part in path:
        owner = getattr(owner, part, None)
        if not isinstance(owner, nn.Module):
            raise ConfigError(f"{type(module).__name__} has no submodule {'.'.join(path)!r}")
    return owner, leaf


class GreyBox(Surrogate):
    """Nominal physics with fitted error parameters.

    Args:
        model: a differentiable physics model ``model(thetas (K, d), x (B, *in)) -> (K, B,
            *out)`` (an ``nn.Module``; copied, never modified).
        params: names (dotted for submodules) of the buffers to learn; default: the model's
            ``calibratable`` attribute.
        prior: weight of an L2 penalty pulling each error parameter towards its nominal value
            (scaled by the parameter count); 0 disables it.
        steps, lr, batch_samples, held_out, seed, dtype: see
            :class:`~blacksat.surrogates.base.Surrogate` (defaults suited to a few hundred
            settings: 400 Adam steps of 16,384 readings at ``lr = 0.02``). The cost of a fit
            is about ``steps * batch_samples`` forward and backward passes of ``model``: on the
            16 x 16 diffractive network, where each reading is a pair of FFT propagations,
            ``batch_samples=2048`` took 2-6 min on one core, and the default gives every step 8
            times the work (512 and 2,048 fitted alike there; BENCHMARKS.md, "Physics-free
            surrogates").

    Fitted attributes: ``model_`` (the calibrated physics model: a fresh copy of ``model`` at
    every :meth:`fit` unless ``warm_start``), ``errors_`` (the fitted parameters by name,
    float64 numpy) and ``report_``. Before a fit the surrogate is the nominal model.
    """

    needs_physics = True

    def __init__(
        self,
        model: nn.Module,
        params: Sequence[str] | None = None,
        *,
        prior: float = 0.0,
        steps: int = 400,
        lr: float = 0.02,
        batch_samples: int = 16384,
        held_out: float = 0.2,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        warm_start: bool = False,
    ) -> None:
        super().__init__(
            steps=steps,
            lr=lr,
            batch_samples=batch_samples,
            held_out=held_out,
            seed=seed,
            dtype=dtype,
            warm_start=warm_start,
        )
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        names = tuple(params) if params is not None else tuple(getattr(model, "calibratable", ()))
        if isinstance(params, str) or not names:
            raise ConfigError(
                "params must be a non-empty sequence of buffer names (the model declares no "
                "`calibratable` parameters)"
                if not names
                else f"params must be a sequence of names, got the string {params!r}"
            )
        self.prior = _check_pos("prior", prior, zero_ok=True)
        self.params = names
        for name in names:
            owner, leaf = _owner(model, name)
            if leaf not in owner._buffers or owner._buffers[leaf] is None:
                known = sorted(n for n, _ in model.named_buffers())
                raise ConfigError(f"{name!r} is not a buffer of the model; buffers: {known}")
        object.__setattr__(self, "model", model)  # the user's module: kept, never registered

    def allocate(self, shapes: dict | None = None) -> None:
        """``model_``: a fresh copy of ``model`` whose named buffers are trainable parameters."""
        self.model_ = copy.deepcopy(self.model).to(self.dtype)
        self._nominal: dict[str, torch.Tensor] = {}
        for name in self.params:
            owner, leaf = _owner(self.model_, name)
            value = owner._buffers.pop(leaf).detach().clone()
            owner.register_parameter(leaf, nn.Parameter(value))
            self._nominal[name] = value.clone()
        for p in self.model_.parameters():  # only the named error parameters learn
            p.requires_grad_(any(p is self._param(n) for n in self.params))

    def _prepare(self, groups: list) -> None:
        if not self._warm or "model_" not in self._modules:
            self.allocate()

    def _calibrated(self) -> nn.Module:
        if "model_" not in self._modules:
            self.allocate()
        return self.model_

    def _param(self, name: str) -> nn.Parameter:
        owner, leaf = _owner(self._calibrated(), name)
        return owner._parameters[leaf]  # type: ignore[return-value]

    def forward_many(self, thetas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``thetas (K, d)``, ``x (B, *in)`` -> ``(K, B, *out)`` through the calibrated model."""
        return self._calibrated()(thetas.to(self.dtype), x.to(self.dtype))

    def _penalty(self) -> torch.Tensor | float:
        if self.prior == 0:
            return 0.0
        total = sum(torch.sum((self._param(n) - self._nominal[n]) ** 2) for n in self.params)
        count = sum(self._nominal[n].numel() for n in self.params)
        return self.prior * total / count

    @property
    def errors_(self) -> dict[str, np.ndarray]:
        """The fitted error parameters, by name (float64 copies)."""
        return {n: self._param(n).detach().double().cpu().numpy().copy() for n in self.params}

    def __repr__(self) -> str:
        return f"GreyBox({type(self.model).__name__}, params={list(self.params)})"


__all__ = ["GreyBox"]
