"""Component-stability training: autograd on ``loss + c * ||dw/dtheta||`` for weight banks.

A device whose weights are each set by one control (a micro-ring per weight, a crossbar cell per
weight) drifts least where every weight sits on a flat part of its own tuning curve. This
estimator adds the norm of those slopes to the loss, the component-level stability penalty of
PHYSICS.md: a cheap, structure-aware alternative to SAT when the model exposes its weights.
"""

from __future__ import annotations

from typing import Any

import torch

from blacksat.errors import ConfigError
from blacksat.estimators import Autograd, _digital, _grads
from blacksat.objective import Batch, Estimate, StepContext, TrainingTask, objective
from blacksat.space import ParamSpace
from blacksat.validation import check_real


class ComponentStability(Autograd):
    """Autograd on ``loss + c * ||d(sum w)/dtheta||_2`` through ``model.weights``.

    ``model.weights(thetas (K, d)) -> sequence of weight tensors (K, ...)`` must exist. For a model
    in which each weight depends on its own control only (the nominal MRR bank: no crosstalk), the
    gradient of the summed weights is the diagonal of the Jacobian ``dw/dtheta``, so the penalty
    is the Frobenius norm of that (diagonal) Jacobian; with crosstalk it is the norm of the
    column sums, a cheaper proxy.

    Args:
        model: a differentiable model with ``weights`` (e.g. an MRR bank's nominal model).
        task: the :class:`~blacksat.task.Task`.
        c: penalty weight (``>= 0``; 0 is plain :class:`~blacksat.estimators.Autograd`).
        space: optional control space.
    """

    name = "component_stability"

    def __init__(
        self, model: Any, task: TrainingTask, *, c: float, space: ParamSpace | None = None
    ) -> None:
        super().__init__(model, task, space=space)
        if not callable(getattr(model, "weights", None)):
            raise ConfigError(
                f"ComponentStability needs a model with weights(thetas) -> weight tensors; "
                f"{type(model).__name__} has none"
            )
        self.c = check_real("c", c, low=0.0)

    def penalty(self, theta: torch.Tensor) -> torch.Tensor:
        """``c * ||d(sum w)/dtheta||_2`` at ``theta (d,)`` (``theta`` must require grad); a scalar
        that is itself differentiable in ``theta``."""
        w = torch.cat([m.reshape(-1) for m in self.model.weights(theta[None])])
        (slopes,) = torch.autograd.grad(w.sum(), theta, create_graph=True)
        return self.c * torch.linalg.vector_norm(slopes)

    def __call__(self, theta: torch.Tensor, batch: Batch, ctx: StepContext) -> Estimate:
        th = theta.detach().to(self.task.dtype).requires_grad_(True)
        params = _digital(self.task)
        logits = self.task.logits_model(self.model, th, batch.features)
        loss = objective(self.task, logits, batch, ctx)
        g, dg = _grads(loss + self.penalty(th), th, params)
        return Estimate(
            grad=g.detach().to(torch.float64),
            loss=float(loss.detach()),
            digital_grads=dg if params else None,
            logits=logits.detach(),
        )

    def __repr__(self) -> str:
        return f"ComponentStability(model={type(self.model).__name__}, c={self.c})"


__all__ = ["ComponentStability"]
