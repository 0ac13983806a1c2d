import numpy as np
import pytest
import torch
from fakes import LinearReadout, PlainTask, Quadratic, batch

from blacksat import ConfigError
from blacksat.data import load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.estimators import Autograd, ZerothOrder
from blacksat.meter import Ledger, MeteredDevice
from blacksat.objective import StepContext
from blacksat.perturbations import L2Ball
from blacksat.sat import FreeAscent, sat


def ctx(seed=0, **kw):
    return StepContext(np.random.default_rng(seed), **kw)


def reference_sat_step(model, task, theta, features, labels, rho):
    """The oracle: a plain SAM step in control space, written out (Foret et al. 2021)."""

    def loss_at(t):
        t = t.detach().clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(
            task.decode(model(t, task.encode(features))), labels
        )
        (g,) = torch.autograd.grad(loss, [t])
        return loss.detach(), g

    _, g1 = loss_at(theta)  # ascent direction
    eps = rho * g1 / g1.norm()  # worst case in the L2 ball
    _, g2 = loss_at(theta + eps)  # descent gradient at the perturbed point
    return g2


@pytest.fixture
def mzi_problem():
    chip = MZIMesh(n_modes=4, s_bs=0.1, s_ps=0.1, noise=0.0, drift=0.0, dtype="float64")
    task = default_task(chip, load_iris(seed=0), seed=0).to(torch.float64)
    b = task.batch("train", np.arange(32))
    theta = torch.as_tensor(chip.space.sample(np.random.default_rng(1)))
    return chip, task, b, theta


def test_composed_sat_matches_the_reference_oracle(mzi_problem):
    chip, task, b, theta = mzi_problem
    model = chip.nominal_model()
    for rho in (0.05, 0.3, 1.0):
        g = sat(Autograd(model, task), rho=rho)(theta, b, ctx()).grad
        ref = reference_sat_step(model, task, theta, b.features, b.labels, rho)
        np.testing.assert_allclose(g.numpy(), ref.numpy(), rtol=1e-12, atol=1e-14)


def test_rho_zero_is_exactly_plain_descent(mzi_problem):
    chip, task, b, theta = mzi_problem
    meter = MeteredDevice(chip)
    zo = ZerothOrder(meter, task, q=3)
    plain = zo(theta, b, ctx(5))
    s = sat(zo, rho=0.0)(theta, b, ctx(5))
    assert torch.equal(s.grad, plain.grad) and s.cost == plain.cost == Ledger(6, 6 * 32, 1)


def test_query_trace_of_one_zeroth_order_sat_step(mzi_problem):
    chip, task, b, theta = mzi_problem
    meter = MeteredDevice(chip)
    e = sat(ZerothOrder(meter, task, q=3), rho=0.1)(theta, b, ctx())
    # ascent: 2q settings in one call; descent at theta + eps: 2q settings in one call
    assert e.cost == Ledger(12, 12 * 32, 2) and meter.ledger == e.cost


def test_ascent_through_a_model_costs_no_queries(mzi_problem):
    chip, task, b, theta = mzi_problem
    meter = MeteredDevice(chip)
    e = sat(ZerothOrder(meter, task, q=2), ascent=Autograd(chip.nominal_model(), task), rho=0.1)(
        theta, b, ctx()
    )
    assert e.cost == Ledger(4, 4 * 32, 1)


def test_free_ascent_follows_momentum():
    target, h = np.zeros(3), np.array([1.0, 2.0, 3.0])
    model = Quadratic(target, h)
    theta = torch.tensor([0.5, -0.5, 0.2], dtype=torch.float64)
    m = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    e = sat(Autograd(model, PlainTask()), ascent=FreeAscent(), rho=0.1)(
        theta, batch(), ctx(momentum=m)
    )
    expected = 2 * h * (theta.numpy() + np.array([0.1, 0, 0]))
    np.testing.assert_allclose(e.grad.numpy(), expected, rtol=1e-12)


def test_average_mode_averages_descents_at_draws():
    target, h = np.zeros(4), np.array([1.0, 2.0, 3.0, 4.0])
    model = Quadratic(target, h)
    theta = torch.tensor([0.5, -0.5, 0.2, 0.0], dtype=torch.float64)
    e = sat(Autograd(model, PlainTask()), rho=0.2, mode="average", draws=5)(theta, batch(), ctx(7))
    rng = np.random.default_rng(7)
    draws = [L2Ball(0.2).sample(theta, rng).delta for _ in range(5)]
    expected = np.mean([2 * h * (theta + d).numpy() for d in draws], axis=0)
    np.testing.assert_allclose(e.grad.numpy(), expected, rtol=1e-12)


def test_perturbed_points_are_clipped_into_bounds():
    dev = LinearReadout(np.ones(3), bound=1.0)
    est = ZerothOrder(dev, PlainTask(), q=2, sigma=0.01)
    sat(est, rho=5.0)(torch.ones(3, dtype=torch.float64) * 0.99, batch(), ctx())
    sent = np.concatenate(dev.sent)
    assert sent.max() <= 1.0 and sent.min() >= -1.0


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(rho=0.1, perturbation=L2Ball(0.1)),
        dict(rho=0.1, mode="best"),
        dict(rho=0.1, draws=0),
        dict(rho=-1.0),
    ],
)
def test_invalid_sat_arguments(kw):
    est = Autograd(Quadratic(np.zeros(2), np.ones(2)), PlainTask())
    with pytest.raises(ConfigError):
        sat(est, **kw)


def test_ascent_must_be_an_estimator():
    est = Autograd(Quadratic(np.zeros(2), np.ones(2)), PlainTask())
    with pytest.raises(ConfigError, match="ascent"):
        sat(est, ascent=object(), rho=0.1)
