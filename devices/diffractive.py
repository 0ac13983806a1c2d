"""A diffractive optical network: phase-only SLM masks, free-space propagation, detector regions.

Optical path (Lin et al., Science 361, 1004 (2018); Zhou et al., Nat. Photonics 15, 367 (2021)):
a laser beam illuminates the input (an amplitude image ``x``), the field propagates a distance
``z_0`` to the first phase mask, each of the ``L`` masks multiplies the field by its complex
transmission and the field propagates ``z_l`` to the next mask, and after the last mask
``z_L`` to a camera where ``n_classes`` square detector regions integrate the intensity.
Propagation is the angular-spectrum method on a zero-padded grid (:mod:`.propagation`). Masks,
input and detectors share one grid of ``n x n`` pixels at the SLM pitch; every mask aperture is
the SLM active area (light falling beside it is blocked).

Per-pixel pipeline of one mask, from the control ``theta`` (the commanded phase, radians):

1. SLM look-up-table error (fabrication, per pixel): ``phi = theta (1 + e)``, ``e ~ N(0, s_lut^2)``.
2. Fringing-field crosstalk (hidden): the applied phase is smoothed by a Gaussian of ``crosstalk``
   pixels (the liquid crystal between pixels follows both neighbours; Persson et al.,
   Opt. Express 20, 22334 (2012)). The smoothing acts on the unwrapped phase, so a jump from
   near ``2 pi`` to near 0 passes through ``pi`` ("flyback"), as on a real LCoS.
3. Phase-amplitude coupling of LCoS (hidden): amplitude ``1 - a (1 - cos phi) / 2``.
4. Misalignment (an affine resampling of the mask, :func:`.propagation.affine_resample`): a static
   per-mask rotation / shift / scale drawn per chip, composed with the deployment nuisances
   (common to every mask): rotation angles add, shifts add, scales multiply.

Further hidden effects: a Gaussian illumination envelope ``exp(-illumination r^2 / R^2)`` on the
input amplitude (``R`` = half the aperture width, so the edge midpoints see ``exp(-illumination)``),
per-detector gain spread ``g_c ~ N(1, gain_spread^2)`` and a soft detector saturation
``y -> y / (1 + saturation y)`` (``y`` in units of the detector full scale).

Readings: energy of each region divided by ``FULL_SCALE_POWER * n^2``: a reading of 1 (the detector
full scale) is 5 % of the power of a unit-amplitude plane wave filling the aperture (about a fifth
of the power of a typical digit scaled to [0, 1]). Readings stay finite for input amplitudes up
to ~1e15 in float32 (beyond that the intensity itself overflows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from blacksat.devices.base import Nuisance, PhysicsModel, SimulatedDevice
from blacksat.devices.perturbations import rated_nuisances
from blacksat.devices.propagation import (
    AngularSpectrum,
    affine_resample,
    complex_dtype,
    crop_center,
    gaussian_kernel1d,
    pad_center,
    separable_blur,
)
from blacksat.errors import ConfigError, ShapeError
from blacksat.perturbations import PerturbationModel
from blacksat.space import ParamSpace
from blacksat.validation import check_int

FULL_SCALE_POWER = 0.05
"""Power in one detector region that reads 1.0 (full scale), relative to ``n^2`` (the power of
a unit-amplitude plane wave filling the ``n x n`` aperture)."""


def detector_layout(n: int, n_classes: int) -> list[tuple[int, int, int]]:
    """Square detector regions ``(row0, col0, size)`` in the ``n x n`` output window.

    ``r = round(sqrt(C))`` rows, centred; the counts per row differ by at most one, the longer
    rows in the middle (10 classes: 3-4-3, as in Lin et al. 2018). Centres are spaced
    ``s = n / max(r, longest row)`` apart around the grid centre (rounded to whole pixels,
    symmetrically); every square is ``s // 2`` pixels wide (one less if needed to match the
    parity of ``n``, so the layout is centred on the optical axis; neighbours stay at least
    ``s / 2`` apart). Regions are listed row by row,
    top to bottom, left to right: region ``c`` is class ``c``.
    """
    if n_classes < 1:
        raise ConfigError(f"n_classes must be >= 1, got {n_classes}")
    rows = max(1, round(math.sqrt(n_classes)))
    counts = [n_classes // rows] * rows
    order = sorted(range(rows), key=lambda i: (abs(i - (rows - 1) / 2), i))
    for i in order[: n_classes % rows]:
        counts[i] += 1
    spacing = n / max(rows, max(counts))
    size = int(spacing // 2)
    size -= (n - size) % 2  # same parity as n, so that a square can sit on the axis
    if size < 1:
        raise ConfigError(f"{n_classes} detector regions do not fit on a {n} x {n} grid")
    mid = (n - size) // 2

    def start(offset: float) -> int:  # rounded symmetrically about the optical axis
        return mid + int(math.copysign(math.floor(abs(offset) + 0.5), offset))

    out = []
    for i, count in enumerate(counts):
        for j in range(count):
            out.append(
                (
                    start((i - (rows - 1) / 2) * spacing),
                    start((j - (count - 1) / 2) * spacing),
                    size,
                )
            )
    return out


class DiffractivePhysics(PhysicsModel):
    """Differentiable diffractive network: ``thetas (K, L n n)``, ``x (B, n, n)`` -> ``(K, B, C)``.

    Configured by the fabrication errors and hidden-effect strengths (all buffers); all zero /
    off gives the nominal model. ``max_fields`` bounds how many ``N x N`` fields are held at
    once: ``K x B`` is processed in chunks of whole settings (or of inputs when ``B`` alone
    exceeds it), each chunk one tensor program.
    """

    max_fields: int = 512
    #: error parameters a grey-box fit identifies: the per-layer misalignment
    calibratable: tuple[str, ...] = ("align",)

    def __init__(
        self,
        *,
        n: int,
        n_layers: int,
        grid: int,
        pitch: float,
        wavelength: float,
        distances: Sequence[float],
        n_classes: int,
        lut_gain: np.ndarray,
        align: np.ndarray,
        nuisance: Sequence[float],
        crosstalk: float,
        phase_amplitude: float,
        illumination: float,
        gains: np.ndarray,
        saturation: float,
        band_limit: bool = True,
    ) -> None:
        super().__init__()
        self.n, self.n_layers, self.grid, self.n_classes = n, n_layers, grid, n_classes
        self.props = nn.ModuleList(
            AngularSpectrum(grid, pitch, wavelength, z, band_limit=band_limit) for z in distances
        )
        f64 = torch.float64
        self.register_buffer("lut_gain", torch.as_tensor(lut_gain, dtype=f64).reshape(-1, n, n))
        align = torch.as_tensor(align, dtype=f64).reshape(n_layers, 4)  # rot, dx, dy, scale
        self.register_buffer("align", align)
        self.register_buffer("nuisance", torch.as_tensor(nuisance, dtype=f64).reshape(4))
        self.register_buffer("blur", gaussian_kernel1d(crosstalk))
        self.register_buffer("phase_amplitude", torch.tensor(float(phase_amplitude), dtype=f64))
        y = (np.arange(n) - (n - 1) / 2) / (n / 2)
        r2 = y[:, None] ** 2 + y[None, :] ** 2
        self.register_buffer("envelope", torch.as_tensor(np.exp(-illumination * r2), dtype=f64))
        det = np.zeros((n, n, n_classes))
        for c, (r0, c0, size) in enumerate(detector_layout(n, n_classes)):
            det[r0 : r0 + size, c0 : c0 + size, c] = 1.0 / (FULL_SCALE_POWER * n * n)
        self.register_buffer("detectors", torch.as_tensor(det.reshape(n * n, n_classes)))
        self.register_buffer("gains", torch.as_tensor(gains, dtype=f64).reshape(n_classes))
        self.register_buffer("saturation", torch.tensor(float(saturation), dtype=f64))

    # ------------------------------------------------------------------ stages
    def transmission(self, thetas: torch.Tensor) -> torch.Tensor:
        """Complex transmission of every mask, ``thetas (K, L n n)`` -> ``(K, L, N, N)``."""
        n, L = self.n, self.n_layers
        phi = thetas.reshape(-1, L, n, n) * self.lut_gain
        phi = separable_blur(phi, self.blur)
        amp = 1.0 - self.phase_amplitude * (1.0 - torch.cos(phi)) / 2.0
        t = pad_center(torch.polar(amp, phi), self.grid)
        rot = self.align[:, 0] + self.nuisance[0]
        shift = self.align[:, 1:3] + self.nuisance[1:3]
        scale = self.align[:, 3] * self.nuisance[3]
        return affine_resample(t.transpose(0, 1), rot, shift, scale).transpose(0, 1)

    def input_field(self, x: torch.Tensor) -> torch.Tensor:
        """Field on the first mask, ``x (B, n, n)`` amplitudes -> ``(B, N, N)`` complex."""
        u = (x * self.envelope).to(complex_dtype(self.envelope.dtype))
        return self.props[0](pad_center(u, self.grid))

    def detect(self, field: torch.Tensor) -> torch.Tensor:
        """Detector readings, ``field (..., N, N)`` at the camera -> ``(..., C)``."""
        win = crop_center(field, self.n)
        intensity = (win.real**2 + win.imag**2).reshape(*win.shape[:-2], -1)
        y = (intensity @ self.detectors) * self.gains
        return y / (1.0 + self.saturation * y)

    def forward_many(self, thetas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``thetas (K, L n n)`` phases (rad), ``x (B, n, n)`` amplitudes -> ``(K, B, C)``."""
        ref = self.lut_gain  # dtype and device of the model
        thetas, x = torch.as_tensor(thetas).to(ref), torch.as_tensor(x).to(ref)
        n, L = self.n, self.n_layers
        if thetas.ndim != 2 or thetas.shape[1] != L * n * n:
            raise ShapeError(f"thetas must be (K, {L * n * n}), got {tuple(thetas.shape)}")
        if x.ndim != 3 or tuple(x.shape[1:]) != (n, n):
            raise ShapeError(f"x must be (B, {n}, {n}), got {tuple(x.shape)}")
        masks = self.transmission(thetas)  # (K, L, N, N)
        u0 = self.input_field(x)  # (B, N, N)
        k_all, b_all = masks.shape[0], u0.shape[0]
        kc = max(1, min(k_all, self.max_fields // b_all))
        bc = min(b_all, self.max_fields)
        inplace = not (torch.is_grad_enabled() and masks.requires_grad)
        rows = []
        for k0 in range(0, k_all, kc):
            cols = []
            for b0 in range(0, b_all, bc):
                m = masks[k0 : k0 + kc]
                u = u0[None, b0 : b0 + bc] * m[:, :1]
                for layer in range(1, L):
                    u = self.props[layer](u)
                    mask = m[:, layer : layer + 1]
                    u = u.mul_(mask) if inplace else u * mask  # in place: less memory traffic
                cols.append(self.detect(self.props[L](u)))
            rows.append(torch.cat(cols, dim=1))
        return torch.cat(rows, dim=0)


def _num(key: str, value: Any, lower: float = 0.0, strict: bool = False) -> float:
    """``value`` as a finite float ``>= lower`` (``> lower`` if ``strict``), else ConfigError."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key} must be a number, got {value!r}") from exc
    if not math.isfinite(v) or v < lower or (strict and v == lower):
        raise ConfigError(
            f"{key} must be a finite number {'>' if strict else '>='} {lower:g}, got {value!r}"
        )
    return v


def _int(key: str, value: Any, lower: int) -> int:
    return int(check_int(key, value, low=lower))


class DiffractiveNetwork(SimulatedDevice):
    """Simulated diffractive optical network with ``L`` phase-only SLM masks.

    Controls: the commanded phase of every pixel of every mask, ``theta (L n n,)`` in radians,
    mask-major then row-major (``theta.reshape(L, n, n)``), bounds ``[0, 2 pi (levels-1)/levels]``,
    snapped to ``levels`` equally spaced gray levels. Inputs: ``x (B, n, n)`` real amplitudes
    (a digit resized onto the grid; negative values act as a pi phase). Outputs: ``(B, n_classes)``
    detector readings, full scale 1 (see :func:`detector_layout` and the module docstring).

    The default grid is 32 x 32 so that a ``K = 64`` x ``B = 256`` batch runs in seconds on a CPU
    (64 x 64 padded fields, 2048 controls); 64 or 128 (the paper's size) work the same, at
    4x / 16x the cost. With 8 um pixels at 532 nm a pixel diffracts into +-lambda / (2 p) =
    +-33 mrad, i.e. +-8 pixels after the default 2 mm: neighbouring pixels mix while the light
    stays within the 2x zero padding (aperture Fresnel number (n p / 2)^2 / (lambda z) ~ 15,
    and z < N p^2 / lambda = 7.7 mm, so the transfer function is not aliased).

    The nominal model (:meth:`nominal_model`) is the ideal chain: no LUT or alignment error,
    no crosstalk, no phase-amplitude coupling, uniform illumination, ideal linear detectors and
    nominal nuisances. A simple error-parameter model would fit ``s_align`` / ``s_lut`` draws;
    crosstalk, phase-amplitude coupling, illumination, detector gain and saturation stay hidden.

    Args (defaults in brackets, chosen to be typical of an LCoS SLM + camera bench):
        n: SLM pixels per side [32]; n_layers: number of masks ``L`` [2].
        pitch: SLM pixel pitch (m) [8e-6, e.g. Holoeye PLUTO]; with ``n`` it sets the aperture
            ``n * pitch`` and how far each pixel's light spreads across it (:attr:`spreads`);
            wavelength (m) [532e-9];
            distance: ``z`` (m) between consecutive planes (input -> mask 1 -> ... -> mask L ->
            camera), one value or ``L + 1`` [2e-3].
        pad_factor: zero padding, grid side ``N = n + 2 ceil(n (pad_factor - 1) / 2)`` [2.0].
        n_classes: detector regions [10]; levels: SLM gray levels over ``[0, 2 pi)`` [256],
            a periodic control (period ``2 pi``: the last level neighbours the first).
        s_align: static misalignment per mask (pixels) [0.25, i.e. 2 um of assembly error]:
            shift ``N(0, s_align^2)`` per axis, rotation and scale errors moving the aperture
            edge by the same amount (``std = s_align / (n / 2)`` rad and relative scale).
        s_lut: per-pixel relative error of the SLM phase response [0.03].
        crosstalk: fringing-field blur of the applied phase, Gaussian sigma in pixels [0.4].
        phase_amplitude: LCoS phase-amplitude coupling ``a`` in ``[0, 1]`` [0.05].
        illumination: Gaussian illumination fall-off (module docstring) [0.3: the edge
            midpoints get 74 % of the central amplitude, a beam waist of ~1.8 x the half-width].
        saturation: detector compression at full scale, ``y / (1 + saturation y)`` [0.05].
        gain_spread: relative std of the per-detector gains [0.03].
        seed, noise, drift, drift_time, dtype: see :class:`SimulatedDevice`; noise relative to
            full scale 1 [0.005, about one 8-bit camera count], drift in radians of phase
            [0.01, LCoS phase flicker / thermal drift]; dtype also accepts "float32"/"float64".
        rotation, shift_x, shift_y, scale: deployment misalignment common to every mask
            (:attr:`nuisances`), [0, 0, 0, 1].
    """

    name: ClassVar[str] = "diffractive"
    output_kind: ClassVar[str] = "power"  # detected optical powers
    full_scale: float = 1.0
    nuisances: ClassVar[tuple[Nuisance, ...]] = (
        Nuisance(
            "rotation",
            0.0,
            (-2.0, 2.0),
            "deg",
            "rotation of every mask about the optical axis, counterclockwise as displayed",
        ),
        Nuisance("shift_x", 0.0, (-2.0, 2.0), "px", "shift of every mask along columns"),
        Nuisance("shift_y", 0.0, (-2.0, 2.0), "px", "shift of every mask along rows"),
        Nuisance("scale", 1.0, (0.9, 1.1), "ratio", "magnification of every mask's image"),
    )

    def __init__(
        self,
        *,
        n: int = 32,
        n_layers: int = 2,
        pitch: float = 8e-6,
        wavelength: float = 532e-9,
        distance: float | Sequence[float] = 2e-3,
        pad_factor: float = 2.0,
        n_classes: int = 10,
        levels: int = 256,
        s_align: float = 0.25,
        s_lut: float = 0.03,
        crosstalk: float = 0.4,
        phase_amplitude: float = 0.05,
        illumination: float = 0.3,
        saturation: float = 0.05,
        gain_spread: float = 0.03,
        seed: int = 0,
        noise: float = 0.005,
        drift: float = 0.01,
        drift_time: float = 1000.0,
        dtype: torch.dtype | str = torch.float32,
        torch_device: torch.device | str = "cpu",
        **nuisance: float,
    ) -> None:
        self.n, self.n_layers = _int("n", n, 4), _int("n_layers", n_layers, 1)
        self.n_classes, self.levels = _int("n_classes", n_classes, 1), _int("levels", levels, 2)
        self.pitch, self.wavelength = (
            _num("pitch", pitch, 0.0, True),
            _num("wavelength", wavelength, 0.0, True),
        )
        self.pad_factor = _num("pad_factor", pad_factor, 1.0)
        try:
            dist = np.atleast_1d(np.asarray(distance, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"distance must be numeric, got {distance!r}") from exc
        if dist.size == 1:
            dist = np.full(self.n_layers + 1, dist[0])
        if dist.shape != (self.n_layers + 1,) or not np.all(np.isfinite(dist) & (dist >= 0)):
            raise ConfigError(
                f"distance must be one value or {self.n_layers + 1} finite values "
                f">= 0 (m), got {distance!r}"
            )
        self.distances = tuple(float(z) for z in dist)
        self.s_align, self.s_lut = _num("s_align", s_align), _num("s_lut", s_lut)
        self.crosstalk = _num("crosstalk", crosstalk)
        self.phase_amplitude = _num("phase_amplitude", phase_amplitude)
        self.illumination = _num("illumination", illumination)
        self.saturation, self.gain_spread = (
            _num("saturation", saturation),
            _num("gain_spread", gain_spread),
        )
        if self.phase_amplitude > 1:
            raise ConfigError(f"phase_amplitude must be in [0, 1], got {phase_amplitude!r}")
        if self.crosstalk > self.n / 4:
            raise ConfigError(f"crosstalk sigma {crosstalk!r} px is implausibly wide for n={n}")
        _num("nuisance scale", nuisance.get("scale", 1.0), 0.0, True)
        detector_layout(self.n, self.n_classes)  # raises if the regions do not fit
        self.grid = self.n + 2 * math.ceil(self.n * (self.pad_factor - 1) / 2)
        step = 2 * np.pi / self.levels
        self._space = ParamSpace.box(
            self.n_layers * self.n * self.n,
            0.0,
            step * (self.levels - 1),
            levels=np.arange(self.levels) * step,
            periodic=2 * np.pi,  # the levels cover a full period: level L - 1 neighbours 0
        )
        super().__init__(
            seed=seed,
            noise=noise,
            drift=drift,
            drift_time=drift_time,
            dtype=dtype,
            torch_device=torch_device,
            **nuisance,
        )

    # ------------------------------------------------------------------ spec
    @property
    def space(self) -> ParamSpace:
        return self._space

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.n, self.n)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.n_classes,)

    # ------------------------------------------------------------------ units
    @property
    def aperture(self) -> float:
        """Side of the SLM aperture (m): ``n * pitch``."""
        return self.n * self.pitch

    @property
    def fresnel_numbers(self) -> tuple[float, ...]:
        """Fresnel number ``(aperture / 2)^2 / (wavelength z)`` of each gap between planes
        (``L + 1`` values): the aperture against the scale of diffraction over the gap. The
        default 32 px at 8 um and 2 mm gives about 15, as does the paper's 128 px at 2 um; 128 px
        at 8 um gives 246. See :attr:`spreads` for how far each pixel's light reaches."""
        half = self.aperture / 2.0
        return tuple(half * half / (self.wavelength * z) for z in self.distances)

    @property
    def spreads(self) -> tuple[float, ...]:
        """How far one pixel's light reaches at the next plane, as a share of the aperture, for
        each gap (``L + 1`` values): the grid carries spatial frequencies up to ``1 / (2
        pitch)``, so light leaves a pixel within ``sin a = wavelength / (2 pitch)`` and covers
        ``wavelength z / pitch`` after ``z``; divided by the aperture, ``wavelength z / (n
        pitch^2)``. Where it is small the masks hardly mix the field: plain backprop on the
        nominal model reached 61-69 % of digits at 0.13 and 94-95 % from 0.5 to 2.1 (BENCHMARKS.md,
        "pixels or aperture"). The default 32 px at 8 um and 2 mm gives 0.52; the paper's 128 px
        at 2 um 2.1; 128 px at the default 8 um only 0.13. To add pixels at a fixed aperture,
        shrink the pitch: ``DiffractiveNetwork(n=128, pitch=2e-6)``."""
        return tuple(self.wavelength * z / (self.n * self.pitch**2) for z in self.distances)

    def pixels(self, *, fraction: float | None = None, meters: float | None = None) -> float:
        """A lateral length in pixels of this SLM, from a fraction of the aperture side or from
        metres (exactly one): how a misalignment stated for another geometry reads here, e.g.
        the paper's 2 px shift of a 128 px aperture is ``pixels(fraction=2 / 128)``."""
        if (fraction is None) == (meters is None):
            raise ConfigError("give exactly one of fraction= (of the aperture) or meters=")
        value = float(fraction if fraction is not None else meters)  # type: ignore[arg-type]
        if not math.isfinite(value):
            raise ConfigError(f"a length must be finite, got {value!r}")
        return value * self.n if fraction is not None else value / self.pitch

    def misalignment(self, **nuisance: float) -> dict[str, dict[str, float]]:
        """Misalignment values (default: this device's) in every unit they are stated in:
        shifts in pixels, metres and fraction of the aperture; rotation in degrees and as the
        arc it moves an aperture corner (pixels); scale as a ratio and as the movement of the
        aperture edge (pixels)."""
        values = {**self.nuisance_values, **nuisance}
        half = self.n / 2
        out: dict[str, dict[str, float]] = {}
        for axis in ("shift_x", "shift_y"):
            px = float(values[axis])
            out[axis] = {"px": px, "m": px * self.pitch, "aperture_fraction": px / self.n}
        rot = float(values["rotation"])
        out["rotation"] = {"deg": rot, "corner_px": math.radians(abs(rot)) * half * math.sqrt(2)}
        sc = float(values["scale"])
        out["scale"] = {"ratio": sc, "edge_px": abs(sc - 1.0) * half}
        return out

    def bytes_per_setting(self, batch: int) -> int:
        """The setting's complex masks on the padded grid (a few buffers per layer); the
        fields of the ``batch`` inputs are bounded separately, ``max_fields`` at a time."""
        return 4 * 16 * self.n_layers * self.grid * self.grid + 8 * batch * (self.n_classes + 1)

    def config(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "n_layers": self.n_layers,
            "pitch": self.pitch,
            "wavelength": self.wavelength,
            "distance": list(self.distances),
            "pad_factor": self.pad_factor,
            "n_classes": self.n_classes,
            "levels": self.levels,
            "s_align": self.s_align,
            "s_lut": self.s_lut,
            "crosstalk": self.crosstalk,
            "phase_amplitude": self.phase_amplitude,
            "illumination": self.illumination,
            "saturation": self.saturation,
            "gain_spread": self.gain_spread,
            **self.shared_config(),
        }

    # ------------------------------------------------------------------ physics
    def _physics(self, **kw: Any) -> DiffractivePhysics:
        return DiffractivePhysics(
            n=self.n,
            n_layers=self.n_layers,
            grid=self.grid,
            pitch=self.pitch,
            wavelength=self.wavelength,
            distances=self.distances,
            n_classes=self.n_classes,
            **kw,
        )

    def _build_truth(self, rng: np.random.Generator) -> DiffractivePhysics:
        L, n, C = self.n_layers, self.n, self.n_classes
        # fixed draw order: misalignment (L, 4), LUT errors (L, n, n), detector gains (C,)
        z_align = rng.standard_normal((L, 4))
        z_lut = rng.standard_normal((L, n, n))
        z_gain = rng.standard_normal(C)
        edge = self.s_align / (n / 2)  # rotation (rad) / relative scale moving the edge s_align px
        align = np.stack(
            [
                np.degrees(edge * z_align[:, 0]),
                self.s_align * z_align[:, 1],
                self.s_align * z_align[:, 2],
                np.clip(1 + edge * z_align[:, 3], 0.5, 2.0),
            ],
            axis=1,
        )
        nv = self.nuisance_values
        return self._physics(
            lut_gain=np.clip(1.0 + self.s_lut * z_lut, 0.0, None),
            align=align,
            nuisance=(nv["rotation"], nv["shift_x"], nv["shift_y"], nv["scale"]),
            crosstalk=self.crosstalk,
            phase_amplitude=self.phase_amplitude,
            illumination=self.illumination,
            gains=np.clip(1.0 + self.gain_spread * z_gain, 0.05, None),
            saturation=self.saturation,
        )

    def _build_nominal(
        self, rotation: float = 0.0, shift_x: float = 0.0, shift_y: float = 0.0, scale: float = 1.0
    ) -> DiffractivePhysics:
        L, n, C = self.n_layers, self.n, self.n_classes
        _num("nuisance scale", scale, 0.0, True)
        align = np.tile(np.array([0.0, 0.0, 0.0, 1.0]), (L, 1))
        return self._physics(
            lut_gain=np.ones((L, n, n)),
            align=align,
            nuisance=(rotation, shift_x, shift_y, scale),
            crosstalk=0.0,
            phase_amplitude=0.0,
            illumination=0.0,
            gains=np.ones(C),
            saturation=0.0,
        )

    def perturbation_models(self) -> dict[str, PerturbationModel]:
        """Misalignment of the masks, over the rated ranges
        (:class:`~blacksat.perturbations.NuisanceModel`, finite-difference adversary; the
        nominal model resamples the masks like the truth: ``nominal_model(rotation=1.0)``):
        ``"misalignment"`` (rotation, shift_x, shift_y and scale together), and each alone:
        ``"rotation"``, ``"shift"`` (both axes), ``"scale"``.
        """
        return {
            "misalignment": rated_nuisances(self),
            "rotation": rated_nuisances(self, "rotation"),
            "shift": rated_nuisances(self, "shift_x", "shift_y"),
            "scale": rated_nuisances(self, "scale"),
        }


__all__ = ["FULL_SCALE_POWER", "DiffractiveNetwork", "DiffractivePhysics", "detector_layout"]
