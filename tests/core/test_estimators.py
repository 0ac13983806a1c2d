import numpy as np
import pytest
import torch
from fakes import LinearReadout, PlainTask, Quadratic, batch

from blacksat import ConfigError
from blacksat.data import load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.estimators import Autograd, PhysicsAware, ZerothOrder, make_estimator
from blacksat.meter import Ledger, MeteredDevice
from blacksat.objective import StepContext

C = np.array([0.5, -1.0, 2.0, 0.0, 0.25])


def ctx(seed=0):
    return StepContext(np.random.default_rng(seed))


@pytest.mark.parametrize("directions", ["gaussian", "rademacher", "sphere", "coordinate"])
@pytest.mark.parametrize("scheme", ["central", "forward"])
def test_zeroth_order_is_unbiased_on_linear_objectives(directions, scheme):
    dev = LinearReadout(C)
    b = batch()
    scale = float(b.features.sum(1).mean())  # dL/dtheta = scale * C
    est = ZerothOrder(dev, PlainTask(), q=2, sigma=0.1, directions=directions, scheme=scheme)
    c = ctx(1)
    theta = torch.zeros(5, dtype=torch.float64)
    gs = torch.stack([est(theta, b, c).grad for _ in range(3000)])
    mean, se = gs.mean(0), gs.std(0) / np.sqrt(len(gs))
    truth = torch.as_tensor(scale * C)
    assert torch.all((mean - truth).abs() <= 4 * se + 1e-9), (mean, truth, se)


def test_coordinate_all_is_exact_finite_differences():
    dev = LinearReadout(C)
    b = batch()
    est = ZerothOrder(dev, PlainTask(), q=None, sigma=0.3, directions="coordinate")
    g = est(torch.ones(5, dtype=torch.float64), b, ctx()).grad
    np.testing.assert_allclose(g.numpy(), float(b.features.sum(1).mean()) * C, rtol=1e-12)


def test_zeroth_order_converges_on_a_quadratic():
    rng = np.random.default_rng(0)
    target, h = rng.uniform(-1, 1, 6), rng.uniform(0.5, 2.0, 6)
    est = ZerothOrder(Quadratic(target, h), PlainTask(), q=4, sigma=0.01)
    theta, c, b = torch.zeros(6, dtype=torch.float64), ctx(2), batch()
    for _ in range(300):
        theta = theta - 0.05 * est(theta, b, c).grad
    np.testing.assert_allclose(theta.numpy(), target, atol=0.02)


def test_one_query_many_per_step_and_cost_reported():
    meter = MeteredDevice(LinearReadout(C))
    b = batch(b=7)
    for scheme, k in (("central", 6), ("forward", 4)):
        est = ZerothOrder(meter, PlainTask(), q=3, sigma=0.1, scheme=scheme)
        before = meter.ledger
        e = est(torch.zeros(5, dtype=torch.float64), b, ctx())
        assert e.cost == Ledger(reconfigurations=k, samples=7 * k, queries=1)
        assert meter.ledger.queries == before.queries + 1
        assert est.settings_per_step() == k


def test_no_mutation_and_settings_stay_in_bounds():
    dev = LinearReadout(C, bound=1.0)
    est = ZerothOrder(dev, PlainTask(), q=4, sigma=0.5)
    theta = torch.ones(5, dtype=torch.float64)  # on the upper bound
    keep = theta.clone()
    est(theta, batch(), ctx())
    assert torch.equal(theta, keep)
    sent = np.concatenate(dev.sent)
    assert sent.max() <= 1.0 and sent.min() >= -1.0


def test_autograd_matches_torch_and_uses_no_device():
    rng = np.random.default_rng(3)
    target, h = rng.uniform(-1, 1, 4), rng.uniform(0.5, 2.0, 4)
    model = Quadratic(target, h)
    theta = torch.as_tensor(rng.uniform(-1, 1, 4))
    e = Autograd(model, PlainTask())(theta, batch(), ctx())
    np.testing.assert_allclose(e.grad.numpy(), 2 * h * (theta.numpy() - target), rtol=1e-12)
    assert e.cost == Ledger()
    losses, cost = Autograd(model, PlainTask()).evaluate(
        torch.stack([theta, theta]), batch(), ctx()
    )
    assert losses.shape == (2,) and cost == Ledger()


def test_physics_aware_with_exact_model_equals_autograd_on_the_chip():
    data = load_iris(seed=0)
    chip = MZIMesh(n_modes=5, noise=0.0, drift=0.0, dtype="float64")
    task = default_task(chip, data, seed=0).to(torch.float64)
    b = task.batch("train", np.arange(16))
    theta = torch.as_tensor(chip.space.sample(np.random.default_rng(0)))
    meter = MeteredDevice(chip)
    pat = PhysicsAware(meter, chip.exact_model(), task)(theta, b, ctx())
    ref = Autograd(chip.exact_model(), task)(theta, b, ctx())
    np.testing.assert_allclose(pat.grad.numpy(), ref.grad.numpy(), rtol=1e-8, atol=1e-10)
    assert abs(pat.loss - ref.loss) < 1e-10
    assert pat.cost == Ledger(1, 16, 1) and meter.ledger.samples == 16
    # digital front end gets its chain-rule gradient too
    assert pat.digital_grads is not None and all(g is not None for g in pat.digital_grads)
    for a, r in zip(pat.digital_grads, ref.digital_grads, strict=True):
        np.testing.assert_allclose(a.numpy(), r.numpy(), rtol=1e-8, atol=1e-10)


def test_physics_aware_loss_is_the_device_loss_with_a_wrong_model():
    data = load_iris(seed=0)
    chip = MZIMesh(n_modes=4, s_bs=0.15, s_ps=0.15, noise=0.0, drift=0.0, dtype="float64")
    task = default_task(chip, data, seed=0).to(torch.float64)
    b = task.batch("train", np.arange(16))
    theta = torch.as_tensor(chip.space.center)
    pat = PhysicsAware(chip, chip.nominal_model(), task)(theta, b, ctx())
    on_chip = Autograd(chip.exact_model(), task)(theta, b, ctx())
    on_nominal = Autograd(chip.nominal_model(), task)(theta, b, ctx())
    assert abs(pat.loss - on_chip.loss) < 1e-10 and abs(pat.loss - on_nominal.loss) > 1e-4


def test_zeroth_order_trains_back_layer_but_not_front():
    data = load_iris(seed=0)
    chip = MZIMesh(n_modes=5, noise=0.0, drift=0.0)
    task = default_task(chip, data, seed=0)
    task.back = torch.nn.Linear(3, 3)
    b = task.batch("train", np.arange(8))
    e = ZerothOrder(chip, task, q=2)(torch.as_tensor(chip.space.center), b, ctx())
    front = list(task.front.parameters())
    assert e.digital_grads[: len(front)] == [None] * len(front)
    assert all(g is not None for g in e.digital_grads[len(front) :])


@pytest.mark.parametrize(
    "kw", [dict(q=0), dict(sigma=0.0), dict(directions="x"), dict(scheme="y"), dict(q=None)]
)
def test_invalid_hyperparameters(kw):
    with pytest.raises(ConfigError):
        ZerothOrder(LinearReadout(C), PlainTask(), **kw)


def test_registry():
    est = make_estimator("zeroth_order", LinearReadout(C), PlainTask(), q=3)
    assert isinstance(est, ZerothOrder) and est.q == 3
    with pytest.raises(ConfigError, match="registered"):
        make_estimator("magic")
