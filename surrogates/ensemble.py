"""Black-box surrogate: an ensemble of MLPs from controls and inputs to readings, evaluated as
one vectorized program (``torch.func.stack_module_state`` + ``vmap``), with the members'
disagreement as the uncertainty.

No physics is assumed: ``y = mean_m f_m([phi(theta), x])``, each member ``f_m`` an MLP with its
own initialisation and its own bootstrap order of the data. ``phi`` standardises the controls
(or, with ``periodic=True``, maps each to ``(sin, cos)`` for phase-like controls). With
hundreds of controls a black box needs far more queries than a physics-based surrogate; it is
the baseline that assumes nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from blacksat.errors import ConfigError
from blacksat.surrogates.base import Group, Surrogate, _check_int
from blacksat.surrogates.residual import mlp


class Ensemble(Surrogate):
    """An ensemble of MLPs ``(theta, x) -> y``.

    Args:
        members: ensemble size ``M``.
        hidden: hidden widths of each member.
        periodic: encode each control as ``(sin theta, cos theta)`` (phases) instead of
            standardising it.
        steps, lr, batch_samples, held_out, seed, dtype, weight_decay: see
            :class:`~blacksat.surrogates.base.Surrogate`.

    ``surrogate(theta, x)`` is the ensemble mean; :meth:`uncertainty` the members' standard
    deviation, same shape.
    """

    def __init__(
        self,
        *,
        members: int = 5,
        hidden: Sequence[int] = (256, 256),
        periodic: bool = False,
        steps: int = 2000,
        lr: float = 2e-3,
        batch_samples: int = 8192,
        held_out: float = 0.2,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        weight_decay: float = 1e-4,
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
        self.members = _check_int("members", members, 1)
        self.hidden = tuple(_check_int("hidden width", h, 1) for h in hidden)
        self.periodic = bool(periodic)
        self.stacked = nn.ParameterDict()
        self._template: nn.Module | None = None

    # ------------------------------------------------------------------ fitting
    def _prepare(self, groups: list[Group]) -> None:
        self._boot = np.random.default_rng([self.seed, 2])
        if self._warm and self._template is not None:
            return
        thetas = np.concatenate([g[0] for g in groups])
        xs = np.concatenate([g[1].reshape(len(g[1]), -1) for g in groups])
        ys = np.concatenate([g[2].reshape(-1, int(np.prod(g[2].shape[2:]))) for g in groups])
        shapes = {
            "d": int(thetas.shape[1]),
            "n_x": int(xs.shape[1]),
            "out_shape": [int(s) for s in groups[0][2].shape[2:]],
        }
        self.allocate(shapes)
        with torch.no_grad():
            for name, v in (
                ("t_mean", thetas.mean(0)),
                ("t_std", thetas.std(0) + 1e-8),
                ("x_mean", xs.mean(0)),
                ("x_std", xs.std(0) + 1e-8),
                ("y_mean", ys.mean(0)),
                ("y_std", ys.std(0) + 1e-8),
            ):
                getattr(self, name).copy_(torch.as_tensor(v))

    def fitted_shapes(self) -> dict:
        if self._template is None:
            return {}
        return {"d": int(self.t_mean.numel()), "n_x": int(self.x_mean.numel()),
                "out_shape": list(self.out_shape)}  # fmt: skip

    def allocate(self, shapes: dict) -> None:
        """The normalisation buffers and the members (freshly initialised from ``seed``)."""
        if not shapes:
            return
        d, n_x = int(shapes["d"]), int(shapes["n_x"])
        self.out_shape = tuple(int(s) for s in shapes["out_shape"])
        n_y = int(np.prod(self.out_shape))
        for name, size in (("t_mean", d), ("t_std", d), ("x_mean", n_x), ("x_std", n_x),
                           ("y_mean", n_y), ("y_std", n_y)):  # fmt: skip
            self.register_buffer(name, torch.ones(size, dtype=self.dtype))
        n_in = (2 * d if self.periodic else d) + n_x
        gen = torch.Generator().manual_seed(self.seed)
        nets = [mlp(n_in, self.hidden, n_y, gen).to(self.dtype) for _ in range(self.members)]
        params, _ = stack_module_state(nets)
        self.stacked = nn.ParameterDict(
            {k.replace(".", "__"): nn.Parameter(v) for k, v in params.items()}
        )
        self._template = copy.deepcopy(nets[0]).to("meta")

    def _params(self) -> dict[str, torch.Tensor]:
        return {k.replace("__", "."): v for k, v in self.stacked.items()}

    # ------------------------------------------------------------------ evaluation
    def members_forward(self, thetas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Every member's prediction: ``(M, K, B, *out)``."""
        if self._template is None:
            raise ConfigError("the ensemble is not fitted yet: call fit(data) first")
        thetas, x = thetas.to(self.dtype), x.to(self.dtype)
        k, b = thetas.shape[0], x.shape[0]
        if self.periodic:
            feats_t = torch.cat([torch.sin(thetas), torch.cos(thetas)], dim=-1)
        else:
            feats_t = (thetas - self.t_mean) / self.t_std
        feats_x = (x.reshape(b, -1) - self.x_mean) / self.x_std
        h = torch.cat(
            [
                feats_t[:, None, :].expand(k, b, feats_t.shape[-1]),
                feats_x[None].expand(k, b, feats_x.shape[-1]),
            ],
            dim=-1,
        )
        template = self._template

        def one(params: dict[str, torch.Tensor], inp: torch.Tensor) -> torch.Tensor:
            return functional_call(template, params, (inp,))

        out = vmap(one, in_dims=(0, None))(self._params(), h)  # (M, K, B, n_y)
        out = out * self.y_std + self.y_mean
        return out.reshape(self.members, k, b, *self.out_shape)

    def forward_many(self, thetas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``thetas (K, d)``, ``x (B, *in)`` -> ensemble mean ``(K, B, *out)``."""
        return self.members_forward(thetas, x).mean(0)

    def uncertainty(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Members' standard deviation, shaped like ``self(theta, x)`` (no autograd)."""
        theta = torch.as_tensor(theta)
        batched = theta if theta.ndim == 2 else theta[None]
        with torch.no_grad():
            many = self.members_forward(batched, torch.as_tensor(x))
        std = many.std(0, unbiased=False)
        return std if theta.ndim == 2 else std[0]

    def _loss(self, thetas: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member fits on its own: mean over members of the standardised squared error,
        every setting weighted by a per-member Poisson(1) bootstrap draw (seeded)."""
        pred = self.members_forward(thetas, x)  # (M, K, B, *out)
        z = (pred - y) / self.y_std.reshape(self.out_shape)
        per_setting = (z**2).reshape(self.members, thetas.shape[0], -1).mean(-1)  # (M, K)
        w = torch.as_tensor(
            self._boot.poisson(1.0, size=per_setting.shape), dtype=per_setting.dtype
        )
        return (w * per_setting).sum() / w.sum().clamp(min=1.0)

    def __repr__(self) -> str:
        return f"Ensemble(members={self.members}, hidden={list(self.hidden)})"


__all__ = ["Ensemble"]
