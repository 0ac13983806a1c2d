"""DiffractiveNetwork: physics against an independent numpy/scipy reference, hidden effects,
nuisances, nominal vs truth, gradients, finiteness and configuration."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch
from scipy.ndimage import affine_transform, gaussian_filter

from blacksat.devices.diffractive import (
    FULL_SCALE_POWER,
    DiffractiveNetwork,
    DiffractivePhysics,
    detector_layout,
)
from blacksat.errors import ConfigError

OFF = {
    "s_align": 0.0,
    "s_lut": 0.0,
    "crosstalk": 0.0,
    "phase_amplitude": 0.0,
    "illumination": 0.0,
    "saturation": 0.0,
    "gain_spread": 0.0,
    "noise": 0.0,
    "drift": 0.0,
}
HIDDEN = {
    "crosstalk": 0.4,
    "phase_amplitude": 0.05,
    "illumination": 0.3,
    "saturation": 0.05,
    "gain_spread": 0.03,
}


def _inputs(b: int = 6, n: int = 32, seed: int = 0) -> np.ndarray:
    """Blocky nonnegative 'digits': 8 x 8 random images upsampled onto the n x n grid."""
    small = np.random.default_rng(seed).random((b, 8, 8))
    return np.kron(small, np.ones((n // 8, n // 8)))


def _thetas(dev: DiffractiveNetwork, k: int, seed: int = 1) -> np.ndarray:
    return dev.space.sample(np.random.default_rng(seed), k)


# ---------------------------------------------------------------------- independent reference
def _reference(
    phys: DiffractivePhysics, dev: DiffractiveNetwork, theta: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """The documented optical chain in numpy/scipy, reading only the drawn chip parameters."""
    n, L, big = dev.n, dev.n_layers, dev.grid
    lut = phys.lut_gain.double().numpy()
    align = phys.align.double().numpy()
    nuis = phys.nuisance.double().numpy()
    gains = phys.gains.double().numpy()
    phi = theta.reshape(L, n, n) * lut
    if dev.crosstalk > 0:
        radius = max(1, math.ceil(3 * dev.crosstalk))
        phi = np.stack(
            [gaussian_filter(p, dev.crosstalk, mode="nearest", radius=radius) for p in phi]
        )
    t = (1 - dev.phase_amplitude * (1 - np.cos(phi)) / 2) * np.exp(1j * phi)
    pad = (big - n) // 2
    t = np.pad(t, ((0, 0), (pad, pad), (pad, pad)))
    c0 = (big - 1) / 2
    for layer in range(L):
        a = np.deg2rad(align[layer, 0] + nuis[0])
        s = align[layer, 3] * nuis[3]
        shift_yx = np.array([align[layer, 2] + nuis[2], align[layer, 1] + nuis[1]])
        # input index = M (output index - c0 - t) + c0, (row, col) order, mask turned by +a
        m = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) / s
        off = c0 - m @ (c0 + shift_yx)
        t[layer] = sum(
            part * affine_transform(fn(t[layer]), m, off, order=1, mode="grid-constant", cval=0.0)
            for part, fn in ((1, np.real), (1j, np.imag))
        )
    f = np.fft.fftfreq(big, dev.pitch)
    f2 = f[:, None] ** 2 + f[None, :] ** 2
    kz = 2 * np.pi * np.sqrt(np.clip(1 / dev.wavelength**2 - f2, 0, None))

    def prop(u: np.ndarray, z: float) -> np.ndarray:
        return np.fft.ifft2(np.fft.fft2(u) * np.exp(1j * kz * z) * (f2 < 1 / dev.wavelength**2))

    r = (np.arange(n) - (n - 1) / 2) / (n / 2)
    env = np.exp(-dev.illumination * (r[:, None] ** 2 + r[None, :] ** 2))
    u = np.pad(x * env, ((0, 0), (pad, pad), (pad, pad))).astype(complex)
    u = prop(u, dev.distances[0]) * t[0]
    for layer in range(1, L):
        u = prop(u, dev.distances[layer]) * t[layer]
    inten = np.abs(prop(u, dev.distances[L])[:, pad : pad + n, pad : pad + n]) ** 2
    # 10 classes on 32 x 32: rows 3-4-3 of 4 x 4 squares, centres 8 px apart
    boxes = [
        (6, 6),
        (6, 14),
        (6, 22),
        (14, 2),
        (14, 10),
        (14, 18),
        (14, 26),
        (22, 6),
        (22, 14),
        (22, 22),
    ]
    y = np.stack([inten[:, r0 : r0 + 4, c0_ : c0_ + 4].sum((1, 2)) for r0, c0_ in boxes], 1)
    y = y / (FULL_SCALE_POWER * n * n) * gains
    return y / (1 + dev.saturation * y)


@pytest.mark.parametrize("nuisance", [{}, {"rotation": 1.3, "shift_x": -0.6, "scale": 1.04}])
def test_truth_matches_independent_numpy_reference(nuisance: dict) -> None:
    dev = DiffractiveNetwork(dtype=torch.float64, noise=0.0, drift=0.0, s_align=0.5, **nuisance)
    assert max(dev.distances) < dev.grid * dev.pitch**2 / dev.wavelength  # band limit idle
    x, theta = _inputs(3), _thetas(dev, 1)[0]
    phys = dev.exact_model()
    ours = phys(torch.as_tensor(theta), torch.as_tensor(x)).numpy()
    ref = _reference(phys, dev, theta, x)
    np.testing.assert_allclose(ours, ref, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(dev.query(theta, x), ref, rtol=1e-7, atol=1e-10)


def test_detector_layout_is_the_documented_3_4_3_grid() -> None:
    boxes = detector_layout(32, 10)
    assert [b[2] for b in boxes] == [4] * 10
    assert [(b[0], b[1]) for b in boxes] == [
        (6, 6),
        (6, 14),
        (6, 22),
        (14, 2),
        (14, 10),
        (14, 18),
        (14, 26),
        (22, 6),
        (22, 14),
        (22, 22),
    ]
    for n, c in ((64, 10), (128, 10), (16, 4), (32, 2), (32, 1), (32, 7)):
        cover = np.zeros((n, n), int)
        for r0, c0, s in detector_layout(n, c):
            assert 0 <= r0 and r0 + s <= n and 0 <= c0 and c0 + s <= n
            cover[r0 : r0 + s, c0 : c0 + s] += 1
        assert cover.max() == 1 and len(detector_layout(n, c)) == c
        assert np.array_equal(cover, cover[::-1, ::-1])  # centred on the optical axis


def test_passive_device_readings_bounded_by_input_power() -> None:
    dev = DiffractiveNetwork(**OFF)
    x = _inputs(4)
    y = dev.query_many(_thetas(dev, 3), x)
    power = (x**2).sum((1, 2)) / (FULL_SCALE_POWER * dev.n**2)
    assert np.all(y >= 0) and np.all(y.sum(-1) <= power[None] * (1 + 1e-5))


# ---------------------------------------------------------------------- spec and config
def test_spec_controls_and_shapes() -> None:
    dev = DiffractiveNetwork(n=16, n_layers=3, levels=64, noise=0.0, drift=0.0)
    assert DiffractiveNetwork.name == "diffractive"
    assert dev.space.dim == 3 * 16 * 16 and dev.input_shape == (16, 16)
    assert dev.output_shape == (10,) and dev.grid == 32
    assert dev.space.levels.size == 64 and dev.space.upper.max() == pytest.approx(
        2 * np.pi * 63 / 64
    )
    assert {n.name for n in dev.nuisances} == {"rotation", "shift_x", "shift_y", "scale"}
    step = 2 * np.pi / 64
    theta = np.random.default_rng(0).integers(0, 63, dev.space.dim) * step
    x = _inputs(2, 16)
    assert np.array_equal(dev.query(theta + 0.4 * step, x), dev.query(theta, x))  # SLM levels
    # SLM phases are periodic (64 levels over 2 pi): 7 rad is level round((7 - 2 pi) / step)
    assert dev.space.periodic.all() and np.all(dev.space.period == 2 * np.pi)
    assert np.array_equal(
        dev.query(np.full(dev.space.dim, 7.0), x),
        dev.query(np.full(dev.space.dim, 7.0 - 2 * np.pi), x),
    )
    # and the last level's upper half snaps to level 0, its neighbour on the circle
    assert np.all(dev.space.snap(np.full(dev.space.dim, 2 * np.pi - 0.4 * step)) == 0.0)


def test_config_roundtrip_is_json_and_rebuilds_the_same_chip() -> None:
    dev = DiffractiveNetwork(seed=3, rotation=0.5, dtype="float64", distance=(1e-3, 2e-3, 3e-3))
    cfg = json.loads(json.dumps(dev.config()))
    twin = DiffractiveNetwork(**cfg)
    x, th = _inputs(2), _thetas(dev, 2)
    assert np.array_equal(twin.query_many(th, x), dev.query_many(th, x))
    assert twin.dtype == torch.float64 and twin.distances == (1e-3, 2e-3, 3e-3)


@pytest.mark.parametrize(
    "bad",
    [
        {"s_lut": -0.1},
        {"n": 2},
        {"n": 8.5},
        {"n_layers": 0},
        {"levels": 1},
        {"phase_amplitude": 1.5},
        {"crosstalk": float("nan")},
        {"pitch": 0.0},
        {"pad_factor": 0.5},
        {"distance": (1e-3, 1e-3)},
        {"distance": -1e-3},
        {"n": 4, "n_classes": 100},
        {"scale": 0.0},
        {"tilt": 1.0},
        {"dtype": "float16"},
        {"noise": -1.0},
        {"seed": -1},
        {"s_align": "big"},
        {"distance": "far"},
        {"wavelength": float("inf")},
    ],
)
def test_invalid_configuration_raises_config_error(bad: dict) -> None:
    with pytest.raises(ConfigError):
        DiffractiveNetwork(**bad)


# ---------------------------------------------------------------------- nominal vs truth
def test_nominal_equals_truth_with_everything_off() -> None:
    dev = DiffractiveNetwork(**OFF)
    x, th = _inputs(4), _thetas(dev, 3)
    nominal = dev.nominal_model()(torch.as_tensor(th), torch.as_tensor(x)).double().numpy()
    np.testing.assert_array_equal(dev.query_many(th, x), nominal)
    exact = dev.exact_model()(torch.as_tensor(th), torch.as_tensor(x)).double().numpy()
    np.testing.assert_array_equal(exact, nominal)


def test_truth_differs_from_nominal_at_defaults() -> None:
    dev = DiffractiveNetwork(noise=0.0, drift=0.0)
    x, th = _inputs(4), _thetas(dev, 2)
    truth = dev.query_many(th, x)
    nominal = dev.nominal_model()(torch.as_tensor(th), torch.as_tensor(x)).double().numpy()
    assert np.abs(truth - nominal).max() > 0.05 * np.abs(nominal).max()


@pytest.mark.parametrize("knob", ["s_align", "s_lut", *HIDDEN])
def test_each_error_and_hidden_effect_changes_the_output(knob: str) -> None:
    base = DiffractiveNetwork(**OFF)
    on = DiffractiveNetwork(**{**OFF, knob: {"s_align": 0.25, "s_lut": 0.03, **HIDDEN}[knob]})
    x, th = _inputs(4), _thetas(base, 2)
    y0, y1 = base.query_many(th, x), on.query_many(th, x)
    assert np.abs(y1 - y0).max() > 1e-3 * np.abs(y0).max()


def test_hidden_effects_follow_their_formulas() -> None:
    x, th = _inputs(4), _thetas(DiffractiveNetwork(**OFF), 2)
    y0 = DiffractiveNetwork(**OFF).query_many(th, x)
    sat = DiffractiveNetwork(**{**OFF, "saturation": 0.2}).query_many(th, x)
    np.testing.assert_allclose(sat, y0 / (1 + 0.2 * y0), rtol=1e-5)
    gain_dev = DiffractiveNetwork(**{**OFF, "gain_spread": 0.1})
    gains = gain_dev.exact_model().gains.double().numpy()
    np.testing.assert_allclose(gain_dev.query_many(th, x), y0 * gains, rtol=1e-5)
    assert np.std(gains) > 0.01
    r = (np.arange(32) - 15.5) / 16
    env = np.exp(-0.3 * (r[:, None] ** 2 + r[None, :] ** 2))
    ill = DiffractiveNetwork(**{**OFF, "illumination": 0.3}).query_many(th, x)
    np.testing.assert_allclose(ill, DiffractiveNetwork(**OFF).query_many(th, x * env), rtol=1e-5)
    # phase-amplitude coupling: a mask at phase pi transmits amplitude 1 - a
    pa = DiffractiveNetwork(**{**OFF, "phase_amplitude": 0.05}).exact_model()
    t = pa.transmission(torch.full((1, pa.n_layers * 32 * 32), math.pi))
    win = t[0, :, 16:48, 16:48].abs()
    np.testing.assert_allclose(win.numpy(), 0.95, rtol=1e-6)


def test_gradients_flow_through_nominal_and_exact_models() -> None:
    dev = DiffractiveNetwork()
    x = torch.as_tensor(_inputs(3), dtype=torch.float32)
    for model in (dev.nominal_model(), dev.exact_model()):
        theta = torch.as_tensor(_thetas(dev, 1)[0], dtype=torch.float32).requires_grad_()
        y = model(theta, x)
        (y[:, 0] - y[:, 5]).sum().backward()
        g = theta.grad
        assert g is not None and torch.isfinite(g).all() and g.abs().max() > 0
        assert (g != 0).float().mean() > 0.5  # every mask pixel reaches the detectors


# ---------------------------------------------------------------------- nuisances
@pytest.mark.parametrize(
    "name, value", [("rotation", 1.0), ("shift_x", 0.5), ("shift_y", -1.0), ("scale", 1.05)]
)
def test_perturbation_changes_outputs_and_zero_is_identity(name: str, value: float) -> None:
    dev = DiffractiveNetwork(noise=0.0, drift=0.0)
    x, th = _inputs(4), _thetas(dev, 2)
    y = dev.query_many(th, x)
    moved = dev.perturbed(**{name: value})
    assert moved.nuisance_values[name] == value
    assert np.abs(moved.query_many(th, x) - y).max() > 1e-3 * np.abs(y).max()
    same = dev.perturbed(rotation=0.0, shift_x=0.0, shift_y=0.0, scale=1.0)
    assert np.array_equal(same.query_many(th, x), y)


def test_zero_misalignment_skips_resampling_exactly() -> None:
    dev = DiffractiveNetwork(**OFF)
    phys = dev.exact_model()
    th = torch.as_tensor(_thetas(dev, 2), dtype=torch.float32)
    t = phys.transmission(th)
    phase = torch.polar(torch.ones_like(th), th).reshape(2, 2, 32, 32)
    assert torch.equal(t[:, :, 16:48, 16:48], phase) and t.abs().sum() == phase.abs().sum()


def test_whole_pixel_nuisance_shift_moves_the_masks() -> None:
    dev = DiffractiveNetwork(**OFF).perturbed(shift_x=2.0, shift_y=-1.0)
    t = dev.exact_model().transmission(torch.as_tensor(_thetas(dev, 1), dtype=torch.float64))
    ref = (
        DiffractiveNetwork(**OFF)
        .exact_model()
        .transmission(torch.as_tensor(_thetas(dev, 1), dtype=torch.float64))
    )
    np.testing.assert_allclose(t.numpy(), np.roll(ref.numpy(), (-1, 2), axis=(-2, -1)), atol=1e-6)


# ---------------------------------------------------------------------- batching, noise, state
def test_query_many_equals_looped_queries_and_chunking_is_invisible(monkeypatch) -> None:
    dev = DiffractiveNetwork(noise=0.0, drift=0.0)
    x, th = _inputs(5), _thetas(dev, 4)
    many = dev.query_many(th, x)
    looped = np.stack([dev.query(t, x) for t in th])
    np.testing.assert_allclose(many, looped, rtol=1e-5, atol=1e-7)
    monkeypatch.setattr(DiffractivePhysics, "max_fields", 3)  # chunks over K and over B
    np.testing.assert_allclose(dev.query_many(th, x), many, rtol=1e-5, atol=1e-7)


def test_seeded_determinism_noise_drift_and_pickling() -> None:
    x = _inputs(3)
    a, b = DiffractiveNetwork(seed=4), DiffractiveNetwork(seed=4)
    th = _thetas(a, 2)
    ya = [a.query_many(th, x) for _ in range(2)]
    yb = [b.query_many(th, x) for _ in range(2)]
    assert np.array_equal(ya[0], yb[0]) and np.array_equal(ya[1], yb[1])
    assert not np.array_equal(ya[0], ya[1])  # readout noise and drift advance
    clone = pickle.loads(pickle.dumps(a))
    assert np.array_equal(clone.query_many(th, x), a.query_many(th, x))
    other = a.fresh_chip(5)
    assert other.seed == 5 and not np.array_equal(other.query_many(th, x), b.query_many(th, x))
    noisy = DiffractiveNetwork(seed=4, drift=0.0).query_many(th, x)
    clean = DiffractiveNetwork(seed=4, drift=0.0, noise=0.0).query_many(th, x)
    assert 0.002 < np.std(noisy - clean) < 0.008  # noise = 0.005 of full scale 1


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"rotation": 45.0, "shift_x": 40.0, "scale": 0.1},
        {"scale": 3.0, "shift_y": -2.0},
        {"crosstalk": 8.0},
        {"phase_amplitude": 1.0, "saturation": 50.0, "gain_spread": 2.0},
    ],
)
def test_outputs_finite_at_extreme_settings(kw: dict) -> None:
    dev = DiffractiveNetwork(**kw)
    lo, hi = dev.space.lower, dev.space.upper
    th = np.stack([lo, hi, _thetas(dev, 1)[0], np.where(np.arange(lo.size) % 2, lo, hi)])
    for x in (np.zeros((2, 32, 32)), _inputs(2) * 1e3, -_inputs(2)):
        y = dev.query_many(th, x)
        assert y.shape == (4, 2, 10) and np.all(np.isfinite(y))
    theta = torch.tensor(hi, dtype=torch.float32, requires_grad=True)
    dev.exact_model()(theta, torch.as_tensor(_inputs(2), dtype=torch.float32)).sum().backward()
    assert torch.isfinite(theta.grad).all()


def test_float64_and_larger_grids_run() -> None:
    dev = DiffractiveNetwork(n=64, n_layers=1, dtype=torch.float64, noise=0.0, drift=0.0)
    y = dev.query(_thetas(dev, 1)[0], _inputs(2, 64))
    assert y.shape == (2, 10) and np.all(np.isfinite(y))
    assert dev.exact_model().lut_gain.dtype == torch.float64


def test_misalignment_is_stated_in_pixels_metres_and_aperture_fractions():
    import pytest

    from blacksat.errors import ConfigError

    dev = DiffractiveNetwork(n=128, pitch=2e-6, noise=0.0, drift=0.0, shift_x=2.0, rotation=1.0)
    assert dev.aperture == pytest.approx(256e-6)
    assert dev.pixels(fraction=2 / 128) == pytest.approx(2.0)
    assert dev.pixels(meters=4e-6) == pytest.approx(2.0)
    units = dev.misalignment()
    assert units["shift_x"] == pytest.approx({"px": 2.0, "m": 4e-6, "aperture_fraction": 2 / 128})
    assert units["rotation"]["corner_px"] == pytest.approx(np.radians(1.0) * 64 * np.sqrt(2))
    assert dev.misalignment(scale=1.1)["scale"]["edge_px"] == pytest.approx(6.4)
    # the same physical fraction on the default 32 px grid is a quarter of the pixels
    assert DiffractiveNetwork(n=32).pixels(fraction=2 / 128) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="exactly one"):
        dev.pixels()
    with pytest.raises(ConfigError, match="exactly one"):
        dev.pixels(fraction=0.1, meters=1e-6)


def test_fresnel_numbers_and_spreads_state_the_geometry():
    import pytest

    default = DiffractiveNetwork(n=32, noise=0.0, drift=0.0)
    paper = DiffractiveNetwork(n=128, pitch=2e-6, noise=0.0, drift=0.0)
    wide = DiffractiveNetwork(n=128, noise=0.0, drift=0.0)
    assert len(default.fresnel_numbers) == len(default.spreads) == default.n_layers + 1
    # (128 um)^2 / (532 nm * 2 mm) = 15.4 at the default, the same at the paper's 128 px x 2 um
    assert default.fresnel_numbers[0] == pytest.approx((128e-6) ** 2 / (532e-9 * 2e-3))
    assert paper.fresnel_numbers == pytest.approx(default.fresnel_numbers)
    # 128 px at the default 8 um is a 4x wider aperture: 16x the Fresnel number
    assert wide.fresnel_numbers[0] == pytest.approx(16 * default.fresnel_numbers[0])
    # a pixel's light covers wavelength z / pitch: 133 um of the default's 256 um aperture
    assert default.spreads[0] == pytest.approx(532e-9 * 2e-3 / 8e-6 / 256e-6)
    assert paper.spreads[0] == pytest.approx(4 * default.spreads[0])  # pitch / 4, same aperture
    assert wide.spreads[0] == pytest.approx(default.spreads[0] / 4)  # same pitch, 4x aperture
    far = DiffractiveNetwork(n=32, distance=[1e-3, 2e-3, 4e-3], noise=0.0, drift=0.0)
    assert far.spreads == pytest.approx(
        tuple(default.spreads[0] * z / 2e-3 for z in (1e-3, 2e-3, 4e-3))
    )
