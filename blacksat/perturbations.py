"""Perturbation models: the geometry of a disturbance, first-class (see DESIGN.md).

SAT is flat *with respect to a perturbation model*. A model says how a disturbance acts: as a
shift ``delta (d,)`` of the controls (an L2 ball, a magnitude-scaled ball, independent per-control
noise, a common-mode shift of a group, a low-rank subspace) and/or as values of nuisance physical
parameters a simulated device exposes (temperature, misalignment). The worst-case ascent of SAT is
taken *within* the model's set (:meth:`PerturbationModel.worst`); the average-case variant injects
draws from the same model (:meth:`PerturbationModel.sample`), so noise-aware training is the
average-case special case; robustness sweeps take the same objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from blacksat.errors import ConfigError

#: ``probe(perturbations) -> losses (n,)``: the objective at ``theta`` under each perturbation,
#: on the current minibatch (queries are metered by whoever built the probe).
Probe = Callable[[list["Perturbation"]], torch.Tensor]


@dataclass(frozen=True)
class Perturbation:
    """One disturbance: a control shift and/or nuisance values.

    Attributes:
        delta: ``(d,)`` float64 shift of the controls, or ``None`` for no shift.
        nuisance: nuisance-parameter values (e.g. ``{"rotation": 1.2}``); empty for none.
    """

    delta: torch.Tensor | None = None
    nuisance: Mapping[str, float] = field(default_factory=dict)

    def __add__(self, other: Perturbation) -> Perturbation:
        if self.delta is None:
            delta = other.delta
        elif other.delta is None:
            delta = self.delta
        else:
            delta = self.delta + other.delta
        overlap = set(self.nuisance) & set(other.nuisance)
        merged = dict(self.nuisance)
        for k, v in other.nuisance.items():
            merged[k] = merged.get(k, 0.0) + v if k in overlap else v
        return Perturbation(delta, merged)


@runtime_checkable
class PerturbationModel(Protocol):
    """The set a disturbance lives in.

    - ``worst(theta (d,), grad (d,), probe, rng) -> Perturbation``: the (approximate) worst case
      within the set, from the loss gradient at ``theta`` (control-space models) and/or loss
      probes (nuisance models: finite differences).
    - ``sample(theta (d,), rng) -> Perturbation``: one random draw from the set.
    - ``scaled(factor) -> PerturbationModel``: the same geometry with its radius scaled
      (robustness sweeps evaluate a model at several radii).
    """

    def worst(
        self, theta: torch.Tensor, grad: torch.Tensor, probe: Probe, rng: np.random.Generator
    ) -> Perturbation: ...

    def sample(self, theta: torch.Tensor, rng: np.random.Generator) -> Perturbation: ...

    def scaled(self, factor: float) -> PerturbationModel: ...


def _radius(name: str, value: float) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


@dataclass(frozen=True)
class L2Ball:
    """Plain SAM: ``||delta||_2 <= rho``. Worst case ``rho * g / ||g||``; draws uniform on the
    sphere of radius ``rho``."""

    rho: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "rho", _radius("rho", self.rho))

    def worst(
        self, theta: torch.Tensor, grad: torch.Tensor, probe: Probe, rng: np.random.Generator
    ) -> Perturbation:
        norm = torch.linalg.vector_norm(grad)
        if self.rho == 0 or norm == 0:
            return Perturbation(torch.zeros_like(theta))
        return Perturbation(self.rho * grad / norm)

    def sample(self, theta: torch.Tensor, rng: np.random.Generator) -> Perturbation:
        u = torch.as_tensor(rng.standard_normal(theta.shape[-1]), dtype=theta.dtype)
        return Perturbation(self.rho * u / torch.linalg.vector_norm(u))

    def scaled(self, factor: float) -> L2Ball:
        return L2Ball(self.rho * factor)


__all__ = ["L2Ball", "Perturbation", "PerturbationModel", "Probe"]
