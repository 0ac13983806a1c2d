"""What the demo does on one device (:func:`blacksat.product.demo.run_demo`): the per-device
defaults of :mod:`blacksat.product.demo_config` resolved for a chip (:func:`plan`), and offline
SAT against the perturbation model that protects against that device's disturbance
(:func:`offline_sat`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from blacksat.estimators import Autograd
from blacksat.product.demo_config import (
    LANDSCAPE_RADIUS,
    LR,
    OFFLINE_PERTURBATION,
    ZO_PERTURBATION,
    DemoConfig,
)
from blacksat.sat import sat


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the demo does on one device (resolved from the config and the device)."""

    lr: float
    rho: float | None  # an L2 ball for offline SAT (only when the config sets rho)
    offline: dict[str, Any]  # the offline SAT perturbation: model, mode, grid / draws
    zo_model: str | None  # query-only SAT's perturbation model (None: plain zeroth order)
    drift_radius: float | None  # the rated common-mode shift per control, if the device has one
    landscape_radius: float


def plan(device: str, chip: Any, cfg: DemoConfig) -> Plan:
    """Resolve the per-device defaults (:mod:`blacksat.product.demo_config`) for ``chip``."""
    models = chip.perturbation_models()
    zo_name = ZO_PERTURBATION.get(device)
    drift = getattr(models.get(zo_name), "radius", None) if zo_name else None
    radius = cfg.landscape_radius
    if radius is None:
        radius = 2.0 * drift if drift else LANDSCAPE_RADIUS
    offline = dict(OFFLINE_PERTURBATION[device]) if cfg.rho is None else {"model": "l2"}
    return Plan(
        lr=cfg.offline_lr if cfg.offline_lr is not None else LR.get(device, 0.02),
        rho=cfg.rho,
        offline=offline,
        zo_model=zo_name,
        drift_radius=drift,
        landscape_radius=float(radius),
    )


def offline_sat(chip: Any, task: Any, p: Plan) -> Any:
    """Offline SAT on the nominal model against the plan's perturbation model."""
    from blacksat.perturbations import L2Ball

    if p.rho is not None:
        return sat(Autograd(chip.nominal_model(dtype=torch.float64), task, space=chip.space),
                   perturbation=L2Ball(p.rho))  # fmt: skip
    spec = p.offline
    pert = chip.perturbation_models()[spec["model"]]
    if spec.get("grid"):
        pert = dataclasses.replace(pert, grid=int(spec["grid"]))
    nuisance = bool(
        pert.sample(torch.as_tensor(chip.space.center), np.random.default_rng(0)).nuisance
    )
    family = chip.model_family("nominal", dtype=torch.float64) if nuisance else None
    base = Autograd(chip.nominal_model(dtype=torch.float64), task, family=family, space=chip.space)
    return sat(base, perturbation=pert, mode=spec.get("mode", "worst"), draws=spec.get("draws", 1))


def offline_sat_label(p: Plan) -> str:
    """How the report names offline SAT's objective."""
    if p.rho is not None:
        return f"L2 ball, worst case, rho = {p.rho:g}"
    spec = p.offline
    how = f"worst of {spec['grid']} probed shifts" if spec.get("grid") else (
        f"average over {spec.get('draws', 1)} draw(s) per step" if spec.get("mode") == "average"
        else "worst case"
    )  # fmt: skip
    return f"`{spec['model']}`, {how}"


__all__ = ["Plan", "offline_sat", "offline_sat_label", "plan"]
