"""What counts as a reconfiguration follows the driver: the ledger equals a counting driver's own
tally of program operations, whether it keeps its setting or re-programs on every call, through
training and evaluation; an explicit re-program of the held setting is charged."""

from __future__ import annotations

import numpy as np
import pytest
from doubles import CountingDevice, LinearDevice

from blacksat import MeteredDevice, Task, TrainConfig, Trainer
from blacksat.data import load_iris
from blacksat.errors import BudgetExhausted, ConfigError
from blacksat.estimators import ZerothOrder
from blacksat.evaluation import accuracy, accuracy_many


def _same(meter: MeteredDevice, counting: CountingDevice) -> None:
    assert meter.ledger.reconfigurations == counting.reconfigurations
    assert meter.ledger.samples == counting.samples


@pytest.mark.parametrize("reprograms", [False, True])
def test_ledger_equals_the_drivers_count_through_training_and_evaluation(reprograms):
    counting = CountingDevice(LinearDevice(4, 3), reprograms_on_query=reprograms)
    meter = MeteredDevice(counting)
    assert meter.reprograms_on_query is reprograms
    task = Task(load_iris(seed=0), input_shape=(4,))
    theta = np.zeros(12)
    accuracy(task, meter, theta, batch_size=16)  # several batches at one setting
    _same(meter, counting)
    cfg = TrainConfig(lr=0.05, max_steps=5, epochs=None, batch_size=16, seed=0, progress=False)
    est = ZerothOrder(meter, task, q=3, sigma=0.05)
    result = Trainer(task, est, meter.space, cfg, meter=meter).fit(theta)
    _same(meter, counting)
    task.accuracy(meter, result.theta, batch_size=16)
    accuracy_many(task, meter, np.stack([result.theta, result.theta, theta]), batch_size=32)
    _same(meter, counting)
    n_batches = -(-len(task.data.split("test")[1]) // 16)
    before = meter.ledger.reconfigurations
    task.accuracy(meter, result.theta, batch_size=16)
    assert meter.ledger.reconfigurations - before == (n_batches if reprograms else 1)


@pytest.mark.parametrize("reprograms", [False, True])
def test_explicit_reprogram_of_the_held_setting_is_charged(reprograms):
    counting = CountingDevice(LinearDevice(2, 2), reprograms_on_query=reprograms)
    meter = MeteredDevice(counting, max_reconfigurations=4)
    theta, x = np.zeros(4), np.ones((3, 2))
    meter.query(theta, x)
    meter.query(theta, x, reprogram=True)
    meter.reprogram(theta)
    _same(meter, counting)
    assert meter.ledger.reconfigurations == 3 and meter.ledger.queries == 3
    meter.query(theta, x)  # held: free unless the driver re-programs
    _same(meter, counting)
    if not reprograms:
        meter.query(theta, x, reprogram=True)
    with pytest.raises(BudgetExhausted):
        meter.reprogram(theta)
    _same(meter, counting)


def test_a_driver_that_cannot_reprogram_on_demand_is_refused():
    meter = MeteredDevice(LinearDevice(2, 2))
    theta = np.zeros(4)
    with pytest.raises(ConfigError, match="reprogram"):
        meter.reprogram(theta)
    with pytest.raises(ConfigError, match="reprogram"):
        meter.query(theta, np.ones((1, 2)), reprogram=True)
    assert meter.ledger.queries == 0


def test_the_flag_must_be_a_bool():
    dev = LinearDevice(2, 2)
    dev.reprograms_on_query = "yes"
    with pytest.raises(ConfigError, match="reprograms_on_query"):
        MeteredDevice(dev)
