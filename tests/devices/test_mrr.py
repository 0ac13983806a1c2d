"""Tests of the MRR weight-bank device against independent references (numpy, scipy)."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from blacksat.devices.mrr import (
    CROSSTALK_DECAY,
    CROSSTALK_REACH,
    SOFTPLUS_BETA,
    TEMPERATURE_SHIFT,
    MRRWeightBank,
)
from blacksat.errors import ConfigError, OutOfBoundsError

GAMMA = 0.15
HIDDEN = ("crosstalk", "imbalance", "heater_nonlinearity", "saturation")
IDEAL = {
    "offset": 0.0,
    "linewidth_spread": 0.0,
    "crosstalk": 0.0,
    "imbalance": 0.0,
    "heater_nonlinearity": 0.0,
    "saturation": 0.0,
    "noise": 0.0,
    "drift": 0.0,
}


def ideal(**kw) -> MRRWeightBank:
    """A device with every error, hidden effect, noise and drift off (overridable)."""
    return MRRWeightBank(**{"dtype": torch.float64, **IDEAL, **kw})


def w_ref(x: np.ndarray, x0: float | np.ndarray = 0.0, gamma=GAMMA) -> np.ndarray:
    """The paper's weight, written out independently: balanced through minus drop."""
    lorentz = 1.0 / (1.0 + ((x - x0) / gamma) ** 2)
    return (1.0 - lorentz) - lorentz


def nominal_weight(dev: MRRWeightBank, x: float) -> float:
    """Weight of ring 0 of a single-bank nominal model at drive ``x``, read from a query."""
    theta = torch.zeros(1, dev.space.dim, dtype=torch.float64)
    theta[0, 0] = x
    return float(dev.nominal_model().weights(theta)[0][0, 0, 0])


def t64(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


# ---------------------------------------------------------------------- nominal physics
def test_nominal_resonance_and_far_off() -> None:
    dev = ideal(layer_sizes=(3, 2))
    x = np.array([1.0, 0.0, 0.0])
    # one input on, its ring on resonance: the balanced photocurrent is -1 x input power
    y = dev.query(np.zeros(6), x[None])
    np.testing.assert_allclose(y, [[-1.0, -1.0]], atol=1e-12)
    assert nominal_weight(dev, 0.0) == pytest.approx(-1.0, abs=1e-12)
    # far off resonance -> +1 (the model is not bounded to [-1, 1] in x; probe its limit)
    far = [nominal_weight(dev, v) for v in (1.0, 10.0, 1e3)]
    assert far[0] == pytest.approx(w_ref(1.0), abs=1e-12)
    assert far[0] < far[1] < far[2] < 1.0 and far[2] == pytest.approx(1.0, abs=1e-6)
    assert nominal_weight(dev, -1.0) == pytest.approx(far[0], abs=1e-12)  # symmetric


def test_nominal_half_depth_points_give_fwhm_2gamma() -> None:
    dev = ideal(layer_sizes=(2, 1))
    assert abs(nominal_weight(dev, GAMMA)) < 1e-12 and abs(nominal_weight(dev, -GAMMA)) < 1e-12
    right = brentq(lambda v: nominal_weight(dev, v), 0.0, 1.0, xtol=1e-14)
    left = brentq(lambda v: nominal_weight(dev, v), -1.0, 0.0, xtol=1e-14)
    assert right == pytest.approx(GAMMA, abs=1e-10)
    assert left == pytest.approx(-GAMMA, abs=1e-10)
    assert right - left == pytest.approx(2 * GAMMA, abs=1e-10)


@pytest.mark.parametrize("layer_sizes", [(5, 3), (6, 4, 3), (4, 5, 3, 2)])
@pytest.mark.parametrize("activation", ["relu", "softplus", "sigmoid"])
def test_nominal_forward_equals_numpy_network(layer_sizes, activation) -> None:
    rng = np.random.default_rng(1)
    dev = ideal(layer_sizes=layer_sizes, activation=activation)
    thetas = rng.uniform(-1, 1, (3, dev.space.dim))
    x = rng.random((7, layer_sizes[0]))

    def act(z):
        if activation == "relu":
            return np.maximum(z, 0.0)
        if activation == "softplus":
            return np.logaddexp(0.0, SOFTPLUS_BETA * z) / SOFTPLUS_BETA
        return 1.0 / (1.0 + np.exp(-z))

    want = []
    for theta in thetas:
        h, start = x, 0
        for layer, (n_i, n_o) in enumerate(itertools.pairwise(layer_sizes)):
            w = w_ref(theta[start : start + n_o * n_i].reshape(n_o, n_i))
            start += n_o * n_i
            h = h @ w.T
            if layer < len(layer_sizes) - 2:
                h = act(h / np.sqrt(n_i))
        want.append(h)
    got = dev.nominal_model()(t64(thetas), t64(x)).numpy()
    tol = 1e-9  # torch's softplus switches to the identity past beta * z = 20 (error e^-20)
    np.testing.assert_allclose(got, np.stack(want), rtol=tol, atol=tol)
    np.testing.assert_allclose(dev.query_many(thetas, x), np.stack(want), rtol=tol, atol=tol)


def test_oeo_gain_option() -> None:
    dev = ideal(layer_sizes=(3, 2, 2), activation="relu", oeo_gain=0.5)
    theta = np.random.default_rng(0).uniform(-1, 1, dev.space.dim)
    x = np.array([[0.3, 0.9, 0.1]])
    w1, w2 = (w_ref(m) for m in dev.split_controls(theta))
    want = np.maximum(0.5 * (x @ w1.T), 0.0) @ w2.T
    np.testing.assert_allclose(dev.query(theta, x), want, rtol=1e-12)


# ---------------------------------------------------------------------- the true chip
def test_truth_equals_independent_reference_with_every_effect_on() -> None:
    """Single bank, all fabrication errors and hidden effects on, vs a numpy re-derivation."""
    dev = MRRWeightBank(
        layer_sizes=(9, 4),
        noise=0.0,
        drift=0.0,
        dtype=torch.float64,
        temperature=0.7,
        saturation=2.0,
    )
    tm = dev.exact_model()
    x0, gam = tm.offsets.numpy().reshape(4, 9), tm.gammas.numpy().reshape(4, 9)
    t_t, t_d = tm.t_thru.numpy().reshape(4, 9), tm.t_drop.numpy().reshape(4, 9)
    a, kappa, eps, s = 0.25, 0.03, 0.03, 2.0
    rng = np.random.default_rng(3)
    theta = rng.uniform(-1, 1, dev.space.dim)
    xin = rng.random((5, 9))
    drive = theta.reshape(4, 9)
    q = drive + a * drive**2
    idx = np.arange(9)
    dist = np.abs(idx[:, None] - idx[None, :])
    coupling = np.where((dist >= 1) & (dist <= CROSSTALK_REACH), CROSSTALK_DECAY ** (dist - 1.0), 0)
    u = q - x0 + TEMPERATURE_SHIFT * 0.7 + kappa * q @ coupling.T
    lor = 1.0 / (1.0 + (u / gam) ** 2)
    thru, drop = t_t * (1 - (1 - eps) * lor), t_d * (1 - eps) * lor
    sat = lambda cur: (9 / s) * np.tanh(s * cur / 9)  # noqa: E731
    want = sat(xin @ thru.T) - sat(xin @ drop.T)
    np.testing.assert_allclose(dev.query(theta, xin), want, rtol=1e-12, atol=1e-12)


def test_fabrication_statistics() -> None:
    dev = MRRWeightBank(linewidth_spread=0.1)
    tm = dev.exact_model(torch.float64)
    assert tm.offsets.std().item() == pytest.approx(0.08, rel=0.06)
    assert abs(tm.offsets.mean().item()) < 0.01
    assert (tm.gammas / GAMMA - 1).std().item() == pytest.approx(0.1, rel=0.06)
    assert tm.gammas.min().item() > 0


def test_nominal_equals_truth_when_everything_is_off() -> None:
    dev = ideal(seed=5)
    rng = np.random.default_rng(0)
    thetas, x = rng.uniform(-1, 1, (4, dev.space.dim)), rng.random((6, 64))
    nominal = dev.nominal_model()(t64(thetas), t64(x)).numpy()
    np.testing.assert_array_equal(dev.query_many(thetas, x), nominal)
    np.testing.assert_array_equal(dev.exact_model()(t64(thetas), t64(x)).numpy(), nominal)


def test_truth_differs_from_nominal_at_defaults() -> None:
    dev = MRRWeightBank(noise=0.0, drift=0.0)
    rng = np.random.default_rng(0)
    theta, x = rng.uniform(-0.3, 0.3, dev.space.dim), rng.random((8, 64))
    nominal = dev.nominal_model(torch.float64)(t64(theta), t64(x)).numpy()
    diff = np.abs(dev.query(theta, x) - nominal)
    assert diff.mean() > 0.05 * np.abs(nominal).mean()


@pytest.mark.parametrize("effect, level", [(e, 0.3) for e in HIDDEN])
def test_each_hidden_effect_changes_the_output(effect, level) -> None:
    base = ideal(layer_sizes=(8, 5, 3), offset=0.08, linewidth_spread=0.05, seed=2)
    on = ideal(layer_sizes=(8, 5, 3), offset=0.08, linewidth_spread=0.05, seed=2, **{effect: level})
    rng = np.random.default_rng(0)
    thetas, x = rng.uniform(-0.5, 0.5, (3, base.space.dim)), rng.random((4, 8))
    diff = np.abs(on.query_many(thetas, x) - base.query_many(thetas, x))
    assert diff.max() > 1e-3
    # the fabrication draw is the same whatever the hidden-effect levels
    np.testing.assert_array_equal(on.exact_model().offsets, base.exact_model().offsets)


def test_imbalance_floor_and_offset() -> None:
    dev = ideal(layer_sizes=(4, 3), imbalance=0.05, seed=1)
    sweep = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    thetas = sweep[:, None].repeat(1, dev.space.dim)
    w = dev.exact_model().weights(thetas)[0].reshape(len(sweep), -1)
    assert w.min().item() > -1.0 + 0.05  # finite extinction: never a full -1
    far = w[0].numpy()
    assert np.all(np.abs(far - w_ref(-1.0)) > 1e-4)  # far-off level offset, ring by ring


def test_heater_nonlinearity_makes_the_dip_asymmetric() -> None:
    a = 0.4
    dev = ideal(layer_sizes=(2, 1), heater_nonlinearity=a)
    model = dev.exact_model()

    def w(v: float) -> float:
        return float(model.weights(t64([[v, 0.0]]))[0][0, 0, 0])

    right = brentq(w, 0.0, 1.0, xtol=1e-14)
    left = brentq(w, -1.0, 0.0, xtol=1e-14)
    # independent: x + a x^2 = +-gamma
    assert right == pytest.approx((-1 + np.sqrt(1 + 4 * a * GAMMA)) / (2 * a), abs=1e-10)
    assert left == pytest.approx((-1 + np.sqrt(1 - 4 * a * GAMMA)) / (2 * a), abs=1e-10)
    assert -left > right  # wider on the low-drive side


def test_saturation_compresses_large_photocurrents() -> None:
    n = 16
    lin = ideal(layer_sizes=(n, 1))
    sat = ideal(layer_sizes=(n, 1), saturation=0.5)
    theta = np.ones(n)  # all rings far off: all light on the through photodiode
    x = np.full((1, n), 1.0)
    y_lin, y_sat = lin.query(theta, x)[0, 0], sat.query(theta, x)[0, 0]
    i_thru = n * (1 - 1 / (1 + (1 / GAMMA) ** 2))
    i_drop = n - i_thru
    ref = (n / 0.5) * (np.tanh(0.5 * i_thru / n) - np.tanh(0.5 * i_drop / n))
    assert y_sat == pytest.approx(ref, rel=1e-12)
    assert y_sat < y_lin
    # weak signals are barely compressed
    x_small = np.full((1, n), 1e-3)
    assert sat.query(theta, x_small)[0, 0] == pytest.approx(lin.query(theta, x_small)[0, 0], 1e-6)


# ---------------------------------------------------------------------- temperature
@pytest.mark.parametrize("dT", [-2.0, -0.5, 1.3])
def test_temperature_shifts_the_curve_by_0p08_per_kelvin(dT) -> None:
    dev = ideal(layer_sizes=(6, 4, 3), temperature=dT)
    rng = np.random.default_rng(0)
    thetas, x = rng.uniform(-1, 1, (3, dev.space.dim)), rng.random((5, 6))
    hot = dev.exact_model()(t64(thetas), t64(x))
    shifted = dev.nominal_model()(t64(thetas + 0.08 * dT), t64(x))
    torch.testing.assert_close(hot, shifted, rtol=1e-12, atol=1e-12)
    # the resonance moves to x = -0.08 dT
    w = dev.exact_model().weights(t64(np.full((1, dev.space.dim), -0.08 * dT)))[0]
    torch.testing.assert_close(w, torch.full_like(w, -1.0), rtol=0, atol=1e-12)


def test_perturbed_changes_outputs_and_zero_is_identity() -> None:
    dev = MRRWeightBank(layer_sizes=(8, 6, 4), noise=0.0, drift=0.0, seed=3)
    rng = np.random.default_rng(0)
    thetas, x = rng.uniform(-0.3, 0.3, (2, dev.space.dim)), rng.random((5, 8))
    y = dev.query_many(thetas, x)
    np.testing.assert_array_equal(dev.perturbed(temperature=0.0).query_many(thetas, x), y)
    hot = dev.perturbed(temperature=1.0)
    assert hot.nuisance_values == {"temperature": 1.0}
    assert np.abs(hot.query_many(thetas, x) - y).max() > 0.05
    np.testing.assert_array_equal(hot.exact_model().offsets, dev.exact_model().offsets)
    with pytest.raises(ConfigError):
        dev.perturbed(rotation=1.0)


# ---------------------------------------------------------------------- crosstalk
def _ring_weights(dev: MRRWeightBank, theta: np.ndarray) -> np.ndarray:
    return dev.exact_model(torch.float64).weights(t64(theta[None]))[0][0].numpy()


def test_no_crosstalk_rings_are_independent() -> None:
    dev = MRRWeightBank(layer_sizes=(10, 3), crosstalk=0.0, noise=0.0, drift=0.0)
    theta = np.random.default_rng(0).uniform(-1, 1, dev.space.dim)
    before = _ring_weights(dev, theta)
    for j in (0, 4, 9, 15):
        moved = theta.copy()
        moved[j] = -moved[j] if moved[j] != 0 else 0.5
        after = _ring_weights(dev, moved)
        changed = np.flatnonzero(np.abs(after - before).ravel() > 0)
        assert changed.tolist() == [j]


def test_crosstalk_couples_only_neighbours_on_the_same_bus() -> None:
    dev = MRRWeightBank(layer_sizes=(10, 3), crosstalk=0.05, noise=0.0, drift=0.0)
    theta = np.random.default_rng(0).uniform(-0.2, 0.2, dev.space.dim)
    before = _ring_weights(dev, theta)
    row, col = 1, 4
    moved = theta.copy()
    moved[row * 10 + col] = 0.9
    delta = np.abs(_ring_weights(dev, moved) - before)
    for o in range(3):
        for i in range(10):
            near = o == row and 1 <= abs(i - col) <= CROSSTALK_REACH
            if near:
                assert delta[o, i] > 1e-5, (o, i)
            elif (o, i) != (row, col):
                assert delta[o, i] == 0.0, (o, i)


def test_crosstalk_is_quadratic_in_heater_current() -> None:
    """Ring 1's detuning shift from ring 0's drive follows kappa * (x + a x^2) (heater power)."""
    a, kappa = 0.25, 0.04
    dev = ideal(layer_sizes=(2, 1), crosstalk=kappa, heater_nonlinearity=a)
    model = dev.exact_model()
    for x_j in (-0.8, 0.3, 1.0):
        w = float(model.weights(t64([[x_j, 0.0]]))[0][0, 0, 1])
        # independent: w of ring 1 at drive 0 with detuning u = kappa * q(x_j)
        assert w == pytest.approx(w_ref(kappa * (x_j + a * x_j**2)), abs=1e-12)


# ---------------------------------------------------------------------- models, safety
def test_gradients_flow_through_nominal_and_exact_models() -> None:
    dev = MRRWeightBank(layer_sizes=(12, 8, 4))
    x = torch.rand(5, 12, generator=torch.Generator().manual_seed(0))
    for model in (dev.nominal_model(), dev.exact_model()):
        theta = torch.rand(dev.space.dim, generator=torch.Generator().manual_seed(1)) - 0.5
        theta.requires_grad_()
        model(theta, x).square().sum().backward()
        assert theta.grad is not None and torch.isfinite(theta.grad).all()
        assert theta.grad.abs().sum() > 0
        assert (theta.grad != 0).float().mean() > 0.9


@pytest.mark.parametrize(
    "levels",
    [
        {},
        {
            "heater_nonlinearity": 0.5,
            "imbalance": 0.5,
            "saturation": 10.0,
            "crosstalk": 1.0,
            "linewidth_spread": 0.5,
            "offset": 1.0,
        },
        {"linewidth": 1e-4},
    ],
)
def test_outputs_finite_at_extreme_settings(levels) -> None:
    dev = MRRWeightBank(layer_sizes=(6, 5, 3), temperature=2.0, dtype=torch.float32, **levels)
    thetas = np.stack([np.full(dev.space.dim, v) for v in (-1.0, 0.0, 1.0)])
    corners = np.random.default_rng(0).choice([-1.0, 1.0], (2, dev.space.dim))
    thetas = np.concatenate([thetas, corners])
    for x in (np.zeros((2, 6)), np.full((2, 6), 1e4), np.full((2, 6), -50.0)):
        y = dev.query_many(thetas, x)
        assert np.all(np.isfinite(y))
    theta = torch.zeros(dev.space.dim, requires_grad=True)
    dev.exact_model()(theta, torch.full((2, 6), 1e4)).sum().backward()
    assert torch.isfinite(theta.grad).all()


def test_config_roundtrip_pickling_and_determinism() -> None:
    dev = MRRWeightBank(layer_sizes=(8, 4, 3), seed=11, dtype="float64")
    cfg = dev.config()
    assert cfg["dtype"] == "float64" and cfg["layer_sizes"] == [8, 4, 3]
    rng = np.random.default_rng(0)
    thetas, x = rng.uniform(-1, 1, (3, dev.space.dim)), rng.random((4, 8))
    twin = MRRWeightBank(**cfg)
    clone = pickle.loads(pickle.dumps(dev))
    first = dev.query_many(thetas, x)  # noise and drift on by default, seeded
    np.testing.assert_array_equal(twin.query_many(thetas, x), first)
    np.testing.assert_array_equal(clone.query_many(thetas, x), first)
    assert dev.noise > 0 and dev.drift > 0
    assert not np.array_equal(dev.fresh_chip(12).query_many(thetas, x), first)
    dev.reset()
    np.testing.assert_array_equal(dev.query_many(thetas, x), first)


def test_spec_layout_and_bounds() -> None:
    dev = MRRWeightBank()
    assert dev.name == "mrr" and dev.space.dim == 64 * 32 + 32 * 10 == 2368
    assert dev.input_shape == (64,) and dev.output_shape == (10,) and dev.full_scale == 32.0
    theta = np.arange(dev.space.dim, dtype=float)
    b0, b1 = dev.split_controls(theta)
    assert b0.shape == (32, 64) and b1.shape == (10, 32)
    assert dev.space.names[int(b0[3, 5])] == "b0[3,5]"
    assert dev.space.names[int(b1[7, 2])] == "b1[7,2]"
    with pytest.raises(OutOfBoundsError):
        dev.query(np.full(dev.space.dim, 1.01), np.zeros((1, 64)))


@pytest.mark.parametrize(
    "kw",
    [
        {"layer_sizes": (5,)},
        {"layer_sizes": (5, 0)},
        {"layer_sizes": "ab"},
        {"linewidth": 0.0},
        {"offset": -0.1},
        {"offset": float("nan")},
        {"crosstalk": 2.0},
        {"imbalance": 0.6},
        {"heater_nonlinearity": 0.6},
        {"saturation": -1.0},
        {"linewidth_spread": "x"},
        {"activation": "gelu"},
        {"oeo_gain": 0.0},
        {"dtype": "float16"},
        {"temperature": float("inf")},
        {"noise": -1.0},
    ],
)
def test_invalid_configuration_raises(kw) -> None:
    with pytest.raises(ConfigError):
        MRRWeightBank(**kw)
