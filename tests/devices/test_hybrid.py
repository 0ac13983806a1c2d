"""Tests of the two-mesh ``MZIHybrid`` device: the O/E/O stage against a numpy reference, the
truth against its two meshes built alone, nuisances, shapes and seeding."""

from __future__ import annotations

import json
import pickle
from typing import Any

import numpy as np
import pytest
import torch

from blacksat.data import load_digits
from blacksat.devices import DEVICES
from blacksat.devices.hybrid import OEO_EPS, HybridPhysics, MZIHybrid
from blacksat.devices.mzi import MZIMesh, MZIPhysics
from blacksat.devices.tasks import default_task
from blacksat.errors import ConfigError, ShapeError
from blacksat.perturbations import CommonMode, NuisanceModel, PerControl

F64 = torch.float64
OFF: dict[str, Any] = {
    "s_bs": 0.0,
    "s_ps": 0.0,
    "crosstalk": 0.0,
    "loss_imbalance_db": 0.0,
    "insertion_loss_db": 0.0,
    "saturation": 0.0,
    "responsivity_spread": 0.0,
    "noise": 0.0,
    "drift": 0.0,
}
HIDDEN = {
    "crosstalk": 0.03,
    "loss_imbalance_db": 0.1,
    "insertion_loss_db": 0.1,
    "saturation": 0.1,
    "responsivity_spread": 0.02,
}


def _inputs(n: int, b: int = 7, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((b, n))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _run(model: torch.nn.Module, thetas: np.ndarray, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(thetas, dtype=F64), torch.as_tensor(x, dtype=F64)).numpy()


def _oeo_reference(power: np.ndarray, eps: float = OEO_EPS) -> np.ndarray:
    n = power.shape[-1]
    q = power / power.sum(-1, keepdims=True)  # power fractions
    return np.sqrt((q + eps) / (1 + n * eps))


# ---------------------------------------------------------------------- physics vs references
def test_truth_is_mesh1_then_oeo_then_mesh2_built_alone() -> None:
    n = 5
    levels = {**HIDDEN, "s_bs": 0.15, "s_ps": 0.15}
    dev = MZIHybrid(
        n_modes=n, seed=3, dtype="float64", noise=0.0, drift=0.0, temperature=0.7, **levels
    )
    s1, s2 = dev.mesh_seeds()
    mesh1, mesh2 = (
        MZIMesh(n_modes=n, seed=s, dtype="float64", noise=0.0, drift=0.0, temperature=0.7, **levels)
        for s in (s1, s2)
    )
    d = n * (n - 1)
    thetas = dev.space.sample(np.random.default_rng(1), 3)
    x = _inputs(n)
    got = dev.query_many(thetas, x)
    for k in range(3):
        power = mesh1.query(thetas[k, :d], x)
        want = mesh2.query(thetas[k, d:], _oeo_reference(power))
        np.testing.assert_allclose(got[k], want, rtol=1e-10, atol=1e-13)


def test_oeo_stage_is_the_modulus_for_ideal_meshes() -> None:
    dev = MZIHybrid(n_modes=6, dtype="float64", **OFF)
    model = dev.nominal_model()
    thetas = torch.as_tensor(dev.space.sample(np.random.default_rng(0), 2))
    x = torch.as_tensor(_inputs(6))
    with torch.no_grad():
        power = model.mesh1(thetas[:, :30], x)
        a = model.oeo(power)
        u1 = model.mesh1.unitaries(thetas[:, :30])
    modulus = torch.abs(torch.einsum("kpn,bn->kbp", u1, x.to(u1.dtype)))
    np.testing.assert_allclose(a.numpy(), modulus.numpy(), atol=1e-5)  # up to eps
    np.testing.assert_allclose((a**2).sum(-1).numpy(), 1.0, atol=1e-12)  # unit power
    np.testing.assert_allclose(a.numpy(), _oeo_reference(power.numpy()), atol=1e-14)
    # the stage is an automatic gain control: the input power does not matter
    with torch.no_grad():
        np.testing.assert_allclose(
            model(thetas, 3.0 * x).numpy(), model(thetas, x).numpy(), atol=1e-12
        )
        dark = model.oeo(torch.zeros(2, 6, dtype=F64))
    np.testing.assert_allclose(dark.numpy(), 1 / np.sqrt(6), atol=1e-15)


def test_gradient_is_finite_at_dark_ports_and_matches_finite_differences() -> None:
    dev = MZIHybrid(n_modes=4, dtype="float64", noise=0.0, drift=0.0)
    model = dev.exact_model()
    theta = torch.tensor(dev.space.sample(np.random.default_rng(2)), requires_grad=True)
    x = torch.as_tensor(_inputs(4))
    w = torch.as_tensor(np.random.default_rng(3).standard_normal((7, 4)))
    (model(theta, x) * w).sum().backward()
    h = 1e-6
    for j in (0, 5, 12, 20):  # mesh 1 (0, 5) and mesh 2 (12, 20)
        e = torch.zeros_like(theta)
        e[j] = h
        with torch.no_grad():
            fd = ((model(theta + e, x) - model(theta - e, x)) * w).sum() / (2 * h)
        assert abs(float(fd) - float(theta.grad[j])) < 1e-6
    # all bar states: mesh 1 passes each mode straight through; a one-hot input leaves dark ports
    bar = torch.full((24,), np.pi, dtype=F64, requires_grad=True)
    y = dev.nominal_model()(bar, torch.eye(4, dtype=F64))
    (y * w[:4]).sum().backward()
    assert torch.isfinite(bar.grad).all()


# ---------------------------------------------------------------------- the library change
@pytest.mark.parametrize("grad", [False, True])
def test_mzi_physics_takes_one_input_batch_per_setting(grad: bool) -> None:
    model = MZIMesh(n_modes=5, dtype="float64", s_bs=0.1, saturation=0.2).exact_model()
    thetas = torch.as_tensor(np.random.default_rng(0).uniform(0, 6, (3, 20)))
    x = torch.as_tensor(np.random.default_rng(1).standard_normal((3, 4, 5)))
    with torch.set_grad_enabled(grad):
        thetas = thetas.clone().requires_grad_(grad)
        got = model.forward_many(thetas, x)
        want = torch.stack([model.forward_many(thetas[k : k + 1], x[k])[0] for k in range(3)])
    assert got.shape == (3, 4, 5) and got.requires_grad == grad
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), atol=1e-14)
    with pytest.raises(ShapeError, match=r"x must be \(B, 5\) or \(3, B, 5\)"):
        model.forward_many(thetas, x[:2])


# ---------------------------------------------------------------------- truth vs nominal
def test_truth_equals_nominal_when_everything_is_off() -> None:
    dev = MZIHybrid(n_modes=6, dtype="float64", **OFF)
    thetas = dev.space.sample(np.random.default_rng(0), 4)
    x = _inputs(6)
    nominal = _run(dev.nominal_model(), thetas, x)
    np.testing.assert_allclose(dev.query_many(thetas, x), nominal, atol=1e-13)
    np.testing.assert_allclose(_run(dev.exact_model(), thetas, x), nominal, atol=1e-13)


def test_truth_differs_from_nominal_at_defaults() -> None:
    dev = MZIHybrid(noise=0.0, drift=0.0, dtype="float64")
    thetas = dev.space.sample(np.random.default_rng(0), 2)
    x = _inputs(16)
    assert np.abs(dev.query_many(thetas, x) - _run(dev.nominal_model(), thetas, x)).max() > 0.05


def test_the_two_meshes_have_their_own_draws() -> None:
    dev = MZIHybrid(n_modes=6, dtype="float64", s_bs=0.1, s_ps=0.1)
    model = dev.exact_model()
    for buf in ("bs_errors", "phase_offsets", "arm_imbalance_db", "responsivity"):
        a, b = getattr(model.mesh1, buf), getattr(model.mesh2, buf)
        assert a.shape == b.shape and not torch.allclose(a, b), buf
    s1, s2 = dev.mesh_seeds()
    assert s1 != s2 and MZIHybrid(n_modes=6, seed=1).mesh_seeds() != (s1, s2)
    # the draw depends on the seed only: another level scales the same draw
    double = MZIHybrid(n_modes=6, dtype="float64", s_bs=0.2, s_ps=0.2).exact_model()
    for mesh, twice in ((model.mesh1, double.mesh1), (model.mesh2, double.mesh2)):
        torch.testing.assert_close(twice.phase_offsets, 2 * mesh.phase_offsets)
        torch.testing.assert_close(twice.bs_errors, 2 * mesh.bs_errors)
    # every mesh differs from mesh 1 of another chip
    other = MZIHybrid(n_modes=6, dtype="float64", s_bs=0.1, s_ps=0.1, seed=1).exact_model()
    assert not torch.allclose(other.mesh1.bs_errors, model.mesh1.bs_errors)


# ---------------------------------------------------------------------- nuisance, perturbations
def test_temperature_acts_on_both_meshes() -> None:
    dev = MZIHybrid(
        n_modes=5, dtype="float64", **{**OFF, "s_bs": 0.1, "s_ps": 0.1, "saturation": 0.1}
    )
    hot = dev.perturbed(temperature=1.5)
    assert hot.nuisance_values == {"temperature": 1.5}
    model = hot.exact_model()
    assert float(model.mesh1.phase_shift) == float(model.mesh2.phase_shift) == pytest.approx(0.15)
    thetas = dev.space.sample(np.random.default_rng(0), 2) * 0.9
    x = _inputs(5)
    warm = _run(model, thetas, x)
    np.testing.assert_allclose(warm, _run(dev.exact_model(), thetas + 0.15, x), atol=1e-12)
    d = 20
    for part in (slice(0, d), slice(d, 2 * d)):  # shifting one mesh alone is not enough
        shifted = thetas.copy()
        shifted[:, part] += 0.15
        assert np.abs(_run(dev.exact_model(), shifted, x) - warm).max() > 1e-3
    # on the nominal physics the common-mode shift is the temperature (the "phase_drift" model)
    np.testing.assert_allclose(
        _run(dev.nominal_model(temperature=-2.0), thetas, x),
        _run(dev.nominal_model(), thetas - 0.2, x),
        atol=1e-12,
    )


def test_perturbation_models() -> None:
    dev = MZIHybrid(n_modes=4, s_ps=0.07)
    models = dev.perturbation_models()
    assert list(models) == ["phase_drift", "temperature", "phase_error"]
    assert isinstance(models["phase_drift"], CommonMode) and models[
        "phase_drift"
    ].radius == pytest.approx(0.2)
    assert isinstance(models["temperature"], NuisanceModel)
    assert isinstance(models["phase_error"], PerControl)


# ---------------------------------------------------------------------- device plumbing
def test_space_shapes_registry_and_task() -> None:
    dev = MZIHybrid()
    assert DEVICES["mzi-hybrid"] is MZIHybrid and dev.name == "mzi-hybrid"
    assert dev.space.dim == 480 and dev.input_shape == (16,) and dev.output_shape == (16,)
    names = dev.space.names
    assert names[:2] == ("m1.mzi0.theta", "m1.mzi0.phi") and names[240] == "m2.mzi0.theta"
    assert names[-1] == "m2.mzi119.phi"
    np.testing.assert_array_equal(dev.space.lower, 0.0)
    np.testing.assert_array_equal(dev.space.upper, 2 * np.pi)
    assert dev.noise > 0 and dev.drift > 0
    json.dumps(dev.describe())
    task = default_task(dev, load_digits(seed=0), seed=0)
    features = torch.as_tensor(task.data.x_test[:8], dtype=torch.float32)
    enc = task.encode(features)
    assert enc.shape == (8, 16)
    logits = task.decode(dev.nominal_model()(torch.as_tensor(dev.initial_controls(0)), enc))
    assert logits.shape == (8, 10) and torch.isfinite(logits).all()


def test_shape_errors() -> None:
    dev = MZIHybrid(n_modes=4)
    with pytest.raises(ShapeError):
        dev.query(np.zeros(24), np.zeros((2, 5)))
    with pytest.raises(ShapeError):
        dev.query(np.zeros(12), _inputs(4))  # one mesh's controls only
    assert dev.space.periodic.all()  # phases: 7 rad is sent as 7 - 2 pi, nothing raises
    np.testing.assert_allclose(dev.space.validate(np.full(24, 7.0)), 7.0 - 2 * np.pi)
    model = dev.nominal_model()
    with pytest.raises(ShapeError, match=r"thetas must be \(K, 24\)"):
        model.forward_many(torch.zeros(2, 12), torch.zeros(3, 4))
    with pytest.raises(ShapeError, match=r"x must be \(B, 4\)"):
        model.forward_many(torch.zeros(2, 24), torch.zeros(2, 3, 4))
    with pytest.raises(ConfigError):
        HybridPhysics(MZIPhysics(4), MZIPhysics(5))
    with pytest.raises(ConfigError):
        HybridPhysics(MZIPhysics(4), MZIPhysics(4, detection="coherent"))


def test_seeded_determinism_config_roundtrip_and_pickling() -> None:
    a, b = MZIHybrid(n_modes=6, seed=11), MZIHybrid(n_modes=6, seed=11)
    thetas = a.space.sample(np.random.default_rng(0), 3)
    x = _inputs(6)
    ya = a.query_many(thetas, x)
    np.testing.assert_array_equal(ya, b.query_many(thetas, x))
    clone = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(clone.query_many(thetas, x), a.query_many(thetas, x))
    rebuilt = MZIHybrid(**a.config())
    np.testing.assert_array_equal(rebuilt.query_many(thetas, x), ya)
    assert rebuilt.config() == a.config()
    other = a.fresh_chip(12)
    assert other.seed == 12 and np.abs(other.query_many(thetas, x) - ya).max() > 1e-3
    assert "MZIHybrid(n_modes=6" in repr(a)


def test_float32_agrees_with_float64() -> None:
    dev = MZIHybrid(n_modes=6, noise=0.0, drift=0.0)
    thetas = dev.space.sample(np.random.default_rng(0), 4)
    x = _inputs(6)
    dev64 = MZIHybrid(**{**dev.config(), "dtype": "float64"})
    np.testing.assert_allclose(dev.query_many(thetas, x), dev64.query_many(thetas, x), atol=2e-5)


def test_calibratable_names_are_buffers_of_the_model() -> None:
    model = MZIHybrid(n_modes=4).nominal_model()
    buffers = dict(model.named_buffers())
    assert model.calibratable == tuple(
        f"mesh{i}.{p}" for i in (1, 2) for p in ("bs_errors", "phase_offsets", "crosstalk")
    )
    assert all(name in buffers for name in model.calibratable)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_modes": 1},
        {"n_modes": 4.0},
        {"s_bs": -0.1},
        {"s_ps": float("nan")},
        {"crosstalk": 1.0},
        {"saturation": "big"},
        {"thermal_coeff": float("nan")},
        {"detection": "coherent"},
        {"dtype": "float16"},
        {"temperature": float("nan")},
        {"noise": -1.0},
    ],
)
def test_invalid_configuration_raises(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        MZIHybrid(**kwargs)
