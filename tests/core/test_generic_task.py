"""Generic tasks from what a device declares: front ends against independent references, the
encoding inside the device's input limits, readouts chosen from the output kind (never silently
optical), choices recorded, and Task.to moving every tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from doubles import LinearDevice
from scipy.fft import dct

from blacksat.data import load_digits, load_iris
from blacksat.errors import ConfigError
from blacksat.generic_task import dct_matrix, front_end, generic_task


class Declared(LinearDevice):
    def __init__(self, n_in, n_out, kind=None, rng=None):
        super().__init__(n_in, n_out)
        if kind is not None:
            self.output_kind = kind
        if rng is not None:
            self.input_range = rng


def test_dct_front_end_is_the_orthonormal_dct_ii():
    x = np.random.default_rng(0).standard_normal((5, 12))
    ours = x @ dct_matrix(12, 6).numpy()
    np.testing.assert_allclose(ours, dct(x, type=2, norm="ortho", axis=1)[:, :6], atol=1e-12)


def test_pca_is_fitted_on_the_training_split_only():
    data = load_digits(seed=0)
    proj = front_end("pca", data.split("train")[0], 8, seed=0)
    z = proj(torch.as_tensor(data.split("train")[0], dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)  # standardised on the train split
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-3)
    cov = np.cov(z, rowvar=False)
    np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0.0, atol=1e-3)  # decorrelated
    task = generic_task(Declared(8, 10), data)
    assert task.choices["front"] == "pca"


def test_encoding_stays_inside_the_declared_input_limits():
    data = load_digits(seed=0)
    for rng in ((-1.0, 1.0), (0.2, 0.7), None):
        task = generic_task(Declared(16, 10, rng=rng), data, front="random")
        x = task.encode(torch.as_tensor(data.split("test")[0] * 50, dtype=torch.float32))
        lo, hi = rng or (0.0, 1.0)
        assert float(x.min()) >= lo and float(x.max()) <= hi and x.shape[1:] == (16,)
    assert "declares no input_range" in task.choices["encoding"]


def test_readouts_follow_the_declared_output_kind():
    data = load_iris(seed=0)
    optical = generic_task(Declared(4, 5, kind="power"), data)
    assert optical.choices["readout"] == "fractions"
    electrical = generic_task(Declared(4, 5, kind="signed"), data)
    undeclared = generic_task(Declared(4, 5), data)
    assert electrical.choices["readout"] == undeclared.choices["readout"] == "signed"
    y = torch.tensor([[2.0, -1.0, 3.0, 7.0, 0.0]])
    torch.testing.assert_close(undeclared.decode(y), y[:, :3])  # signed, unnormalised
    torch.testing.assert_close(optical.decode(y.abs()), 10 * y.abs()[:, :3] / 13.0)
    narrow = generic_task(Declared(4, 2), data)  # fewer outputs than classes
    assert narrow.choices["readout"] == "linear" and narrow.back is not None
    assert narrow.decode(y[:, :2]).shape == (1, 3)
    with pytest.raises(ConfigError, match="fewer than the 3 classes"):
        generic_task(Declared(4, 2), data, readout="signed")
    with pytest.raises(ConfigError, match="output_kind"):
        generic_task(Declared(4, 5, kind="light"), data)


def test_task_to_moves_every_tensor_it_owns():
    data = load_iris(seed=0)
    task = generic_task(Declared(4, 2), data).to(torch.float64)
    assert all(b.dtype == torch.float64 for b in task.encoder.buffers())
    feats = torch.as_tensor(data.split("test")[0], dtype=torch.float64)
    assert task.decode(torch.as_tensor(task.encode(feats)[:, :2])).dtype == torch.float64
    dev = Declared(4, 2)
    assert 0.0 <= task.accuracy(dev, np.zeros(8)) <= 1.0


def test_a_device_without_shapes_is_refused():
    class Bare:
        space = LinearDevice().space

    with pytest.raises(ConfigError, match="declares no valid input_shape"):
        generic_task(Bare(), load_iris(seed=0))


def test_refit_readout_normalizes_only_optical_readings():
    from blacksat import MeteredDevice
    from blacksat.readout_fit import refit_readout

    data = load_iris(seed=0)
    theta = np.random.default_rng(0).uniform(0, 1, 20)
    for kind, want in (("power", True), ("signed", False), (None, False)):
        dev = MeteredDevice(Declared(4, 5, kind=kind))
        new, _ = refit_readout(generic_task(dev, data), dev, theta)
        assert new.readout.normalize is want
