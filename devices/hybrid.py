"""``MZIHybrid``: two Clements MZI meshes joined by an optical-electrical-optical (O/E/O) stage.

Physics: light in ``N`` modes (real field amplitudes ``x (N,)``) passes mesh 1, whose ``N``
output ports are detected; the detected intensities are re-encoded electronically as the field
amplitudes that drive mesh 2's ``N`` input modulators; mesh 2's outputs are detected and read.
Each mesh is exactly the :class:`~blacksat.devices.mzi.MZIPhysics` of an
:class:`~blacksat.devices.mzi.MZIMesh` (couplers, phase shifters, losses, thermal crosstalk and
detector response as documented there), with its **own** fabrication draw.

**O/E/O stage.** With ``I (N,)`` the readings of mesh 1's detectors (including that chip's
per-port responsivity and saturation) and ``S = sum_p I_p`` their total, mesh 2 receives the
real, non-negative amplitudes::

    f = eps S + 1e-30,        a_p = sqrt((I_p + f) / (S + N f)),        eps = 1e-6

i.e. each input modulator of mesh 2 is driven with the square root of its port's *power
fraction* ``I_p / S`` (automatic gain control to unit total power, as the ``UnitPower`` encoder
does for mesh 1), so that ``sum_p a_p^2 = 1`` exactly. ``eps`` is a -60 dB floor on each power
fraction (a dark level): it keeps the square root differentiable at dark ports; the ``1e-30``
guard maps an all-dark mesh 1 to the uniform field. The stage is the network's nonlinearity:
the optical phases of mesh 1's outputs are lost, and for a lossless mesh with ideal detectors
and a unit-power input it is the complex modulus, ``a = |U_1 x|`` (up to ``eps``). The nominal
model and the true chip use the same stage; only the meshes' physics differs between them. The
intermediate detection adds no readout noise (the base class's seeded noise acts on the final
readings only).

Controls: ``d = 2 N (N - 1)`` phases in radians, bounds ``[0, 2 pi]``: mesh 1's ``N (N - 1)``
phases (names ``"m1.mzi{k}.theta"``, ``"m1.mzi{k}.phi"``, interleaved per MZI in canonical
order), then mesh 2's (``"m2. ..."``).

The **truth** of a chip holds, beyond the two nominal lossless ideal meshes, for *each* mesh
independently (levels shared, draws independent, derived from ``seed`` only):

- fabrication errors: coupler splitting errors ``N(0, s_bs^2)`` and static phase errors
  ``N(0, s_ps^2)``;
- hidden effects: thermal crosstalk between neighbouring heaters of the same mesh, arm loss
  imbalance and insertion loss, per-port detector responsivity and saturation (of mesh 1's
  detectors, before the O/E/O stage, and of mesh 2's, at the readout);
- the nuisance ``temperature`` ``dT`` (K): every phase shifter of *both* meshes moves by
  ``thermal_coeff * dT``;
- readout noise and slow drift of all ``d`` controls (the base class
  :class:`~blacksat.devices.base.SimulatedDevice`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar

import numpy as np
import torch

from blacksat.errors import ConfigError, ShapeError
from blacksat.perturbations import PerturbationModel
from blacksat.space import ParamSpace

from .base import Nuisance, PhysicsModel, SimulatedDevice
from .mzi import MeshErrors, MZIMesh, MZIPhysics, phase_perturbations

OEO_EPS = 1e-6  # floor of each port's power fraction in the O/E/O stage (-60 dB)
_TINY = 1e-30  # absolute floor: an all-dark mesh 1 gives the uniform field, never NaN


class HybridPhysics(PhysicsModel):
    """Two meshes and the O/E/O stage between them (see the module docstring).

    ``forward_many(thetas (K, 2 d_m), x (B, N)) -> (K, B, N)`` intensities at mesh 2's
    detectors, with ``d_m = N (N - 1)`` the controls of one mesh (mesh 1's first).

    Args:
        mesh1, mesh2: the meshes' physics (intensity detection, same ``n_modes``).
        eps: the O/E/O stage's floor on each port's power fraction.

    ``calibratable`` lists both meshes' identifiable error parameters, dotted
    (``"mesh1.bs_errors"``, ...), for :class:`~blacksat.surrogates.GreyBox`.
    """

    def __init__(self, mesh1: MZIPhysics, mesh2: MZIPhysics, eps: float = OEO_EPS) -> None:
        super().__init__()
        if mesh1.n_modes != mesh2.n_modes:
            raise ConfigError(f"the meshes differ in n_modes: {mesh1.n_modes} vs {mesh2.n_modes}")
        for mesh in (mesh1, mesh2):
            if mesh.detection != "intensity":
                raise ConfigError("the meshes of a hybrid must use intensity detection")
        self.mesh1, self.mesh2 = mesh1, mesh2
        self.n_modes = mesh1.n_modes
        self.eps = float(eps)
        self.calibratable: tuple[str, ...] = tuple(
            f"{name}.{p}" for name, mesh in self.named_children() for p in mesh.calibratable
        )

    @property
    def mesh_controls(self) -> int:
        """Controls of one mesh, ``N (N - 1)``."""
        return self.n_modes * (self.n_modes - 1)

    def oeo(self, power: torch.Tensor) -> torch.Tensor:
        """Mesh 1's detector readings ``(..., N)`` -> mesh 2's input amplitudes ``(..., N)``
        (unit power; see the module docstring)."""
        total = power.sum(dim=-1, keepdim=True)
        floor = self.eps * total + _TINY
        return torch.sqrt((power + floor) / (total + self.n_modes * floor))

    def forward_many(self, thetas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``thetas (K, 2 N (N - 1))``, real fields ``x (B, N)`` -> intensities ``(K, B, N)``."""
        d, n = 2 * self.mesh_controls, self.n_modes
        if thetas.ndim != 2 or thetas.shape[1] != d:
            raise ShapeError(f"thetas must be (K, {d}), got {tuple(thetas.shape)}")
        if x.ndim != 2 or x.shape[1] != n:
            raise ShapeError(f"x must be (B, {n}), got {tuple(x.shape)}")
        split = self.mesh_controls
        power = self.mesh1.forward_many(thetas[:, :split], x)  # (K, B, N)
        return self.mesh2.forward_many(thetas[:, split:], self.oeo(power))


class MZIHybrid(SimulatedDevice):
    """A simulated two-mesh MZI chip with an O/E/O stage (registry name ``"mzi-hybrid"``).

    ``query(theta (d,), x (B, N)) -> (B, N)`` intensities at mesh 2's detectors;
    ``d = 2 N (N - 1)`` phases in ``[0, 2 pi]`` rad, mesh 1's then mesh 2's (module docstring).
    Inputs are real field amplitudes; mesh 2 always receives unit power, and the detector full
    scale (``full_scale = 1``) is that power delivered to one port.

    Args (keyword-only): ``n_modes`` (default 16: two meshes of 120 MZIs, 480 controls),
        ``s_bs``, ``s_ps``, ``crosstalk``, ``loss_imbalance_db``, ``insertion_loss_db``,
        ``saturation``, ``responsivity_spread``, ``thermal_coeff``: as for
        :class:`~blacksat.devices.mzi.MZIMesh` (same defaults), applied to both meshes, each
        with its own draw; ``seed``, ``noise`` (default 0.005 of full scale), ``drift``
        (default 0.005 rad), ``drift_time``, ``dtype``: see
        :class:`~blacksat.devices.base.SimulatedDevice`; ``temperature``: nuisance, ambient
        temperature change in K acting on both meshes (default 0, rated +-2 K).

    Setting every error level and hidden-effect strength to 0 (and ``noise = drift = 0``)
    makes the truth equal to the nominal model.
    """

    name: ClassVar[str] = "mzi-hybrid"
    output_kind: ClassVar[str] = "power"  # detected optical powers
    nuisances: ClassVar[tuple[Nuisance, ...]] = (
        Nuisance(
            "temperature",
            0.0,
            (-2.0, 2.0),
            "K",
            "ambient temperature change: every phase shifter of both meshes moves by "
            "thermal_coeff * dT",
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
        seed: int = 0,
        noise: float = 0.005,
        drift: float = 0.005,
        drift_time: float = 1000.0,
        dtype: torch.dtype | str = torch.float32,
        torch_device: torch.device | str = "cpu",
        **nuisance: float,
    ) -> None:
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
        )  # validated once, applied to both meshes
        self._mesh_args: dict[str, Any] = asdict(errors)
        self.n_modes: int = self._mesh_args["n_modes"]
        self.thermal_coeff: float = self._mesh_args["thermal_coeff"]
        self.s_ps: float = self._mesh_args["s_ps"]
        names = [f"m{i}.{name}" for i in (1, 2) for name in errors.control_names()]
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
        """``d = 2 N (N - 1)`` phases, each in ``[0, 2 pi]`` rad, periodic (``2 pi``; mesh 1's,
        then mesh 2's)."""
        return self._space

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(N,)`` real input field amplitudes (into mesh 1)."""
        return (self.n_modes,)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """``(N,)`` intensities at mesh 2's detectors."""
        return (self.n_modes,)

    def mesh_seeds(self) -> tuple[int, int]:
        """The fabrication seeds of the two meshes (an :class:`MZIMesh` built with one of them
        and this device's levels is that mesh alone), derived from ``seed`` only."""
        rng = np.random.default_rng(self._fab_seed)
        s1, s2 = rng.integers(0, 2**62, size=2)
        return int(s1), int(s2)

    def _mesh(self, seed: int, temperature: float) -> MZIMesh:
        return MZIMesh(
            **self._mesh_args,
            seed=seed,
            noise=0.0,
            drift=0.0,
            dtype="float64",
            temperature=temperature,
        )

    def _build_truth(self, rng: np.random.Generator) -> PhysicsModel:
        s1, s2 = rng.integers(0, 2**62, size=2)  # the same draw as mesh_seeds()
        t = self.nuisance_values["temperature"]
        return HybridPhysics(
            self._mesh(int(s1), t).exact_model(), self._mesh(int(s2), t).exact_model()
        )

    def _build_nominal(self, temperature: float = 0.0) -> PhysicsModel:
        def nominal() -> MZIPhysics:
            shift = self.thermal_coeff * temperature
            return MZIPhysics(self.n_modes, phase_shift=shift).to(torch.float64)

        return HybridPhysics(nominal(), nominal())

    def perturbation_models(self) -> dict[str, PerturbationModel]:
        """The disturbances of the two meshes, each covering its rated range:

        - ``"phase_drift"``: :class:`~blacksat.perturbations.CommonMode` shift of all ``d``
          phases (both meshes) by up to ``|thermal_coeff| * 2 K`` (on the nominal physics a
          shift of ``thermal_coeff * dT`` *is* ``nominal_model(temperature=dT)``);
        - ``"temperature"``: the nuisance itself, rated -2..2 K
          (:class:`~blacksat.perturbations.NuisanceModel`);
        - ``"phase_error"``: independent ``N(0, s_ps^2)`` phase errors per phase shifter
          (another chip of the same process; :class:`~blacksat.perturbations.PerControl`).
        """
        return phase_perturbations(self, super().perturbation_models())

    def bytes_per_setting(self, batch: int) -> int:
        """Two meshes' matrices and scratch (complex, ``N x N``), and the fields, powers and
        noise of ``batch`` inputs, per setting."""
        n = self.n_modes
        return 2 * 16 * (3 * n * n + 4 * batch * n) + 8 * 4 * self.space.dim

    def config(self) -> dict[str, Any]:
        """Every constructor argument (JSON-friendly; ``dtype`` as a string)."""
        return {
            **self._mesh_args,
            **self.shared_config(),
        }


__all__ = ["OEO_EPS", "HybridPhysics", "MZIHybrid"]
