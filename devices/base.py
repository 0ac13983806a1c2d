"""Shared machinery of the simulated devices.

A simulated device is one physics implementation (a :class:`PhysicsModel`, differentiable torch)
used in three configurations:

- the **truth** (hidden fabrication errors, unmodelled effects, the current nuisance values),
  evaluated under ``no_grad`` behind the numpy :class:`~blacksat.Device` interface, with seeded
  readout noise and slow drift of the controls during operation;
- the **exact model** (:meth:`SimulatedDevice.exact_model`): the same truth, differentiable,
  without noise or drift: the white-box upper bound and the differentiable fallback;
- the **nominal model** (:meth:`SimulatedDevice.nominal_model`): what a user believes, with every
  error and unmodelled effect omitted.

Randomness is owned by the device: ``seed`` fixes the fabrication draw, and independent streams
derived from it drive readout noise and drift. Two devices built with the same arguments give
bitwise-identical answers to the same sequence of queries.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.signal import lfilter
from torch import nn

from blacksat.device import check_inputs
from blacksat.devices.perturbations import rated_nuisances
from blacksat.errors import ConfigError
from blacksat.perturbations import PerturbationModel
from blacksat.readout_noise import ReadoutNoise
from blacksat.space import ParamSpace
from blacksat.torch_device import call_batched, module_device, resolve_torch_device
from blacksat.validation import check_int

Self = TypeVar("Self", bound="SimulatedDevice")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class Nuisance:
    """A physical parameter that perturbs a deployed device but is not a control.

    Examples: ambient temperature change (K), mask rotation (deg), mask shift (pixels).
    ``rated`` is the range a deployment is expected to see; sweeps and worst-case
    perturbation models use it.
    """

    name: str
    default: float
    rated: tuple[float, float]
    unit: str
    doc: str


class PhysicsModel(nn.Module, ABC):
    """Differentiable device physics.

    ``forward(theta (d,), x (B, *in)) -> (B, *out)``;
    ``forward(thetas (K, d), x (B, *in)) -> (K, B, *out)``. Subclasses implement
    :meth:`forward_many` on the batched form only (the single path is the batched one, K = 1).
    """

    def forward(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Evaluated where the model lives (``model.to("cuda")``); the result comes back to
        the torch device ``theta`` came from (gradients flow across the move)."""
        return call_batched(self.forward_many, theta, x, self.torch_device)

    @property
    def torch_device(self) -> torch.device | None:
        """The torch device of this model's tensors (``None`` for a model without any)."""
        return module_device(self)

    @abstractmethod
    def forward_many(self, thetas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``thetas (K, d)``, ``x (B, *in)`` -> ``(K, B, *out)``."""


def _check_nonneg(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


class SimulatedDevice(ABC):
    """Base class of the simulated PNN devices (implements :class:`~blacksat.Device`).

    Subclasses set ``name``, ``nuisances``, implement :meth:`_build_truth`,
    :meth:`_build_nominal`, the shapes and ``space``, and call ``super().__init__`` *last* in
    their own ``__init__`` (it builds the truth).

    Args (shared by every device):
        seed: fabrication draw (and, derived from it, the noise and drift streams).
        noise: readout noise, standard deviation relative to the detector full scale
            ``full_scale`` (additive Gaussian). 0 disables it.
        drift: slow drift during operation: stationary standard deviation of an
            Ornstein-Uhlenbeck offset on every control, in control units, advancing once per
            reconfiguration. 0 disables it.
        drift_time: correlation time of the drift, in reconfigurations.
        dtype: real dtype of the simulation, ``torch.float32`` / ``torch.float64`` or their
            names (complex fields use the matching complex dtype).
        torch_device: where the simulation runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...). The
            device's answers are numpy arrays wherever it runs, and readout noise and drift are
            drawn on the CPU, so a chip answers the same queries with the same readings on any
            torch device (up to the floating-point differences of the two backends). Its
            models (:meth:`exact_model`, :meth:`nominal_model`) live there too.

    ``query_many`` evaluates ``K`` settings at once, in chunks of settings whose working memory
    stays under :attr:`max_chunk_bytes` (an estimate per setting, :meth:`bytes_per_setting`);
    chunking changes no reading (noise is drawn per setting).
    """

    name: ClassVar[str] = "device"
    nuisances: ClassVar[tuple[Nuisance, ...]] = ()
    #: detector full scale, the unit of ``noise``; subclasses may set it per instance
    #: (before calling ``super().__init__``) when it depends on the configuration.
    full_scale: float = 1.0
    #: constructor arguments that switch every stochastic effect off (readout noise, drift,
    #: and any device-specific noise); the exact model then equals the device's readings.
    quiet_config: ClassVar[dict[str, float]] = {"noise": 0.0, "drift": 0.0}
    #: working-memory bound of one chunk of ``query_many`` (bytes); set it on an instance to
    #: trade speed for memory.
    max_chunk_bytes: int = 2 * 2**30

    def __init__(
        self,
        *,
        seed: int = 0,
        noise: float = 0.0,
        drift: float = 0.0,
        drift_time: float = 1000.0,
        dtype: torch.dtype | str = torch.float32,
        torch_device: torch.device | str = "cpu",
        **nuisance: float,
    ) -> None:
        check_int("seed", seed, low=0)
        self.torch_device = resolve_torch_device(torch_device)
        dtype = _DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
        if dtype not in (torch.float32, torch.float64):
            raise ConfigError(f"dtype must be float32 or float64, got {dtype!r}")
        self.seed = int(seed)
        self.noise = _check_nonneg("noise", noise)
        self.drift = _check_nonneg("drift", drift)
        self.drift_time = float(drift_time)
        if not np.isfinite(self.drift_time) or self.drift_time <= 0:
            raise ConfigError(f"drift_time must be > 0, got {drift_time!r}")
        self.dtype = dtype
        known = {n.name: n for n in self.nuisances}
        unknown = set(nuisance) - set(known)
        if unknown:
            raise ConfigError(
                f"{type(self).__name__} has no nuisance parameter(s) {sorted(unknown)}; "
                f"known: {sorted(known)}"
            )
        self.nuisance_values: dict[str, float] = {}
        for n in self.nuisances:
            v = float(nuisance.get(n.name, n.default))
            if not np.isfinite(v):
                raise ConfigError(f"nuisance {n.name} must be finite, got {v!r}")
            self.nuisance_values[n.name] = v
        fab, noise_ss, drift_ss = np.random.SeedSequence(self.seed).spawn(3)
        self._fab_seed = fab
        self._noise_seed = int(noise_ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
        self._drift_seed = drift_ss
        truth = self._build_truth(np.random.default_rng(fab))
        self._truth = truth.to(device=self.torch_device, dtype=dtype).eval()
        for p in self._truth.parameters():
            p.requires_grad_(False)
        self.reset()

    # ------------------------------------------------------------------ to implement
    @property
    @abstractmethod
    def space(self) -> ParamSpace:
        """The controls' :class:`~blacksat.ParamSpace`."""

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input (no batch axis)."""

    @property
    @abstractmethod
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one output reading (no batch axis)."""

    @abstractmethod
    def _build_truth(self, rng: np.random.Generator) -> PhysicsModel:
        """The true physics of this chip: draw the fabrication errors from ``rng`` (always in
        the same order, so the draw depends on ``seed`` only) and apply
        ``self.nuisance_values``."""

    @abstractmethod
    def _build_nominal(self, **nuisance: float) -> PhysicsModel:
        """The nominal physics a user believes (no errors, no unmodelled effects) at the given
        nuisance values (every name of :attr:`nuisances`, already validated)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this device (JSON-friendly values); subclasses
        list their own and end with :meth:`shared_config`."""

    def shared_config(self) -> dict[str, Any]:
        """The constructor arguments every simulated device shares (seed, noise, drift, dtype,
        torch device) and the current nuisance values, JSON-friendly."""
        return {
            "seed": self.seed,
            "noise": self.noise,
            "drift": self.drift,
            "drift_time": self.drift_time,
            "dtype": str(self.dtype).removeprefix("torch."),
            "torch_device": str(self.torch_device),
            **self.nuisance_values,
        }

    # ------------------------------------------------------------------ Device protocol
    def query(self, theta: ArrayLike, x: ArrayLike) -> np.ndarray:
        """``theta (d,)``, ``x (B, *in)`` -> readings ``(B, *out)`` (float64)."""
        return self.query_many(self.space.validate(theta)[None], x)[0]

    def query_many(self, thetas: ArrayLike, x: ArrayLike) -> np.ndarray:
        """``thetas (K, d)``, ``x (B, *in)`` -> readings ``(K, B, *out)`` (float64).

        All ``K x B`` evaluations run as one tensor program. Settings are validated against
        :attr:`space` (out-of-bounds raises), then the drift offsets of this stretch of
        operation are added, the truth is evaluated, and readout noise is added.
        """
        thetas = self.space.validate_many(thetas)
        x = check_inputs(x, self.input_shape)
        k = thetas.shape[0]
        applied = self._tensor(thetas + self._advance_drift(k))
        xt = self._tensor(x)
        out = np.empty((k, x.shape[0], *self.output_shape))
        with torch.no_grad():
            for lo, hi in self._chunks(k, x.shape[0]):
                y = self._truth.forward_many(applied[lo:hi], xt)
                if self.noise > 0:
                    noise = self._draw_noise(y.shape, y.dtype).to(y.device)
                    y = noise.mul_(self.noise * self.full_scale).add_(y)
                out[lo:hi] = y.double().cpu().numpy()
        return out

    def bytes_per_setting(self, batch: int) -> int:
        """Estimated working memory (bytes) of evaluating one setting on ``batch`` inputs:
        the bound :meth:`query_many` chunks by. Default: a few real buffers of the inputs and
        outputs per input, plus the controls; devices with large intermediates (fields,
        matrices) override it."""
        per_input = int(np.prod(self.input_shape)) + 4 * int(np.prod(self.output_shape))
        return 8 * (batch * per_input + 8 * self.space.dim)

    def _chunks(self, k: int, batch: int) -> list[tuple[int, int]]:
        """``[(lo, hi), ...]`` covering ``range(k)`` in chunks within :attr:`max_chunk_bytes`."""
        size = max(1, int(self.max_chunk_bytes // max(1, self.bytes_per_setting(batch))))
        return [(lo, min(k, lo + size)) for lo in range(0, k, size)]

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        """A numpy array as a tensor of this device's dtype, on its torch device."""
        array = array if array.flags.writeable else array.copy()
        return torch.as_tensor(array, dtype=self.dtype, device=self.torch_device)

    def initial_controls(self, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """A sensible starting point for training, ``(d,)`` in bounds (default: the box
        center). Devices override it where the center is a poor start (e.g. a flat response)."""
        return self.space.center.copy()

    # ------------------------------------------------------------------ models
    def exact_model(self, dtype: torch.dtype | None = None) -> PhysicsModel:
        """The differentiable truth of this chip (current nuisance values; no noise, no drift),
        on this device's torch device.

        A fresh copy: changing it never changes the device.
        """
        return copy.deepcopy(self._truth).to(dtype or self.dtype)

    def noisy_model(self, dtype: torch.dtype | None = None, *, seed: int = 0) -> nn.Module:
        """The truth of this chip with its per-query randomness drawn afresh at every call (no
        drift): a differentiable model of its *readings*, what a noise-aware white box trains
        on (:class:`~blacksat.readout_noise.ReadoutNoise`). Here the readout noise, ``noise``
        of ``full_scale``; devices with more per-query noise (a crossbar's programming noise)
        add it. ``seed`` seeds the model's own noise stream (not the device's)."""
        return ReadoutNoise(self.exact_model(dtype), self.noise * self.full_scale, seed=seed)

    def nominal_model(self, dtype: torch.dtype | None = None, **nuisance: float) -> PhysicsModel:
        """The differentiable model a user would believe: all errors and hidden effects
        omitted; at the nominal nuisance values unless some are given (e.g.
        ``mrr.nominal_model(temperature=1.5)``, so that a nuisance adversary can run offline on
        the nominal physics). On this device's torch device. Unknown names raise
        :class:`ConfigError`."""
        values = self._nuisance_values(nuisance, {n.name: n.default for n in self.nuisances})
        model = self._build_nominal(**values)
        return model.to(device=self.torch_device, dtype=dtype or self.dtype)

    def model_family(
        self,
        kind: Literal["nominal", "exact"] = "nominal",
        *,
        dtype: torch.dtype | None = None,
        cache_size: int = 4,
    ) -> ModelFamily:
        """``family(**nuisance) -> PhysicsModel``: the nominal model (``kind="nominal"``,
        :meth:`nominal_model`) or the truth of this chip (``kind="exact"``,
        ``self.perturbed(**nuisance).exact_model()``) at given nuisance values, for estimators
        that evaluate at nuisance values (``StepContext.nuisance``). Names not given keep the
        nominal values (``"nominal"``) or this device's current values (``"exact"``). The last
        ``cache_size`` models are cached per nuisance tuple (adversaries call it every step);
        cached models are shared: do not modify them."""
        if kind not in ("nominal", "exact"):
            raise ConfigError(f"kind must be 'nominal' or 'exact', got {kind!r}")
        return ModelFamily(self, kind, dtype, cache_size)

    def perturbation_models(self) -> dict[str, PerturbationModel]:
        """The perturbation models of this device's physics, named by what they mean, each
        covering its rated range (:mod:`blacksat.perturbations`). Here: one
        :class:`~blacksat.perturbations.NuisanceModel` per nuisance parameter; devices add the
        control-space geometry of their disturbances."""
        return {n.name: rated_nuisances(self, n.name) for n in self.nuisances}

    def _nuisance_values(
        self, given: Mapping[str, float], base: Mapping[str, float]
    ) -> dict[str, float]:
        """``base`` updated with ``given`` (names checked, values finite floats)."""
        unknown = set(given) - set(base)
        if unknown:
            raise ConfigError(
                f"{type(self).__name__} has no nuisance parameter(s) {sorted(unknown)}; "
                f"known: {sorted(base)}"
            )
        out = {k: float(v) for k, v in base.items()}
        for k, v in given.items():
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                raise ConfigError(f"nuisance {k} must be a number, got {v!r}") from None
            if not np.isfinite(out[k]):
                raise ConfigError(f"nuisance {k} must be finite, got {v!r}")
        return out

    # ------------------------------------------------------------------ variants
    def perturbed(self: Self, **nuisance: float) -> Self:
        """The same chip (same fabrication draw) under post-deployment perturbations, e.g.
        ``mrr.perturbed(temperature=1.5)``. Unknown names raise :class:`ConfigError`."""
        return type(self)(**{**self.config(), **nuisance})

    def fresh_chip(self: Self, seed: int) -> Self:
        """Another chip from the same process: a new fabrication draw, same error levels."""
        return type(self)(**{**self.config(), "seed": seed})

    def reset(self) -> None:
        """Restart the noise and drift streams (the fabrication draw is unchanged)."""
        self._noise_gen = torch.Generator().manual_seed(self._noise_seed)
        self._drift_rng = np.random.default_rng(self._drift_seed)
        self._drift_state = np.zeros(self.space.dim)

    def _draw_noise(self, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        """Standard normal noise of ``shape = (K, B, *out)``, drawn in one call.

        Each setting gets a row of a multiple of 16 values (torch fills normals in aligned
        blocks of 16), so the draw for K settings equals K consecutive single-setting draws:
        ``query_many`` matches a loop of ``query`` bitwise (the contract suite checks it).
        """
        k, per = shape[0], int(np.prod(shape[1:]))
        row = max(16, -(-per // 16) * 16)
        noise = torch.randn((k, row), generator=self._noise_gen, dtype=dtype)
        return noise[:, :per].reshape(shape)

    def rng_state(self) -> dict[str, Any]:
        """The state of this simulator's random streams (readout noise, drift) and of what it
        holds between queries, as tensors and plain values: what a training checkpoint saves so
        that a resumed run meets the noise an uninterrupted one would (:meth:`set_rng_state`).
        A physical device has nothing of the kind."""
        return {
            "noise": self._noise_gen.get_state(),
            "drift": copy.deepcopy(self._drift_rng.bit_generator.state),
            "drift_state": torch.as_tensor(self._drift_state.copy()),
        }

    def set_rng_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`rng_state` returned (of this device class and size).

        Raises:
            ConfigError: ``state`` is not such a state.
        """
        try:
            noise = torch.Generator()
            noise.set_state(state["noise"])
            drift = np.random.default_rng()
            drift.bit_generator.state = copy.deepcopy(dict(state["drift"]))
            drift_state = torch.as_tensor(state["drift_state"], dtype=torch.float64).numpy().copy()
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"not a random state of {type(self).__name__}: {exc}") from None
        if drift_state.shape != (self.space.dim,):
            raise ConfigError(
                f"the random state's drift has shape {drift_state.shape}, this "
                f"{type(self).__name__} has {self.space.dim} controls"
            )
        self._noise_gen, self._drift_rng, self._drift_state = noise, drift, drift_state

    def _advance_drift(self, k: int) -> np.ndarray:
        """Drift offsets ``(k, d)`` for the next ``k`` reconfigurations (zeros if disabled)."""
        d = self.space.dim
        if self.drift == 0:
            return np.zeros((k, d))
        a = float(np.exp(-1.0 / self.drift_time))
        steps = self._drift_rng.standard_normal((k, d)) * (self.drift * np.sqrt(1 - a * a))
        # AR(1) recursion state_i = a * state_{i-1} + step_i, vectorized over the k settings
        out, _ = lfilter([1.0], [1.0, -a], steps, axis=0, zi=a * self._drift_state[None])
        self._drift_state = out[-1].copy()
        return out

    # ------------------------------------------------------------------ misc
    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description: name, shapes, controls, nuisances, configuration."""
        return {
            "name": self.name,
            "class": type(self).__name__,
            "controls": self.space.dim,
            "bounds": [float(self.space.lower.min()), float(self.space.upper.max())],
            "levels": None if self.space.levels is None else int(self.space.levels.size),
            "periodic": int(self.space.periodic.sum()),  # controls that wrap (phases)
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "nuisances": {
                n.name: {
                    "value": self.nuisance_values[n.name],
                    "rated": list(n.rated),
                    "unit": n.unit,
                    "doc": n.doc,
                }
                for n in self.nuisances
            },
            "config": self.config(),
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_noise_gen"] = self._noise_gen.get_state()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        gen = torch.Generator()
        gen.set_state(state["_noise_gen"])
        state["_noise_gen"] = gen
        self.__dict__.update(state)


class ModelFamily:
    """``family(**nuisance) -> PhysicsModel`` for one device (see
    :meth:`SimulatedDevice.model_family`), with an LRU cache of the last ``cache_size``
    models keyed by the full nuisance tuple."""

    def __init__(
        self, device: SimulatedDevice, kind: str, dtype: torch.dtype | None, cache_size: int
    ) -> None:
        if (
            isinstance(cache_size, bool)
            or not isinstance(cache_size, (int, np.integer))
            or cache_size < 1
        ):
            raise ConfigError(f"cache_size must be an integer >= 1, got {cache_size!r}")
        self.device, self.kind, self.dtype = device, kind, dtype
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[tuple[tuple[str, float], ...], PhysicsModel] = OrderedDict()

    def _base(self) -> dict[str, float]:
        if self.kind == "exact":
            return dict(self.device.nuisance_values)
        return {n.name: n.default for n in self.device.nuisances}

    def __call__(self, **nuisance: float) -> PhysicsModel:
        values = self.device._nuisance_values(nuisance, self._base())
        key = tuple(values.items())
        model = self._cache.get(key)
        if model is not None:
            self._cache.move_to_end(key)
            return model
        if self.kind == "nominal":
            model = self.device.nominal_model(self.dtype, **values)
        elif values == self.device.nuisance_values:
            model = self.device.exact_model(self.dtype)
        else:
            model = self.device.perturbed(**values).exact_model(self.dtype)
        self._cache[key] = model
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return model

    def __repr__(self) -> str:
        return f"ModelFamily({type(self.device).__name__}, kind={self.kind!r})"


__all__ = ["ModelFamily", "Nuisance", "PhysicsModel", "SimulatedDevice"]
