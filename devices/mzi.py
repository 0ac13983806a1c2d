"""``MZIMesh``: a Clements mesh of Mach-Zehnder interferometers with hidden imperfections.

Physics (conventions in :mod:`blacksat.devices.clements`): ``N`` waveguide modes, ``N``
columns, ``M = N (N - 1) / 2`` MZIs. MZI ``k`` (canonical order: column by column, top to
bottom) is ``T = eta . BS(e_out) . A . P(theta_k) . BS(e_in) . P(phi_k)`` with the phases on the
top arm, couplers ``BS(e) = [[t, i r], [i r, t]]``, ``t = sqrt((1 + e) / 2)``,
``r = sqrt((1 - e) / 2)`` (exactly unitary for any ``|e| < 1``; the paper's ``sqrt(1 +- e)``
amplitudes), internal-arm amplitude transmissions ``A = diag(a_top, a_bot)`` and insertion loss
``eta``. The light sees ``U = T_col(N-1) ... T_col(0)``; an input of real field amplitudes
``x (N,)`` gives output fields ``U x`` and detected intensities ``|U x|^2`` (Clements et al.,
Optica 3, 1460 (2016); Shen et al., Nat. Photon. 11, 441 (2017)).

Controls: ``d = N (N - 1)`` phases in radians, bounds ``[0, 2 pi]``, interleaved per MZI:
``theta[2k] = "mzi{k}.theta"`` (internal), ``theta[2k + 1] = "mzi{k}.phi"`` (external). The
phases are **periodic** (period ``2 pi``: the simulated shifters cover a full period, and the
light sees ``exp(i phase)``), so optimizers wrap them instead of sticking to ``0``/``2 pi``; only
the hidden thermal crosstalk below, proportional to the commanded value, is not periodic (a
command of ``2 pi`` heats the neighbours, ``0`` does not), as on a chip whose heaters are driven
anywhere in one period.

The **truth** of a chip holds, beyond the nominal lossless ideal mesh:

- fabrication errors (a "simple error-parameter model" knows these): coupler splitting errors
  ``e ~ N(0, s_bs^2)`` (two per MZI, clipped to ``|e| <= 1 - 1e-3``) and phase offsets
  ``theta, phi += N(0, s_ps^2)``;
- hidden effects: (1) **thermal crosstalk** -- heater power is proportional to the commanded
  phase, and each heater leaks a fraction ``crosstalk`` of its phase into its neighbours (the
  other heater of the same MZI, and the same-kind heater of the MZIs directly above and below
  in the same column): ``phase += crosstalk * A_nbr @ controls``; (2) **arm loss imbalance**:
  one internal arm of each MZI carries an extra loss ``|delta|`` dB, ``delta ~ N(0,
  loss_imbalance_db^2)``, plus a uniform ``insertion_loss_db`` per MZI (edge modes skip MZIs, so
  this is not a global scale); (3) **detector response**: per-port responsivity
  ``r_p = exp(responsivity_spread * z_p)`` and saturation ``y = r I / (1 + s r I)``
  (saturation intensity ``1 / s`` in full-scale units; ``s = 0``: linear);
- the nuisance ``temperature`` ``dT`` (K): every phase shifter moves by ``thermal_coeff * dT``
  (default 0.1 rad/K: silicon thermo-optic ``dn/dT = 1.8e-4 /K`` over a few hundred um of
  differential path);
- readout noise and slow control drift (the base class :class:`SimulatedDevice`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from blacksat.errors import ConfigError, ShapeError
from blacksat.perturbations import CommonMode, PerControl, PerturbationModel
from blacksat.space import ParamSpace
from blacksat.validation import check_int

from .base import Nuisance, PhysicsModel, SimulatedDevice
from .clements import column_neighbours, crosstalk_adjacency, mesh_layout, n_mzis, pack_controls
from .perturbations import rated_extent

_BS_MARGIN = 1e-3  # |e| <= 1 - margin: a coupler never becomes a perfect bar/cross (no NaN)
_MAX_POWER = 1e30  # readings clip here (in full scales): float32 overflow guard, never NaN
_DETECTIONS = ("intensity", "coherent")


def _vec(value: Any, shape: tuple[int, ...], name: str) -> torch.Tensor:
    arr = np.zeros(shape) if value is None else np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise ShapeError(f"{name} must have shape {shape}, got {arr.shape}")
    return torch.as_tensor(arr, dtype=torch.float64)


class MZIPhysics(PhysicsModel):
    """Vectorized physics of a Clements MZI mesh (see the module docstring).

    ``forward_many(thetas (K, d), x (B, N)) -> (K, B, N)`` intensities, or ``(K, B, 2N)``
    ``[Re, Im]`` fields with ``detection="coherent"``. With every optional argument at its
    default this is the nominal (ideal, lossless, linear-detector) mesh.

    Args:
        n_modes: ``N``.
        bs_errors: coupler splitting errors ``(M, 2)`` (input, output coupler of each MZI).
        phase_offsets: static phase errors ``(d,)`` in control order (rad).
        crosstalk: thermal crosstalk fraction ``kappa`` between neighbouring heaters.
        arm_imbalance_db: signed extra loss ``(M,)`` (dB) of the top (``> 0``) or bottom
            (``< 0``) internal arm.
        insertion_loss_db: uniform loss of every MZI (dB).
        responsivity: detector gain per output port ``(N,)`` (ones if omitted).
        saturation: detector saturation ``s``: ``y = r I / (1 + s r I)``; 0 is linear.
        phase_shift: common shift of every phase (rad), e.g. ``thermal_coeff * dT``.
        detection: ``"intensity"`` or ``"coherent"``.

    ``calibratable`` names the error parameters a grey-box fit identifies
    (:class:`~blacksat.surrogates.GreyBox`): the coupler errors, the phase offsets and the
    crosstalk fraction. Arm loss imbalance, insertion loss and the detector response stay
    outside that model class.
    """

    calibratable: tuple[str, ...] = ("bs_errors", "phase_offsets", "crosstalk")

    def __init__(
        self,
        n_modes: int,
        *,
        bs_errors: Any = None,
        phase_offsets: Any = None,
        crosstalk: float = 0.0,
        arm_imbalance_db: Any = None,
        insertion_loss_db: float = 0.0,
        responsivity: Any = None,
        saturation: float = 0.0,
        phase_shift: float = 0.0,
        detection: str = "intensity",
    ) -> None:
        super().__init__()
        if detection not in _DETECTIONS:
            raise ConfigError(f"detection must be one of {_DETECTIONS}, got {detection!r}")
        self.n_modes = int(n_modes)
        self.detection = detection
        layout = mesh_layout(self.n_modes)
        m = len(layout)
        # per column: (first top mode, number of MZIs, offset into the canonical order)
        counts = [sum(1 for col, _ in layout if col == c) for c in range(self.n_modes)]
        offsets = np.cumsum([0, *counts[:-1]])
        self._columns = [(c % 2, counts[c], int(offsets[c])) for c in range(self.n_modes)]
        resp = np.ones(self.n_modes) if responsivity is None else responsivity
        self.register_buffer("bs_errors", _vec(bs_errors, (m, 2), "bs_errors"))
        self.register_buffer("phase_offsets", _vec(phase_offsets, (2 * m,), "phase_offsets"))
        self.register_buffer("arm_imbalance_db", _vec(arm_imbalance_db, (m,), "arm_imbalance_db"))
        self.register_buffer("responsivity", _vec(resp, (self.n_modes,), "responsivity"))
        self._register_column_stack()
        # heater neighbours, derived from n_modes (not saved)
        above, below = column_neighbours(self.n_modes)
        for name, flags in (("has_above", above), ("has_below", below)):
            self.register_buffer(
                name, torch.as_tensor(flags, dtype=torch.float64), persistent=False
            )
        for name, value in (
            ("crosstalk", crosstalk),
            ("insertion_loss_db", insertion_loss_db),
            ("saturation", saturation),
            ("phase_shift", phase_shift),
        ):
            self.register_buffer(name, torch.tensor(float(value), dtype=torch.float64))

    def _register_column_stack(self) -> None:
        """Where each MZI's 2x2 entries sit in the stack of column matrices ``(N_cols, N, N)``
        (``column_index``, in the order of ``mzi_transfers(...).reshape(K, 4 M)``) and the ones
        of the modes a column leaves alone (``column_identity``); derived, not saved."""
        n = self.n_modes
        index, identity = [], np.zeros((len(self._columns), n, n))
        for c, (start, count, _) in enumerate(self._columns):
            for i in range(count):
                top = start + 2 * i
                index += [c * n * n + (top + j) * n + top + k for j in (0, 1) for k in (0, 1)]
            covered = set(range(start, start + 2 * count))
            for mode in set(range(n)) - covered:
                identity[c, mode, mode] = 1.0
        self.register_buffer("column_index", torch.as_tensor(index), persistent=False)
        self.register_buffer(
            "column_identity", torch.as_tensor(identity.reshape(-1)), persistent=False
        )

    @property
    def out_features(self) -> int:
        """Readings per input: ``N`` (intensity) or ``2N`` (coherent)."""
        return self.n_modes * (2 if self.detection == "coherent" else 1)

    def applied_phases(self, thetas: torch.Tensor) -> torch.Tensor:
        """Phases the light actually sees ``(K, d)`` for controls ``thetas (K, d)``."""
        phases = thetas + (self.phase_offsets + self.phase_shift)
        if self.crosstalk.requires_grad or float(self.crosstalk) != 0.0:
            phases = phases + self.crosstalk * self._heard(thetas)
        return phases

    def _heard(self, thetas: torch.Tensor) -> torch.Tensor:
        """``thetas @ crosstalk_adjacency`` in O(d): each heater hears its MZI's other heater
        and the same-kind heaters of the MZIs above and below in its column, which are the
        neighbours in the canonical order (``has_above`` / ``has_below`` mark who has them)."""
        k = thetas.shape[0]
        v = thetas.reshape(k, -1, 2)  # (K, M, [theta, phi])
        zero = v.new_zeros(k, 1, 2)
        above = torch.cat([zero, v[:, :-1]], dim=1) * self.has_above.to(v.dtype)[:, None]
        below = torch.cat([v[:, 1:], zero], dim=1) * self.has_below.to(v.dtype)[:, None]
        return (v.flip(-1) + above + below).reshape(k, -1)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        # files written before the neighbour lists replaced the dense (d, d) matrix hold it
        state_dict.pop(prefix + "adjacency", None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def mzi_transfers(self, thetas: torch.Tensor) -> torch.Tensor:
        """Complex 2x2 transfer matrices ``(K, M, 2, 2)`` of every MZI for ``thetas (K, d)``."""
        phases = self.applied_phases(thetas)
        th, ph = phases[:, 0::2], phases[:, 1::2]
        e = self.bs_errors.clamp(-1.0 + _BS_MARGIN, 1.0 - _BS_MARGIN)
        t, r = torch.sqrt(0.5 * (1.0 + e)), torch.sqrt(0.5 * (1.0 - e))
        t1, t2, r1, r2 = t[:, 0], t[:, 1], r[:, 0], r[:, 1]
        eta = 10.0 ** (-self.insertion_loss_db / 20.0)
        a_top = eta * 10.0 ** (-torch.relu(self.arm_imbalance_db) / 20.0)
        a_bot = eta * 10.0 ** (-torch.relu(-self.arm_imbalance_db) / 20.0)
        # BS2 . diag(a_top e^{i theta}, a_bot) . BS1 . diag(e^{i phi}, 1), entry by entry:
        # T_jk = (alpha_jk e^{i theta} + beta_jk) * (i if j != k) * (e^{i phi} if k == 0);
        # the 4-vectors below list (T_00, T_10, T_01, T_11), i.e. column by column
        zero = torch.zeros_like(t1)
        alpha = a_top[:, None] * torch.stack([t1 * t2, zero, zero, -r1 * r2], dim=-1)
        alpha_i = a_top[:, None] * torch.stack([zero, t1 * r2, r1 * t2, zero], dim=-1)
        beta = a_bot[:, None] * torch.stack([-r1 * r2, zero, zero, t1 * t2], dim=-1)
        beta_i = a_bot[:, None] * torch.stack([zero, r1 * t2, t1 * r2, zero], dim=-1)
        # (M, 2, 2) complex coefficients indexed [k (input), j (output)]
        coef_a = torch.complex(alpha, alpha_i).reshape(-1, 2, 2)
        coef_b = torch.complex(beta, beta_i).reshape(-1, 2, 2)
        e_th = torch.complex(torch.cos(th), torch.sin(th))[..., None, None]  # (K, M, 1, 1)
        e_ph = torch.complex(torch.cos(ph), torch.sin(ph))[..., None]  # (K, M, 1)
        by_col = coef_a * e_th + coef_b  # (K, M, k, j)
        if not by_col.requires_grad:  # no autograd graph: scale column 0 in place
            by_col[:, :, 0].mul_(e_ph)
            return by_col.transpose(-1, -2)  # (K, M, j, k), a view
        return torch.stack([by_col[:, :, 0] * e_ph, by_col[:, :, 1]], dim=-1)  # (K, M, j, k)

    def unitaries(self, thetas: torch.Tensor) -> torch.Tensor:
        """Mesh matrices ``(K, N, N)`` (complex; unitary when lossless) for ``thetas (K, d)``.

        On the CPU, column by column, every MZI of a column at once: the rows ``(m, m + 1)`` of
        the partial product are mixed by the ``(K, count)`` transfer entries (elementwise, which
        on CPU beats a batched matmul of 2x2 blocks). Without autograd it works in place. On an
        accelerator, where that sequence of ``N`` small steps is bound by kernel launches, the
        column matrices are multiplied as a balanced tree instead (:meth:`unitaries_by_tree`).
        """
        transfers = self.mzi_transfers(thetas)
        if transfers.device.type != "cpu":
            return self.unitaries_by_tree(transfers)
        k, n = thetas.shape[0], self.n_modes
        if not transfers.requires_grad:  # no autograd graph to keep
            return self._unitaries_inplace(transfers)
        u = torch.eye(n, dtype=transfers.dtype, device=transfers.device).expand(k, n, n)
        for start, count, offset in self._columns:
            stop = start + 2 * count
            t = transfers[:, offset : offset + count, :, :, None]  # (K, count, 2, 2, 1)
            top, bot = u[:, start:stop:2, None], u[:, start + 1 : stop : 2, None]
            block = t[:, :, :, 0] * top + t[:, :, :, 1] * bot  # (K, count, 2, N)
            parts = [u[:, :start], block.reshape(k, 2 * count, n), u[:, stop:]]
            u = torch.cat([p for p in parts if p.shape[1] > 0], dim=1)
        return u

    def unitaries_by_tree(self, transfers: torch.Tensor) -> torch.Tensor:
        """Mesh matrices ``(K, N, N)`` from ``transfers (K, M, 2, 2)`` in ``ceil(log2 N)``
        batched matrix products: every column's ``N x N`` matrix at once, then neighbours
        multiplied pairwise (later @ earlier). ``O(N^4)`` arithmetic in a few dozen kernels,
        against ``O(N^3)`` in ``~10 N``: the better trade where launches cost more than
        arithmetic (a GPU). The same matrices as the column sweep up to rounding."""
        k, n, cols = transfers.shape[0], self.n_modes, len(self._columns)
        flat = self.column_identity.to(transfers.dtype).expand(k, -1)
        mats = flat.index_add(1, self.column_index, transfers.reshape(k, -1))
        mats = mats.reshape(k, cols, n, n)
        while mats.shape[1] > 1:
            pairs = mats.shape[1] // 2
            merged = mats[:, 1 : 2 * pairs : 2] @ mats[:, 0 : 2 * pairs : 2]
            mats = torch.cat([merged, mats[:, 2 * pairs :]], dim=1) if mats.shape[1] % 2 else merged
        return mats[:, 0]

    def _unitaries_inplace(self, transfers: torch.Tensor) -> torch.Tensor:
        """:meth:`unitaries` without an autograd graph: rows updated in place."""
        k, n = transfers.shape[0], self.n_modes
        u = torch.zeros(k, n, n, dtype=transfers.dtype, device=transfers.device)
        u.diagonal(dim1=1, dim2=2).fill_(1.0)
        scratch = torch.empty_like(u[:, : (n + 1) // 2])
        t = transfers[..., None]  # (K, M, 2, 2, 1)
        for start, count, offset in self._columns:
            stop = start + 2 * count
            top, bot = u[:, start:stop:2], u[:, start + 1 : stop : 2]  # views (K, count, N)
            tc = t[:, offset : offset + count]
            new_top = torch.mul(tc[:, :, 0, 0], top, out=scratch[:, :count])
            new_top.addcmul_(tc[:, :, 0, 1], bot)
            bot.mul_(tc[:, :, 1, 1]).addcmul_(tc[:, :, 1, 0], top)
            top.copy_(new_top)
        return u

    def forward_many(self, thetas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``thetas (K, d)``, real fields ``x (B, N)`` -> ``(K, B, N)`` or ``(K, B, 2N)``.

        ``x`` may also hold one input batch per setting, ``(K, B, N)`` (e.g. the fields a
        preceding mesh delivers, :class:`~blacksat.devices.hybrid.MZIHybrid`).
        """
        d = 2 * n_mzis(self.n_modes)
        if thetas.ndim != 2 or thetas.shape[1] != d:
            raise ShapeError(f"thetas must be (K, {d}), got {tuple(thetas.shape)}")
        per_setting = x.ndim == 3 and x.shape[0] == thetas.shape[0]
        if not (x.ndim == 2 or per_setting) or x.shape[-1] != self.n_modes:
            k = thetas.shape[0]
            raise ShapeError(
                f"x must be (B, {self.n_modes}) or ({k}, B, {self.n_modes}), got {tuple(x.shape)}"
            )
        u = self.unitaries(thetas.to(self.bs_errors.dtype))
        # detector gains folded into the (small) matrix: fields scaled by sqrt(r_p)
        u = u * torch.sqrt(self.responsivity)[:, None]
        n = self.n_modes
        w = torch.cat([u.real, u.imag], dim=1)  # (K, 2N, N)
        fields = torch.matmul(x.to(w.dtype), w.transpose(1, 2))  # (K, B, 2N): [Re | Im]
        re, im = fields[..., :n], fields[..., n:]
        saturating = float(self.saturation) != 0.0
        if self.detection == "intensity" and not fields.requires_grad:
            # no autograd graph: work in place (large fresh buffers cost page faults on CPU)
            power = re.mul_(re).addcmul_(im, im)  # r_p |(U x)_p|^2, a view of `fields`
            if saturating:  # 1 / (s + 1 / P) = P / (1 + s P), and 1 / s (not NaN) at P = inf
                return power.reciprocal_().add_(self.saturation).reciprocal_()
            return power.clamp_(max=_MAX_POWER)
        power = torch.addcmul(re * re, im, im).clamp(max=_MAX_POWER)  # r_p |(U x)_p|^2
        if self.detection == "intensity":
            return power / (1.0 + self.saturation * power) if saturating else power
        if not saturating:
            return fields
        gain = torch.rsqrt(1.0 + self.saturation * power)  # |gain * field|^2 = r I / (1 + s r I)
        return torch.cat([re * gain, im * gain], dim=-1)


def _nonneg(name: str, value: Any, upper: float = np.inf) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number, got {value!r}") from exc
    if not np.isfinite(v) or v < 0 or v >= upper:
        bound = "" if upper == np.inf else f" and < {upper}"
        raise ConfigError(f"{name} must be a finite number >= 0{bound}, got {value!r}")
    return v


@dataclass(frozen=True)
class MeshErrors:
    """One mesh's size, fabrication error levels and hidden-effect strengths, validated
    (:class:`MZIMesh`'s arguments of the same names; :class:`~blacksat.devices.hybrid.
    MZIHybrid` applies them to both of its meshes). ``asdict`` gives the keyword arguments."""

    n_modes: int = 16
    s_bs: float = 0.05
    s_ps: float = 0.05
    crosstalk: float = 0.01
    loss_imbalance_db: float = 0.1
    insertion_loss_db: float = 0.1
    saturation: float = 0.1
    responsivity_spread: float = 0.02
    thermal_coeff: float = 0.1

    def __post_init__(self) -> None:
        check_int("n_modes", self.n_modes, low=2)
        object.__setattr__(self, "n_modes", int(self.n_modes))
        upper = {"crosstalk": 1.0}
        for name in (
            "s_bs", "s_ps", "crosstalk", "loss_imbalance_db", "insertion_loss_db", "saturation",
            "responsivity_spread",
        ):  # fmt: skip
            value = _nonneg(name, getattr(self, name), upper=upper.get(name, np.inf))
            object.__setattr__(self, name, value)
        try:
            coeff = float(self.thermal_coeff)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"thermal_coeff must be a number, got {self.thermal_coeff!r}"
            ) from exc
        if not np.isfinite(coeff):
            raise ConfigError(f"thermal_coeff must be finite, got {self.thermal_coeff!r}")
        object.__setattr__(self, "thermal_coeff", coeff)

    def control_names(self) -> list[str]:
        """The names of one mesh's ``N (N - 1)`` phases, ``mzi<k>.theta`` / ``mzi<k>.phi``."""
        layout = mesh_layout(self.n_modes)
        return [f"mzi{k}.{p}" for k in range(len(layout)) for p in ("theta", "phi")]


def phase_perturbations(
    device: Any, base: dict[str, PerturbationModel]
) -> dict[str, PerturbationModel]:
    """The phase disturbances of a device of MZI meshes (``thermal_coeff``, ``s_ps``) around
    the base class's models: ``"phase_drift"`` (common shift of every phase over the rated
    temperature range) first, then ``base``, then ``"phase_error"`` (independent phase errors)."""
    drift = abs(device.thermal_coeff) * rated_extent(device, "temperature")
    return {
        "phase_drift": CommonMode(drift),
        **base,
        "phase_error": PerControl(device.s_ps, kind="gaussian"),
    }


class MZIMesh(SimulatedDevice):
    """A simulated ``N``-mode Clements MZI mesh chip (registry name ``"mzi"``).

    ``query(theta (d,), x (B, N)) -> (B, N)`` detected intensities (``(B, 2N)`` ``[Re, Im]``
    fields with ``detection="coherent"``); ``d = N (N - 1)`` phases in ``[0, 2 pi]`` rad,
    interleaved ``(theta_k, phi_k)`` per MZI (canonical order, see
    :mod:`blacksat.devices.clements`). Inputs are real field amplitudes; the detector full scale
    (``full_scale = 1``) is the power of a unit-norm input delivered to one port.

    Args (keyword-only):
        n_modes: ``N`` (default 16: 120 MZIs, 240 controls).
        s_bs: std of the coupler splitting errors ``e`` (default 0.05; the paper's chip: 0.15).
        s_ps: std of the static phase errors, rad (default 0.05; the paper's chip: 0.15).
        crosstalk: thermal crosstalk fraction between neighbouring heaters (default 0.01:
            with commanded phases around pi and up to three neighbours this adds a
            setting-dependent ~0.1 rad to each phase; at 0.03 crosstalk alone took a digits
            network trained on the nominal model from 95 % to 23 %, far beyond what the
            paper's 0.15/0.15 chip loses (68.6 %); at 0.01 the 0.15/0.15 chip lands at 62-83 %).
        loss_imbalance_db: std of the extra loss of one internal arm per MZI, dB (default 0.1).
        insertion_loss_db: loss of every MZI, dB (default 0.1).
        saturation: detector saturation ``s``, ``y = I / (1 + s I)``, saturation intensity
            ``1 / s`` full scales (default 0.1: 9 % compression at full scale, 0.6 % at the
            mean port power 1/16 of a unit input).
        responsivity_spread: log-normal spread of the per-port detector gain (default 0.02).
        thermal_coeff: phase shift of every phase shifter per kelvin, rad/K (default 0.1).
        detection: ``"intensity"`` (default) or ``"coherent"``.
        seed, noise (default 0.005 of full scale), drift (default 0.005 rad), drift_time,
        dtype: see :class:`~blacksat.devices.base.SimulatedDevice` (``dtype`` also accepts
            ``"float32"`` / ``"float64"``).
        temperature: nuisance, ambient temperature change in K (default 0, rated +-2 K).

    Setting every error level and hidden-effect strength to 0 (and ``noise = drift = 0``)
    makes the truth equal to the nominal model.
    """

    name: ClassVar[str] = "mzi"
    output_kind: ClassVar[str] = "power"  # detected optical powers
    nuisances: ClassVar[tuple[Nuisance, ...]] = (
        Nuisance(
            "temperature",
            0.0,
            (-2.0, 2.0),
            "K",
            "ambient temperature change: every phase shifter moves by thermal_coeff * dT",
        ),
    )
    full_scale: float = 1.0

    def __init__(
        self,
        *,
        n_modes: int = 16,
        s_bs: float = 0.05,
        s_ps: float = 0.05,
        crosstalk: float = 0.01,
        loss_imbalance_db: float = 0.1,
        insertion_loss_db: float = 0.1,
        saturation: float = 0.1,
        responsivity_spread: float = 0.02,
        thermal_coeff: float = 0.1,
        detection: str = "intensity",
        seed: int = 0,
        noise: float = 0.005,
        drift: float = 0.005,
        drift_time: float = 1000.0,
        dtype: torch.dtype | str = torch.float32,
        torch_device: torch.device | str = "cpu",
        **nuisance: float,
    ) -> None:
        if detection not in _DETECTIONS:
            raise ConfigError(f"detection must be one of {_DETECTIONS}, got {detection!r}")
        errors = MeshErrors(
            n_modes=n_modes,
            s_bs=s_bs,
            s_ps=s_ps,
            crosstalk=crosstalk,
            loss_imbalance_db=loss_imbalance_db,
            insertion_loss_db=insertion_loss_db,
            saturation=saturation,
            responsivity_spread=responsivity_spread,
            thermal_coeff=thermal_coeff,
        )
        for name, value in asdict(errors).items():
            setattr(self, name, value)
        self.detection = detection
        self.layout = mesh_layout(self.n_modes)
        names = errors.control_names()
        self._space = ParamSpace.box(len(names), 0.0, 2.0 * np.pi, names=names, periodic=True)
        super().__init__(
            seed=seed,
            noise=noise,
            drift=drift,
            drift_time=drift_time,
            dtype=dtype,
            torch_device=torch_device,
            **nuisance,
        )

    @property
    def space(self) -> ParamSpace:
        """``d = N (N - 1)`` phases, each in ``[0, 2 pi]`` rad, periodic (``2 pi``)."""
        return self._space

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(N,)`` real input field amplitudes."""
        return (self.n_modes,)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """``(N,)`` intensities, or ``(2N,)`` ``[Re, Im]`` fields (coherent detection)."""
        return (self.n_modes * (2 if self.detection == "coherent" else 1),)

    def _build_truth(self, rng: np.random.Generator) -> PhysicsModel:
        m, n = len(self.layout), self.n_modes
        # fixed draw order; the levels only scale the draws (same chip at another level)
        z_bs = rng.standard_normal((m, 2))
        z_ps = rng.standard_normal((m, 2))
        z_imb = rng.standard_normal(m)
        z_resp = rng.standard_normal(n)
        limit = 1.0 - _BS_MARGIN
        return MZIPhysics(
            n,
            bs_errors=np.clip(self.s_bs * z_bs, -limit, limit),
            phase_offsets=(self.s_ps * z_ps).ravel(),
            crosstalk=self.crosstalk,
            arm_imbalance_db=self.loss_imbalance_db * z_imb,
            insertion_loss_db=self.insertion_loss_db,
            responsivity=np.exp(self.responsivity_spread * z_resp),
            saturation=self.saturation,
            phase_shift=self.thermal_coeff * self.nuisance_values["temperature"],
            detection=self.detection,
        )

    def _build_nominal(self, temperature: float = 0.0) -> PhysicsModel:
        return MZIPhysics(
            self.n_modes, phase_shift=self.thermal_coeff * temperature, detection=self.detection
        )

    def perturbation_models(self) -> dict[str, PerturbationModel]:
        """The disturbances of a mesh, each covering its rated range:

        - ``"phase_drift"``: :class:`~blacksat.perturbations.CommonMode` shift of every phase
          by up to ``|thermal_coeff| * 2 K`` (on the nominal physics a shift of
          ``thermal_coeff * dT`` *is* ``nominal_model(temperature=dT)``);
        - ``"temperature"``: the nuisance itself, rated -2..2 K
          (:class:`~blacksat.perturbations.NuisanceModel`);
        - ``"phase_error"``: independent ``N(0, s_ps^2)`` phase errors per phase shifter
          (another chip of the same process; :class:`~blacksat.perturbations.PerControl`).
        """
        return phase_perturbations(self, super().perturbation_models())

    def bytes_per_setting(self, batch: int) -> int:
        """The mesh matrix and its scratch (complex, ``N x N``), and the fields, powers and
        noise of ``batch`` inputs, per setting."""
        n = self.n_modes
        per = 16 * (3 * n * n + 4 * batch * n) + 8 * 4 * self.space.dim
        if self.torch_device.type != "cpu":  # the stack of column matrices and its first level
            per += 16 * 2 * n * n * n
        return per

    def config(self) -> dict[str, Any]:
        """Every constructor argument (JSON-friendly; ``dtype`` as a string)."""
        return {
            "n_modes": self.n_modes,
            "s_bs": self.s_bs,
            "s_ps": self.s_ps,
            "crosstalk": self.crosstalk,
            "loss_imbalance_db": self.loss_imbalance_db,
            "insertion_loss_db": self.insertion_loss_db,
            "saturation": self.saturation,
            "responsivity_spread": self.responsivity_spread,
            "thermal_coeff": self.thermal_coeff,
            "detection": self.detection,
            **self.shared_config(),
        }


__all__ = [
    "MZIMesh",
    "MZIPhysics",
    "MeshErrors",
    "crosstalk_adjacency",
    "pack_controls",
    "phase_perturbations",
]
