"""One estimator builder: the gradient estimator (and its SAT wrapper) from the run-file
vocabulary, with the settings one step spends.

The vocabulary is the ``[estimator]`` and ``[sat]`` tables of a run file
(:class:`EstimatorSpec`, :class:`SatSpec`); ``blacksat train``, ``blacksat compare``, the demo,
the benchmarks and the examples all build through :func:`build_estimator`, so the estimator is
looked up in :data:`~blacksat.estimators.ESTIMATORS` in one place and a schedule is sized from
the estimator's own count (:meth:`BuiltEstimator.max_steps`), never from a hand count::

    built = build_estimator(
        EstimatorSpec("zeroth_order", args={"q": 4}),
        SatSpec(perturbation="thermal", mode="worst"),
        task=task, device=meter, chip=chip,
    )
    cfg = TrainConfig(max_steps=built.max_steps(budget), epochs=None)
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from blacksat.errors import ConfigError
from blacksat.estimators import ESTIMATORS, QUERY_ONLY, Autograd
from blacksat.perturbations import PerturbationModel
from blacksat.readout_noise import ReadoutNoise
from blacksat.sat import FreeAscent, sat
from blacksat.validation import check_choice, check_int, check_real

EstimatorName = Literal["autograd", "physics_aware", "zeroth_order", "layered_response", "auto"]
#: ``[estimator] name = "auto"``: autograd through the device's nominal model when it has one,
#: else the query-only default planned on the device (:mod:`blacksat.query_plan`)
AUTO = "auto"
Ascent = Literal["same", "free", "model"]
_MODELS = ("nominal", "exact")


def estimator_args(name: str) -> set[str]:
    """The keyword arguments of a registered estimator a config may set."""
    params = inspect.signature(ESTIMATORS[name]).parameters
    return {n for n, p in params.items() if p.kind == p.KEYWORD_ONLY} - {"family", "space"}


@dataclass(frozen=True)
class EstimatorSpec:
    """``[estimator]``: the gradient estimator by registry name, the model that ``autograd``
    and ``physics_aware`` differentiate (``"nominal"``: what a user believes; ``"exact"``: the
    true chip, white box; or the path of a surrogate file written by ``blacksat calibrate``)
    and the estimator's keyword arguments (``args``, e.g. ``q``, ``sigma``, ``directions``,
    ``scheme`` of ``zeroth_order``).

    ``name = "auto"`` (what a run file without an ``[estimator]`` table gets) is resolved by
    the run: autograd through the nominal model when the device offers one, else the query-only
    default of :mod:`blacksat.query_plan`, calibrated on the device and sized from the budget
    (it takes no ``args``)."""

    name: EstimatorName = "autograd"
    model: str = "nominal"
    args: Mapping[str, Any] = field(default_factory=dict)
    #: where offline training on a surrogate file may go: ``"covered"`` (the range its data
    #: covers, a trust region) or ``"all"`` (the whole control space)
    region: Literal["covered", "all"] = "covered"
    #: ``autograd`` only: the device's readout noise, standard deviation in output units (what
    #: ``blacksat characterize`` reports), added to the model's readings at every step
    #: (:class:`~blacksat.readout_noise.ReadoutNoise`), so that offline training does not
    #: settle where the detector cannot tell the classes apart; 0: none
    readout_noise: float = 0.0

    def __post_init__(self) -> None:
        check_choice("estimator.name", self.name, [*sorted(ESTIMATORS), AUTO])
        check_choice("estimator.region", self.region, ["covered", "all"])
        noise = check_real("estimator.readout_noise", self.readout_noise, low=0.0)
        object.__setattr__(self, "readout_noise", noise)
        if noise > 0 and self.name != "autograd":
            raise ConfigError(
                f"estimator.readout_noise trains autograd through a noisy model; {self.name} "
                "reads the device's own noise (remove readout_noise or use name = 'autograd')"
            )
        is_path = isinstance(self.model, str) and (
            "/" in self.model or "\\" in self.model or Path(self.model).suffix != ""
        )
        if self.model not in _MODELS and not is_path:
            raise ConfigError(
                "estimator.model must be 'nominal', 'exact' or the path of a surrogate file "
                f"(e.g. runs/x/residual.pt), got {self.model!r}"
            )
        if not isinstance(self.args, Mapping):
            raise ConfigError(f"estimator.args must be a table, got {self.args!r}")
        object.__setattr__(self, "args", dict(self.args))
        if self.name == AUTO:
            if self.args:
                raise ConfigError(
                    "estimator.name 'auto' plans its own settings and takes no estimator.args; "
                    f"got {sorted(self.args)} (name an estimator to set them)"
                )
            return
        allowed = estimator_args(self.name)
        for key in self.args:
            if key not in allowed:
                raise ConfigError(
                    f"unknown key estimator.args.{key} for {self.name}; expected one of "
                    f"{sorted(allowed)}"
                )

    @property
    def queries_device(self) -> bool:
        """Whether the estimator queries the device (every estimator but ``autograd``)."""
        return self.name != "autograd"


@dataclass(frozen=True)
class SatSpec:
    """``[sat]``: sharpness-aware training around the estimator, against an L2 ball of radius
    ``rho`` or a named perturbation model of the device (``perturbation``, see
    ``chip.perturbation_models()``); neither means plain training. ``mode``: ``"worst"`` or
    ``"average"`` (``draws`` perturbations per step); ``ascent``: ``"same"`` (the estimator),
    ``"free"`` (the optimizer's momentum, no queries) or ``"model"`` (autograd through the
    estimator's model, no queries). A perturbation model that finds its worst case by probing
    the loss (``CommonMode(r, grid=n)``, nuisance models) spends no ascent at all."""

    rho: float | None = None
    perturbation: str | None = None
    mode: Literal["worst", "average"] = "worst"
    draws: int = 1
    ascent: Ascent = "same"

    def __post_init__(self) -> None:
        if self.rho is not None and self.perturbation is not None:
            raise ConfigError("sat: give rho or perturbation, not both")
        check_real("sat.rho", self.rho, low=0.0, none_ok=True)
        check_choice("sat.mode", self.mode, ("worst", "average"))
        check_int("sat.draws", self.draws, low=1)
        check_choice("sat.ascent", self.ascent, ("same", "free", "model"))

    @property
    def enabled(self) -> bool:
        """Whether SAT wraps the estimator."""
        return self.rho is not None or self.perturbation is not None


@dataclass(frozen=True)
class BuiltEstimator:
    """What :func:`build_estimator` returns.

    Attributes:
        estimator: the estimator to train with (the SAT wrapper when SAT is enabled).
        base: the estimator SAT wraps (``estimator`` itself without SAT).
        model: the differentiable model used (``None`` for ``zeroth_order`` without a model
            ascent).
    """

    estimator: Any
    base: Any
    model: Any = None

    @property
    def settings_per_step(self) -> int:
        """Settings one step sends to the device (the estimator's own count)."""
        return int(self.estimator.settings_per_step())

    def max_steps(self, budget: int | None, *, spent: int = 0) -> int | None:
        """The steps a reconfiguration ``budget`` allows after ``spent`` (at least 1; ``None``
        without a budget or for an estimator that sends no settings)."""
        per_step = self.settings_per_step
        if budget is None or per_step == 0:
            return None
        return max(1, (int(budget) - int(spent)) // per_step)


def _model(spec: EstimatorSpec, chip: Any, model: Any, dtype: torch.dtype | None) -> Any:
    if model is not None:
        return model
    if spec.model not in _MODELS:
        raise ConfigError(
            f"estimator.model {spec.model!r} is a surrogate file: load it and pass model=..."
        )
    if chip is None:
        raise ConfigError(f"estimator {spec.name!r} needs a model: pass model= or chip=")
    kw = {} if dtype is None else {"dtype": dtype}
    return chip.nominal_model(**kw) if spec.model == "nominal" else chip.exact_model(**kw)


def _perturbation(
    sat_spec: SatSpec,
    spec: EstimatorSpec,
    chip: Any,
    perturbations: Mapping[str, PerturbationModel] | None,
    space: Any,
) -> PerturbationModel | None:
    if sat_spec.perturbation is None:
        return None
    if perturbations is None:
        if chip is None or not callable(getattr(chip, "perturbation_models", None)):
            raise ConfigError("sat.perturbation names a model: pass chip= or perturbations=")
        perturbations = chip.perturbation_models()
    if sat_spec.perturbation not in perturbations:
        owner = type(chip).__name__ if chip is not None else "the given perturbations"
        raise ConfigError(
            f"sat.perturbation: {owner} has no perturbation model {sat_spec.perturbation!r}; "
            f"known: {sorted(perturbations)}"
        )
    pert = perturbations[sat_spec.perturbation]
    if spec.queries_device and space is not None:
        draw = pert.sample(torch.as_tensor(space.center), np.random.default_rng(0))
        if draw.nuisance:
            raise ConfigError(
                f"sat.perturbation {sat_spec.perturbation!r} sets nuisance parameters, which a "
                "device cannot be put into on demand; use it with estimator.name = "
                "'autograd', or a control-space model"
            )
    return pert


def build_estimator(
    spec: EstimatorSpec,
    sat_spec: SatSpec | None = None,
    *,
    task: Any,
    device: Any = None,
    chip: Any = None,
    model: Any = None,
    space: Any = None,
    perturbations: Mapping[str, PerturbationModel] | None = None,
    dtype: torch.dtype | None = None,
) -> BuiltEstimator:
    """The estimator of ``spec`` (wrapped in SAT by ``sat_spec`` when enabled).

    Args:
        spec: the ``[estimator]`` table.
        sat_spec: the ``[sat]`` table (``None``: plain training).
        task: the :class:`~blacksat.task.Task`.
        device: the device the estimator queries (a :class:`~blacksat.MeteredDevice` to enforce
            budgets); needed by ``physics_aware`` and ``zeroth_order``.
        chip: what provides models and perturbation models (``nominal_model``,
            ``exact_model``, ``model_family``, ``perturbation_models``, ``space``); default
            ``device``.
        model: the model to differentiate (default: ``chip``'s nominal or exact model by
            ``spec.model``; required for a surrogate file).
        space: the control space (default ``chip.space``).
        perturbations: the named perturbation models ``sat_spec.perturbation`` refers to
            (default ``chip.perturbation_models()``).
        dtype: dtype of the models taken from ``chip`` (default: the chip's own).
    """
    if spec.name == AUTO:
        raise ConfigError(
            "estimator.name 'auto' is resolved by the run (a nominal model, or a query plan "
            "from blacksat.query_plan sized from the budget); build a named estimator here"
        )
    chip = device if chip is None else chip
    space = getattr(chip, "space", None) if space is None else space
    cls = ESTIMATORS[spec.name]
    needs_model = spec.name not in QUERY_ONLY or (
        sat_spec is not None and sat_spec.ascent == "model"
    )
    resolved = _model(spec, chip, model, dtype) if needs_model else model
    try:
        if spec.name == "autograd":
            family = None
            if spec.model in _MODELS and callable(getattr(chip, "model_family", None)):
                kw = {} if dtype is None else {"dtype": dtype}
                family = chip.model_family(spec.model, **kw)
            if spec.readout_noise > 0:  # one noise stream for the model and its family
                noisy = ReadoutNoise(resolved, spec.readout_noise)
                resolved, family = noisy, None if family is None else noisy.family(family)
            base = cls(resolved, task, family=family, space=space, **spec.args)
        elif spec.name == "physics_aware":
            base = cls(device, resolved, task, **spec.args)
        else:
            base = cls(device, task, **spec.args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"estimator.args: {exc}") from None
    if sat_spec is None or not sat_spec.enabled:
        return BuiltEstimator(base, base, resolved)
    pert = _perturbation(sat_spec, spec, chip, perturbations, space)
    ascent: Any = {
        "same": None,
        "free": FreeAscent(),
        "model": Autograd(resolved, task, space=space) if sat_spec.ascent == "model" else None,
    }[sat_spec.ascent]
    est = sat(
        base,
        ascent,
        rho=sat_spec.rho if pert is None else None,
        perturbation=pert,
        mode=sat_spec.mode,
        draws=sat_spec.draws,
        space=space,
    )
    return BuiltEstimator(est, base, resolved)


__all__ = [
    "BuiltEstimator",
    "EstimatorSpec",
    "SatSpec",
    "build_estimator",
    "estimator_args",
]
