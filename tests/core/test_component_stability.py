"""Component stability: the penalty is the tuning-curve slope norm; it changes the gradient."""

import numpy as np
import pytest
import torch

from blacksat.component_stability import ComponentStability
from blacksat.data import load_iris
from blacksat.devices import MRRWeightBank, MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.errors import ConfigError
from blacksat.estimators import Autograd
from blacksat.objective import StepContext


def test_penalty_is_the_lorentzian_slope_norm():
    model = MRRWeightBank(layer_sizes=(3, 2)).nominal_model(dtype=torch.float64)
    x = torch.tensor([0.05, -0.1, 0.15, 0.3, -0.2, 0.0], dtype=torch.float64)
    pen = ComponentStability(model, None, c=2.0).penalty(x.clone().requires_grad_(True))
    d = x / 0.15
    slope = 4 * d / (0.15 * (1 + d * d) ** 2)  # dw/dx of w = 1 - 2 / (1 + (x / gamma)^2)
    assert torch.allclose(pen, 2.0 * torch.linalg.vector_norm(slope))


def test_gradient_is_autograd_plus_the_penalty_and_c0_is_plain_autograd():
    dev = MRRWeightBank(layer_sizes=(4, 3), seed=0)
    task = default_task(dev, load_iris(seed=0), seed=0).to(torch.float64)
    model = dev.nominal_model(dtype=torch.float64)
    theta = torch.as_tensor(dev.initial_controls(0)) + 0.05
    batch = task.batch("train", np.arange(16))
    ctx = StepContext(np.random.default_rng(0))
    plain = Autograd(model, task, space=dev.space)(theta, batch, ctx)
    zero = ComponentStability(model, task, c=0.0, space=dev.space)(theta, batch, ctx)
    pen = ComponentStability(model, task, c=1.0, space=dev.space)(theta, batch, ctx)
    assert torch.allclose(zero.grad, plain.grad) and zero.loss == pytest.approx(plain.loss)
    assert pen.loss == pytest.approx(plain.loss)  # the reported loss is the task's
    assert not torch.allclose(pen.grad, plain.grad)


def test_a_model_without_weights_is_refused():
    with pytest.raises(ConfigError, match="weights"):
        ComponentStability(MZIMesh(n_modes=4).nominal_model(), None, c=1.0)
    model = MRRWeightBank(layer_sizes=(3, 2)).nominal_model()
    with pytest.raises(ConfigError, match="c must"):
        ComponentStability(model, None, c=-1.0)
