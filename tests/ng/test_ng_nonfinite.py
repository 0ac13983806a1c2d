"""The nevergrad bridge never tells NaN/inf, and -inf never becomes the recommendation: neither
from non-finite readings (NaN, +inf, -inf: the meter rejects them, the objective maps each bad
setting to +inf) nor from a loss that is non-finite although the readings are finite."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from doubles import NonFiniteDevice
from nevergrad.optimization import base as ng_base

from blacksat import MeteredDevice
from blacksat.data import load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.ng.adapter import DeviceObjective, minimize
from blacksat.task import Task

DATA = load_iris()
LIMIT = np.pi  # the bad region: first control above this


def chip():
    return MZIMesh(n_modes=4, seed=0, noise=0.0, drift=0.0)


class BadRegion(NonFiniteDevice):
    """Non-finite readings (``value``) for every setting whose first control exceeds LIMIT."""

    def __init__(self, inner, value):
        super().__init__(inner, at=None, value=value)
        self.last = None

    def query_many(self, thetas, x):
        self.settings = np.flatnonzero(np.asarray(thetas)[:, 0] > LIMIT)
        return super().query_many(thetas, x)


class MinusInfLoss(Task):
    """A task whose loss is -inf (or NaN) where the first class score is high: finite readings,
    non-finite loss (a log of zero in a user's loss, say)."""

    value = -np.inf

    def loss(self, logits, labels):
        out = super().loss(logits, labels)
        bad = logits[..., 0].mean(-1) > self.threshold
        return torch.where(bad, torch.full_like(out, self.value), out)


@pytest.fixture
def told(monkeypatch):
    seen: list[float] = []
    tell = ng_base.Optimizer.tell

    def spy(self, candidate, loss, *args, **kwargs):
        seen.append(float(loss))
        return tell(self, candidate, loss, *args, **kwargs)

    monkeypatch.setattr(ng_base.Optimizer, "tell", spy)
    return seen


def run(obj, name="OnePlusOne", budget=48, seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return minimize(obj, name, budget=budget, num_workers=8, seed=seed)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_readings_are_never_told(value, told):
    dev = BadRegion(chip(), value)
    obj = DeviceObjective(default_task(chip(), DATA), MeteredDevice(dev), batch_size=32)
    res = run(obj)
    assert res.skipped_nonfinite > 0 and res.told == len(told) > 0
    assert np.all(np.isfinite(told))
    assert res.theta[0] <= LIMIT  # the recommendation is a told (finite) point
    assert np.isfinite(obj(res.theta))


@pytest.mark.parametrize("value", [-np.inf, np.nan])
@pytest.mark.parametrize("name", ["OnePlusOne", "BlacksatZOSAT"])
def test_non_finite_losses_from_finite_readings_are_never_told(value, name, told):
    base = default_task(chip(), DATA)
    task = MinusInfLoss(DATA, input_shape=base.input_shape, encoder=base.encoder)
    task.readout, task.value = base.readout, value
    probe = DeviceObjective(task, MeteredDevice(chip()), batch_size=None)
    features = task.batch("train", np.arange(len(DATA.y_train))).features
    scores = []
    for t in chip().space.sample(np.random.default_rng(0), 24):
        with torch.no_grad():
            scores.append(float(task.logits_device(chip(), t, features)[..., 0].mean()))
    task.threshold = float(np.median(scores))  # about half of the box is "-inf"
    obj = DeviceObjective(task, MeteredDevice(chip()), batch_size=None)
    res = run(obj, name)
    assert res.skipped_nonfinite > 0 and res.told == len(told) > 0
    assert np.all(np.isfinite(told)) and np.isfinite(res.best_loss)
    assert obj.device.ledger.failures == 0  # the readings were fine; only the loss was not
    if name == "OnePlusOne":  # recommends a told point: never one of the -inf ones
        assert np.isfinite(probe(res.theta))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_candidate_is_never_sent_and_gets_plus_inf(value):
    from doubles import CountingDevice

    mesh = chip()
    counting = CountingDevice(mesh)
    meter = MeteredDevice(counting)
    task = default_task(mesh, load_iris(seed=0), seed=0)
    obj = DeviceObjective(task, meter, seed=0)
    good = counting.space.center
    bad = good.copy()
    bad[3] = value  # clipping would have turned an infinity into a bound and sent it
    losses = obj.losses(np.stack([good, bad, good]))
    assert losses[1] == np.inf and np.all(np.isfinite(losses[[0, 2]]))
    assert counting.reconfigurations == 1  # the two good settings are identical: one applied
    assert np.isinf(obj.losses(bad[None])).all() and counting.calls == 1
