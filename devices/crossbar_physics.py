"""Physics of an analog in-memory-computing crossbar (RRAM/PCM-like), differentiable torch.

Array and controls
------------------
Each layer is one array of ``n_out x n_in`` weights; a weight is a **differential pair** of
conductances on two bit lines, ``w = G+ - G-``, and the layer computes the bit-line currents
``I = (G+ - G-) v`` for the read voltages ``v (n_in,)`` driven on the word lines (Ohm's law,
Kirchhoff's current law: the matrix-vector product in one read). Conductances are in units of
the nominal maximum ``Gmax``, voltages in units of the read-voltage full scale, currents in
``Gmax x V``.

One control per **conductance**, in ``[0, 1]`` (the target as a fraction of ``Gmax``): layer
``l``'s ``G+`` ``(n_out, n_in)`` row-major, then its ``G-``, then layer ``l + 1``. Per-conductance
controls (not per-weight) let a trainer use the redundancy of a pair (a stuck cell is
compensated by its partner) and match what a programming interface sets.

The true array (hidden from the nominal model)
----------------------------------------------
- device-to-device variation: every cell's maximum conductance is ``gmax_ij = 1 + N(0, s^2)``;
- programming noise (drawn at every write, passed in by the device): the programmed conductance
  is ``gmax_ij (g + sigma(g) z)``, ``sigma(g) = program_noise (0.5 + 0.5 g)`` (larger for higher
  targets), clipped to ``[0, gmax_ij]``;
- stuck cells: a fraction of cells ignore their control, stuck at 0 (open) or ``gmax_ij`` (SET);
- conductance drift, the power law of phase-change memory (Ielmini et al., IEEE TED 54, 308,
  2007; Joshi et al., Nat. Commun. 11, 2473, 2020): ``G(t) = G(t0) (t / t0)^-nu`` with ``t`` the
  time since programming (``t0``: when the programmed value is verified) and a drift exponent
  ``nu_ij ~ N(nu, nu_spread^2)`` (clipped at 0) per cell;
- IR drop along the bit lines, first order: the sense amplifier holds the end of each bit line
  (after cell ``n_in - 1``) at virtual ground and every wire segment has resistance ``r``; the
  line voltage at cell ``i`` is ``V_i = r sum_{s >= i} sum_{m <= s} c_m`` with ``c_m = G_m v_m``
  the cell currents, and the read current is ``sum_i G_i (v_i - V_i)``. Linear in ``v``, so the
  array acts as effective conductances ``G - r G * (G M)``, ``M_im = n - max(i, m)``: each
  weight's error depends on every other weight of its column and its position along the line.
  ``ir_drop`` is the relative loss of the worst cell of a full-scale line (all ``G = 1``):
  ``r = ir_drop / (n (n + 1) / 2)``;
- DAC saturation: read voltages are clipped to the driver's range ``[-1, 1]``;
- read noise (additive Gaussian on each differential current, passed in by the device) and the
  ADC of each sense amplifier: the current is quantized to ``adc_bits`` bits in two's complement
  (``2^bits`` levels ``step = fs / 2^(bits - 1)`` apart, from ``-fs`` to ``fs - step``,
  saturating beyond), ``fs = adc_range * n_in``. The quantizer is a straight-through estimator in
  the differentiable model (exact values, identity gradient inside the range).

Between layers the digital periphery rescales the ADC reading to the next layer's read voltages,
``h = clip(y / fs, 0, 1)`` (a ReLU saturating at the DAC range). The nominal model keeps the
ideal differential pairs, the mean drift law and the inter-layer map, and omits everything else.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from blacksat.devices.base import PhysicsModel
from blacksat.errors import ShapeError


def line_matrix(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``M (n, n)``, ``M_im = n - max(i, m)``: how many wire segments cells ``i`` and ``m`` of
    one line share on the way to the sense amplifier (at the end, after cell ``n - 1``)."""
    idx = torch.arange(n, dtype=dtype)
    return n - torch.maximum(idx[:, None], idx[None, :])


def ir_resistance(ir_drop: float, n: int) -> float:
    """Wire resistance per segment ``r`` (units of ``1 / Gmax``) giving a relative loss
    ``ir_drop`` on the worst cell of a full-scale line of ``n`` cells."""
    return float(ir_drop) / (n * (n + 1) / 2.0)


class CrossbarPhysics(PhysicsModel):
    """Differentiable physics of a stack of crossbar arrays (see the module docstring).

    ``forward_many(thetas (K, d), x (B, n_in)) -> (K, B, n_out)`` ADC readings; the device adds
    its stochastic parts through :meth:`forward_noisy`. Per-cell quantities are ``(d,)`` buffers
    in control order.

    Args:
        layer_sizes: ``(n_0, ..., n_L)``; array ``l`` maps ``n_l`` read voltages to ``n_{l+1}``
            differential currents.
        gmax: per-cell maximum conductance ``(d,)`` (``None``: 1).
        stuck_mask, stuck_value: ``(d,)`` stuck cells and the conductance they are stuck at.
        nu: per-cell drift exponent ``(d,)`` (``None``: ``drift_exponent`` everywhere).
        drift_exponent: the mean exponent (used where ``nu`` is ``None``).
        age: time since programming of the read, s; ``t0`` the reference time of the law.
        ir_drop, adc_bits, adc_range: the hidden effects (0 / ``None`` disables them).
        clip_inputs: clip read voltages to ``[-1, 1]`` (the driver's range).

    ``calibratable`` names the error parameters a grey-box fit identifies from readings: the
    per-cell maximum conductance (the device-to-device variation).
    """

    calibratable: tuple[str, ...] = ("gmax",)

    def __init__(
        self,
        layer_sizes: Sequence[int],
        *,
        gmax: torch.Tensor | None = None,
        stuck_mask: torch.Tensor | None = None,
        stuck_value: torch.Tensor | None = None,
        nu: torch.Tensor | None = None,
        drift_exponent: float = 0.0,
        age: float = 1.0,
        t0: float = 1.0,
        ir_drop: float = 0.0,
        adc_bits: int | None = None,
        adc_range: float = 1.0,
        clip_inputs: bool = False,
    ) -> None:
        super().__init__()
        self.layer_sizes = tuple(int(n) for n in layer_sizes)
        self.shapes = tuple((o, i) for i, o in itertools.pairwise(self.layer_sizes))
        self.dim = 2 * sum(o * i for o, i in self.shapes)
        d = self.dim

        def vec(v: torch.Tensor | None, fill: float) -> torch.Tensor:
            if v is None:
                return torch.full((d,), float(fill), dtype=torch.float64)
            return torch.as_tensor(v, dtype=torch.float64).reshape(d).clone()

        self.register_buffer("gmax", vec(gmax, 1.0))
        self.register_buffer("stuck_mask", vec(stuck_mask, 0.0))
        self.register_buffer("stuck_value", vec(stuck_value, 0.0))
        self.register_buffer("nu", vec(nu, drift_exponent))
        self.register_buffer("age", torch.tensor(float(age), dtype=torch.float64))
        self.register_buffer("t0", torch.tensor(float(t0), dtype=torch.float64))
        for n, (_, n_in) in enumerate(self.shapes):
            self.register_buffer(f"lines{n}", line_matrix(n_in))
        self.ir_drop = float(ir_drop)
        self.adc_bits = None if adc_bits is None else int(adc_bits)
        self.adc_range = float(adc_range)
        self.clip_inputs = bool(clip_inputs)
        self._stuck = bool(stuck_mask is not None and torch.as_tensor(stuck_mask).any())

    # ------------------------------------------------------------------ conductances
    def conductances(
        self,
        thetas: torch.Tensor,
        program_noise: torch.Tensor | None = None,
        ages: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Conductances at read time ``(K, d)``: programmed (with the given per-write noise
        ``(K, d)`` in ``Gmax`` units), stuck cells applied, then drifted to ``ages (K,)`` s since
        programming (default: :attr:`age`)."""
        dt = self.gmax.dtype
        g = torch.as_tensor(thetas).to(dt)
        if program_noise is not None:
            g = g + program_noise.to(dt)
        g = self.gmax * g
        if program_noise is not None:
            g = torch.minimum(torch.clamp(g, min=0.0), self.gmax)
        if self._stuck:
            g = torch.where(self.stuck_mask > 0, self.stuck_value, g)
        age = self.age.expand(g.shape[0]) if ages is None else torch.as_tensor(ages).to(dt)
        ratio = torch.clamp(age, min=float(self.t0)) / self.t0  # (K,)
        return g * torch.exp(-self.nu * torch.log(ratio)[:, None])

    def _layer_weights(self, g: torch.Tensor) -> list[torch.Tensor]:
        """``g (K, d)`` -> per layer the effective differential weights ``(K, n_out, n_in)``
        (IR drop applied to each bit line of the pair)."""
        out, start = [], 0
        for n, (o, i) in enumerate(self.shapes):
            pos = g[:, start : start + o * i].reshape(-1, o, i)
            neg = g[:, start + o * i : start + 2 * o * i].reshape(-1, o, i)
            start += 2 * o * i
            if self.ir_drop > 0:
                r = ir_resistance(self.ir_drop, i)
                m = getattr(self, f"lines{n}")
                pos = pos - r * pos * (pos @ m)
                neg = neg - r * neg * (neg @ m)
            out.append(pos - neg)
        return out

    def full_scales(self) -> list[float]:
        """ADC full scale of each layer, ``adc_range * n_in``."""
        return [self.adc_range * i for _, i in self.shapes]

    # ------------------------------------------------------------------ forward
    def forward_noisy(
        self,
        thetas: torch.Tensor,
        x: torch.Tensor,
        *,
        program_noise: torch.Tensor | None = None,
        read_noise: torch.Tensor | None = None,
        ages: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The forward pass with the device's stochastic parts: ``thetas (K, d)``,
        ``x (B, n_in)`` -> ``(K, B, n_out)``; ``read_noise (K, B, sum_l n_{l+1})`` are the
        absolute read-noise currents of every layer (``None``: none)."""
        dt = self.gmax.dtype
        thetas = torch.as_tensor(thetas).to(dt)
        if thetas.ndim != 2 or thetas.shape[1] != self.dim:
            raise ShapeError(f"thetas must be (K, {self.dim}), got {tuple(thetas.shape)}")
        h = torch.as_tensor(x).to(dt)
        if h.ndim not in (2, 3) or h.shape[-1] != self.layer_sizes[0]:
            raise ShapeError(f"x must be (B, {self.layer_sizes[0]}), got {tuple(h.shape)}")
        weights = self._layer_weights(self.conductances(thetas, program_noise, ages))
        col = 0
        for n, (w, fs) in enumerate(zip(weights, self.full_scales(), strict=True)):
            if self.clip_inputs:
                h = torch.clamp(h, -1.0, 1.0)
            y = torch.matmul(h, w.transpose(1, 2))  # (K, B, n_out)
            if read_noise is not None:
                y = y + read_noise[..., col : col + w.shape[1]].to(dt)
                col += w.shape[1]
            if self.adc_bits is not None:
                y = self._adc(y, fs)
            h = torch.clamp(y / fs, 0.0, 1.0) if n + 1 < len(weights) else y
        return h

    def _adc(self, y: torch.Tensor, fs: float) -> torch.Tensor:
        """Saturate at ``+-fs`` and quantize to ``adc_bits`` bits (straight-through)."""
        half = 2 ** (int(self.adc_bits or 1) - 1)
        step = fs / half
        y = torch.clamp(y, -fs, fs - step)
        q = torch.clamp(torch.round(y / step), -half, half - 1) * step
        return y + (q - y).detach()

    def forward_many(self, thetas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``thetas (K, d)``, ``x (B, n_in)`` -> ``(K, B, n_out)`` (no noise, read at ``age``)."""
        return self.forward_noisy(thetas, x)


__all__ = ["CrossbarPhysics", "ir_resistance", "line_matrix"]
