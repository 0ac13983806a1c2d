"""Characterization from queries: on a device whose noise is known, every measurement's interval
covers the truth, the model's radius is the programming noise in control units, the budget is a
hard limit with its cost reported, and the report and model round-trip through JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from doubles import CountingDevice

from blacksat import MeteredDevice, ParamSpace
from blacksat.characterize import characterize, load_model, save
from blacksat.devices import Crossbar
from blacksat.errors import ConfigError


class KnownNoise:
    """``y = x W(theta)``, ``W = theta`` reshaped ``(n_in, n_out)`` plus programming noise of
    std ``s_prog`` per control at each write, read noise ``s_read``, and a gain drifting by
    ``rate`` per read of a held setting."""

    def __init__(self, s_prog=0.03, s_read=0.02, rate=0.0, seed=0):
        self.space = ParamSpace.box(12, -1.0, 1.0)
        self.input_shape, self.output_shape = (4,), (3,)
        self.s_prog, self.s_read, self.rate = s_prog, s_read, rate
        self.rng = np.random.default_rng(seed)
        self.held, self.reads = None, 0

    def reprogram(self, theta):
        self.held = np.asarray(theta) + self.s_prog * self.rng.standard_normal(12)
        self.reads = 0

    def query(self, theta, x):
        if self.held is None or np.any(self._target != theta):
            self._target = np.array(theta)
            self.reprogram(theta)
        gain = 1.0 + self.rate * self.reads
        self.reads += 1
        y = gain * np.asarray(x) @ self.held.reshape(4, 3)
        return y + self.s_read * self.rng.standard_normal(y.shape)

    def query_many(self, thetas, x):
        return np.stack([self.query(t, x) for t in thetas])


def _x(b=32):
    return np.random.default_rng(5).uniform(-1, 1, (b, 4))


def test_measurements_cover_the_known_truth():
    dev = KnownNoise(s_prog=0.03, s_read=0.02, rate=0.002)
    theta = np.random.default_rng(1).uniform(-0.5, 0.5, 12)
    c = characterize(dev, _x(), budget=200, theta=theta)
    lo, hi = c.readout_noise.ci
    assert lo <= 0.02 <= hi
    # programming noise in output units: s_prog * sqrt(sum_i x_i^2), averaged over inputs
    want = 0.03 * np.sqrt(np.mean(np.sum(_x() ** 2, axis=1)))
    lo, hi = c.programming_noise.ci
    assert lo <= want <= hi
    lo, hi = c.drift.ci  # relative change per read, ~ the gain rate
    assert lo <= 0.002 <= hi and c.drift.ledger.reconfigurations == 0
    assert c.control_noise["programming"] == pytest.approx(0.03, rel=0.3)
    assert c.model.radius >= c.control_noise["programming"]
    # sensitivity: every weight's output change per unit is an input, rms sqrt(E x^2 / 3)
    true_rms = np.sqrt(np.mean(_x() ** 2) / 3)
    assert c.sensitivity.value == pytest.approx(true_rms, rel=0.25)


def test_budget_is_a_hard_limit_and_the_cost_is_the_drivers_count():
    counting = CountingDevice(KnownNoise(), reprograms_on_query=False)
    counting.reprogram = lambda t: (
        CountingDevice.reprogram(counting, t),
        counting.inner.reprogram(t),
    )
    meter = MeteredDevice(counting)
    c = characterize(meter, _x(), budget=60)
    assert c.ledger.reconfigurations == meter.ledger.reconfigurations == counting.reconfigurations
    assert c.ledger.reconfigurations <= 60
    parts = (c.readout_noise, c.programming_noise, c.drift, c.sensitivity)
    assert sum(p.ledger.reconfigurations for p in parts) == c.ledger.reconfigurations
    with pytest.raises(ConfigError, match="too small"):
        characterize(Crossbar(layer_sizes=(4, 2)), np.zeros((2, 4)), budget=10)  # reads cost


def test_a_reprogramming_crossbar_measures_its_programming_noise():
    chip = Crossbar(seed=2, noise=0.005, program_noise=0.03)
    x = np.random.default_rng(0).uniform(-1, 1, (32, 16))
    theta = np.full(chip.space.dim, 0.5)
    c = characterize(chip, x, budget=200, theta=theta)
    # the truth at g = 0.5: 0.03 (0.5 + 0.5 * 0.5) of Gmax per conductance
    assert c.control_noise["programming"] == pytest.approx(0.0225, rel=0.25)
    assert c.ledger.reconfigurations <= 200


def test_report_and_model_round_trip_through_json_and_are_not_overwritten(tmp_path):
    c = characterize(KnownNoise(), _x(), budget=60)
    paths = save(c, tmp_path)
    report = json.loads(paths["report"].read_text())
    assert report["readout_noise"]["ci"] == list(c.readout_noise.ci)
    model = load_model(paths["model"], dim=12)
    assert model.radius == c.model.radius and model.kind == "gaussian"
    assert load_model(paths["report"], dim=12).radius == c.model.radius
    with pytest.raises(ConfigError, match="12 controls, this one has 5"):
        load_model(paths["model"], dim=5)
    with pytest.raises(ConfigError, match="exists"):
        save(c, tmp_path)
    paths["report"].write_text("{}")
    with pytest.raises(ConfigError, match="not a measured perturbation model"):
        load_model(paths["report"])
