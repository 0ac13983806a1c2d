"""The methods of a comparison: named, validated configurations and their registry.

A :class:`Method` is either a nevergrad optimizer (by registry name, with keyword arguments) or a
blacksat training recipe (estimator, SAT settings, optimizer); :data:`METHODS` holds the
baselines and blacksat's methods used by :mod:`blacksat.product.compare`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from blacksat.errors import ConfigError

Kind = Literal["nevergrad", "blacksat"]
_NG_KEYS = {"optimizer", "optimizer_kwargs"}
_BS_KEYS = {
    "estimator", "q", "sigma", "directions", "scheme", "lr", "optimizer", "schedule",
    "batch_size", "rho", "perturbation", "mode", "ascent", "draws",
}  # fmt: skip
_DIRECTIONS = ("gaussian", "rademacher", "sphere", "coordinate")


# ---------------------------------------------------------------------- methods
@dataclass(frozen=True)
class Method:
    """A named training method and its settings.

    Attributes:
        name: registry / report name (e.g. ``"cma"``, ``"zo-adam"``).
        kind: ``"nevergrad"`` (a nevergrad optimizer through
            :func:`blacksat.ng.adapter.minimize`) or ``"blacksat"`` (blacksat's
            :class:`~blacksat.trainer.Trainer` with a gradient estimator).
        options: for ``"nevergrad"``: ``optimizer`` (a registry name) and optionally
            ``optimizer_kwargs`` for :func:`blacksat.ng.adapter.minimize`: a configured entry
            (e.g. ``"OldCMA"``, a ``ParametrizedCMA``) is rebuilt with them, e.g.
            ``{"scale": 0.5}``: CMA's initial step size as a multiple of the parametrization's
            sigma, a quarter of each control's range. (``"CMA"`` itself is nevergrad's selector
            among CMA variants and takes no kwargs.) For ``"blacksat"``:
            ``estimator`` (``"zo"`` query-only zeroth order, ``"pat"`` twin-assisted
            physics-aware through the nominal model), ``q``, ``sigma``, ``directions``,
            ``scheme`` (zeroth order), ``lr`` (default 0.05), ``optimizer`` (torch, default
            ``"adam"``), ``schedule`` (e.g. ``"cosine"`` over the steps the budget allows),
            ``batch_size`` (default 128), and SAT: ``rho`` (L2 ball) or
            ``perturbation`` (a name of the device's ``perturbation_models()``, e.g.
            ``"phase_drift"``), ``mode`` (``"worst"``/``"average"``), ``ascent`` (``"same"``
            or ``"free"``: the optimizer's momentum), ``draws``.
        doc: one line saying what the method is.
    """

    name: str
    kind: Kind
    options: Mapping[str, Any] = field(default_factory=dict)
    doc: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"method name must be a non-empty string, got {self.name!r}")
        if self.kind not in ("nevergrad", "blacksat"):
            raise ConfigError(f"method kind must be 'nevergrad' or 'blacksat', got {self.kind!r}")
        if not isinstance(self.options, Mapping):
            raise ConfigError(f"method options must be a mapping, got {type(self.options)}")
        opts = dict(self.options)
        object.__setattr__(self, "options", opts)
        allowed = _NG_KEYS if self.kind == "nevergrad" else _BS_KEYS
        unknown = set(opts) - allowed
        if unknown:
            raise ConfigError(
                f"method {self.name!r}: unknown {self.kind} option(s) {sorted(unknown)}; "
                f"allowed: {sorted(allowed)}"
            )
        if self.kind == "nevergrad":
            if not isinstance(opts.get("optimizer"), str):
                raise ConfigError(f"method {self.name!r} needs options['optimizer'] (a name)")
            if not isinstance(opts.get("optimizer_kwargs", {}), Mapping):
                raise ConfigError(f"method {self.name!r}: optimizer_kwargs must be a mapping")
        else:
            self._check_blacksat(opts)

    def _check_blacksat(self, opts: dict[str, Any]) -> None:
        if opts.get("estimator", "zo") not in ("zo", "pat", "auto"):
            raise ConfigError(f"method {self.name!r}: estimator must be 'zo', 'pat' or 'auto'")
        if opts.get("estimator") == "auto":
            fixed = {"q", "sigma", "directions", "scheme", "lr", "optimizer", "schedule"}
            clash = sorted(fixed & set(opts))
            if clash:
                raise ConfigError(
                    f"method {self.name!r}: estimator 'auto' plans {clash} itself "
                    "(blacksat.query_plan); leave them out"
                )
        if "rho" in opts and "perturbation" in opts:
            raise ConfigError(f"method {self.name!r}: give rho or perturbation, not both")
        if opts.get("ascent", "same") not in ("same", "free"):
            raise ConfigError(f"method {self.name!r}: ascent must be 'same' or 'free'")
        if opts.get("mode", "worst") not in ("worst", "average"):
            raise ConfigError(f"method {self.name!r}: mode must be 'worst' or 'average'")
        for key in ("q", "draws"):
            v = opts.get(key, 1)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"method {self.name!r}: {key} must be an integer >= 1")
        for key, strict in (("sigma", True), ("rho", False)):
            v = opts.get(key, 1.0)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
            if not ok or v < 0 or (strict and v == 0):
                what = "> 0" if strict else ">= 0"
                raise ConfigError(f"method {self.name!r}: {key} must be a finite number {what}")
        if opts.get("directions", "gaussian") not in _DIRECTIONS:
            raise ConfigError(f"method {self.name!r}: directions must be one of {_DIRECTIONS}")
        if opts.get("scheme", "central") not in ("central", "forward"):
            raise ConfigError(f"method {self.name!r}: scheme must be 'central' or 'forward'")
        self.train_config(max_steps=1, seed=0)  # validates lr, optimizer, schedule, batch

    @property
    def twin_assisted(self) -> bool:
        """Whether the method uses a model of the device (the nominal twin)."""
        return self.kind == "blacksat" and self.options.get("estimator", "zo") == "pat"

    @property
    def label(self) -> str:
        """``"nevergrad"``, ``"query-only"`` or ``"twin-assisted"``."""
        if self.kind == "nevergrad":
            return "nevergrad"
        return "twin-assisted" if self.twin_assisted else "query-only"

    def train_config(self, *, max_steps: int, seed: int) -> Any:
        """The :class:`~blacksat.train_config.TrainConfig` of a blacksat method."""
        from blacksat.train_config import TrainConfig

        o = self.options
        return TrainConfig(
            optimizer=o.get("optimizer", "adam"),
            lr=o.get("lr", 0.05),
            schedule=o.get("schedule"),
            epochs=None,
            max_steps=max_steps,
            batch_size=o.get("batch_size", 128),
            seed=seed,
            progress=False,
            train_digital=False,
        )


def _ng(name: str, optimizer: str, doc: str, **kwargs: Any) -> Method:
    opts: dict[str, Any] = {"optimizer": optimizer}
    if kwargs:
        opts["optimizer_kwargs"] = kwargs
    return Method(name, "nevergrad", opts, doc)


#: Settings of blacksat's query-only methods, tuned on seeds/chips 100-102 (never on the reported
#: ones): 4 antithetic Gaussian directions (8 reconfigurations per step), sigma 0.05 rad, Adam
#: at lr 0.15 with a cosine schedule over the budget, minibatches of 256 of the 1347 digits
#: training samples (at most 1/5 of the samples of a full-train-set evaluation).
_ZO = {
    "estimator": "zo",
    "q": 4,
    "sigma": 0.05,
    "scheme": "central",
    "lr": 0.15,
    "schedule": "cosine",
    "batch_size": 256,
}

#: Named default methods: nevergrad baselines and blacksat's own.
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        _ng("ngopt", "NGOpt", "nevergrad's algorithm selector"),
        _ng("cma", "CMA", "nevergrad's CMA (selects a variant; bounded box: CMAbounded)"),
        _ng(
            "cma-tuned",
            "OldCMA",
            "full-covariance CMA-ES, initial step size tuned on the tuning chips",
            scale=1.0,
        ),
        _ng("diagonal-cma", "DiagonalCMA", "separable CMA-ES"),
        _ng("one-plus-one", "OnePlusOne", "(1+1) evolution strategy, one-fifth rule"),
        _ng("tbpsa", "TBPSA", "test-based population-size adaptation (noisy problems)"),
        _ng("pso", "PSO", "particle swarm"),
        _ng("two-points-de", "TwoPointsDE", "differential evolution, two-point crossover"),
        _ng("random-search", "RandomSearch", "uniform random search"),
        _ng("flops", "FLOPS", "one-sided Gaussian-smoothing ZO SGD (Gu et al., DAC 2020)"),
        _ng("mixedtrain", "MixedTrain", "sparse greedy coordinate descent (Gu et al., AAAI 2021)"),
        _ng("pepg", "PEPG", "parameter-exploring policy gradients, symmetric sampling"),
        _ng("lra-cma", "LRACMA", "CMA-ES with learning-rate adaptation for noise (cmaes)"),
        _ng("sep-cma", "SepCMA", "separable CMA-ES (cmaes)"),
        _ng("uh-cma", "UHCMA", "CMA-ES with uncertainty handling (pycma NoiseHandler)"),
        Method(
            "blacksat",
            "blacksat",
            {"estimator": "auto"},
            "the query-only default: zeroth-order Adam calibrated on the device "
            "(blacksat.query_plan)",
        ),
        Method("zo-adam", "blacksat", _ZO, "zeroth-order Adam on minibatches (query-only)"),
        Method(
            "zo-sat",
            "blacksat",
            {**_ZO, "perturbation": "phase_drift", "mode": "average"},
            "zeroth-order SAT, average case over the rated common-mode phase drift (query-only)",
        ),
        Method(
            "pat-sat",
            "blacksat",
            {
                "estimator": "pat",
                "lr": 0.1,
                "schedule": "cosine",
                "batch_size": 256,
                "perturbation": "phase_drift",
                "mode": "worst",
            },
            "physics-aware SAT: device forward, nominal-model backward (twin-assisted)",
        ),
    )
}


#: the in-situ and noisy-CMA baselines of :mod:`blacksat.baselines` (registered above; not part
#: of :func:`blacksat.product.compare.target`, whose published sweep predates them)
BASELINES = ("flops", "mixedtrain", "pepg", "lra-cma", "sep-cma", "uh-cma")


def method(name: str | Method) -> Method:
    """A registered :class:`Method` by name (a :class:`Method` is returned unchanged)."""
    if isinstance(name, Method):
        return name
    if not isinstance(name, str):
        raise ConfigError(
            f"method must be a Method or a registered name, got {type(name).__name__}"
        )
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; registered: {sorted(METHODS)}")
    return METHODS[name]


def method_fits(m: Method, chip: Any) -> str | None:
    """Why method ``m`` cannot run on ``chip`` (it needs a nominal model or a perturbation
    model the device does not offer), or ``None``."""
    o = m.options
    if m.kind != "blacksat":
        return None
    if o.get("estimator", "zo") == "pat" and not callable(getattr(chip, "nominal_model", None)):
        return "needs the device's nominal_model()"
    if "perturbation" in o:
        models = getattr(chip, "perturbation_models", None)
        names = set(models()) if callable(models) else set()
        if o["perturbation"] not in names:
            return f"needs the device's perturbation model {o['perturbation']!r}"
    return None


__all__ = [
    "BASELINES",
    "METHODS",
    "Kind",
    "Method",
    "method",
    "method_fits",
]
