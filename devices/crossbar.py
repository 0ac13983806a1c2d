"""An analog in-memory-computing crossbar (RRAM/PCM-like): a simulated electrical device.

The physics (differential conductance pairs, programming noise, power-law drift, stuck cells,
device-to-device variation, IR drop, ADC) is in :mod:`blacksat.devices.crossbar_physics`. This
module is the device: controls, the write/read cycle and its randomness.

Write/read cycle
----------------
Every setting sent is **programmed** (a write) before its inputs are read, and every write draws
fresh programming noise: by default the device re-programs on every call, even when the setting
is the one it already holds (``reprograms_on_query = True``, what a driver that always writes
does; a :class:`~blacksat.meter.MeteredDevice` charges a reconfiguration for each). With
``reprogram=False`` a setting equal to the held one is not written again: the held conductances
(with their programming noise) are read again, and they keep drifting, ``read_interval`` seconds
per read. Readings are taken ``age`` seconds after programming (the nuisance, default ``t0``).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from numpy.typing import ArrayLike

from blacksat.device import check_inputs
from blacksat.devices.base import Nuisance, PhysicsModel, SimulatedDevice
from blacksat.devices.crossbar_physics import CrossbarPhysics
from blacksat.errors import ConfigError
from blacksat.perturbations import PerControl, PerturbationModel
from blacksat.space import ParamSpace

DRIFT_T0 = 60.0
"""Reference time of the drift law, s: the programmed value is verified 60 s after the write."""


class Crossbar(SimulatedDevice):
    """A stack of crossbar arrays, one control per conductance (two per weight).

    ``query(theta (d,), x (B, n_in)) -> (B, n_out)`` ADC readings (signed currents, units of
    ``Gmax x V``); ``query_many(thetas (K, d), x) -> (K, B, n_out)``;
    ``d = 2 sum_l n_l n_{l+1}`` (320 for the default ``(16, 10)``). Controls in ``[0, 1]``:
    the target conductance as a fraction of ``Gmax``, ``G+`` of a layer then its ``G-``
    (:meth:`split_controls`). Inputs are read voltages in ``[-1, 1]`` (:attr:`input_range`);
    the DAC clips beyond.

    Args:
        layer_sizes: ``(n_in, ..., n_out)``; ``(n_in, n_out)`` is a single array.
        program_noise: programming noise, std ``program_noise (0.5 + 0.5 g)`` of ``Gmax`` at a
            target ``g``, drawn at every write (0.03).
        drift_exponent: mean drift exponent ``nu`` of ``G(t) = G(t0) (t / t0)^-nu`` (0.05,
            phase-change memory); ``drift_exponent_spread``: its std across cells (0.02).
        read_interval: seconds between two reads (drift of a held setting), 1.
        reprogram: write every setting sent, even the held one (default True).
        stuck: fraction of cells stuck at 0 or ``Gmax`` (0.005).
        variation: relative std of the cells' maximum conductance (0.05).
        ir_drop: relative IR-drop loss of the worst cell of a full-scale bit line (0.1).
        adc_bits: ADC resolution (8); ``adc_range``: ADC full scale as a fraction of the
            fan-in (0.25 of ``n_in`` full-scale currents).
        seed, noise, drift, drift_time, dtype: see :class:`SimulatedDevice` (``noise``: read
            noise relative to the last layer's ADC full scale; ``drift``: slow drift of the
            write circuitry, an Ornstein-Uhlenbeck offset of the targets per write; 0 default).
        age: nuisance, time between programming and read, s (rated 60 s .. 1 day).
    """

    name: ClassVar[str] = "crossbar"
    nuisances: ClassVar[tuple[Nuisance, ...]] = (
        Nuisance(
            "age",
            DRIFT_T0,
            (DRIFT_T0, 86400.0),
            "s",
            "time between programming and read: conductances drift as (t / 60 s)^-nu",
        ),
    )
    quiet_config: ClassVar[dict[str, float]] = {"noise": 0.0, "drift": 0.0, "program_noise": 0.0}
    output_kind: ClassVar[str] = "signed"
    input_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)

    def __init__(
        self,
        *,
        layer_sizes: Sequence[int] = (16, 10),
        program_noise: float = 0.03,
        drift_exponent: float = 0.05,
        drift_exponent_spread: float = 0.02,
        read_interval: float = 1.0,
        reprogram: bool = True,
        stuck: float = 0.005,
        variation: float = 0.05,
        ir_drop: float = 0.1,
        adc_bits: int = 8,
        adc_range: float = 0.25,
        seed: int = 0,
        noise: float = 0.005,
        drift: float = 0.0,
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
        self.program_noise = _check("program_noise", program_noise, hi=1.0)
        self.drift_exponent = _check("drift_exponent", drift_exponent, hi=1.0)
        self.drift_exponent_spread = _check("drift_exponent_spread", drift_exponent_spread, hi=1.0)
        self.read_interval = _check("read_interval", read_interval, hi=1e9)
        if not isinstance(reprogram, (bool, np.bool_)):
            raise ConfigError(f"reprogram must be True or False, got {reprogram!r}")
        self.reprogram_always = bool(reprogram)
        self.stuck = _check("stuck", stuck, hi=1.0)
        self.variation = _check("variation", variation, hi=0.5)
        self.ir_drop = _check("ir_drop", ir_drop, hi=0.5)
        if isinstance(adc_bits, bool) or not isinstance(adc_bits, (int, np.integer)):
            raise ConfigError(f"adc_bits must be an integer in [1, 24], got {adc_bits!r}")
        if not 1 <= adc_bits <= 24:
            raise ConfigError(f"adc_bits must be an integer in [1, 24], got {adc_bits!r}")
        self.adc_bits = int(adc_bits)
        self.adc_range = _check("adc_range", adc_range, lo_open=True, hi=1.0)
        names = [
            f"l{layer}{sign}[{o},{i}]"
            for layer, (n_i, n_o) in enumerate(itertools.pairwise(sizes))
            for sign in "+-"
            for o in range(n_o)
            for i in range(n_i)
        ]
        self._space = ParamSpace.box(len(names), 0.0, 1.0, names=names)
        self.full_scale = self.adc_range * sizes[-2]
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
        """``d`` conductance targets in ``[0, 1]`` (fractions of ``Gmax``)."""
        return self._space

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.layer_sizes[0],)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.layer_sizes[-1],)

    @property
    def weight_banks(self) -> tuple[tuple[int, int, int], ...]:
        """The wiring (:mod:`blacksat.layered_response`): one ``(n_out, n_in)`` array per layer,
        each weight set by a differential pair (its ``G+`` block, then its ``G-`` block)."""
        return tuple((n_o, n_i, 2) for n_i, n_o in itertools.pairwise(self.layer_sizes))

    @property
    def reprograms_on_query(self) -> bool:
        """Whether re-sending the held setting writes the array again (see the module doc)."""
        return self.reprogram_always

    def initial_controls(self, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Every pair around mid-range (``G+ ~ G- ~ 0.5``, weights near 0), with a seeded
        spread of ``0.5 / sqrt(n_in)`` so that inner layers start with a gradient."""
        gen = np.random.default_rng(rng)
        scales = np.concatenate(
            [
                np.full(2 * o * i, 0.5 / math.sqrt(i))
                for i, o in itertools.pairwise(self.layer_sizes)
            ]
        )
        return np.clip(0.5 + scales * gen.standard_normal(self.space.dim), 0.0, 1.0)

    def split_controls(self, theta: ArrayLike) -> list[tuple[np.ndarray, np.ndarray]]:
        """``theta (d,)`` or ``(K, d)`` -> per layer ``(G+, G-)``, each ``(..., n_out, n_in)``."""
        arr = np.asarray(theta, dtype=np.float64)
        if arr.shape[-1:] != (self.space.dim,) or arr.ndim > 2:
            raise ConfigError(f"expected (d,) or (K, d) with d = {self.space.dim}, got {arr.shape}")
        out, start = [], 0
        lead = arr.shape[:-1]
        for n_i, n_o in itertools.pairwise(self.layer_sizes):
            n = n_o * n_i
            pos = arr[..., start : start + n].reshape(*lead, n_o, n_i)
            neg = arr[..., start + n : start + 2 * n].reshape(*lead, n_o, n_i)
            out.append((pos, neg))
            start += 2 * n
        return out

    def config(self) -> dict[str, Any]:
        return {
            "layer_sizes": list(self.layer_sizes),
            "program_noise": self.program_noise,
            "drift_exponent": self.drift_exponent,
            "drift_exponent_spread": self.drift_exponent_spread,
            "read_interval": self.read_interval,
            "reprogram": self.reprogram_always,
            "stuck": self.stuck,
            "variation": self.variation,
            "ir_drop": self.ir_drop,
            "adc_bits": self.adc_bits,
            "adc_range": self.adc_range,
            **self.shared_config(),
        }

    # ------------------------------------------------------------------ physics
    def _build_truth(self, rng: np.random.Generator) -> PhysicsModel:
        d = self.space.dim
        z_gmax = rng.standard_normal(d)
        z_nu = rng.standard_normal(d)
        u_stuck = rng.uniform(size=d)
        u_side = rng.uniform(size=d)
        gmax = np.maximum(1.0 + self.variation * z_gmax, 0.5)
        stuck = u_stuck < self.stuck
        return CrossbarPhysics(
            self.layer_sizes,
            gmax=torch.as_tensor(gmax),
            stuck_mask=torch.as_tensor(stuck.astype(np.float64)),
            stuck_value=torch.as_tensor(np.where(u_side < 0.5, 0.0, gmax)),
            nu=torch.as_tensor(
                np.maximum(self.drift_exponent + self.drift_exponent_spread * z_nu, 0.0)
            ),
            age=self.nuisance_values["age"],
            t0=DRIFT_T0,
            ir_drop=self.ir_drop,
            adc_bits=self.adc_bits,
            adc_range=self.adc_range,
            clip_inputs=True,
        )

    def _build_nominal(self, age: float = DRIFT_T0) -> PhysicsModel:
        return CrossbarPhysics(
            self.layer_sizes,
            drift_exponent=self.drift_exponent,
            age=age,
            t0=DRIFT_T0,
            adc_range=self.adc_range,
        )

    def noisy_model(self, dtype: torch.dtype | None = None, *, seed: int = 0) -> torch.nn.Module:
        """The truth with a crossbar's per-query randomness drawn afresh at every call:
        programming noise on every setting (as :meth:`query_many` draws it at every write) and
        read noise on every layer's currents (no drift; read at the nuisance ``age``)."""
        return CrossbarReadings(
            self.exact_model(dtype),
            program_noise=self.program_noise,
            read_std=self.noise * self.full_scale,
            seed=seed,
        )

    def perturbation_models(self) -> dict[str, PerturbationModel]:
        """The disturbances of a crossbar, each at its rated level:

        - ``"programming"``: independent ``N(0, sigma^2)`` per conductance, ``sigma`` the
          programming noise at mid-range targets (every write draws it;
          :class:`~blacksat.perturbations.PerControl`, control units = ``Gmax``);
        - ``"age"``: the drift nuisance itself, rated 60 s .. 1 day
          (:class:`~blacksat.perturbations.NuisanceModel`);
        - ``"variation"``: another array of the same process, the spread of ``Gmax`` seen at a
          mid-range target (``PerControl``, gaussian).
        """
        return {
            "programming": PerControl(0.75 * self.program_noise, kind="gaussian"),
            **super().perturbation_models(),
            "variation": PerControl(0.5 * self.variation, kind="gaussian"),
        }

    # ------------------------------------------------------------------ write/read cycle
    def reset(self) -> None:
        """Restart the noise, drift and programming streams; forget the held setting."""
        super().reset()
        ss = self._drift_seed
        program = np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, 1))
        self._program_rng = np.random.default_rng(program)
        self._held: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._reads = 0  # reads of the held programming so far

    def rng_state(self) -> dict[str, Any]:
        """The base streams, the programming-noise stream and the held programming (setting,
        applied conductances, their programming noise) with its read count."""
        held = None if self._held is None else [torch.as_tensor(a.copy()) for a in self._held]
        return {
            **super().rng_state(),
            "program": copy.deepcopy(self._program_rng.bit_generator.state),
            "held": held,
            "reads": int(self._reads),
        }

    def set_rng_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`rng_state` returned."""
        try:
            program = np.random.default_rng()
            program.bit_generator.state = copy.deepcopy(dict(state["program"]))
            raw = state["held"]
            held = (
                None
                if raw is None
                else tuple(torch.as_tensor(a, dtype=torch.float64).numpy().copy() for a in raw)
            )
            reads = int(state["reads"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a random state of {type(self).__name__}: {exc}") from None
        d = self.space.dim
        if held is not None and (len(held) != 3 or any(a.shape != (d,) for a in held)):
            raise ConfigError(f"the held programming must be three ({d},) arrays")
        super().set_rng_state(state)
        self._program_rng, self._held, self._reads = program, held, reads  # type: ignore[assignment]

    def _writes(self, thetas: np.ndarray) -> np.ndarray:
        """``(K,)`` which settings are written (all of them when re-programming)."""
        k = thetas.shape[0]
        if self.reprogram_always:
            return np.ones(k, dtype=bool)
        writes = np.ones(k, dtype=bool)
        writes[1:] = np.any(thetas[1:] != thetas[:-1], axis=1)
        if self._held is not None:
            writes[0] = bool(np.any(thetas[0] != self._held[0]))
        return writes

    def reprogram(self, theta: ArrayLike) -> None:
        """Write ``theta (d,)`` now, even if it is the held setting (fresh programming noise;
        the held conductances start drifting again from ``age``)."""
        t = self.space.validate(theta)
        applied = t + self._advance_drift(1)[0]
        sigma = self.program_noise * (0.5 + 0.5 * np.clip(applied, 0.0, 1.0))
        pnoise = sigma * self._program_rng.standard_normal((1, self.space.dim))[0]
        self._held = (t.copy(), applied, pnoise)
        self._reads = 0

    def query_many(self, thetas: ArrayLike, x: ArrayLike) -> np.ndarray:
        """``thetas (K, d)``, ``x (B, n_in)`` -> ADC readings ``(K, B, n_out)`` (float64).

        Each written setting draws its write-circuit drift and programming noise; each read
        draws read noise; a setting read again without a write is older by ``read_interval``.
        """
        thetas = self.space.validate_many(thetas)
        x = check_inputs(x, self.input_shape)
        writes = self._writes(thetas)
        nw = int(writes.sum())
        applied = thetas[writes] + self._advance_drift(nw)
        sigma = self.program_noise * (0.5 + 0.5 * np.clip(applied, 0.0, 1.0))
        pnoise = sigma * self._program_rng.standard_normal((nw, self.space.dim))
        # which programming each read uses (0 = the held one) and how often it was read before
        which = np.cumsum(writes)
        held = self._held
        base_applied = [held[1]] if held is not None else [np.zeros(self.space.dim)]
        base_noise = [held[2]] if held is not None else [np.zeros(self.space.dim)]
        all_applied = np.concatenate([base_applied, applied])[which]
        all_noise = np.concatenate([base_noise, pnoise])[which]
        k = thetas.shape[0]
        last_write = np.maximum.accumulate(np.where(writes, np.arange(k), -1))
        reads = np.where(last_write >= 0, np.arange(k) - last_write, np.arange(k) + self._reads)
        ages = self.nuisance_values["age"] + self.read_interval * reads
        with torch.no_grad():
            rn = None
            if self.noise > 0:
                per = x.shape[0] * sum(self.layer_sizes[1:])
                rn = self._draw_noise(torch.Size((k, per)), self.dtype).to(self.torch_device)
                rn = rn.reshape(k, x.shape[0], -1).mul_(self.noise * self.full_scale)
            y = self._truth.forward_noisy(
                self._tensor(all_applied),
                self._tensor(x),
                program_noise=self._tensor(all_noise),
                read_noise=rn,
                ages=self._tensor(ages),
            )
        self._held = (thetas[-1].copy(), all_applied[-1].copy(), all_noise[-1].copy())
        self._reads = int(reads[-1]) + 1
        return y.double().cpu().numpy()


class CrossbarReadings(PhysicsModel):
    """A crossbar's readings as a differentiable model (:meth:`Crossbar.noisy_model`):
    ``thetas (K, d)``, ``x (B, n_in)`` -> ``(K, B, n_out)`` through ``truth`` with fresh
    programming noise ``N(0, (program_noise (0.5 + 0.5 g))^2)`` per setting and control and
    read noise ``N(0, read_std^2)`` on every layer's currents, from the model's own seeded
    stream."""

    def __init__(
        self, truth: CrossbarPhysics, *, program_noise: float, read_std: float, seed: int = 0
    ) -> None:
        super().__init__()
        self.truth = truth
        self.program_noise, self.read_std, self.seed = float(program_noise), float(read_std), seed
        self._gen = torch.Generator().manual_seed(int(seed))

    def _randn(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        return torch.randn(shape, generator=self._gen, dtype=like.dtype).to(like.device)

    def forward_many(self, thetas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        k, b = thetas.shape[0], x.shape[-2]
        sigma = self.program_noise * (0.5 + 0.5 * torch.clamp(thetas, 0.0, 1.0))
        currents = sum(self.truth.layer_sizes[1:])
        return self.truth.forward_noisy(
            thetas,
            x,
            program_noise=sigma * self._randn(tuple(thetas.shape), thetas),
            read_noise=self.read_std * self._randn((k, b, currents), thetas),
        )


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


__all__ = ["DRIFT_T0", "Crossbar", "CrossbarReadings"]
