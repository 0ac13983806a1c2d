"""Tests of the ``MZIMesh`` device against independent numpy references."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import unitary_group

from blacksat.devices.clements import clements_decompose, pack_controls
from blacksat.devices.mzi import MZIMesh, MZIPhysics
from blacksat.errors import ConfigError, ShapeError

TWO_PI = 2 * np.pi
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


# ---------------------------------------------------------------------- independent reference
def _layout(n: int) -> list[tuple[int, int]]:
    return [(c, m) for c in range(n) for m in range(c % 2, n - 1, 2)]


def _coupler(e: float) -> np.ndarray:
    t, r = np.sqrt((1 + e) / 2), np.sqrt((1 - e) / 2)
    return np.array([[t, 1j * r], [1j * r, t]])


def reference_matrix(model: MZIPhysics, controls: np.ndarray) -> np.ndarray:
    """Mesh matrix as an explicit product of embedded 2x2 blocks, from the model's drawn
    errors (buffers) but none of its code: crosstalk neighbours from the geometry."""
    n = model.n_modes
    layout = _layout(n)
    bs = model.bs_errors.double().numpy()
    offsets = model.phase_offsets.double().numpy()
    imb = model.arm_imbalance_db.double().numpy()
    kappa, shift = float(model.crosstalk), float(model.phase_shift)
    eta = 10 ** (-float(model.insertion_loss_db) / 20)
    applied = controls + offsets + shift
    for i, (ci, mi) in enumerate(layout):
        for h in (0, 1):
            leak = controls[2 * i + 1 - h]  # the other heater of the same MZI
            for j, (cj, mj) in enumerate(layout):
                if cj == ci and abs(mj - mi) == 2:
                    leak += controls[2 * j + h]
            applied[2 * i + h] += kappa * leak
    u = np.eye(n, dtype=complex)
    for k, (_, m) in enumerate(layout):
        th, ph = applied[2 * k], applied[2 * k + 1]
        a_top, a_bot = 10 ** (-max(imb[k], 0) / 20), 10 ** (-max(-imb[k], 0) / 20)
        arms = np.diag([a_top * np.exp(1j * th), a_bot])
        t = eta * _coupler(bs[k, 1]) @ arms @ _coupler(bs[k, 0]) @ np.diag([np.exp(1j * ph), 1])
        block = np.eye(n, dtype=complex)
        block[m : m + 2, m : m + 2] = t
        u = block @ u
    return u


def reference_readings(model: MZIPhysics, controls: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Detected readings ``(B, N)`` (or ``(B, 2N)`` coherent) of the reference mesh."""
    fields = x @ reference_matrix(model, controls).T
    resp = model.responsivity.double().numpy()
    sat = float(model.saturation)
    power = resp * abs(fields) ** 2
    if model.detection == "intensity":
        return power / (1 + sat * power)
    amp = np.sqrt(resp / (1 + sat * power)) * fields
    return np.concatenate([amp.real, amp.imag], axis=-1)


def _inputs(n: int, b: int = 7, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((b, n))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _exact(dev: MZIMesh, thetas: np.ndarray, x: np.ndarray) -> np.ndarray:
    model = dev.exact_model(torch.float64)
    with torch.no_grad():
        return model(torch.as_tensor(thetas), torch.as_tensor(x)).numpy()


# ---------------------------------------------------------------------- physics vs references
@pytest.mark.parametrize("n", [5, 6])
@pytest.mark.parametrize("detection", ["intensity", "coherent"])
def test_truth_matches_explicit_block_product(n: int, detection: str) -> None:
    dev = MZIMesh(
        n_modes=n,
        s_bs=0.15,
        s_ps=0.15,
        detection=detection,
        seed=3,
        dtype=torch.float64,
        temperature=0.7,
        **{**HIDDEN, "crosstalk": 0.05},
    )
    rng = np.random.default_rng(1)
    thetas = dev.space.sample(rng, 3)
    x = _inputs(n)
    got = _exact(dev, thetas, x)
    model = dev.exact_model(torch.float64)
    for k in range(3):
        np.testing.assert_allclose(got[k], reference_readings(model, thetas[k], x), atol=1e-12)


@pytest.mark.parametrize("n", [4, 7, 16])
def test_lossless_mesh_is_unitary_even_with_coupler_errors(n: int) -> None:
    dev = MZIMesh(
        n_modes=n, dtype="float64", **{**OFF, "s_bs": 0.15, "s_ps": 0.15, "crosstalk": 0.03}
    )
    thetas = torch.as_tensor(dev.space.sample(np.random.default_rng(0), 4))
    u = dev.exact_model().unitaries(thetas).numpy()
    eye = np.broadcast_to(np.eye(n), u.shape)
    np.testing.assert_allclose(u @ np.conj(np.swapaxes(u, 1, 2)), eye, atol=1e-10)
    # and power is conserved at the detectors: sum |U x|^2 = |x|^2
    x = np.random.default_rng(1).standard_normal((9, n))
    y = dev.query_many(thetas.numpy(), x)
    np.testing.assert_allclose(y.sum(-1), np.broadcast_to((x**2).sum(-1), (4, 9)), rtol=1e-10)


def test_lossy_mesh_singular_values_at_most_one() -> None:
    dev = MZIMesh(
        n_modes=6, dtype="float64", s_bs=0.15, loss_imbalance_db=0.5, insertion_loss_db=0.3
    )
    thetas = torch.as_tensor(dev.space.sample(np.random.default_rng(0), 3))
    sv = np.linalg.svd(dev.exact_model().unitaries(thetas).numpy(), compute_uv=False)
    assert np.all(sv <= 1 + 1e-12) and np.all(sv < 0.999)


def test_nominal_with_clements_phases_reproduces_haar_unitary() -> None:
    n = 16
    u = unitary_group.rvs(n, random_state=7)
    thetas, phis, _ = clements_decompose(u)
    controls = pack_controls(thetas, phis)
    dev = MZIMesh(n_modes=n, dtype=torch.float64)
    assert dev.space.contains(controls)
    x = np.random.default_rng(2).standard_normal((11, n))
    model = dev.nominal_model()
    with torch.no_grad():
        y = model(torch.as_tensor(controls), torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(y, abs(x @ u.T) ** 2, atol=1e-8)
    coherent = MZIMesh(n_modes=n, dtype=torch.float64, detection="coherent").nominal_model()
    with torch.no_grad():
        z = coherent(torch.as_tensor(controls), torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(z[:, :n] ** 2 + z[:, n:] ** 2, y, atol=1e-10)


def test_huge_coupler_errors_give_finite_outputs() -> None:
    dev = MZIMesh(n_modes=6, s_bs=50.0, s_ps=10.0, dtype="float64", noise=0.0, drift=0.0)
    model = dev.exact_model()
    assert float(model.bs_errors.abs().max()) < 1.0
    thetas = dev.space.sample(np.random.default_rng(0), 5)
    y = dev.query_many(thetas, _inputs(6))
    assert np.all(np.isfinite(y))
    u = (
        MZIMesh(n_modes=6, dtype="float64", **{**OFF, "s_bs": 50.0})
        .exact_model()
        .unitaries(torch.as_tensor(thetas))
        .numpy()
    )
    np.testing.assert_allclose(
        u @ np.conj(np.swapaxes(u, 1, 2)), np.broadcast_to(np.eye(6), u.shape), atol=1e-10
    )


@pytest.mark.parametrize("detection", ["intensity", "coherent"])
def test_outputs_finite_at_extreme_settings(detection: str) -> None:
    dev = MZIMesh(
        n_modes=6,
        s_bs=0.9,
        s_ps=1.0,
        crosstalk=0.5,
        saturation=50.0,
        loss_imbalance_db=10.0,
        insertion_loss_db=5.0,
        detection=detection,
        temperature=1e3,
    )
    d = dev.space.dim
    thetas = np.stack([np.zeros(d), np.full(d, TWO_PI), np.tile([0.0, TWO_PI], d // 2)])
    x = np.concatenate([_inputs(6), 1e4 * np.eye(6), 1e25 * _inputs(6, 2), np.zeros((1, 6))])
    assert np.all(np.isfinite(dev.query_many(thetas, x)))
    xt = torch.as_tensor(x, dtype=torch.float32)
    for model in (dev.exact_model(), dev.nominal_model()):
        assert torch.isfinite(model(torch.as_tensor(thetas, dtype=torch.float32), xt)).all()
        tracked = torch.as_tensor(thetas, dtype=torch.float32).requires_grad_(True)
        y = model(tracked, xt)  # the autograd path
        assert torch.isfinite(y).all()
        y[:, :7].sum().backward()  # gradients at the extreme settings (moderate inputs)
        assert torch.isfinite(tracked.grad).all()


@pytest.mark.parametrize("detection", ["intensity", "coherent"])
def test_autograd_and_in_place_paths_agree(detection: str) -> None:
    dev = MZIMesh(n_modes=5, dtype="float64", detection=detection, s_bs=0.1, s_ps=0.1)
    model = dev.exact_model()
    thetas = torch.as_tensor(dev.space.sample(np.random.default_rng(0), 3))
    x = torch.as_tensor(_inputs(5))
    with torch.no_grad():
        fast, fast_u = model(thetas, x), model.unitaries(thetas)
    tracked = thetas.clone().requires_grad_(True)
    slow, slow_u = model(tracked, x), model.unitaries(tracked)
    assert slow.requires_grad and not fast.requires_grad
    np.testing.assert_allclose(fast.numpy(), slow.detach().numpy(), atol=1e-14)
    np.testing.assert_allclose(fast_u.numpy(), slow_u.detach().numpy(), atol=1e-14)
    ref = reference_readings(model, thetas[1].numpy(), x.numpy())
    np.testing.assert_allclose(slow[1].detach().numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("n", [2, 5, 8, 9])
def test_the_tree_product_equals_the_column_sweep_with_its_gradient(n: int) -> None:
    """The accelerator path (column matrices multiplied as a balanced tree) against the CPU
    sweep: the same matrices and the same gradient, odd and even column counts alike."""
    model = MZIMesh(n_modes=n, dtype="float64", s_bs=0.1, s_ps=0.1, crosstalk=0.05).exact_model()
    thetas = torch.as_tensor(MZIMesh(n_modes=n).space.sample(np.random.default_rng(1), 3))
    weights = torch.as_tensor(np.random.default_rng(2).normal(size=(n, n)))
    results = []
    for product in (model.unitaries, lambda t: model.unitaries_by_tree(model.mzi_transfers(t))):
        tracked = thetas.clone().requires_grad_(True)
        u = product(tracked)
        (u.abs().square() * weights).sum().backward()
        results.append((u.detach().numpy(), tracked.grad.numpy()))
    (u_sweep, g_sweep), (u_tree, g_tree) = results
    np.testing.assert_allclose(u_tree, u_sweep, atol=1e-13)
    np.testing.assert_allclose(g_tree, g_sweep, atol=1e-12)
    with torch.no_grad():  # the transfers are a transposed view on this path
        u_fast = model.unitaries_by_tree(model.mzi_transfers(thetas))
    np.testing.assert_allclose(u_fast.numpy(), u_sweep, atol=1e-13)
    assert np.abs(g_sweep).max() > 1e-3  # the gradient is not trivially zero


# ---------------------------------------------------------------------- truth vs nominal
def test_truth_equals_nominal_when_everything_is_off() -> None:
    dev = MZIMesh(n_modes=6, dtype="float64", **OFF)
    thetas = dev.space.sample(np.random.default_rng(0), 4)
    x = _inputs(6)
    with torch.no_grad():
        nominal = dev.nominal_model()(torch.as_tensor(thetas), torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(dev.query_many(thetas, x), nominal, atol=1e-13)
    np.testing.assert_allclose(_exact(dev, thetas, x), nominal, atol=1e-13)


def test_truth_differs_from_nominal_at_defaults() -> None:
    dev = MZIMesh(noise=0.0, drift=0.0)
    thetas = dev.space.sample(np.random.default_rng(0), 2)
    x = _inputs(16)
    with torch.no_grad():
        nominal = dev.nominal_model()(
            torch.as_tensor(thetas, dtype=torch.float32), torch.as_tensor(x, dtype=torch.float32)
        ).numpy()
    assert np.abs(dev.query_many(thetas, x) - nominal).max() > 0.05


@pytest.mark.parametrize("knob", sorted(HIDDEN))
def test_each_hidden_effect_changes_the_output(knob: str) -> None:
    base = MZIMesh(n_modes=6, dtype="float64", **{**OFF, "s_bs": 0.05, "s_ps": 0.05})
    on = MZIMesh(
        n_modes=6, dtype="float64", **{**OFF, "s_bs": 0.05, "s_ps": 0.05, knob: HIDDEN[knob]}
    )
    thetas = base.space.sample(np.random.default_rng(0), 3)
    x = np.eye(6)  # full power into one port: saturation is visible
    diff = np.abs(_exact(on, thetas, x) - _exact(base, thetas, x)).max()
    assert diff > 1e-3, (knob, diff)
    # the same chip: the fabrication draw does not depend on the hidden-effect knobs
    np.testing.assert_array_equal(on.exact_model().bs_errors, base.exact_model().bs_errors)


def test_crosstalk_is_not_a_static_phase_offset() -> None:
    dev = MZIMesh(n_modes=5, dtype="float64", **{**OFF, "crosstalk": 0.03})
    model = dev.exact_model()
    thetas = torch.as_tensor(dev.space.sample(np.random.default_rng(0), 2))
    extra = (model.applied_phases(thetas) - thetas).numpy()
    assert np.abs(extra[0] - extra[1]).max() > 0.01  # depends on the setting


# ---------------------------------------------------------------------- nuisance, gradients
def test_temperature_moves_every_phase_by_alpha_dt() -> None:
    dev = MZIMesh(
        n_modes=6, dtype="float64", **{**OFF, "s_bs": 0.1, "s_ps": 0.1, "saturation": 0.1}
    )
    hot = dev.perturbed(temperature=1.5)
    assert hot.nuisance_values == {"temperature": 1.5}
    thetas = dev.space.sample(np.random.default_rng(0), 2) * 0.9
    x = _inputs(6)
    np.testing.assert_allclose(_exact(hot, thetas, x), _exact(dev, thetas + 0.15, x), atol=1e-12)
    assert np.abs(_exact(hot, thetas, x) - _exact(dev, thetas, x)).max() > 1e-2


def test_perturbed_changes_outputs_and_zero_is_identity() -> None:
    dev = MZIMesh(n_modes=6, seed=4)
    thetas = dev.space.sample(np.random.default_rng(0), 3)
    x = _inputs(6)
    same = dev.perturbed(temperature=0.0)
    np.testing.assert_array_equal(same.query_many(thetas, x), dev.query_many(thetas, x))
    dev.reset()
    assert (
        np.abs(
            dev.perturbed(temperature=-2.0).query_many(thetas, x) - dev.query_many(thetas, x)
        ).max()
        > 0.02
    )
    with pytest.raises(ConfigError):
        dev.perturbed(rotation=1.0)


@pytest.mark.parametrize("which", ["nominal", "exact"])
def test_gradients_flow_through_models(which: str) -> None:
    dev = MZIMesh(n_modes=6, dtype="float64")
    model = dev.nominal_model() if which == "nominal" else dev.exact_model()
    theta = torch.tensor(dev.space.sample(np.random.default_rng(0)), requires_grad=True)
    x = torch.as_tensor(_inputs(6))
    weights = torch.as_tensor(np.random.default_rng(1).standard_normal((7, 6)))
    (model(theta, x) * weights).sum().backward()
    grad = theta.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().max() > 1e-3


def test_gradient_matches_finite_difference() -> None:
    dev = MZIMesh(n_modes=4, dtype="float64")
    model = dev.exact_model()
    theta = torch.tensor(dev.space.sample(np.random.default_rng(2)), requires_grad=True)
    x = torch.as_tensor(_inputs(4))
    w = torch.as_tensor(np.random.default_rng(3).standard_normal((7, 4)))
    (model(theta, x) * w).sum().backward()
    h = 1e-6
    for j in (0, 3, 7):
        e = torch.zeros_like(theta)
        e[j] = h
        with torch.no_grad():
            fd = ((model(theta + e, x) - model(theta - e, x)) * w).sum() / (2 * h)
        assert abs(float(fd) - float(theta.grad[j])) < 1e-6


# ---------------------------------------------------------------------- device plumbing
def test_space_shapes_and_nuisances() -> None:
    dev = MZIMesh()
    assert dev.space.dim == 240 and dev.input_shape == (16,) and dev.output_shape == (16,)
    assert dev.space.names[:3] == ("mzi0.theta", "mzi0.phi", "mzi1.theta")
    np.testing.assert_array_equal(dev.space.lower, 0.0)
    np.testing.assert_array_equal(dev.space.upper, TWO_PI)
    (nuis,) = MZIMesh.nuisances
    assert (nuis.name, nuis.rated, nuis.unit) == ("temperature", (-2.0, 2.0), "K")
    assert MZIMesh.name == "mzi" and dev.noise > 0 and dev.drift > 0
    assert MZIMesh(n_modes=5, detection="coherent").output_shape == (10,)
    # phases are periodic: 7 rad is the phase 7 - 2 pi (wrapped before it is applied)
    np.testing.assert_array_equal(dev.space.period, TWO_PI)
    np.testing.assert_allclose(dev.space.validate(np.full(240, 7.0)), 7.0 - TWO_PI)
    quiet = MZIMesh(noise=0.0, drift=0.0)
    x = _inputs(16)
    np.testing.assert_allclose(
        quiet.query(np.full(240, 7.0), x), quiet.query(np.full(240, 7.0 - TWO_PI), x)
    )
    with pytest.raises(ShapeError):
        dev.query(np.zeros(240), np.zeros((2, 15)))


def test_query_many_equals_looped_queries_and_float32_agrees() -> None:
    dev = MZIMesh(n_modes=6, **{**OFF, **HIDDEN, "s_bs": 0.1, "s_ps": 0.1})
    thetas = dev.space.sample(np.random.default_rng(0), 5)
    x = _inputs(6)
    batched = dev.query_many(thetas, x)
    assert batched.shape == (5, 7, 6) and batched.dtype == np.float64
    np.testing.assert_allclose(batched, np.stack([dev.query(t, x) for t in thetas]), atol=1e-6)
    dev64 = MZIMesh(**{**dev.config(), "dtype": "float64"})
    np.testing.assert_allclose(batched, dev64.query_many(thetas, x), atol=2e-5)


def test_seeded_determinism_config_roundtrip_and_pickling() -> None:
    a, b = MZIMesh(n_modes=6, seed=11), MZIMesh(n_modes=6, seed=11)
    thetas = a.space.sample(np.random.default_rng(0), 3)
    x = _inputs(6)
    ya = a.query_many(thetas, x)
    np.testing.assert_array_equal(ya, b.query_many(thetas, x))
    clone = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(clone.query_many(thetas, x), a.query_many(thetas, x))
    rebuilt = MZIMesh(**a.config())
    np.testing.assert_array_equal(rebuilt.query_many(thetas, x), ya)
    other = a.fresh_chip(12)
    assert other.seed == 12 and np.abs(other.query_many(thetas, x) - ya).max() > 1e-3
    assert "MZIMesh(n_modes=6" in repr(a)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_modes": 1},
        {"n_modes": 4.0},
        {"n_modes": True},
        {"s_bs": -0.1},
        {"s_ps": float("nan")},
        {"crosstalk": 1.0},
        {"loss_imbalance_db": -1.0},
        {"insertion_loss_db": float("inf")},
        {"saturation": "big"},
        {"responsivity_spread": -0.01},
        {"thermal_coeff": float("nan")},
        {"detection": "phase"},
        {"dtype": "float16"},
        {"temperature": float("nan")},
        {"pressure": 1.0},
        {"noise": -1.0},
    ],
)
def test_invalid_configuration_raises(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        MZIMesh(**kwargs)


@pytest.mark.parametrize("n", [2, 3, 5, 6, 9])
def test_crosstalk_from_neighbour_lists_equals_the_adjacency_matrix(n: int) -> None:
    from blacksat.devices.clements import crosstalk_adjacency

    model = MZIPhysics(n, crosstalk=0.07)
    thetas = torch.as_tensor(np.random.default_rng(0).uniform(0, 6, (3, n * (n - 1))))
    dense = thetas + 0.07 * (thetas @ torch.as_tensor(crosstalk_adjacency(n)))
    torch.testing.assert_close(model.applied_phases(thetas), dense, rtol=1e-12, atol=1e-12)
    # the neighbour lists are derived from n_modes, not saved ...
    assert "has_above" not in model.state_dict()
    # the in-place transfer matrices (no autograd) equal the differentiable ones
    free = model.mzi_transfers(thetas)
    tracked = model.mzi_transfers(thetas.clone().requires_grad_(True))
    torch.testing.assert_close(free, tracked.detach(), rtol=0, atol=0)
    # ... and a state written when the dense matrix was a buffer still loads
    old = {**model.state_dict(), "adjacency": torch.as_tensor(crosstalk_adjacency(n))}
    MZIPhysics(n).load_state_dict(old, strict=True)


def test_a_64_mode_mesh_is_a_unitary_of_4032_phases() -> None:
    dev = MZIMesh(n_modes=64, dtype="float64", **OFF)
    assert dev.space.dim == 4032
    theta = dev.space.sample(np.random.default_rng(1), 2)
    u = dev.exact_model().unitaries(torch.as_tensor(theta))
    eye = torch.eye(64, dtype=u.dtype).expand(2, 64, 64)
    torch.testing.assert_close(u @ u.conj().transpose(1, 2), eye, rtol=0, atol=1e-10)
