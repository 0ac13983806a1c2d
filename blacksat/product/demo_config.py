"""The settings of the demo (:func:`blacksat.product.demo.run_demo`): a frozen, validated
dataclass, its full and ``--quick`` presets, and the per-device defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from blacksat.errors import ConfigError

DEMO_DEVICE_ARGS: dict[str, dict[str, Any]] = {
    "mzi": {"n_modes": 16, "s_bs": 0.15, "s_ps": 0.15},
    "mzi-hybrid": {"n_modes": 16, "s_bs": 0.15, "s_ps": 0.15},
    "mrr": {},
    "diffractive": {},
}
#: the paper's rho per device (PHYSICS.md; the hybrid takes the MZI value): used only when a
#: config sets ``rho`` (an L2 ball, which BENCHMARKS.md shows does not protect against drift)
RHO = {"mzi": 0.3, "mzi-hybrid": 0.3, "mrr": 0.5, "diffractive": 0.1}
LR = {"mzi": 0.02, "mzi-hybrid": 0.02, "mrr": 0.01, "diffractive": 0.05}
#: the perturbation model offline SAT trains against, per device: the one the measurements
#: (BENCHMARKS.md "Where SAT does and does not help", README "When to use what") say protects
#: against the device's disturbance. Ambient drift moves every control together: the common-mode
#: model, worst case over 9 probed shifts covering the rated range centre included (``grid``);
#: misalignment of a diffractive stack: the nuisance model over the rated ranges, average case.
OFFLINE_PERTURBATION: dict[str, dict[str, Any]] = {
    "mzi": {"model": "phase_drift", "mode": "worst", "grid": 9},
    "mzi-hybrid": {"model": "phase_drift", "mode": "worst", "grid": 9},
    "mrr": {"model": "thermal", "mode": "worst", "grid": 9},
    "diffractive": {"model": "misalignment", "mode": "average", "draws": 1},
}
#: the perturbation model query-only SAT is flat against (average case), per device; ``None``:
#: plain zeroth-order fine-tuning (a chip cannot be misaligned on demand, so a nuisance model
#: cannot be queried)
ZO_PERTURBATION = {
    "mzi": "phase_drift",
    "mzi-hybrid": "phase_drift",
    "mrr": "thermal",
    "diffractive": None,
}
#: the landscape radius (per control) of a device without a common-mode drift model
LANDSCAPE_RADIUS = 0.2
#: the ``--quick`` preset's changes per device: a diffractive forward pass over the whole
#: training split costs about 20x a mesh's, so its smoke run is smaller still (nevergrad on
#: minibatches of 256, fewer evaluation points)
QUICK_DEVICE: dict[str, dict[str, Any]] = {
    "diffractive": {
        "offline_steps": 20,
        "budget": 32,
        "ng_workers": 8,
        "ng_batch_size": 256,
        "zo_batch_size": 64,
        "fresh_chips": 1,
        "drift_points": 2,
        "checkpoints": 3,
        "landscape_points": 3,
        "landscape_split": "test",
    },
}


@dataclass(frozen=True)
class DemoConfig:
    """The demo's settings; ``None`` means the device's default.

    Attributes:
        offline_steps: Adam steps of each offline method (minibatches of ``batch_size``).
        offline_lr: their learning rate (device default: mzi 0.02, mrr 0.01, diffractive 0.05).
        batch_size: offline minibatch size.
        rho: ``None`` (default): offline SAT against the device's protective perturbation model
            (:data:`OFFLINE_PERTURBATION`); a number: an L2 ball of that radius instead.
        seeds: how many seeds the demo runs (data split, chip, training), from ``--seed`` on;
            the report shows mean ± sample std and min-max bands over them.
        budget: reconfigurations each on-chip method may spend.
        zo_q, zo_sigma, zo_lr, zo_batch_size: query-only SAT: random directions per estimate
            (``2 q`` settings per step), smoothing radius, Adam learning rate (cosine
            schedule), minibatch size.
        ng_optimizer: the nevergrad registry name of the baseline; ``ng_workers``: settings per
            device call; ``ng_batch_size``: training samples per loss evaluation (``None``: the
            full training split).
        fresh_chips: fresh fabrication draws evaluated (>= 1).
        drift_points: values per nuisance sweep over its rated range (>= 2).
        checkpoints: points of the accuracy-vs-reconfigurations curve besides the start
            (>= 1; spends doubling up to the budget).
        landscape_points: offsets per landscape slice (>= 3); ``landscape_radius``: the largest
            offset, in control units per control (``None``: twice the rated common-mode drift of
            the device, or :data:`LANDSCAPE_RADIUS` without one); ``landscape_split``: the split
            whose mean loss the slices show (``"train"`` or ``"test"``).
        threads: torch threads during the run (the process's setting is restored after it);
            these problems are small, and one thread is the fastest on a busy machine.

    The defaults (``zo_lr``, ``ng_optimizer`` among OnePlusOne, CMA and DiagonalCMA) were
    chosen on seed 100, not on the seeds a report shows.
    """

    offline_steps: int = 600
    offline_lr: float | None = None
    batch_size: int = 64
    rho: float | None = None
    seeds: int = 3
    budget: int = 4000
    zo_q: int = 4
    zo_sigma: float = 0.05
    zo_lr: float = 0.02
    zo_batch_size: int = 256
    ng_optimizer: str = "DiagonalCMA"
    ng_workers: int = 16
    ng_batch_size: int | None = None
    fresh_chips: int = 5
    drift_points: int = 5
    checkpoints: int = 10
    landscape_points: int = 21
    landscape_radius: float | None = None
    landscape_split: str = "train"
    threads: int = 1

    def __post_init__(self) -> None:
        lows = {
            "offline_steps": 1, "batch_size": 1, "budget": 1, "zo_q": 1, "zo_batch_size": 1,
            "ng_workers": 1, "fresh_chips": 1, "drift_points": 2, "checkpoints": 1, "seeds": 1,
            "landscape_points": 3, "threads": 1,
        }  # fmt: skip
        for name, low in lows.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ConfigError(f"demo {name} must be an integer >= {low}, got {v!r}")
        for name in ("offline_lr", "rho", "zo_sigma", "zo_lr", "landscape_radius"):
            v = getattr(self, name)
            if v is None and name in ("offline_lr", "rho", "landscape_radius"):
                continue
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
            if not ok or v < 0 or (v == 0 and name != "rho"):
                raise ConfigError(f"demo {name} must be a finite number > 0, got {v!r}")
        if self.landscape_split not in ("train", "test"):
            raise ConfigError(
                f"demo landscape_split must be 'train' or 'test', got {self.landscape_split!r}"
            )
        v = self.ng_batch_size
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise ConfigError(f"demo ng_batch_size must be an integer >= 1 or absent, got {v!r}")
        if not isinstance(self.ng_optimizer, str) or not self.ng_optimizer:
            raise ConfigError(f"demo ng_optimizer must be a name, got {self.ng_optimizer!r}")

    @classmethod
    def preset(cls, quick: bool, device: str | None = None) -> DemoConfig:
        """The full run, or the ``--quick`` one (a smoke run: about a fifteenth of the work,
        under a minute on 2 cores for every device; its numbers say little)."""
        if not quick:
            return cls()
        quick_args: dict[str, Any] = {
            "offline_steps": 40,
            "budget": 240,
            "fresh_chips": 3,
            "drift_points": 3,
            "checkpoints": 5,
            "landscape_points": 11,
        }
        return cls(**{**quick_args, **QUICK_DEVICE.get(str(device), {})})

    @classmethod
    def from_mapping(
        cls, data: Any, *, quick: bool = False, device: str | None = None
    ) -> DemoConfig:
        """The preset updated with the keys of ``data`` (e.g. a TOML file's), type-checked."""
        from blacksat.product.config_io import typed_fields

        kwargs = typed_fields(cls, data, "demo")
        return dataclasses.replace(cls.preset(quick, device), **kwargs)


__all__ = [
    "DEMO_DEVICE_ARGS",
    "LANDSCAPE_RADIUS",
    "LR",
    "OFFLINE_PERTURBATION",
    "QUICK_DEVICE",
    "RHO",
    "ZO_PERTURBATION",
    "DemoConfig",
]
