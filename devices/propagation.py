"""Scalar free-space optics in torch: angular-spectrum propagation, thin lenses, mask resampling.

Conventions shared by every helper here:

- A field or mask is sampled on a regular grid of pitch ``p`` (metres); its last two axes are
  ``(rows, cols) = (H, W)``, any leading axes are batch axes. Column index ``j`` is ``x``
  (to the right), row index ``i`` is ``y`` (downwards, as an image is displayed).
- The optical axis passes through the centre of the grid: pixel ``(i, j)`` sits at
  ``x = (j - (W - 1) / 2) p``, ``y = (i - (H - 1) / 2) p``.
- Complex tensors use the complex dtype matching the real dtype of the module's buffers.

**Angular-spectrum propagation** (Goodman, *Introduction to Fourier Optics*, 3rd ed., sec. 3.10):
a monochromatic scalar field ``U(x, y, 0)`` with angular spectrum ``A(fx, fy) = FFT[U]`` reaches
the plane ``z`` as ``U(x, y, z) = IFFT[A H]`` with the transfer function
``H = exp(i kz z)``, ``kz = 2 pi sqrt(1 / lambda^2 - fx^2 - fy^2)``. Components with
``fx^2 + fy^2 > 1 / lambda^2`` are evanescent; they are cut to zero (for ``z != 0``). This is
exact for the band-limited, periodic field the FFT represents, so the field must be zero-padded
(see :func:`pad_center`) so that light does not wrap around the window. Optionally the
transfer function is band-limited following Matsushima & Shimobaba, Opt. Express 17, 19662
(2009): frequencies with ``|fx| > 1 / (lambda sqrt((2 z / (W p))^2 + 1))`` (same for ``fy``) are
cut, which removes the aliasing of ``H`` at long distances (``z > W p^2 / lambda``) and changes
nothing at short ones.

**Thin lens** (Goodman sec. 5.1): transmission ``exp(-i pi (x^2 + y^2) / (lambda f))``.

**Mask resampling**: the image of a mask rotated, shifted and scaled relative to the beam, by
bilinear interpolation (:func:`torch.nn.functional.grid_sample`, ``align_corners=False`` so
that normalised coordinates refer to pixel *areas* and the grid centre is the rotation centre).
Points outside the mask read zero: a displaced SLM's active area moves with it, and light
falling beside it is blocked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from blacksat.errors import ConfigError, ShapeError


def _shape2(shape: int | Sequence[int]) -> tuple[int, int]:
    hw = (int(shape), int(shape)) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    if len(hw) != 2 or min(hw) < 1:
        raise ConfigError(f"grid shape must be a positive int or (H, W), got {shape!r}")
    return hw  # type: ignore[return-value]


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype matching a real one (float32 -> complex64, float64 -> complex128)."""
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def pixel_coordinates(shape: int | Sequence[int], pitch: float) -> tuple[np.ndarray, np.ndarray]:
    """Centred coordinates (metres) ``y (H, 1)`` and ``x (1, W)`` of the pixel centres."""
    h, w = _shape2(shape)
    y = (np.arange(h) - (h - 1) / 2.0)[:, None] * pitch
    x = (np.arange(w) - (w - 1) / 2.0)[None, :] * pitch
    return y, x


def transfer_function(
    shape: int | Sequence[int],
    pitch: float,
    wavelength: float,
    distance: float,
    *,
    band_limit: bool = True,
) -> np.ndarray:
    """Angular-spectrum transfer function ``H (H, W)`` (complex128, FFT frequency order).

    ``H = exp(i kz z)`` on propagating frequencies, 0 on evanescent ones (and outside the
    Matsushima band limit if ``band_limit``). ``distance == 0`` gives ``H = 1`` everywhere.
    ``distance`` may be negative (back-propagation).
    """
    h, w = _shape2(shape)
    pitch, wavelength = _positive("pitch", pitch), _positive("wavelength", wavelength)
    z = float(distance)
    if not math.isfinite(z):
        raise ConfigError(f"distance must be finite, got {distance!r}")
    if z == 0:
        return np.ones((h, w), dtype=np.complex128)
    fy = np.fft.fftfreq(h, d=pitch)[:, None]
    fx = np.fft.fftfreq(w, d=pitch)[None, :]
    arg = 1.0 / wavelength**2 - fx**2 - fy**2
    keep = arg > 0
    if band_limit:
        for f, n in ((fx, w), (fy, h)):
            limit = 1.0 / (wavelength * math.sqrt((2.0 * z / (n * pitch)) ** 2 + 1.0))
            keep = keep & (np.abs(f) <= limit)
    kz = 2.0 * np.pi * np.sqrt(np.clip(arg, 0.0, None))
    return np.where(keep, np.exp(1j * kz * z), 0.0).astype(np.complex128)


class AngularSpectrum(nn.Module):
    """Free-space propagation over ``distance`` by the angular-spectrum method.

    ``forward(field (..., H, W) complex) -> (..., H, W) complex``, batched over any leading
    axes. The transfer function is computed once in float64 and kept as two real buffers
    (``h_real``, ``h_imag``) so that ``.to(dtype)`` works; ``distance == 0`` returns the field
    unchanged (exactly).

    Args:
        shape: grid ``(H, W)`` (or ``n`` for ``n x n``), already zero-padded.
        pitch: sampling pitch (m).
        wavelength: vacuum wavelength (m).
        distance: propagation distance (m).
        band_limit: apply the Matsushima-Shimobaba band limit (see the module docstring).
    """

    h_real: torch.Tensor
    h_imag: torch.Tensor

    def __init__(
        self,
        shape: int | Sequence[int],
        pitch: float,
        wavelength: float,
        distance: float,
        *,
        band_limit: bool = True,
    ) -> None:
        super().__init__()
        self.shape = _shape2(shape)
        self.pitch, self.wavelength = float(pitch), float(wavelength)
        self.distance, self.band_limit = float(distance), bool(band_limit)
        tf = transfer_function(self.shape, pitch, wavelength, distance, band_limit=band_limit)
        self.register_buffer("h_real", torch.from_numpy(tf.real.copy()))
        self.register_buffer("h_imag", torch.from_numpy(tf.imag.copy()))

    def transfer(self) -> torch.Tensor:
        """The transfer function ``(H, W)`` as a complex tensor (FFT frequency order)."""
        return torch.complex(self.h_real, self.h_imag)

    def forward(self, field: torch.Tensor) -> torch.Tensor:
        if tuple(field.shape[-2:]) != self.shape:
            raise ShapeError(
                f"field must be (..., {self.shape[0]}, {self.shape[1]}), got {tuple(field.shape)}"
            )
        if self.distance == 0:
            return field
        spectrum = torch.fft.fft2(field)
        spectrum.mul_(self.transfer().to(spectrum.dtype))  # fresh tensor: in place is safe
        return torch.fft.ifft2(spectrum)

    def extra_repr(self) -> str:
        return (
            f"shape={self.shape}, pitch={self.pitch:.3g}, wavelength={self.wavelength:.4g}, "
            f"distance={self.distance:.4g}, band_limit={self.band_limit}"
        )


def lens_phase(
    shape: int | Sequence[int],
    pitch: float,
    wavelength: float,
    focal_length: float,
    *,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Phase ``(H, W)`` of a thin lens centred on the grid: ``-pi (x^2 + y^2) / (lambda f)``."""
    _positive("pitch", pitch)
    _positive("wavelength", wavelength)
    f = float(focal_length)
    if not math.isfinite(f) or f == 0:
        raise ConfigError(f"focal_length must be finite and nonzero, got {focal_length!r}")
    y, x = pixel_coordinates(shape, pitch)
    return torch.as_tensor(-np.pi * (x**2 + y**2) / (wavelength * f), dtype=dtype)


def thin_lens(
    shape: int | Sequence[int],
    pitch: float,
    wavelength: float,
    focal_length: float,
    *,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Complex transmission ``(H, W)`` of a thin lens, ``exp(-i pi (x^2 + y^2) / (lambda f))``."""
    phase = lens_phase(shape, pitch, wavelength, focal_length, dtype=dtype)
    return torch.polar(torch.ones_like(phase), phase)


def pad_center(field: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Zero-pad the last two axes ``(..., h, w)`` to ``(..., H, W)``, content centred.

    ``H - h`` and ``W - w`` must be even so that the content stays centred on the optical axis.
    """
    h, w = field.shape[-2:]
    big_h, big_w = _shape2(size)
    if (big_h - h) % 2 or (big_w - w) % 2 or big_h < h or big_w < w:
        raise ShapeError(
            f"cannot centre ({h}, {w}) in ({big_h}, {big_w}): need larger, same parity"
        )
    ph, pw = (big_h - h) // 2, (big_w - w) // 2
    if ph == pw == 0:
        return field
    return F.pad(field, (pw, pw, ph, ph))


def crop_center(field: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """The centred ``(..., h, w)`` window of ``(..., H, W)`` (inverse of :func:`pad_center`)."""
    h, w = _shape2(size)
    big_h, big_w = field.shape[-2:]
    if (big_h - h) % 2 or (big_w - w) % 2 or big_h < h or big_w < w:
        raise ShapeError(f"cannot crop ({h}, {w}) from ({big_h}, {big_w})")
    ph, pw = (big_h - h) // 2, (big_w - w) // 2
    return field[..., ph : ph + h, pw : pw + w]


def affine_resample(
    images: torch.Tensor,
    rotation: float | torch.Tensor = 0.0,
    shift: Sequence[float] | torch.Tensor = (0.0, 0.0),
    scale: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """The image of masks rotated, shifted and scaled about the grid centre (bilinear).

    A mask point at centred pixel coordinates ``p = (x, y)`` moves to ``q = s R(a) p + t``, so
    the output is ``out(q) = in(R(-a) (q - t) / s)``; outside the input reads 0.

    Args:
        images: ``(M, ..., H, W)`` real or complex (complex is resampled as real and imaginary
            parts), or ``(H, W)``.
        rotation: angle ``a`` in degrees, scalar or ``(M,)``; positive turns the mask
            counterclockwise as displayed (row 0 at the top), like ``numpy.rot90``.
        shift: ``t = (dx, dy)`` in pixels, ``(2,)`` or ``(M, 2)``; ``dx > 0`` moves the mask to
            larger column indices, ``dy > 0`` to larger row indices (like ``numpy.roll``).
        scale: magnification ``s > 0``, scalar or ``(M,)``.

    Scalars apply to every leading item; ``(M,)`` parameters to the ``M`` items of axis 0.
    Returns the same shape and dtype as ``images``; returns ``images`` itself (exactly) when
    every item has zero rotation and shift and unit scale, unless a transform requires a
    gradient (the identity transform is then resampled, so the gradient reaches it).
    """
    if images.ndim < 2:
        raise ShapeError(f"images must be (..., H, W), got {tuple(images.shape)}")
    real = images.real.dtype if images.is_complex() else images.dtype
    dev = images.device
    rot = torch.as_tensor(rotation, dtype=real, device=dev).reshape(-1)
    sh = torch.as_tensor(shift, dtype=real, device=dev).reshape(-1, 2)
    sc = torch.as_tensor(scale, dtype=real, device=dev).reshape(-1)
    m = max(rot.numel(), sh.shape[0], sc.numel())
    for name, n in (("rotation", rot.numel()), ("shift", sh.shape[0]), ("scale", sc.numel())):
        if n not in (1, m):
            raise ShapeError(f"{name} has {n} items, expected 1 or {m}")
    if m > 1 and (images.ndim < 3 or images.shape[0] != m):
        raise ShapeError(f"{m} transforms need images (M={m}, ..., H, W), got {images.shape}")
    learning = rot.requires_grad or sh.requires_grad or sc.requires_grad  # a grey-box fit
    if not learning and bool(torch.all(rot == 0) & torch.all(sh == 0) & torch.all(sc == 1)):
        return images
    if bool(torch.any(sc <= 0)):
        raise ConfigError("scale must be > 0")
    rot, sc, sh = rot.expand(m), sc.expand(m), sh.expand(m, 2)
    if images.is_complex():
        parts = torch.stack((images.real, images.imag), dim=-3)  # (..., 2, H, W)
        out = affine_resample(parts, rot, sh, sc)
        return torch.complex(out[..., 0, :, :], out[..., 1, :, :])
    h, w = images.shape[-2:]
    lead = images.shape[:-2]
    flat = images.reshape(m, -1, h, w)
    a = torch.deg2rad(rot)
    cos, sin = torch.cos(a), torch.sin(a)
    # inverse map in pixel units (x right, y down): p = R(-a) (q - t) / s,
    # R(a) = [[cos, sin], [-sin, cos]] turns counterclockwise as displayed.
    inv = torch.stack((torch.stack((cos, -sin), -1), torch.stack((sin, cos), -1)), -2)
    inv = inv / sc[:, None, None]
    # normalised coordinates (align_corners=False): x_n = x / (W / 2), y_n = y / (H / 2)
    d = torch.tensor([w / 2.0, h / 2.0], dtype=real, device=dev)
    lin = inv * d[None, None, :] / d[None, :, None]  # D^-1 A^-1 D
    off = -(inv @ sh[:, :, None])[..., 0] / d  # -D^-1 A^-1 t
    theta = torch.cat((lin, off[:, :, None]), dim=2)  # (m, 2, 3)
    grid = F.affine_grid(theta, [m, flat.shape[1], h, w], align_corners=False)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(*lead, h, w)


def gaussian_kernel1d(sigma: float, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Normalised 1-D Gaussian ``(2 r + 1,)``, ``r = max(1, ceil(3 sigma))``; ``[1]`` if 0."""
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma < 0:
        raise ConfigError(f"sigma must be finite and >= 0, got {sigma!r}")
    if sigma == 0:
        return torch.ones(1, dtype=dtype)
    r = max(1, math.ceil(3.0 * sigma))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return torch.as_tensor(k / k.sum(), dtype=dtype)


def separable_blur(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Blur ``(..., H, W)`` real by the separable kernel ``(k,)`` (odd), edges replicated."""
    k = kernel.numel()
    if k == 1:
        return images * kernel[0]
    h, w = images.shape[-2:]
    r = k // 2
    flat = images.reshape(-1, 1, h, w)
    kern = kernel.to(device=images.device, dtype=images.dtype)
    flat = F.conv2d(F.pad(flat, (r, r, 0, 0), mode="replicate"), kern.view(1, 1, 1, k))
    flat = F.conv2d(F.pad(flat, (0, 0, r, r), mode="replicate"), kern.view(1, 1, k, 1))
    return flat.reshape(images.shape)


__all__ = [
    "AngularSpectrum",
    "affine_resample",
    "complex_dtype",
    "crop_center",
    "gaussian_kernel1d",
    "lens_phase",
    "pad_center",
    "pixel_coordinates",
    "separable_blur",
    "thin_lens",
    "transfer_function",
]
