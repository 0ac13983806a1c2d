"""Residual (physics base + learned correction) and Ensemble (black box with uncertainty)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blacksat.devices import MZIMesh
from blacksat.surrogates import Ensemble, GreyBox, Residual, collect, local, quality, sobol

N_MODES = 4


def _inputs(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, N_MODES))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------------- Residual
def test_an_unfitted_residual_is_exactly_its_base():
    chip = MZIMesh(n_modes=N_MODES, seed=0)
    nominal = chip.nominal_model(dtype=torch.float64)
    thetas = torch.as_tensor(sobol(chip.space, 3, seed=0))
    x = torch.as_tensor(_inputs(5, seed=0))
    with torch.no_grad():
        want = nominal(thetas, x)
        assert torch.equal(Residual(nominal)(thetas, x), want)
        assert torch.equal(Residual(GreyBox(nominal))(thetas, x), want)
        assert torch.equal(Residual(nominal)(thetas[0], x), want[0])


def test_a_physics_base_is_copied_never_modified():
    chip = MZIMesh(n_modes=N_MODES, seed=0)
    nominal = chip.nominal_model()  # float32; the residual computes in float64
    before = {k: v.clone() for k, v in nominal.state_dict().items()}
    x = _inputs(4, seed=0)
    res = Residual(nominal, hidden=(8,), steps=3).fit(
        collect(chip, sobol(chip.space, 8, seed=0), x).data
    )
    assert res.base is nominal and res.base_.bs_errors.dtype == torch.float64
    for name, value in nominal.state_dict().items():
        assert value.dtype == before[name].dtype and torch.equal(value, before[name]), name


@pytest.fixture(scope="module")
def detector_chip():
    """A chip whose detectors saturate and differ in gain: outside the grey box's class."""
    chip = MZIMesh(
        n_modes=N_MODES, s_bs=0.1, s_ps=0.1, saturation=1.0, responsivity_spread=0.15, seed=4
    )
    x = _inputs(8, seed=4)
    data = collect(chip, sobol(chip.space, 128, seed=4), x).data
    fresh = collect(chip, sobol(chip.space, 48, seed=40), x).data
    nominal = chip.nominal_model(dtype=torch.float64)
    grey = GreyBox(nominal, steps=80, lr=0.05).fit(data)
    return data, fresh, grey


def test_residual_beats_its_grey_box_and_keeps_a_fitted_base(detector_chip):
    data, fresh, grey = detector_chip
    before = grey.errors_
    res = Residual(grey, refit_base=False, hidden=(32, 32), steps=150).fit(data)
    assert res.base is grey and res.base_ is not grey
    for name, value in res.base_.errors_.items():  # refit_base=False: the copy is the base
        np.testing.assert_array_equal(value, before[name])
    for name, value in grey.errors_.items():  # refit_base=False: the base is kept as is
        np.testing.assert_array_equal(value, before[name])
    rmse_grey, rmse_res = quality(grey, fresh)["rmse"], quality(res, fresh)["rmse"]
    assert rmse_res < 0.5 * rmse_grey  # measured 0.15-0.23 on chip seeds 0-4
    assert res.report_.held_out_rmse < grey.report_.held_out_rmse


def test_train_base_fine_tunes_the_base(detector_chip):
    data, _, grey = detector_chip
    res = Residual(grey, refit_base=False, train_base=True, hidden=(16,), steps=20).fit(data)
    base = res.base_
    moved = [n for n in grey.params if not np.array_equal(base.errors_[n], grey.errors_[n])]
    assert moved == list(grey.params)


def test_refit_base_fits_an_unfitted_base_first(detector_chip):
    data, _, _ = detector_chip
    base = GreyBox(MZIMesh(n_modes=N_MODES).nominal_model(dtype=torch.float64), steps=10)
    assert base.report_ is None
    res = Residual(base, hidden=(8,), steps=5).fit(data)
    fitted = res.base_  # a copy of the base, fitted; the base given stays unfitted
    assert fitted.report_ is not None and fitted.report_.n_held_out == 0  # its split disabled
    assert fitted.report_.n_settings == res.report_.n_settings  # the residual's training split
    assert base.report_ is None and base.held_out == 0.2
    assert np.abs(fitted.errors_["bs_errors"]).max() > 0


# ---------------------------------------------------------------------- Ensemble
RADIUS = 0.2


@pytest.fixture(scope="module")
def local_ensemble():
    """An ensemble fitted on settings in a small box around the centre of the space."""
    chip = MZIMesh(n_modes=N_MODES, s_bs=0.1, s_ps=0.1, seed=5)
    x = _inputs(6, seed=5)
    center = chip.space.center
    data = collect(chip, local(chip.space, center, RADIUS, 64, seed=5), x).data
    ens = Ensemble(members=4, hidden=(32, 32), steps=150, seed=1).fit(data)
    return chip, data, ens


def test_uncertainty_has_the_prediction_shape_and_is_nonnegative(local_ensemble):
    _, data, ens = local_ensemble
    x = torch.as_tensor(_inputs(3, seed=0))
    thetas = torch.as_tensor(data.settings()[:4])
    for theta in (thetas, thetas[0]):
        u = ens.uncertainty(theta, x)
        assert u.shape == ens(theta, x).shape
        assert bool((u >= 0).all()) and bool(torch.isfinite(u).all())
        assert not u.requires_grad


def test_uncertainty_grows_far_from_the_data(local_ensemble):
    chip, data, ens = local_ensemble
    x = torch.as_tensor(data.groups[0][1].copy())
    near = ens.uncertainty(torch.as_tensor(data.settings()), x).mean()
    # settings in the box's opposite corners, about 3 rad from every training setting
    far_thetas = np.stack([chip.space.lower + 0.2, chip.space.upper - 0.2])
    far = ens.uncertainty(torch.as_tensor(far_thetas), x).mean()
    assert far > 10 * near  # measured 34-85 times on chip seeds 0-4


def test_members_differ_and_their_mean_is_the_prediction(local_ensemble):
    _, data, ens = local_ensemble
    x = torch.as_tensor(data.groups[0][1].copy())
    thetas = torch.as_tensor(data.settings()[:3])
    with torch.no_grad():
        members = ens.members_forward(thetas, x)
        assert members.shape == (4, 3, *x.shape)
        for m in range(1, 4):
            assert not torch.allclose(members[m], members[0])
        torch.testing.assert_close(members.mean(0), ens(thetas, x))
        std = members.std(0, unbiased=False)
    torch.testing.assert_close(ens.uncertainty(thetas, x), std)


def test_the_affine_stage_recovers_gains_and_offsets_in_closed_form():
    chip = MZIMesh(n_modes=4, seed=3, noise=0.0, drift=0.0)
    nominal = chip.nominal_model(dtype=torch.float64)
    thetas = sobol(chip.space, 32, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4))
    with torch.no_grad():
        y0 = nominal(torch.as_tensor(thetas), torch.as_tensor(x)).numpy()
    gain, offset = np.array([0.5, 1.0, 2.0, 0.8]), np.array([0.01, 0.0, -0.02, 0.03])
    data = [(thetas, x, gain * y0 + offset)]
    fitted = Residual(nominal, steps=0, held_out=0.0).fit(data)  # no MLP step: affine only
    np.testing.assert_allclose(fitted.gain.numpy(), gain, rtol=1e-9)
    np.testing.assert_allclose(fitted.bias.numpy(), offset, atol=1e-12)
    plain = Residual(nominal, steps=0, held_out=0.0, affine=False).fit(data)
    assert fitted.report_.train_rmse < 1e-10 < plain.report_.train_rmse
