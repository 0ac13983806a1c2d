"""The SAF trajectory loss: zero on unchanged outputs, the PHYSICS.md formula otherwise, gradients
flow to the current logits only, the memory keeps exactly the epochs it needs."""

import io

import pytest
import torch
import torch.nn.functional as F

from blacksat import ConfigError
from blacksat.objective import Batch
from blacksat.saf import TrajectoryLoss

C = 4


def batch(index) -> Batch:
    idx = torch.as_tensor(index, dtype=torch.int64)
    return Batch(torch.zeros(len(idx), 2), torch.zeros(len(idx), dtype=torch.int64), idx)


def logits(b: int, seed: int) -> torch.Tensor:
    return torch.randn(b, C, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def reference(z, z_old, lam, tau):
    """``lam tau^2 KL(softmax(z_old / tau) || softmax(z / tau))`` per sample, via torch's kl_div."""
    kl = F.kl_div(
        F.log_softmax(z / tau, -1),
        F.log_softmax(z_old / tau, -1),
        log_target=True,
        reduction="none",
    ).sum(-1)
    return lam * tau**2 * kl


def test_zero_on_unchanged_outputs_positive_otherwise_and_the_formula():
    saf = TrajectoryLoss(lam=0.5, tau=5.0, lag=1)
    b = batch([3, 0, 7])
    old = logits(3, 1)
    saf.record(b, old, epoch=0)
    same = saf.extra(old.clone(), b, epoch=1)
    assert same.shape == () and abs(float(same)) < 1e-14
    new = logits(3, 2)
    term = saf.extra(new, b, epoch=1)
    assert term > 0
    assert torch.allclose(term, reference(new, old, 0.5, 5.0).mean(), rtol=1e-12, atol=0)


def test_gradient_flows_to_the_current_logits_only():
    saf = TrajectoryLoss(lam=0.8, tau=5.0, lag=1)
    b = batch([0, 1])
    old = logits(2, 1).requires_grad_(True)
    saf.record(b, old, epoch=0)  # stored detached
    z = logits(2, 2).requires_grad_(True)
    saf.extra(z, b, epoch=1).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert old.grad is None


def test_batched_settings_and_missing_records():
    saf = TrajectoryLoss(lam=0.5, lag=1)
    saf.record(batch([0, 1]), logits(2, 1), epoch=0)
    b = batch([0, 1, 5, 9])  # samples 5 and 9 have no record: they contribute zero
    z = torch.stack([logits(4, 2), logits(4, 3), logits(4, 4)])  # (K=3, B=4, C)
    term = saf.extra(z, b, epoch=1)
    assert term.shape == (3,)
    per = reference(z[:, :2], logits(2, 1), 0.5, 5.0)  # (3, 2)
    assert torch.allclose(term, per.sum(-1) / 4, rtol=1e-12, atol=0)
    assert torch.equal(saf.extra(z, batch([5, 9, 40]), epoch=1), torch.zeros(3, dtype=z.dtype))


def test_memory_lag_and_pruning():
    saf = TrajectoryLoss(lam=0.5, lag=2)
    b = batch([0, 1, 2])
    for e in range(4):
        term = saf.extra(logits(3, e), b, epoch=e)
        assert (term == 0) if e < 2 else (term > 0)  # a record 2 epochs back from epoch 2 on
        saf.record(b, logits(3, 10 + e), epoch=e)
    assert saf.epochs() == [1, 2, 3]  # epoch 0 is no longer needed at epoch 3
    z = logits(3, 99)
    expected = reference(z, logits(3, 10 + 2), 0.5, 5.0).mean()  # epoch 4 looks 2 back: 2
    assert torch.allclose(saf.extra(z, b, epoch=4), expected, rtol=1e-12, atol=0)
    assert torch.allclose(saf.extra(z, b), reference(z, logits(3, 11), 0.5, 5.0).mean())
    assert saf.extra(z, b, epoch=2) == 0  # its reference epoch 0 was pruned


def test_warmup_delays_the_term():
    saf = TrajectoryLoss(lam=0.5, lag=1, warmup=3)
    b = batch([0, 1])
    for e in range(4):
        saf.record(b, logits(2, e), epoch=e)
    z = logits(2, 50)
    assert saf.extra(z, b, epoch=2) == 0  # a record exists (epoch 1), but warm-up is not over
    assert saf.extra(z, b, epoch=3) > 0
    assert saf.active(3) and not saf.active(2)
    assert TrajectoryLoss(lam=0.0, lag=1).extra(z, b, epoch=3) == 0


def test_later_records_overwrite_and_grow():
    saf = TrajectoryLoss(lag=1)
    saf.record(batch([2]), logits(1, 1), epoch=0)
    saf.record(batch([100, 2]), logits(2, 2), epoch=0)
    z = logits(2, 3)
    term = saf.extra(z, batch([2, 100]), epoch=1)
    assert torch.allclose(term, reference(z, logits(2, 2).flip(0), 0.5, 5.0).mean())


def test_state_dict_round_trip_through_a_safe_load():
    saf = TrajectoryLoss(lam=0.3, tau=4.0, lag=2, warmup=1)
    b = batch([1, 4])
    for e in range(3):
        saf.record(b, logits(2, e), epoch=e)
    buf = io.BytesIO()
    torch.save(saf.state_dict(), buf)
    buf.seek(0)
    twin = TrajectoryLoss(lam=0.3, tau=4.0, lag=2, warmup=1)
    twin.load_state_dict(torch.load(buf, weights_only=True))
    z = logits(2, 9)
    assert twin.epochs() == saf.epochs() and twin.epoch == saf.epoch == 2
    assert torch.equal(twin.extra(z, b, epoch=3), saf.extra(z, b, epoch=3))
    with pytest.raises(ConfigError):
        TrajectoryLoss(lam=0.3, tau=4.0, lag=3, warmup=1).load_state_dict(saf.state_dict())
    with pytest.raises(ConfigError):
        twin.load_state_dict({"memory": {}})
    twin.reset()
    assert twin.epochs() == [] and twin.extra(z, b, epoch=3) == 0


@pytest.mark.parametrize(
    "kw",
    [
        {"lam": -0.1},
        {"lam": float("nan")},
        {"lam": "big"},
        {"tau": 0.0},
        {"tau": float("inf")},
        {"lag": 0},
        {"lag": 1.5},
        {"lag": True},
        {"warmup": -1},
    ],
)
def test_invalid_arguments(kw):
    with pytest.raises(ConfigError):
        TrajectoryLoss(**kw)


def test_record_checks_shapes():
    saf = TrajectoryLoss(lag=1)
    with pytest.raises(ConfigError):
        saf.record(batch([0, 1]), logits(3, 0), epoch=0)
    saf.record(batch([0]), logits(1, 0), epoch=0)
    with pytest.raises(ConfigError):
        saf.record(batch([1]), torch.zeros(1, C + 1), epoch=0)
