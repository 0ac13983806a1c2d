"""Re-fitting the digital readout on the deployed chip: one metered query, a better classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blacksat import MeteredDevice
from blacksat.data import load_digits
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.errors import (
    BudgetExhausted,
    ConfigError,
    InvalidReading,
    OutOfBoundsError,
    ShapeError,
)
from blacksat.estimators import Autograd
from blacksat.evaluation import accuracy
from blacksat.readout_fit import refit_readout
from blacksat.train_config import TrainConfig
from blacksat.trainer import Trainer

DATA = load_digits(seed=0)


@pytest.fixture(scope="module")
def trained():
    """A 12-mode mesh trained offline on its nominal model, and a 0.15/0.15 chip."""
    ref = MZIMesh(n_modes=12, seed=0)
    task = default_task(ref, DATA, seed=0).to(torch.float64)
    cfg = TrainConfig(lr=0.02, max_steps=150, epochs=None, batch_size=64, seed=0, progress=False)
    est = Autograd(ref.nominal_model(dtype=torch.float64), task, space=ref.space)
    theta = Trainer(task, est, ref.space, cfg).fit(ref.initial_controls(0)).theta
    return task, theta


def chip(**kw):
    return MZIMesh(n_modes=12, s_bs=0.15, s_ps=0.15, seed=3, **kw)


def test_one_query_lifts_accuracy_on_an_erroneous_chip(trained):
    task, theta = trained
    before = accuracy(task, chip(), theta)
    new, cost = refit_readout(task, chip(), theta)
    after = accuracy(new, chip(), theta)
    assert after > before + 0.05, (before, after)
    n_train = len(DATA.split("train")[1])
    assert (cost.reconfigurations, cost.samples, cost.queries) == (1, n_train, 1)
    # the original task is untouched; the copy shares the front end
    assert new is not task and task.back is None and new.front is task.front
    assert new.back.weight.dtype == task.dtype and new.readout.n == 12


def test_subsample_is_seeded_and_charged_on_the_callers_meter(trained):
    task, theta = trained
    meter = MeteredDevice(chip(noise=0.0, drift=0.0))
    a, cost = refit_readout(task, meter, theta, n_samples=128, seed=5)
    assert cost.samples == 128 and meter.ledger.samples == 128
    b, _ = refit_readout(
        task, MeteredDevice(chip(noise=0.0, drift=0.0)), theta, n_samples=128, seed=5
    )
    c, _ = refit_readout(
        task, MeteredDevice(chip(noise=0.0, drift=0.0)), theta, n_samples=128, seed=6
    )
    assert torch.equal(a.back.weight, b.back.weight)
    assert not torch.equal(a.back.weight, c.back.weight)


def test_budget_checked_before_the_query(trained):
    task, theta = trained
    meter = MeteredDevice(chip(), max_samples=100)
    with pytest.raises(BudgetExhausted):
        refit_readout(task, meter, theta, n_samples=128)
    assert meter.ledger.samples == 0


@pytest.mark.parametrize(
    "kw", [dict(n_samples=0), dict(n_samples=1), dict(n_samples=10**6), dict(n_samples=2.5),
           dict(l2=-1.0), dict(l2=float("nan"))],
)  # fmt: skip
def test_bad_arguments_raise_config_error_before_any_query(trained, kw):
    task, theta = trained
    meter = MeteredDevice(chip())
    with pytest.raises(ConfigError):
        refit_readout(task, meter, theta, **kw)
    assert meter.ledger.queries == 0


def test_bad_readings_and_controls_are_refused(trained):
    task, theta = trained

    class Nan:
        def __init__(self, inner, shape=None):
            self.inner, self.space, self.shape = inner, inner.space, shape
            self.input_shape, self.output_shape = inner.input_shape, inner.output_shape

        def query(self, t, x):
            y = self.inner.query(t, x)
            if self.shape is not None:
                return y.reshape(self.shape(y))
            y[0, 0] = np.nan
            return y

        def query_many(self, ts, x):
            return np.stack([self.query(t, x) for t in ts])

    with pytest.raises(InvalidReading):
        refit_readout(task, Nan(chip()), theta)
    with pytest.raises((ShapeError, InvalidReading)):
        refit_readout(task, Nan(chip(), shape=lambda y: (y.shape[0], 2, -1)), theta)
    heaters = Nan(chip(), shape=lambda y: y.shape)  # readings untouched
    heaters.space = heaters.space.bounded()  # phases are periodic; a driver that cannot wrap
    with pytest.raises(OutOfBoundsError):
        refit_readout(task, MeteredDevice(heaters), np.full_like(theta, 99.0))
