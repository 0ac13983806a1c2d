import numpy as np
import pytest
import torch
from doubles import LinearDevice

from blacksat.data import load_iris
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
