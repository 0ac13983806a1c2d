"""``ReadoutNoise``: a model's outputs plus seeded Gaussian readout noise, differentiable."""

import numpy as np
import pytest
import torch

from blacksat import ConfigError
from blacksat.readout_noise import ReadoutNoise


def _model(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``theta (d,)|(K, d)``, ``x (B, 3)`` -> ``(B, 2)|(K, B, 2)``: a smooth toy device."""
    w = torch.sin(theta[..., :6]).reshape(*theta.shape[:-1], 2, 3)
    return torch.einsum("...oi,bi->...bo", w, x)


X = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)
THETA = torch.linspace(0, 2, 6, dtype=torch.float64)


def test_shapes_of_one_and_of_many_settings():
    m = ReadoutNoise(_model, 0.1)
    assert m(THETA, X).shape == (4, 2)
    assert m(THETA.repeat(5, 1), X).shape == (5, 4, 2)


def test_zero_noise_is_the_model():
    m = ReadoutNoise(_model, 0.0)
    torch.testing.assert_close(m(THETA, X), _model(THETA, X), rtol=0, atol=0)


def test_the_noise_has_the_stated_spread_and_no_bias():
    m = ReadoutNoise(_model, 0.05)
    k = 4000
    y = m(THETA.repeat(k, 1), X).numpy()
    resid = y - _model(THETA, X).numpy()
    assert abs(resid.std() / 0.05 - 1) < 0.02
    assert abs(resid.mean()) < 4 * 0.05 / np.sqrt(resid.size)


def test_a_spread_per_output():
    std = np.array([0.0, 0.2])
    y = ReadoutNoise(_model, std)(THETA.repeat(2000, 1), X).numpy() - _model(THETA, X).numpy()
    assert np.all(y[..., 0] == 0)
    assert abs(y[..., 1].std() / 0.2 - 1) < 0.05


def test_a_spread_that_does_not_fit_the_outputs_is_refused():
    with pytest.raises(ConfigError, match=r"shape \(3,\) does not fit readings of shape \(4, 2\)"):
        ReadoutNoise(_model, np.array([0.1, 0.2, 0.3]))(THETA, X)


def test_seeded_and_replayable():
    a, b = ReadoutNoise(_model, 0.1, seed=7), ReadoutNoise(_model, 0.1, seed=7)
    first = a(THETA, X)
    torch.testing.assert_close(first, b(THETA, X), rtol=0, atol=0)
    second = a(THETA, X)
    assert not torch.equal(first, second)  # fresh noise at every call
    a.reset()
    torch.testing.assert_close(a(THETA, X), first, rtol=0, atol=0)
    assert not torch.equal(ReadoutNoise(_model, 0.1, seed=8)(THETA, X), first)


def test_gradients_are_the_models():
    theta = THETA.clone().requires_grad_(True)
    (ReadoutNoise(_model, 0.3)(theta, X) * X[:, :2]).sum().backward()
    ref = THETA.clone().requires_grad_(True)
    (_model(ref, X) * X[:, :2]).sum().backward()
    assert theta.grad is not None and ref.grad is not None
    torch.testing.assert_close(theta.grad, ref.grad)


def test_wraps_a_module_and_follows_its_dtype():
    class Lin(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(2, 3, dtype=torch.float64))

        def forward(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return x @ (self.w * theta[..., :1, None]).transpose(-1, -2)

    m = ReadoutNoise(Lin(), 0.1).to(torch.float32)
    y = m(THETA.float(), X.float())
    assert y.dtype == torch.float32 and y.shape == (4, 2)
    assert "std=0.1" in repr(m)


@pytest.mark.parametrize(
    ("std", "match"),
    [
        (-0.1, "finite and >= 0"),
        (float("nan"), "finite and >= 0"),
        (np.inf, "finite and >= 0"),
        (1j, "real number"),
        ("0.1", "real number"),
        ([0.1, -1.0], "finite and >= 0"),
    ],
)
def test_bad_spreads_are_refused(std, match):
    with pytest.raises(ConfigError, match=match):
        ReadoutNoise(_model, std)


def test_a_model_that_is_not_callable_is_refused():
    with pytest.raises(ConfigError, match="callable"):
        ReadoutNoise(np.zeros(3), 0.1)


def test_complex_outputs_are_refused():
    def field(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(1j * _model(theta, x))

    with pytest.raises(ConfigError, match="complex"):
        ReadoutNoise(field, 0.1)(THETA, X)


def test_measuring_the_readout_noise_costs_one_reconfiguration():
    from blacksat.devices import MZIMesh
    from blacksat.meter import MeteredDevice
    from blacksat.readout_noise import measure_readout_noise

    chip = MZIMesh(n_modes=4, noise=0.02, drift=0.0, seed=0)
    meter = MeteredDevice(chip)
    x = np.random.default_rng(0).uniform(0, 1, (64, 4))
    std = measure_readout_noise(meter, x, copies=4)
    assert abs(std / (0.02 * chip.full_scale) - 1) < 0.1
    assert meter.ledger.reconfigurations == 1 and meter.ledger.samples == 256
    quiet = MZIMesh(n_modes=4, noise=0.0, drift=0.0, seed=0)
    assert measure_readout_noise(quiet, x, chip.space.center) == 0.0
    with pytest.raises(ConfigError, match="copies"):
        measure_readout_noise(chip, x, copies=1)
