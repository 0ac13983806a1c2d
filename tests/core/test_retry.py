"""Retries with backoff inside the meter: every attempt charged, the budget re-checked before each
retry, exhausted retries propagate, and a trainer rolls the failed step back."""

import pickle

import numpy as np
import pytest
import torch
from doubles import (
    CountingDevice,
    FlakyDevice,
    LinearDevice,
    NonFiniteDevice,
    RaisingDevice,
    TimeoutDevice,
)

from blacksat import (
    BudgetExhausted,
    ConfigError,
    DeviceError,
    DeviceTimeout,
    InvalidReading,
    OutOfBoundsError,
)
from blacksat.data import load_iris
from blacksat.estimators import ZerothOrder
from blacksat.meter import Ledger, MeteredDevice
from blacksat.retry import RetryPolicy
from blacksat.task import Task
from blacksat.trainer import TrainConfig, Trainer

X = np.ones((4, 3))
T0 = np.zeros(6)


def policy(**kw):
    pauses: list[float] = []
    return RetryPolicy(**{"sleep": pauses.append, **kw}), pauses


def metered(inner, **kw):
    counter = CountingDevice(inner)
    return MeteredDevice(counter, **kw), counter


def tally(counter):
    return counter.reconfigurations, counter.samples


def test_delays_grow_geometrically_up_to_the_cap():
    p = RetryPolicy(backoff=0.1, factor=3.0, max_backoff=1.0)
    assert [p.delay(i) for i in range(4)] == pytest.approx([0.1, 0.3, 0.9, 1.0])
    assert RetryPolicy(backoff=0.0).delay(5000) == 0.0
    assert RetryPolicy(max_retries=5000, max_backoff=7.0).delay(4999) == 7.0  # no overflow


def test_flaky_device_succeeds_and_every_attempt_is_charged():
    p, pauses = policy(max_retries=3, backoff=0.01, factor=2.0)
    flaky = FlakyDevice(LinearDevice(), failures=2)
    m, counter = metered(flaky, retry=p)
    y = m.query(np.full(6, 0.5), X)
    np.testing.assert_allclose(y, X @ np.full((3, 2), 0.5))
    assert pauses == pytest.approx([0.01, 0.02])
    # three attempts reached the device; two failed; each failure leaves the held setting
    # unknown, so every attempt paid a reconfiguration
    assert m.ledger == Ledger(reconfigurations=3, samples=12, queries=3, failures=2)
    assert (m.ledger.reconfigurations, m.ledger.samples) == tally(counter)
    assert flaky.calls == counter.calls == 3


def test_exhausted_retries_propagate_the_device_error():
    p, pauses = policy(max_retries=2, backoff=0.5)
    m, counter = metered(FlakyDevice(LinearDevice(), failures=10), retry=p)
    with pytest.raises(DeviceError, match="ConnectionError") as info:
        m.query_many(np.zeros((2, 6)), X)
    assert isinstance(info.value.__cause__, ConnectionError)
    assert len(pauses) == 2 and counter.calls == 3
    assert m.ledger.queries == 3 and m.ledger.failures == 3
    assert (m.ledger.reconfigurations, m.ledger.samples) == tally(counter) == (3, 24)


def test_timeouts_are_retried_and_wrapped():
    p, pauses = policy(max_retries=1, retry_on=(DeviceTimeout,))
    m, counter = metered(TimeoutDevice(LinearDevice(), at=0, delay=0.001), retry=p)
    assert counter.calls == 0
    m.query(T0, X)  # the first call times out, the retry answers
    assert m.ledger.failures == 1 and m.ledger.queries == 2 == counter.calls and len(pauses) == 1
    m2, _ = metered(TimeoutDevice(LinearDevice(), at=(0, 1)), retry=policy(max_retries=1)[0])
    with pytest.raises(DeviceTimeout):
        m2.query(T0, X)
    assert m2.ledger.failures == 2


def test_retry_on_selects_errors_by_class_or_by_the_raw_cause():
    only_timeouts, pauses = policy(retry_on=(DeviceTimeout,))
    m, counter = metered(FlakyDevice(LinearDevice(), failures=1), retry=only_timeouts)
    with pytest.raises(DeviceError):
        m.query(T0, X)  # a dropped connection is not a time-out: no retry
    assert counter.calls == 1 and pauses == []
    by_cause, _ = policy(retry_on=(ConnectionError,))
    m, counter = metered(FlakyDevice(LinearDevice(), failures=1), retry=by_cause)
    m.query(T0, X)
    assert counter.calls == 2


def test_invalid_readings_are_retried_only_when_named():
    m, counter = metered(NonFiniteDevice(LinearDevice(), at=0), retry=policy()[0])
    with pytest.raises(InvalidReading):
        m.query(T0, X)
    assert counter.calls == 1 and m.ledger.failures == 1
    named = policy(retry_on=(InvalidReading,))[0]
    m, counter = metered(NonFiniteDevice(LinearDevice(), at=0), retry=named)
    m.query(T0, X)
    # the device held the setting after the bad reading: the retry costs no reconfiguration
    assert m.ledger == Ledger(reconfigurations=1, samples=8, queries=2, failures=1)
    assert (m.ledger.reconfigurations, m.ledger.samples) == tally(counter)


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_a_retry_never_overshoots_the_budget(budget):
    p, pauses = policy(max_retries=5)
    m, counter = metered(
        FlakyDevice(LinearDevice(), failures=10), retry=p, max_reconfigurations=budget
    )
    with pytest.raises(BudgetExhausted) as info:
        m.query(T0, X)
    assert isinstance(info.value.__cause__, DeviceError)  # why the budget ran out
    assert m.ledger.reconfigurations == budget == counter.reconfigurations
    assert m.ledger.failures == budget and len(pauses) == budget - 1  # no pause for nothing


def test_errors_raised_before_sending_are_never_retried():
    p, pauses = policy()
    m, counter = metered(LinearDevice(), retry=p, max_samples=4)
    with pytest.raises(OutOfBoundsError):
        m.query(np.full(6, 3.0), X)
    m.query(T0, X)
    with pytest.raises(BudgetExhausted):
        m.query(T0, X)
    assert counter.calls == 1 and pauses == []


def test_interrupts_are_never_retried():
    p, pauses = policy()
    m, counter = metered(FlakyDevice(LinearDevice(), error=KeyboardInterrupt()), retry=p)
    with pytest.raises(KeyboardInterrupt):
        m.query(T0, X)
    assert counter.calls == 1 and pauses == [] and m.ledger.failures == 1


@pytest.mark.parametrize(
    "kw",
    [
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"max_retries": True},
        {"backoff": -0.1},
        {"backoff": float("nan")},
        {"factor": 0.5},
        {"factor": float("inf")},
        {"max_backoff": -1},
        {"retry_on": ()},
        {"retry_on": (int,)},
        {"retry_on": (BudgetExhausted,)},
        {"retry_on": "DeviceError"},
        {"sleep": 3},
    ],
)
def test_policy_rejects_bad_hyperparameters(kw):
    with pytest.raises(ConfigError):
        RetryPolicy(**kw)


def test_meter_rejects_a_non_policy_and_pickles_with_one():
    with pytest.raises(ConfigError, match="RetryPolicy"):
        MeteredDevice(LinearDevice(), retry={"max_retries": 3})
    m = MeteredDevice(LinearDevice(), retry=RetryPolicy(max_retries=2, retry_on=DeviceTimeout))
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.retry == m.retry and m2.retry.retry_on == (DeviceTimeout,)


# ---------------------------------------------------------------------- inside a training run
def zo_trainer(device, config, **meter_kw):
    task = Task(load_iris(seed=0), input_shape=(4,)).to(torch.float64)
    meter, counter = metered(device, policy="clip", **meter_kw)
    est = ZerothOrder(meter, task, q=2, sigma=0.05)
    return Trainer(task, est, meter.space, config, meter=meter), meter, counter


def test_exhausted_retries_roll_the_trainer_step_back():
    config = TrainConfig(lr=0.05, max_steps=6, batch_size=16, seed=1, progress=False)
    theta0 = np.linspace(-0.5, 0.5, 12)
    p, pauses = policy(max_retries=2)
    broken = RaisingDevice(LinearDevice(4, 3), at=lambda k: k >= 3)  # one call per step
    trainer, meter, counter = zo_trainer(broken, config, retry=p)
    with pytest.raises(DeviceError):
        trainer.fit(theta0)
    state = trainer.snapshot()
    assert state.step == 3 and len(pauses) == 2 and broken.raised == 3
    assert meter.ledger.failures == 3 and state.ledger == meter.ledger
    assert (meter.ledger.reconfigurations, meter.ledger.samples) == tally(counter)
    # the device comes back; the rolled-back step is redone exactly
    broken.armed = False
    res = trainer.resume(state)
    clean = zo_trainer(LinearDevice(4, 3), config)[0].fit(theta0)
    assert res.steps == 6 and torch.equal(res.state.theta, clean.state.theta)
    assert res.ledger.failures == 3 and res.ledger.queries == clean.ledger.queries + 3
    assert (res.ledger.reconfigurations, res.ledger.samples) == tally(counter)
