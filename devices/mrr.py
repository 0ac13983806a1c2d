"""Micro-ring resonator (MRR) weight banks: a simulated optoelectronic network.

Physics
-------
A weight bank is a set of add-drop micro-rings on bus waveguides (Tait et al., "Microring weight
banks", IEEE JSTQE 22, 2016; Tait et al., Sci. Rep. 7, 7430, 2017). Input ``i`` is an optical
power on its own wavelength; row ``o`` of a bank is one bus carrying every input past one ring
per wavelength, and a balanced photodetector subtracts the drop port from the through port. With
the normalized detuning ``delta = u / gamma`` of a ring from its wavelength, the Lorentzian drop
and through responses (Bogaerts et al., Laser Photonics Rev. 6, 47, 2012) are
``D = 1 / (1 + delta^2)``, ``T = 1 - D``, so the balanced weight is the paper model (Xu et al.,
arXiv 2411.12352)

    w = T - D = 1 - 2 / (1 + ((x - x0) / gamma)^2)   in [-1, 1),

``-1`` on resonance, ``w = 0`` at ``|x - x0| = gamma`` (the dip's FWHM is ``2 gamma``), ``-> +1``
far off. Each bank computes ``y = W x`` (photocurrents in units of input power); between banks an
O/E/O stage (photocurrent -> gain -> modulator) applies ``h = f(g * y)`` (``activation``).

Controls and units
------------------
One control per ring, ``x in [-1, 1]``: the heater drive in detuning units, linearized at the
bias point; in the nominal model ``x = 0`` is on resonance and the detuning is ``u = x``. Layout:
bank 0's ``(n1, n0)`` matrix row-major, then bank 1's ``(n2, n1)``, ... (:meth:`split_controls`).
Inputs ``x (B, n_in)`` are optical powers, meant to be >= 0 (features scaled into [0, 1]);
negative values are not rejected and simply propagate through the linear algebra.

The true chip (all hidden from the nominal model)
-------------------------------------------------
true detuning of ring ``(o, i)`` of a bank (rows are buses, columns neighbouring rings)::

    u_oi = q(x_oi) - x0_oi + 0.08 dT + kappa * sum_j C_ij q(x_oj),   q(x) = x + a x^2

- fabrication: resonance offsets ``x0 ~ N(0, offset^2)`` (0.08: the PAT baseline) and linewidths
  ``gamma_oi = gamma (1 + N(0, linewidth_spread^2))``;
- heater law (``heater_nonlinearity`` = a): heater power ``P = I^2 R`` with the drive
  ``I = I0 (1 + 2 a x)``, so the power change from the bias, normalized to unit slope, is
  ``q(x) = x + a x^2``: curves are asymmetric and wider on one side (PHYSICS.md: the measured
  chip's "heater phase ~ I^2"). Default 0.25 = ``x = +-1`` spans ``I0 +- I0/2`` (e.g. 4 +- 2 mA);
- thermal crosstalk (``crosstalk`` = kappa): heat of the neighbouring heaters on the same bus
  shifts a ring in proportion to *their power* change ``q(x_j)`` (quadratic in their currents),
  with ``C_ij = 0.3^(|i-j|-1)`` for ``1 <= |i-j| <= 3``, zero otherwise (Tait et al., "Feedback
  control for microring weight banks", Opt. Express 26, 26422, 2018);
- finite extinction and loss imbalance (``imbalance`` = eps): the through port keeps a floor
  ``eps`` on resonance, the drop port peaks at ``1 - eps``, and each ring's through/drop paths
  have their own transmissions ``t_T = 1 + eps z``, ``t_D = (1 - eps)(1 + eps z')``:
  ``w = t_T (1 - (1 - eps) L) - t_D (1 - eps) L``, ``L = 1 / (1 + delta^2)`` (never exactly -1,
  offset far from resonance);
- detector saturation (``saturation`` = s): each photodiode of the balanced pair compresses,
  ``S(I) = (n / s) tanh(s I / n)`` with ``n`` the bank's fan-in (``s^2 / 3`` compression at the
  full-scale current ``n``), and the reading is ``S(I_T) - S(I_D)``;
- ambient temperature (nuisance ``temperature`` dT, K): every resonance moves by 0.08 / K
  (80 pm/K), ``x -> x + 0.08 dT``, common to every ring;
- readout noise and slow control drift come from :class:`SimulatedDevice`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike

from blacksat.devices.base import Nuisance, PhysicsModel, SimulatedDevice
from blacksat.devices.perturbations import rated_extent
from blacksat.errors import ConfigError, ShapeError
from blacksat.perturbations import CommonMode, PerControl, PerturbationModel
from blacksat.space import ParamSpace

TEMPERATURE_SHIFT = 0.08
"""Resonance shift per kelvin, in control units (80 pm/K)."""
CROSSTALK_DECAY = 0.3
"""Ratio of the thermal coupling to the ring two places away vs the adjacent one."""
CROSSTALK_REACH = 3
"""Farthest neighbour (in ring positions along a bus) that a heater still couples to."""
SOFTPLUS_BETA = 10.0
"""Sharpness of the ``softplus`` O/E/O response ``softplus(beta z) / beta``."""
ACTIVATIONS = ("relu", "softplus", "sigmoid")


def _activate(z: torch.Tensor, name: str) -> torch.Tensor:
    """O/E/O response: photocurrent (times gain) -> optical power driving the next bank."""
    if name == "relu":
        return torch.relu(z)
    if name == "softplus":
        return F.softplus(z, beta=SOFTPLUS_BETA)
    return torch.sigmoid(z)  # a modulator saturating at its full optical power


class MRRPhysics(PhysicsModel):
    """Differentiable physics of a network of MRR weight banks (see the module docstring).

    ``forward_many(thetas (K, d), x (B, n_in)) -> (K, B, n_out)``. Per-ring quantities are flat
    buffers of shape ``(d,)`` in control order; scalars are 0-d buffers.

    Args:
        layer_sizes: ``(n_0, ..., n_L)``; bank ``l`` maps ``n_l`` inputs to ``n_{l+1}`` outputs.
        linewidth: nominal half width ``gamma`` (control units).
        offsets, gammas, t_thru, t_drop: per-ring resonance offset, half width, through and drop
            path transmissions, each ``(d,)``; ``None`` = nominal (0, ``linewidth``, 1, 1).
        extinction: through-port floor ``eps`` on resonance (drop peak ``1 - eps``).
        heater_nonlinearity, crosstalk, saturation, temperature: see the module docstring.
        activation, gains: O/E/O response and the gain before it, one gain per inner layer.
    """

    #: error parameters a grey-box fit identifies: per-ring resonance offsets and linewidths
    calibratable: tuple[str, ...] = ("offsets", "gammas")

    def __init__(
        self,
        layer_sizes: Sequence[int],
        *,
        linewidth: float,
        activation: str,
        gains: Sequence[float],
        offsets: torch.Tensor | None = None,
        gammas: torch.Tensor | None = None,
        t_thru: torch.Tensor | None = None,
        t_drop: torch.Tensor | None = None,
        extinction: float = 0.0,
        heater_nonlinearity: float = 0.0,
        crosstalk: float = 0.0,
        saturation: float = 0.0,
        temperature: float = 0.0,
    ) -> None:
        super().__init__()
        self.layer_sizes = tuple(int(n) for n in layer_sizes)
        self.activation = activation
        sizes = [(o, i) for i, o in itertools.pairwise(self.layer_sizes)]
        self.bank_shapes: tuple[tuple[int, int], ...] = tuple(sizes)
        self.dim = sum(o * i for o, i in sizes)
        d = self.dim

        def vec(v: torch.Tensor | None, fill: float) -> torch.Tensor:
            if v is None:
                return torch.full((d,), float(fill), dtype=torch.float64)
            return torch.as_tensor(v, dtype=torch.float64).reshape(d).clone()

        self.register_buffer("offsets", vec(offsets, 0.0))
        self.register_buffer("gammas", vec(gammas, linewidth))
        self.register_buffer("t_thru", vec(t_thru, 1.0))
        self.register_buffer("t_drop", vec(t_drop, 1.0))
        self.register_buffer("gains", torch.tensor([float(g) for g in gains], dtype=torch.float64))
        for name, value in (
            ("extinction", extinction),
            ("heater_nonlinearity", heater_nonlinearity),
            ("crosstalk", crosstalk),
            ("saturation", saturation),
            ("temperature", temperature),
        ):
            self.register_buffer(name, torch.tensor(float(value), dtype=torch.float64))
        # Static structure, not state: branch only on these Python values.
        self._saturating = float(saturation) > 0
        self._coupled = float(crosstalk) != 0

    # ------------------------------------------------------------------ rings
    def _ring_slices(self) -> list[slice]:
        out, start = [], 0
        for o, i in self.bank_shapes:
            out.append(slice(start, start + o * i))
            start += o * i
        return out

    def _crosstalk(self, q: torch.Tensor) -> torch.Tensor:
        """``sum_j C_ij q_j`` along the last axis (rings on one bus), ``(..., n)`` -> same."""
        out = torch.zeros_like(q)
        for r in range(1, min(CROSSTALK_REACH, q.shape[-1] - 1) + 1):
            from_left = F.pad(q[..., :-r], (r, 0))  # ring i feels ring i - r
            from_right = F.pad(q[..., r:], (0, r))  # ring i feels ring i + r
            out = out + CROSSTALK_DECAY ** (r - 1) * (from_left + from_right)
        return out

    def transmissions(self, thetas: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Effective through/drop power transmissions of every ring, per bank.

        ``thetas (K, d)`` -> list over banks of ``(T, D)``, each ``(K, n_out, n_in)``: the
        fraction of input ``i`` reaching the through / drop photodiode of row ``o`` (path
        transmissions included). The small-signal weight is ``T - D``.
        """
        dt = self.offsets.dtype
        thetas = torch.as_tensor(thetas).to(dt)
        a, eps = self.heater_nonlinearity, self.extinction
        out = []
        for (o, i), sl in zip(self.bank_shapes, self._ring_slices(), strict=True):
            x = thetas[:, sl].reshape(-1, o, i)
            q = x + a * x * x
            u = q - self.offsets[sl].reshape(o, i) + TEMPERATURE_SHIFT * self.temperature
            if self._coupled:
                u = u + self.crosstalk * self._crosstalk(q)
            delta = u / self.gammas[sl].reshape(o, i)
            lor = (1.0 - eps) / (1.0 + delta * delta)
            out.append(
                (self.t_thru[sl].reshape(o, i) * (1.0 - lor), self.t_drop[sl].reshape(o, i) * lor)
            )
        return out

    def weights(self, thetas: torch.Tensor) -> list[torch.Tensor]:
        """Small-signal weight matrices: ``thetas (K, d)`` -> list of ``(K, n_out, n_in)``."""
        return [t - dr for t, dr in self.transmissions(thetas)]

    # ------------------------------------------------------------------ network
    def forward_many(self, thetas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``thetas (K, d)``, ``x (B, n_in)`` -> balanced photocurrents ``(K, B, n_out)``.

        ``x`` may also be ``(K, B, n_in)``: its own batch of inputs for each setting.
        """
        dt = self.offsets.dtype
        thetas = torch.as_tensor(thetas).to(dt)
        if thetas.ndim != 2 or thetas.shape[1] != self.dim:
            raise ShapeError(f"thetas must be (K, {self.dim}), got {tuple(thetas.shape)}")
        h = torch.as_tensor(x).to(dt)  # (B, n_in) or (K, B, n_in), then (K, B, n_l)
        if h.ndim not in (2, 3) or h.shape[-1] != self.layer_sizes[0]:
            raise ShapeError(f"x must be (B, {self.layer_sizes[0]}), got {tuple(h.shape)}")
        banks = self.transmissions(thetas)
        for layer, (t, dr) in enumerate(banks):
            n = t.shape[-1]
            if self._saturating:
                s = self.saturation
                both = torch.matmul(h, torch.cat([t, dr], dim=1).transpose(1, 2))
                cur = (n / s) * torch.tanh((s / n) * both)
                y = cur[..., : t.shape[1]] - cur[..., t.shape[1] :]
            else:
                y = torch.matmul(h, (t - dr).transpose(1, 2))
            if layer + 1 < len(banks):
                h = _activate(self.gains[layer] * y, self.activation)
            else:
                h = y
        return h


class MRRWeightBank(SimulatedDevice):
    """A network of micro-ring weight banks, one ring (one control) per weight.

    ``query(theta (d,), x (B, n_in)) -> (B, n_out)``; ``query_many(thetas (K, d), x) ->
    (K, B, n_out)``; ``d = sum_l n_l n_{l+1}`` (2368 for the default ``(64, 32, 10)``).
    Controls in ``[-1, 1]`` (detuning units, ``x = 0`` on the nominal resonance).

    Args:
        layer_sizes: ``(n_in, ..., n_out)``; ``(n_in, n_out)`` is a single bank.
        linewidth: nominal half width ``gamma`` of every resonance (paper model 0.15).
        offset: std of the per-ring resonance offsets (PAT baseline 0.08).
        linewidth_spread: relative std of the per-ring linewidths (0.05).
        crosstalk: hidden thermal crosstalk ``kappa`` to the adjacent ring (0.03).
        imbalance: hidden finite extinction / through-drop loss imbalance ``eps`` (0.03,
            a 15 dB extinction ratio and 3 % path mismatch).
        heater_nonlinearity: hidden quadratic heater law ``a`` in ``q(x) = x + a x^2``
            (0.25; must be <= 0.5 so the heater current stays >= 0 over the range).
        saturation: hidden photodiode compression ``s`` (0.3: 3 % at full scale).
        activation: O/E/O response between banks: "softplus" (default, a smooth ReLU),
            "relu" or "sigmoid" (a modulator saturating at full power).
        oeo_gain: gain ``g`` of the O/E/O stage, ``h = f(g y)``; None = ``1 / sqrt(n)`` with
            ``n`` the fan-in of the bank producing ``y``.
        seed, noise, drift, drift_time, dtype: see :class:`SimulatedDevice` (noise is relative
            to ``full_scale`` = fan-in of the last bank; ``dtype`` also takes "float32" /
            "float64").
        temperature: nuisance, ambient temperature change in K (rated -2..2).
    """

    name: ClassVar[str] = "mrr"
    output_kind: ClassVar[str] = "signed"  # balanced photocurrents
    nuisances: ClassVar[tuple[Nuisance, ...]] = (
        Nuisance(
            "temperature",
            0.0,
            (-2.0, 2.0),
            "K",
            "ambient temperature change: every resonance shifts by 0.08 control units per K "
            "(80 pm/K), x -> x + 0.08 dT",
        ),
    )
    full_scale: float = 32.0  # fan-in of the last default bank; each instance sets its own

    def __init__(
        self,
        *,
        layer_sizes: Sequence[int] = (64, 32, 10),
        linewidth: float = 0.15,
        offset: float = 0.08,
        linewidth_spread: float = 0.05,
        crosstalk: float = 0.03,
        imbalance: float = 0.03,
        heater_nonlinearity: float = 0.25,
        saturation: float = 0.3,
        activation: str = "softplus",
        oeo_gain: float | None = None,
        seed: int = 0,
        noise: float = 0.005,
        drift: float = 0.002,
        drift_time: float = 1000.0,
        dtype: torch.dtype | str = torch.float32,
        torch_device: torch.device | str = "cpu",
        **nuisance: float,
    ) -> None:
        try:
            sizes = tuple(int(n) for n in layer_sizes)
            ok = len(sizes) >= 2 and all(int(n) == n and n >= 1 for n in layer_sizes)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(
                f"layer_sizes must be a sequence of >= 2 positive integers, got {layer_sizes!r}"
            )
        self.layer_sizes = sizes
        self.linewidth = _check("linewidth", linewidth, lo=0.0, lo_open=True, hi=10.0)
        self.offset = _check("offset", offset)
        self.linewidth_spread = _check("linewidth_spread", linewidth_spread, hi=0.5)
        self.crosstalk = _check("crosstalk", crosstalk, hi=1.0)
        self.imbalance = _check("imbalance", imbalance, hi=0.5)
        self.heater_nonlinearity = _check("heater_nonlinearity", heater_nonlinearity, hi=0.5)
        self.saturation = _check("saturation", saturation, hi=10.0)
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.oeo_gain = (
            None if oeo_gain is None else _check("oeo_gain", oeo_gain, lo=0.0, lo_open=True, hi=1e6)
        )
        d = sum(a * b for a, b in itertools.pairwise(sizes))
        names = [
            f"b{layer}[{o},{i}]"
            for layer, (n_i, n_o) in enumerate(itertools.pairwise(sizes))
            for o in range(n_o)
            for i in range(n_i)
        ]
        self._space = ParamSpace.box(d, -1.0, 1.0, names=names)
        self.full_scale = float(sizes[-2])
        super().__init__(
            seed=seed,
            noise=noise,
            drift=drift,
            drift_time=drift_time,
            dtype=dtype,
            torch_device=torch_device,
            **nuisance,
        )

    def initial_controls(self, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Rings near the half-depth point ``x = gamma`` (``w ~ 0``, steepest slope), with a 20 %
        seeded spread: the box center ``x = 0`` sits on resonance, where ``dw/dx = 0`` and
        gradient training cannot start."""
        gen = np.random.default_rng(rng)
        x = self.linewidth * (1.0 + 0.2 * gen.standard_normal(self.space.dim))
        return np.clip(x, self.space.lower, self.space.upper)

    # ------------------------------------------------------------------ spec
    @property
    def space(self) -> ParamSpace:
        """``d`` controls in ``[-1, 1]`` (detuning units)."""
        return self._space

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.layer_sizes[0],)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.layer_sizes[-1],)

    @property
    def weight_banks(self) -> tuple[tuple[int, int], ...]:
        """The wiring (:mod:`blacksat.layered_response`): one ``(n_out, n_in)`` bank per layer, a
        ring (one control) per weight, in control order."""
        return tuple((n_o, n_i) for n_i, n_o in itertools.pairwise(self.layer_sizes))

    @property
    def gains(self) -> tuple[float, ...]:
        """O/E/O gain after each inner bank, ``len(layer_sizes) - 2`` values."""
        if self.oeo_gain is not None:
            return tuple(self.oeo_gain for _ in self.layer_sizes[1:-1])
        return tuple(1.0 / math.sqrt(n) for n in self.layer_sizes[:-2])

    def split_controls(self, theta: ArrayLike) -> list[np.ndarray]:
        """``theta (d,)`` or ``(K, d)`` -> per bank ``(n_out, n_in)`` or ``(K, n_out, n_in)``."""
        arr = np.asarray(theta, dtype=np.float64)
        if arr.shape[-1:] != (self.space.dim,) or arr.ndim > 2:
            raise ShapeError(f"expected (d,) or (K, d) with d = {self.space.dim}, got {arr.shape}")
        out, start = [], 0
        for n_i, n_o in itertools.pairwise(self.layer_sizes):
            out.append(arr[..., start : start + n_o * n_i].reshape(*arr.shape[:-1], n_o, n_i))
            start += n_o * n_i
        return out

    def config(self) -> dict[str, Any]:
        return {
            "layer_sizes": list(self.layer_sizes),
            "linewidth": self.linewidth,
            "offset": self.offset,
            "linewidth_spread": self.linewidth_spread,
            "crosstalk": self.crosstalk,
            "imbalance": self.imbalance,
            "heater_nonlinearity": self.heater_nonlinearity,
            "saturation": self.saturation,
            "activation": self.activation,
            "oeo_gain": self.oeo_gain,
            **self.shared_config(),
        }

    # ------------------------------------------------------------------ physics
    def _build_truth(self, rng: np.random.Generator) -> PhysicsModel:
        d = self.space.dim
        # Fixed draw order (independent of the levels, so a chip keeps its identity).
        z_offset = rng.standard_normal(d)
        z_width = rng.standard_normal(d)
        z_thru = rng.standard_normal(d)
        z_drop = rng.standard_normal(d)
        eps = self.imbalance
        gammas = self.linewidth * np.maximum(1.0 + self.linewidth_spread * z_width, 0.25)
        return MRRPhysics(
            self.layer_sizes,
            linewidth=self.linewidth,
            activation=self.activation,
            gains=self.gains,
            offsets=torch.as_tensor(self.offset * z_offset),
            gammas=torch.as_tensor(gammas),
            t_thru=torch.as_tensor(1.0 + eps * z_thru),
            t_drop=torch.as_tensor((1.0 - eps) * (1.0 + eps * z_drop)),
            extinction=eps,
            heater_nonlinearity=self.heater_nonlinearity,
            crosstalk=self.crosstalk,
            saturation=self.saturation,
            temperature=self.nuisance_values["temperature"],
        )

    def _build_nominal(self, temperature: float = 0.0) -> PhysicsModel:
        return MRRPhysics(
            self.layer_sizes,
            linewidth=self.linewidth,
            activation=self.activation,
            gains=self.gains,
            temperature=temperature,
        )

    def perturbation_models(self) -> dict[str, PerturbationModel]:
        """The disturbances of a ring bank, each covering its rated range:

        - ``"thermal"``: :class:`~blacksat.perturbations.CommonMode` shift of every control by
          up to ``0.08 * 2 K = 0.16`` (ambient drift moves every resonance together; on the
          nominal physics a shift of ``0.08 dT`` *is* ``nominal_model(temperature=dT)``);
        - ``"temperature"``: the nuisance itself, rated -2..2 K
          (:class:`~blacksat.perturbations.NuisanceModel`, for finite-difference adversaries);
        - ``"fabrication"``: independent ``N(0, offset^2)`` resonance offsets per ring
          (another chip of the same process; :class:`~blacksat.perturbations.PerControl`).
        """
        return {
            "thermal": CommonMode(TEMPERATURE_SHIFT * rated_extent(self, "temperature")),
            **super().perturbation_models(),
            "fabrication": PerControl(self.offset, kind="gaussian"),
        }


def _check(
    name: str, value: float, *, lo: float = 0.0, lo_open: bool = False, hi: float = math.inf
) -> float:
    """A finite float in ``[lo, hi]`` (``(lo, hi]`` when ``lo_open``), else ConfigError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < lo or (lo_open and v == lo) or v > hi:
        rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise ConfigError(f"{name} must be a finite number in {rng}, got {value!r}")
    return v


__all__ = ["ACTIVATIONS", "TEMPERATURE_SHIFT", "MRRPhysics", "MRRWeightBank"]
