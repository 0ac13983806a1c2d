import numpy as np
import pytest
import torch
from doubles import LinearDevice

from blacksat.data import load_digits, load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.errors import ConfigError
from blacksat.meter import MeteredDevice
from blacksat.task import ImageToGrid, Ports, Task, UnitPower


class LinearModel:
    """The torch twin of doubles.LinearDevice."""

    def __call__(self, theta, x):
        w = theta.reshape(*theta.shape[:-1], 4, 3)
        return x @ w


@pytest.fixture
def task():
    return Task(load_iris(seed=0), input_shape=(4,))


def test_device_and_model_paths_agree(task):
    dev = MeteredDevice(LinearDevice(n_in=4, n_out=3))
    theta = np.random.default_rng(0).uniform(-1, 1, 12)
    acc_dev = task.accuracy(dev, theta, batch_size=16)
    acc_model = task.to(torch.float64).accuracy(LinearModel(), theta)
    assert acc_dev == acc_model
    # the whole test split went through the device at one setting
    assert dev.ledger.reconfigurations == 1
    assert dev.ledger.samples == len(task.data.y_test)


def test_batched_loss_matches_per_setting_loss(task):
    theta = torch.randn(3, 12, dtype=torch.float64)
    xb, yb = next(task.batches("train", 32))
    logits = task.logits_model(LinearModel(), theta, xb.double())
    assert xb.dtype == torch.float32  # the default
    per = task.loss(logits, yb)
    for k in range(3):
        assert torch.allclose(per[k], task.loss(logits[k], yb))


def test_front_end_trained_jointly_gets_gradients():
    data = load_iris(seed=0)
    front = torch.nn.Linear(4, 4)
    t = Task(data, input_shape=(4,), front=front, encoder=UnitPower()).to(torch.float64)
    theta = torch.randn(12, dtype=torch.float64, requires_grad=True)
    xb, yb = next(t.batches("train", 16))
    t.loss(t.logits_model(LinearModel(), theta, xb), yb).backward()
    assert theta.grad.abs().sum() > 0 and front.weight.grad.abs().sum() > 0
    assert len(t.digital_parameters()) == 2


def test_shape_mismatch_is_a_clear_error():
    t = Task(load_iris(seed=0), input_shape=(5,))
    xb, _ = next(t.batches("test", 4))
    with pytest.raises(ConfigError, match=r"\(5,\)"):
        t.encode(xb)
    with pytest.raises(ConfigError):
        next(t.batches("test", 0))


def test_encoders_and_readouts():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    u = UnitPower()(x)
    assert torch.allclose(u[0], torch.tensor([0.6, 0.8])) and torch.isfinite(u).all()
    img = torch.arange(64.0).reshape(1, 64)
    g = ImageToGrid((8, 8), 20, fill=0.5)(img)
    assert g.shape == (1, 20, 20) and g[0, 0].abs().sum() == 0 and g[0, 10].abs().sum() > 0
    y = torch.tensor([[1.0, 3.0, 100.0]])
    assert torch.allclose(Ports(2, scale=2.0, total=False)(y), torch.tensor([[0.5, 1.5]]))
    assert torch.allclose(Ports(2, scale=2.0)(y), torch.tensor([[2.0, 6.0]]) / 104.0)


def test_shuffled_batches_are_seeded(task):
    a = [yb for _, yb in task.batches("train", 10, np.random.default_rng(5))]
    b = [yb for _, yb in task.batches("train", 10, np.random.default_rng(5))]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert sum(len(y) for y in a) == len(task.data.y_train)


def test_ports_normalisation_modes():
    y = torch.tensor([[[1.0, 3.0, 4.0, 12.0]], [[2.0, 2.0, 0.0, 0.0]]])  # (K=2, B=1, m=4)
    total = Ports(2, scale=3.0, total=True)(y)
    assert total.shape == (2, 1, 2)
    torch.testing.assert_close(total[0, 0], 3.0 * torch.tensor([1.0, 3.0]) / 20.0)
    torch.testing.assert_close(total[1, 0], 3.0 * torch.tensor([0.5, 0.5]))
    own = Ports(2, scale=3.0, total=False)(y)
    torch.testing.assert_close(own[0, 0], 3.0 * torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(own[1, 0], 3.0 * torch.tensor([0.5, 0.5]))
    raw = Ports(2, normalize=False, scale=3.0)(y)
    torch.testing.assert_close(raw, 3.0 * y[..., :2])
    assert Ports(2, normalize=False, total=False)(y).equal(y[..., :2])
    # signed readings (coherent fields) normalise by their magnitudes; zero light is not NaN
    signed = Ports(1)(torch.tensor([[-1.0, 3.0]]))
    torch.testing.assert_close(signed, torch.tensor([[-0.25]]))
    assert torch.isfinite(Ports(2)(torch.zeros(3, 4))).all()


def test_ports_default_divides_by_the_total_detected_power():
    """Class-only normalisation is blind to light routed to the other ports: the same class
    ratio scores the same whether 100 % or 1 % of the power reaches the class ports."""
    bright = torch.tensor([[3.0, 1.0, 0.0, 0.0]])
    dim = torch.tensor([[0.03, 0.01, 1.96, 2.0]])
    ports = Ports(2)
    assert ports.total
    torch.testing.assert_close(ports(bright), torch.tensor([[0.75, 0.25]]))
    torch.testing.assert_close(ports(dim), torch.tensor([[0.0075, 0.0025]]))
    own = Ports(2, total=False)
    torch.testing.assert_close(own(dim), own(bright))
    # the default MZI task reads its class scores this way too
    task = default_task(MZIMesh(n_modes=4, seed=0), load_iris(seed=0), temperature=1.0)
    torch.testing.assert_close(task.decode(dim), torch.tensor([[0.0075, 0.0025, 0.49]]))


def test_default_task_front_end_always_never_or_where_widths_differ():
    from blacksat.devices import MRRWeightBank

    data = load_digits()  # 64 features
    mesh = MZIMesh(n_modes=12, noise=0.0, drift=0.0)
    wide = MZIMesh(n_modes=64, noise=0.0, drift=0.0)
    assert default_task(mesh, data).front is not None  # 64 -> 12 needs one
    assert default_task(wide, data).front is None  # widths match
    forced = default_task(wide, data, front=True)  # the paper's set-up: a digital layer first
    assert isinstance(forced.front, torch.nn.Linear) and forced.front.weight.shape == (64, 64)
    bank = MRRWeightBank(layer_sizes=(64, 10), noise=0.0, drift=0.0)
    assert default_task(bank, data, front=True).front is not None
    with pytest.raises(ConfigError, match="front=False needs 12 features"):
        default_task(mesh, data, front=False)
