"""The crossbar's physics against independent references: an ideal array is the matrix product
of the differential conductances, drift follows the power law, first-order IR drop agrees with a
nodal solve of the resistive bit line, and the write/read cycle re-programs as declared."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blacksat.devices import Crossbar
from blacksat.devices.crossbar import DRIFT_T0
from blacksat.devices.crossbar_physics import CrossbarPhysics, ir_resistance
from blacksat.errors import ConfigError
from blacksat.meter import MeteredDevice

IDEAL = dict(
    program_noise=0.0, drift_exponent=0.0, drift_exponent_spread=0.0, stuck=0.0, variation=0.0,
    ir_drop=0.0, adc_bits=24, adc_range=1.0, noise=0.0, dtype="float64",
)  # fmt: skip


def _setting(dev, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, dev.space.dim)


def test_ideal_crossbar_is_the_matrix_product():
    dev = Crossbar(layer_sizes=(7, 5), **IDEAL)
    theta = _setting(dev)
    x = np.random.default_rng(1).uniform(-1, 1, (9, 7))
    ((pos, neg),) = dev.split_controls(theta)
    np.testing.assert_allclose(dev.query(theta, x), x @ (pos - neg).T, atol=1e-5)


def test_two_layers_rescale_between_arrays():
    dev = Crossbar(layer_sizes=(6, 4, 3), **IDEAL)
    theta = _setting(dev)
    x = np.random.default_rng(2).uniform(-1, 1, (5, 6))
    (p0, n0), (p1, n1) = dev.split_controls(theta)
    h = np.clip((x @ (p0 - n0).T) / 6.0, 0.0, 1.0)  # ADC full scale = n_in
    np.testing.assert_allclose(dev.query(theta, x), h @ (p1 - n1).T, atol=1e-5)


def test_drift_follows_the_power_law():
    nu = 0.07
    dev = Crossbar(layer_sizes=(5, 3), **{**IDEAL, "drift_exponent": nu})
    theta, x = _setting(dev), np.random.default_rng(3).uniform(-1, 1, (4, 5))
    y0 = dev.query(theta, x)
    for t in (600.0, 3600.0, 86400.0):
        y = dev.perturbed(age=t).query(theta, x)
        np.testing.assert_allclose(y, y0 * (t / DRIFT_T0) ** -nu, rtol=1e-5, atol=1e-6)


def test_a_held_setting_keeps_drifting_and_reprogramming_resets_it():
    kw = {**IDEAL, "drift_exponent": 0.05, "read_interval": 30.0}
    theta, x = None, np.random.default_rng(4).uniform(-1, 1, (4, 5))
    held = Crossbar(layer_sizes=(5, 3), reprogram=False, **kw)
    theta = _setting(held)
    ys = [held.query(theta, x) for _ in range(4)]
    for n, y in enumerate(ys):
        np.testing.assert_allclose(
            y, ys[0] * ((DRIFT_T0 + 30.0 * n) / DRIFT_T0) ** -0.05, 1e-5, 2e-6
        )
    fresh = Crossbar(layer_sizes=(5, 3), reprogram=True, **kw)
    np.testing.assert_allclose(fresh.query(theta, x), fresh.query(theta, x), rtol=1e-12)
    assert fresh.reprograms_on_query and not held.reprograms_on_query


def test_programming_noise_is_drawn_at_every_write_only():
    kw = {**IDEAL, "program_noise": 0.05}
    theta, x = None, np.random.default_rng(5).uniform(-1, 1, (64, 8))
    writing = Crossbar(layer_sizes=(8, 4), **kw)
    theta = _setting(writing)
    a, b = writing.query(theta, x), writing.query(theta, x)
    assert not np.allclose(a, b)
    held = Crossbar(layer_sizes=(8, 4), reprogram=False, **kw)
    np.testing.assert_array_equal(held.query(theta, x), held.query(theta, x))
    # the spread of a weight over many writes is sigma(g+)^2 + sigma(g-)^2
    g = np.full(writing.space.dim, 0.5)
    e = np.eye(8)[:1]
    reads = writing.query_many(np.tile(g, (2000, 1)), e)[:, 0, :]  # (2000, 4): one weight each
    want = np.sqrt(2) * 0.05 * (0.5 + 0.5 * 0.5)
    assert abs(reads.std(ddof=1) / want - 1) < 0.05


def test_ir_drop_agrees_with_a_nodal_solve_of_the_bit_line():
    n, ir = 12, 0.02
    r = ir_resistance(ir, n)
    rng = np.random.default_rng(6)
    g, v = rng.uniform(0, 1, n), rng.uniform(-1, 1, n)
    # nodes V_0..V_{n-1} along the line; segment i joins node i to i+1, node n is the amplifier
    a = np.zeros((n, n))
    for i in range(n):
        a[i, i] += g[i] + (1 / r) * (2 if i > 0 else 1)
        if i > 0:
            a[i, i - 1] -= 1 / r
        if i < n - 1:
            a[i, i + 1] -= 1 / r
    volts = np.linalg.solve(a, g * v)
    exact = np.sum(g * (v - volts))
    theta = torch.zeros(1, 2 * n, dtype=torch.float64)
    theta[0, :n] = torch.as_tensor(g)
    model = CrossbarPhysics((n, 1), ir_drop=ir)
    first_order = float(model(theta, torch.as_tensor(v)[None])[0, 0, 0])
    ideal = float(g @ v)
    assert abs(first_order - exact) < 0.05 * abs(ideal - exact)  # second order left


def test_adc_saturates_and_quantizes():
    dev = Crossbar(layer_sizes=(8, 2), **{**IDEAL, "adc_bits": 4, "adc_range": 0.25})
    fs, step = 0.25 * 8, 0.25 * 8 / 8
    theta = np.concatenate([np.ones(16), np.zeros(16)])  # every weight +1
    y = dev.query(theta, np.ones((1, 8)))
    np.testing.assert_allclose(y, fs - step)  # 8 would be read; the amplifier saturates
    np.testing.assert_allclose(dev.query(theta, -np.ones((1, 8))), -fs)
    y = dev.query(_setting(dev), np.random.default_rng(7).uniform(-1, 1, (20, 8)))
    np.testing.assert_allclose(y / step, np.round(y / step), atol=1e-9)


def test_stuck_cells_ignore_their_control():
    dev = Crossbar(layer_sizes=(6, 4), **{**IDEAL, "stuck": 0.3, "seed": 2})
    truth = dev.exact_model()
    stuck = truth.stuck_mask.bool()
    assert 0 < int(stuck.sum()) < dev.space.dim
    lo, hi = torch.zeros(1, dev.space.dim), torch.ones(1, dev.space.dim)
    g_lo, g_hi = truth.conductances(lo), truth.conductances(hi)
    torch.testing.assert_close(g_lo[0, stuck], g_hi[0, stuck])
    assert bool((g_lo[0, ~stuck] != g_hi[0, ~stuck]).all())


def test_metered_reprogramming_device_is_charged_every_write():
    dev = Crossbar(layer_sizes=(4, 2))
    m = MeteredDevice(dev)
    theta, x = dev.initial_controls(0), np.zeros((3, 4))
    m.query(theta, x), m.query(theta, x)
    assert m.ledger.reconfigurations == 2


@pytest.mark.parametrize(
    "kw",
    [dict(adc_bits=0), dict(adc_bits=2.5), dict(reprogram="no"), dict(program_noise=-1),
     dict(adc_range=0.0), dict(layer_sizes=(4,))],
)  # fmt: skip
def test_bad_arguments(kw):
    with pytest.raises(ConfigError):
        Crossbar(**kw)
