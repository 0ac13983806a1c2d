"""GreyBox: system identification of an MZI chip's error parameters from queries alone.

The chip carries only what the grey box can express (coupler errors, phase offsets, thermal
crosstalk); every hidden effect, the noise and the drift are off. A fit on ~128 Sobol settings
must then recover the injected parameters and predict the chip's truth on settings it never
saw. The tolerances were measured on chip seeds 0-9 (worst case in brackets) and sit well
below what a fit that did nothing would give (coupler errors of std 0.1, crosstalk 0).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blacksat.devices import MZIMesh
from blacksat.surrogates import GreyBox, collect, quality, sobol

N_MODES = 4
CLEAN = dict(
    loss_imbalance_db=0.0,
    insertion_loss_db=0.0,
    saturation=0.0,
    responsivity_spread=0.0,
    noise=0.0,
    drift=0.0,
)


def _chip(seed: int) -> MZIMesh:
    return MZIMesh(
        n_modes=N_MODES, s_bs=0.1, s_ps=0.1, crosstalk=0.02, seed=seed, dtype="float64", **CLEAN
    )


def _inputs(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, N_MODES))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _wrap(a: np.ndarray) -> np.ndarray:
    """Phase differences into ``[-pi, pi)``."""
    return (a + np.pi) % (2 * np.pi) - np.pi


@pytest.fixture(scope="module", params=[1, 6])
def identified(request):
    """(chip, nominal model, its buffers before the fit, the fitted grey box)."""
    chip = _chip(request.param)
    x = _inputs(8, seed=request.param)
    data = collect(chip, sobol(chip.space, 128, seed=request.param), x).data
    nominal = chip.nominal_model(dtype=torch.float64)
    before = {k: v.clone() for k, v in nominal.state_dict().items()}
    return chip, nominal, before, GreyBox(nominal, steps=80, lr=0.05).fit(data)


def test_recovers_coupler_errors(identified):
    chip, _, _, gb = identified
    truth = chip.exact_model().bs_errors.numpy()
    fit = gb.errors_["bs_errors"]
    assert fit.shape == truth.shape
    assert np.abs(truth).max() > 0.1  # the draw is not trivially small
    assert np.abs(fit - truth).max() < 0.01  # measured <= 0.0027
    assert np.corrcoef(fit.ravel(), truth.ravel())[0, 1] > 0.999  # measured >= 0.99995


def test_recovers_crosstalk(identified):
    _, _, _, gb = identified
    assert float(gb.errors_["crosstalk"]) == pytest.approx(0.02, rel=0.05)  # measured 2 %


def test_recovers_phase_offsets(identified):
    """With real input fields and intensity detection every phase of this mesh is observable
    (no output phase screen, each phase is followed by a coupler), so the offsets are
    identifiable up to 2 pi; on a mesh with gauge phases only the predictions would be."""
    chip, _, _, gb = identified
    diff = _wrap(gb.errors_["phase_offsets"] - chip.exact_model().phase_offsets.numpy())
    assert np.abs(diff).max() < 0.02  # measured <= 0.004


def test_predicts_the_truth_on_fresh_settings(identified):
    chip, nominal, _, gb = identified
    x = _inputs(5, seed=99)
    thetas = sobol(chip.space, 64, seed=1234)
    with torch.no_grad():
        truth = chip.exact_model()(torch.as_tensor(thetas), torch.as_tensor(x)).numpy()
    fresh = [(thetas, x, truth)]
    assert quality(gb, fresh)["rmse"] < 5e-3  # measured <= 6e-4
    assert quality(nominal, fresh)["rmse"] > 0.03  # what the fit started from
    assert gb.report_.held_out_rmse < 5e-3 and gb.report_.held_out_r2 > 0.999


def test_errors_keys_are_the_params_and_the_input_model_is_untouched(identified):
    _, nominal, before, gb = identified
    assert tuple(gb.errors_) == gb.params == ("bs_errors", "phase_offsets", "crosstalk")
    for name, value in nominal.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not any(p.requires_grad for p in nominal.parameters())
    assert dict(nominal.named_parameters()) == {}  # its buffers stayed buffers
    # errors_ are copies: changing them changes nothing
    gb.errors_["bs_errors"][:] = 0.0
    assert np.abs(gb.errors_["bs_errors"]).max() > 0


def test_only_the_named_params_are_learned(identified):
    chip, nominal, _, _ = identified
    x = _inputs(4, seed=0)
    data = collect(chip, sobol(chip.space, 32, seed=0), x).data
    gb = GreyBox(nominal, params=["crosstalk"], steps=30, lr=0.01).fit(data)
    assert tuple(gb.errors_) == ("crosstalk",)
    assert float(gb.errors_["crosstalk"]) != 0.0
    buffers = dict(gb.model_.named_buffers())
    assert torch.equal(buffers["bs_errors"], torch.zeros_like(buffers["bs_errors"]))
    assert [n for n, p in gb.named_parameters() if p.requires_grad] == ["model_.crosstalk"]


def test_prior_shrinks_the_fitted_errors_towards_nominal():
    chip = _chip(2)
    x = _inputs(4, seed=2)
    data = collect(chip, sobol(chip.space, 32, seed=2), x).data
    nominal = chip.nominal_model(dtype=torch.float64)
    free = GreyBox(nominal, steps=40, lr=0.05).fit(data).errors_
    held = GreyBox(nominal, prior=1.0, steps=40, lr=0.05).fit(data).errors_
    for name in ("bs_errors", "phase_offsets"):
        assert np.linalg.norm(held[name]) < 0.8 * np.linalg.norm(free[name]), name
