"""Wrapper state nests optax-style: SAT and NonFinitePolicy hold what they wrap under
``inner_state``; the trainer checkpoints and restores every level, so
``sat(NonFinitePolicy(zo))`` resumes bitwise with the policy's memory."""

import numpy as np
import torch
from doubles import CountingDevice, LinearDevice, NonFiniteDevice

from blacksat.checkpoint import load_checkpoint
from blacksat.data import load_iris
from blacksat.estimators import ZerothOrder, estimator_state, load_estimator_state
from blacksat.meter import MeteredDevice
from blacksat.nonfinite import NonFinitePolicy
from blacksat.sat import sat
from blacksat.task import Task
from blacksat.trainer import TrainConfig, Trainer

BAD = (5, 6, 11)  # device calls with NaN readings (two per step): a streak spans step 3


def trainer(tmp_path, max_steps, calls=0):
    task = Task(load_iris(seed=0), input_shape=(4,)).to(torch.float64)
    device = NonFiniteDevice(LinearDevice(4, 3), at=BAD)
    device.calls = calls  # a resumed run's device has answered as many calls already
    meter = MeteredDevice(CountingDevice(device), policy="clip")
    policy = NonFinitePolicy(ZerothOrder(meter, task, q=2, sigma=0.05), "skip")
    est = sat(policy, rho=0.05)
    cfg = TrainConfig(
        lr=0.05, max_steps=max_steps, epochs=None, batch_size=16, seed=2, progress=False
    )
    return Trainer(task, est, meter.space, cfg, meter=meter, checkpoint_path=tmp_path / "c.pt")


def test_sat_state_nests_the_policy_memory():
    task = Task(load_iris(seed=0), input_shape=(4,)).to(torch.float64)
    meter = MeteredDevice(LinearDevice(4, 3), policy="clip")
    policy = NonFinitePolicy(ZerothOrder(meter, task, q=2), "skip")
    policy.consecutive, policy.failures = 2, 5
    state = estimator_state(sat(policy, rho=0.1))
    assert state["inner_state"]["consecutive"] == 2 and state["ascent_state"] is None
    other = NonFinitePolicy(ZerothOrder(meter, task, q=2), "skip")
    load_estimator_state(sat(other, rho=0.1), state)
    assert (other.consecutive, other.failures) == (2, 5)


def test_sat_of_a_nonfinite_policy_resumes_bitwise(tmp_path):
    theta0 = np.linspace(-0.5, 0.5, 12)
    whole = trainer(tmp_path / "a", 8)
    ref = whole.fit(theta0)
    assert ref.state.estimator["inner_state"]["failures"] > 0  # the memory is not trivial

    first = trainer(tmp_path / "b", 3)
    part = first.fit(theta0)
    saved = load_checkpoint(tmp_path / "b" / "c.pt")
    inner = saved.estimator["inner_state"]
    assert inner["consecutive"] == part.state.estimator["inner_state"]["consecutive"] >= 1
    resumed = trainer(tmp_path / "b", 8, calls=6).resume(saved)
    assert torch.equal(resumed.state.theta, ref.state.theta)
    assert _same(resumed.state.estimator, ref.state.estimator)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in ref.history]
    # the same resume without the policy's memory reports another loss for the skipped step
    saved.estimator = None
    forgetful = trainer(tmp_path / "b", 8, calls=6).resume(saved)
    assert [h["loss"] for h in forgetful.history] != [h["loss"] for h in ref.history]


def _same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b
