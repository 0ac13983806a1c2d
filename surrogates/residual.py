"""Residual surrogate: a physics model plus a learned correction of its readings (the idea of
digital-twin-assisted training, in its simplest form).

``y = base(theta, x) + g([base(theta, x), x])`` with ``g`` a small MLP applied to every reading
vector. The base is a physics model (the nominal one, or a fitted
:class:`~blacksat.surrogates.GreyBox`); the correction absorbs what the base's model class
cannot express (detector response, losses, saturation). The correction's last layer starts at
zero, so an unfitted residual is exactly its base.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from blacksat.errors import ConfigError
from blacksat.surrogates.base import Group, Surrogate, _check_int, predict
from blacksat.torch_device import module_device


def mlp(n_in: int, hidden: Sequence[int], n_out: int, gen: torch.Generator) -> nn.Sequential:
    """``Linear -> SiLU -> ... -> Linear`` initialised from ``gen`` (PyTorch's default
    uniform scheme); the global RNG is never touched."""
    sizes = [n_in, *hidden, n_out]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        lin = nn.Linear(a, b)
        bound = 1.0 / np.sqrt(a)
        with torch.no_grad():
            lin.weight.copy_(torch.empty(b, a).uniform_(-bound, bound, generator=gen))
            lin.bias.copy_(torch.empty(b).uniform_(-bound, bound, generator=gen))
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class Residual(Surrogate):
    """A physics base plus a learned per-reading correction.

    Args:
        base: the physics model ``base(thetas (K, d), x (B, *in)) -> (K, B, *out)``. A
            :class:`~blacksat.surrogates.base.Surrogate` is fitted first, on the same training
            settings (see ``refit_base``).
        hidden: widths of the correction MLP's hidden layers.
        use_inputs: feed the device inputs ``x`` to the correction too (besides the base's
            readings).
        affine: first fit a per-reading gain and offset to the base's readings (closed-form
            least squares; losses and detector gains are mostly that), then the MLP on what
            remains; ``False``: the MLP alone.
        refit_base: refit a surrogate base (starting from the state it was given in) at every
            :meth:`fit`, before the correction; ``False`` keeps an already fitted base as is.
            Either way the base given is never modified: each fit works on a copy, ``base_``.
        train_base: also fine-tune the base's trainable parameters jointly with the correction
            (default: the base is frozen during the correction fit).
        weight_decay: decoupled (AdamW) weight decay of the correction (keeps it small where
            the data say little).
        steps, lr, batch_samples, held_out, seed, dtype: see
            :class:`~blacksat.surrogates.base.Surrogate`.
    """

    needs_physics = True

    def __init__(
        self,
        base: nn.Module,
        *,
        hidden: Sequence[int] = (64, 64),
        use_inputs: bool = True,
        affine: bool = True,
        refit_base: bool = True,
        train_base: bool = False,
        weight_decay: float = 1e-4,
        steps: int = 1500,
        lr: float = 3e-3,
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
            weight_decay=weight_decay,
            warm_start=warm_start,
        )
        if not isinstance(base, nn.Module):
            raise ConfigError(f"base must be a torch.nn.Module, got {type(base).__name__}")
        self.hidden = tuple(_check_int("hidden width", h, 1) for h in hidden)
        self.use_inputs = bool(use_inputs)
        self.affine = bool(affine)
        self.refit_base = bool(refit_base)
        self.train_base = bool(train_base)
        object.__setattr__(self, "base", base)  # the user's module: kept, never registered
        self.correction: nn.Sequential | None = None

    def _base(self) -> nn.Module:
        """``base_``: the copy of ``base`` this surrogate computes with (made on first use)."""
        if "base_" not in self._modules:
            self.base_ = copy.deepcopy(self.base).to(self.dtype)
        return self.base_

    def _prepare(self, groups: list[Group]) -> None:
        if self._warm and self.correction is not None:
            return
        self.base_ = copy.deepcopy(self.base).to(self.dtype)
        base = self.base_
        if isinstance(base, Surrogate) and (self.refit_base or base.report_ is None):
            # the base sees exactly this fit's training settings (its own split disabled)
            base.held_out = 0.0
            base.fit(groups)
        _thetas, x, y = groups[0]
        out_shape = y.shape[2:]
        n_out = int(np.prod(out_shape))
        n_in = n_out + (int(np.prod(x.shape[1:])) if self.use_inputs else 0)
        # feature normalisation from the base's readings (and the inputs) on the training data
        base_y = np.concatenate(
            [predict(base, t, xx, self.dtype).reshape(-1, n_out) for t, xx, _ in groups]
        )
        feats = [base_y]
        if self.use_inputs:
            xs = np.concatenate([xx.reshape(len(xx), -1) for _, xx, _ in groups])
            feats.append(xs)
        mean = np.concatenate([f.mean(0) for f in feats])
        std = np.concatenate([f.std(0) for f in feats]) + 1e-8
        self.allocate({"n_in": n_in, "out_shape": [int(s) for s in out_shape]})
        self.feat_mean.copy_(torch.as_tensor(mean))
        self.feat_std.copy_(torch.as_tensor(std))
        ys = np.concatenate([yy.reshape(-1, n_out) for _, _, yy in groups])
        gain, bias = np.ones(n_out), np.zeros(n_out)
        if self.affine:  # per-reading least squares y ~ gain * base + bias, in closed form
            var = base_y.var(0)
            ok = var > 1e-12
            cov = ((base_y - base_y.mean(0)) * (ys - ys.mean(0))).mean(0)
            gain[ok] = cov[ok] / var[ok]
            bias = ys.mean(0) - gain * base_y.mean(0)
        resid = ys - (gain * base_y + bias)
        self.gain.copy_(torch.as_tensor(gain))
        self.bias.copy_(torch.as_tensor(bias))
        self.out_scale.copy_(torch.as_tensor(resid.std(0) + 1e-8))

    def fitted_shapes(self) -> dict:
        if self.correction is None:
            return {}
        out = {"n_in": int(self.feat_mean.numel()), "out_shape": list(self.out_shape)}
        if isinstance(self._base(), Surrogate):
            out["base"] = self.base_.fitted_shapes()
        return out

    def allocate(self, shapes: dict) -> None:
        """``base_`` (a copy of ``base``, allocated too when it is a surrogate), the
        normalisation buffers and the correction MLP (its last layer at zero: the base)."""
        if not shapes:
            return
        base = self._base()
        if isinstance(base, Surrogate) and "base" in shapes:
            base.allocate(shapes["base"])
        n_in, out_shape = int(shapes["n_in"]), tuple(int(s) for s in shapes["out_shape"])
        n_out = int(np.prod(out_shape))
        where = module_device(base) if isinstance(base, nn.Module) else None  # with its base
        with torch.no_grad():
            for name, size, fill in (
                ("feat_mean", n_in, 0.0),
                ("feat_std", n_in, 1.0),
                ("gain", n_out, 1.0),
                ("bias", n_out, 0.0),
                ("out_scale", n_out, 1.0),
            ):
                self.register_buffer(
                    name, torch.full((size,), fill, dtype=self.dtype, device=where)
                )
            self.out_shape = out_shape
            gen = torch.Generator().manual_seed(self.seed)
            self.correction = mlp(n_in, self.hidden, n_out, gen).to(where, self.dtype)
            self.correction[-1].weight.zero_()  # start exactly at the base
            self.correction[-1].bias.zero_()

    def _trainable(self) -> list[nn.Parameter]:
        own = [p for p in self.correction.parameters()] if self.correction is not None else []
        if not self.train_base:
            return own
        base = self.base_._trainable() if isinstance(self._base(), Surrogate) else []
        return own + base

    def _loss(self, thetas: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.train_base:
            return super()._loss(thetas, x, y)
        with torch.no_grad():  # a frozen base needs no graph (and runs its fast path)
            y0 = self._base()(thetas.to(self.dtype), x.to(self.dtype))
        return torch.mean((self._correct(y0, x) - y) ** 2)

    def forward_many(self, thetas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``thetas (K, d)``, ``x (B, *in)`` -> ``(K, B, *out)``: base plus correction."""
        return self._correct(self._base()(thetas.to(self.dtype), x.to(self.dtype)), x)

    def _correct(self, y0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.correction is None:
            return y0
        k, b = y0.shape[:2]
        feats = [y0.reshape(k, b, -1)]
        if self.use_inputs:
            feats.append(x.to(self.dtype).reshape(1, b, -1).expand(k, b, -1))
        h = (torch.cat(feats, dim=-1) - self.feat_mean) / self.feat_std
        corr = self.correction(h) * self.out_scale
        flat = y0.reshape(k, b, -1) * self.gain + self.bias
        return (flat + corr).reshape(y0.shape)

    def __repr__(self) -> str:
        return f"Residual(base={self.base!r}, hidden={list(self.hidden)})"


__all__ = ["Residual", "mlp"]
