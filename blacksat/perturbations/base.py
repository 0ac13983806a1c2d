"""The vocabulary of perturbation models: one disturbance (:class:`Perturbation`), the protocol
of the set it lives in (:class:`PerturbationModel`) and what SAT asks of a model before using it
(:func:`is_zero`, :func:`needs_gradient`, :func:`probe_evaluations`).

The models themselves are in :mod:`blacksat.perturbations` (control space) and
:mod:`blacksat.perturbations.nuisance` (nuisance parameters); both import this module, and
:mod:`blacksat.perturbations` re-exports everything here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch

from blacksat.validation import check_real

#: ``probe(perturbations) -> losses (n,)``: the objective at ``theta`` under each perturbation,
#: on the current minibatch (queries are metered by whoever built the probe).
Probe = Callable[[list["Perturbation"]], torch.Tensor]
Kind = Literal["box", "gaussian"]


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

    Optional attributes, read through :func:`needs_gradient` and :func:`probe_evaluations`:
    ``needs_gradient`` (whether ``worst`` reads ``grad``; a model without it is assumed to, and
    SAT spends an ascent estimate on it) and ``probe_evaluations`` (loss evaluations one
    ``worst`` spends through ``probe``; 0 when absent).
    """

    def worst(
        self,
        theta: torch.Tensor,
        grad: torch.Tensor | None,
        probe: Probe,
        rng: np.random.Generator,
    ) -> Perturbation: ...

    def sample(self, theta: torch.Tensor, rng: np.random.Generator) -> Perturbation: ...

    def scaled(self, factor: float) -> PerturbationModel: ...


def _radius(name: str, value: float) -> float:
    return float(check_real(name, value, low=0.0))


def _factor(factor: float) -> float:
    return _radius("factor", factor)


def is_zero(model: PerturbationModel) -> bool:
    """True when ``model`` only ever yields zero perturbations (SAT can skip its ascent)."""
    return bool(getattr(model, "is_zero", False))


def needs_gradient(model: PerturbationModel) -> bool:
    """Whether ``model.worst`` reads the loss gradient (SAT skips its ascent when not); a model
    that does not say is assumed to."""
    return bool(getattr(model, "needs_gradient", True))


def probe_evaluations(model: PerturbationModel) -> int:
    """Loss evaluations one ``model.worst`` spends through its probe (0 when it does not say)."""
    return int(getattr(model, "probe_evaluations", 0))


__all__ = [
    "Kind",
    "Perturbation",
    "PerturbationModel",
    "Probe",
    "is_zero",
    "needs_gradient",
    "probe_evaluations",
]
