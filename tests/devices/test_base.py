"""The shared machinery of SimulatedDevice: drift process, noise, dtype handling."""

import numpy as np
import pytest
import torch

from blacksat import ConfigError
from blacksat.devices import MZIMesh


def test_drift_is_the_ar1_recursion_across_calls():
    dev = MZIMesh(n_modes=4, drift=0.1, drift_time=5.0, noise=0.0)
    got = np.vstack([dev._advance_drift(5), dev._advance_drift(3)])
    dev.reset()
    rng = np.random.default_rng(dev._drift_seed)
    a, state, ref = np.exp(-1 / 5), np.zeros(12), []
    for k in (5, 3):
        for step in rng.standard_normal((k, 12)) * 0.1 * np.sqrt(1 - a * a):
            state = a * state + step
            ref.append(state)
    np.testing.assert_allclose(got, np.array(ref), atol=1e-15)


def test_drift_has_its_stationary_spread():
    dev = MZIMesh(n_modes=8, drift=0.05, drift_time=3.0)
    offsets = dev._advance_drift(4000)[500:]
    assert abs(offsets.std() - 0.05) < 0.005
    assert np.all(MZIMesh(n_modes=4, drift=0.0)._advance_drift(7) == 0)


def test_noise_has_its_spread():
    dev = MZIMesh(n_modes=4, noise=0.02, drift=0.0)
    quiet = MZIMesh(n_modes=4, noise=0.0, drift=0.0)
    theta, x = dev.space.center, np.eye(4)
    diff = np.stack([dev.query(theta, x) for _ in range(200)]) - quiet.query(theta, x)
    assert abs(diff.std() - 0.02 * dev.full_scale) < 0.002
    assert abs(diff.mean()) < 0.002


def test_dtype_by_name_and_rejects_others():
    assert MZIMesh(n_modes=3, dtype="float64").dtype == torch.float64
    with pytest.raises(ConfigError, match="dtype"):
        MZIMesh(n_modes=3, dtype="float16")
