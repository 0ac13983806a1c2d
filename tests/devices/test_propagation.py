"""Free-space optics helpers checked against analytic optics and numpy/scipy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from blacksat.devices.propagation import (
    AngularSpectrum,
    affine_resample,
    crop_center,
    gaussian_kernel1d,
    lens_phase,
    pad_center,
    pixel_coordinates,
    separable_blur,
    thin_lens,
    transfer_function,
)
from blacksat.errors import ConfigError, ShapeError

LAM = 532e-9


def _c(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.complex128))


def _second_moment_waist(intensity: np.ndarray, pitch: float) -> float:
    """1/e^2 intensity radius from the second moment: <x^2> = w^2 / 4 for a Gaussian."""
    _, x = pixel_coordinates(intensity.shape, pitch)
    return float(2.0 * np.sqrt((intensity * x**2).sum() / intensity.sum()))


# ---------------------------------------------------------------------- angular spectrum
@pytest.mark.parametrize("z_over_zr", [0.5, 1.0, 2.0])
def test_gaussian_beam_waist_matches_analytic(z_over_zr: float) -> None:
    n, pitch, w0 = 512, 2e-6, 25e-6
    zr = np.pi * w0**2 / LAM  # Rayleigh range
    z = z_over_zr * zr
    y, x = pixel_coordinates(n, pitch)
    e0 = np.exp(-(x**2 + y**2) / w0**2)
    assert _second_moment_waist(np.abs(e0) ** 2, pitch) == pytest.approx(w0, rel=1e-3)
    ez = AngularSpectrum(n, pitch, LAM, z)(_c(e0)).numpy()
    w_expected = w0 * np.sqrt(1.0 + (z / zr) ** 2)
    assert _second_moment_waist(np.abs(ez) ** 2, pitch) == pytest.approx(w_expected, rel=0.01)
    # on-axis intensity of a Gaussian beam falls as (w0 / w)^2
    peak = np.abs(ez[n // 2 - 1 : n // 2 + 1, n // 2 - 1 : n // 2 + 1]).max() ** 2
    assert peak == pytest.approx((w0 / w_expected) ** 2, rel=0.01)


def test_tilted_plane_wave_gains_the_analytic_phase() -> None:
    n, pitch, z = 64, 1e-6, 37e-6
    fx = 5 / (n * pitch)  # a grid frequency, so the plane wave is periodic on the window
    y, x = pixel_coordinates(n, pitch)
    e0 = np.exp(2j * np.pi * fx * x) * np.ones_like(y)
    ez = AngularSpectrum(n, pitch, LAM, z)(_c(e0)).numpy()
    expected = e0 * np.exp(2j * np.pi * z * np.sqrt(1 / LAM**2 - fx**2))
    np.testing.assert_allclose(ez, expected, atol=1e-10)


def test_energy_conserved_for_band_limited_field_and_evanescent_cut() -> None:
    n, pitch, z = 128, 0.2e-6, 5e-6  # pitch < lambda / 2: the grid holds evanescent waves
    rng = np.random.default_rng(0)
    fy, fx = np.fft.fftfreq(n, pitch)[:, None], np.fft.fftfreq(n, pitch)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    spectrum = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    field = np.fft.ifft2(spectrum * (f < 0.8 / LAM))
    prop = AngularSpectrum(n, pitch, LAM, z)
    out = prop(_c(field)).numpy()
    e_in, e_out = (np.abs(field) ** 2).sum(), (np.abs(out) ** 2).sum()
    assert abs(e_out - e_in) / e_in < 1e-6
    # a field with evanescent content keeps exactly its propagating part (no band limit here:
    # at this short distance the Matsushima limit would also cut some propagating waves)
    prop = AngularSpectrum(n, pitch, LAM, z, band_limit=False)
    full = np.fft.ifft2(spectrum)
    out_full = prop(_c(full)).numpy()
    propagating = (np.abs(np.fft.ifft2(spectrum * (f < 1 / LAM))) ** 2).sum()
    assert (np.abs(out_full) ** 2).sum() == pytest.approx(propagating, rel=1e-9)
    h = prop.transfer().numpy()
    assert np.all(h[f >= 1 / LAM] == 0) and np.allclose(np.abs(h[f < 0.99 / LAM]), 1.0)


@pytest.mark.parametrize("band_limit", [False, True])
def test_propagation_composes(band_limit: bool) -> None:
    n, pitch, z1, z2 = 64, 8e-6, 1.3e-3, 0.9e-3
    rng = np.random.default_rng(1)
    field = _c(rng.standard_normal((3, n, n)) + 1j * rng.standard_normal((3, n, n)))
    p1, p2, p12 = (
        AngularSpectrum(n, pitch, LAM, z, band_limit=band_limit) for z in (z1, z2, z1 + z2)
    )
    np.testing.assert_allclose(p2(p1(field)).numpy(), p12(field).numpy(), atol=1e-10)
    back = AngularSpectrum(n, pitch, LAM, -(z1 + z2), band_limit=band_limit)
    np.testing.assert_allclose(back(p12(field)).numpy(), field.numpy(), atol=1e-10)


def test_zero_distance_is_exact_identity() -> None:
    field = _c(np.random.default_rng(2).standard_normal((2, 16, 16)))
    prop = AngularSpectrum(16, 8e-6, LAM, 0.0)
    assert torch.equal(prop(field), field)
    assert np.all(transfer_function(16, 8e-6, LAM, 0.0) == 1)


def test_batched_and_float32_match_single_float64() -> None:
    n, pitch, z = 32, 8e-6, 2e-3
    rng = np.random.default_rng(3)
    field = _c(rng.standard_normal((2, 3, n, n)) + 1j * rng.standard_normal((2, 3, n, n)))
    prop = AngularSpectrum(n, pitch, LAM, z)
    batched = prop(field).numpy()
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(batched[i, j], prop(field[i, j]).numpy(), atol=1e-12)
    p32 = AngularSpectrum(n, pitch, LAM, z).to(torch.float32)
    out32 = p32(field.to(torch.complex64))
    assert out32.dtype == torch.complex64
    np.testing.assert_allclose(out32.numpy(), batched, atol=1e-4)
    with pytest.raises(ShapeError):
        prop(field[..., :-1])


def test_band_limit_only_binds_beyond_the_critical_distance() -> None:
    n, pitch = 64, 8e-6
    z_crit = n * pitch**2 / LAM
    for z, cut in ((0.5 * z_crit, False), (3 * z_crit, True)):
        h_bl = transfer_function(n, pitch, LAM, z, band_limit=True)
        h = transfer_function(n, pitch, LAM, z, band_limit=False)
        assert (not np.array_equal(h_bl, h)) == cut


def test_invalid_propagation_arguments() -> None:
    with pytest.raises(ConfigError):
        AngularSpectrum(16, -1.0, LAM, 1e-3)
    with pytest.raises(ConfigError):
        AngularSpectrum(16, 8e-6, LAM, float("nan"))
    with pytest.raises(ConfigError):
        lens_phase(16, 8e-6, LAM, 0.0)


# ---------------------------------------------------------------------- thin lens
def test_thin_lens_focuses_plane_wave_to_diffraction_limit() -> None:
    n, pitch, f, a = 511, 2e-6, 20e-3, 251  # odd grid: the axis is pixel 255
    d = a * pitch
    aperture = np.zeros((n, n))
    lo = (n - a) // 2
    aperture[lo : lo + a, lo : lo + a] = 1.0
    field = _c(aperture) * thin_lens(n, pitch, LAM, f)
    focus = np.abs(AngularSpectrum(n, pitch, LAM, f)(field).numpy()) ** 2
    c = n // 2
    assert np.unravel_index(np.argmax(focus), focus.shape) == (c, c)
    # square aperture: I(x) ~ sinc^2(D x / (lambda f)), FWHM = 0.8859 lambda f / D
    row = focus[c] / focus[c, c]
    half = np.flatnonzero(row >= 0.5)
    left, right = half[0], half[-1]
    x_left = left - (row[left] - 0.5) / (row[left] - row[left - 1])
    x_right = right + (row[right] - 0.5) / (row[right] - row[right + 1])
    fwhm = (x_right - x_left) * pitch
    assert fwhm == pytest.approx(0.8859 * LAM * f / d, rel=0.03)
    _, x = pixel_coordinates(n, pitch)
    window = np.abs(x[0]) < 3 * LAM * f / d
    np.testing.assert_allclose(row[window], np.sinc(d * x[0] / (LAM * f))[window] ** 2, atol=0.02)
    # the spot is sharpest at z = f: more spread out before and after
    for z in (0.7 * f, 1.3 * f):
        other = np.abs(AngularSpectrum(n, pitch, LAM, z)(field).numpy()) ** 2
        assert other.max() < 0.5 * focus.max()


def test_lens_phase_formula_and_unit_modulus() -> None:
    n, pitch, f = 8, 8e-6, 0.05
    ph = lens_phase(n, pitch, LAM, f).numpy()
    x0 = -(n - 1) / 2 * pitch
    assert ph[0, 0] == pytest.approx(-np.pi * 2 * x0**2 / (LAM * f))
    np.testing.assert_allclose(np.abs(thin_lens(n, pitch, LAM, f).numpy()), 1.0)


# ---------------------------------------------------------------------- mask resampling
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("angle, k", [(90.0, 1), (-90.0, -1), (180.0, 2), (270.0, 3)])
def test_rotation_by_quarter_turns_equals_rot90(dtype, tol, angle, k) -> None:
    img = np.random.default_rng(4).random((3, 12, 12))
    out = affine_resample(torch.as_tensor(img, dtype=dtype), angle).numpy()
    np.testing.assert_allclose(out, np.rot90(img, k, axes=(-2, -1)), atol=tol)


@pytest.mark.parametrize("dx, dy", [(1, 0), (0, 2), (-3, 1), (2, -2)])
def test_integer_shift_equals_roll_with_zero_fill(dx: int, dy: int) -> None:
    img = np.random.default_rng(5).random((10, 10))
    out = affine_resample(torch.as_tensor(img), 0.0, (dx, dy)).numpy()
    ref = np.roll(img, (dy, dx), axis=(0, 1))
    if dy > 0:
        ref[:dy] = 0
    elif dy < 0:
        ref[dy:] = 0
    if dx > 0:
        ref[:, :dx] = 0
    elif dx < 0:
        ref[:, dx:] = 0
    np.testing.assert_allclose(out, ref, atol=1e-12)


def test_small_rotation_and_scale_of_a_linear_ramp_are_exact_inside() -> None:
    # bilinear interpolation reproduces a linear function exactly: out(q) = f(R(-a) q / s)
    n = 16
    y, x = pixel_coordinates(n, 1.0)
    ramp = 0.3 * x + 0.7 * y
    a, s = np.deg2rad(7.0), 1.08
    out = affine_resample(torch.as_tensor(ramp), 7.0, (0.0, 0.0), s).numpy()
    xi = (np.cos(a) * x - np.sin(a) * y) / s
    yi = (np.sin(a) * x + np.cos(a) * y) / s
    inner = (np.abs(xi) < n / 2 - 1) & (np.abs(yi) < n / 2 - 1)
    np.testing.assert_allclose(out[inner], (0.3 * xi + 0.7 * yi)[inner], atol=1e-12)


def test_zero_misalignment_is_exact_identity_and_batched_parameters() -> None:
    img = torch.as_tensor(np.random.default_rng(6).random((2, 4, 8, 8)))
    assert affine_resample(img) is img
    assert affine_resample(img, torch.zeros(2), torch.zeros(2, 2), torch.ones(2)) is img
    cimg = torch.complex(img, -img)
    out = affine_resample(cimg, torch.tensor([90.0, 0.0]), torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    assert out.dtype == cimg.dtype and out.shape == cimg.shape
    np.testing.assert_allclose(
        out[0].numpy(), np.rot90(cimg[0].numpy(), 1, axes=(-2, -1)), atol=1e-12
    )
    np.testing.assert_allclose(out[1, ..., 1:].numpy(), cimg[1, ..., :-1].numpy(), atol=1e-12)
    with pytest.raises(ShapeError):
        affine_resample(img, torch.zeros(3) + 1.0)


def test_blur_matches_scipy_gaussian_filter() -> None:
    img = np.random.default_rng(7).random((2, 9, 11))
    sigma = 0.4
    k = gaussian_kernel1d(sigma)
    assert k.numel() == 5 and float(k.sum()) == pytest.approx(1.0)
    out = separable_blur(torch.as_tensor(img), k).numpy()
    for i in range(2):
        ref = gaussian_filter(img[i], sigma, mode="nearest", radius=2)
        np.testing.assert_allclose(out[i], ref, atol=1e-12)
    assert torch.equal(
        separable_blur(torch.as_tensor(img), gaussian_kernel1d(0.0)), torch.as_tensor(img)
    )


def test_pad_and_crop_center_roundtrip() -> None:
    img = torch.arange(16.0).reshape(4, 4)
    big = pad_center(img, 8)
    assert big.shape == (8, 8) and float(big.sum()) == float(img.sum())
    assert torch.equal(big[2:6, 2:6], img) and torch.equal(crop_center(big, 4), img)
    with pytest.raises(ShapeError):
        pad_center(img, 7)
