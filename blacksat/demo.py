"""The main job: one end-to-end flow from a nominal model to a deployed, drifting chip.

digits -> a simulated chip (16-mode MZI mesh at the paper's error level, beam-splitter and
phase errors ``s_bs = s_ps = 0.15``, by default) -> four ways to get controls for it:

1. ``offline_bp``: backprop on the *nominal* model (what a user believes), deployed unchanged;
2. ``offline_sat``: SAT on the nominal model (the paper's L2 radius per device), deployed
   unchanged;
3. ``zo_sat``: query-only SAT fine-tuning **on the chip** from the offline SAT solution:
   zeroth-order gradient estimates from queries alone, average case over the chip's rated
   common-mode drift, under a hard reconfiguration budget (:mod:`blacksat.demo_online`);
4. ``nevergrad``: a nevergrad optimizer (DiagonalCMA by default) on the chip from the same
   start, at the same budget.

Every method is then evaluated on the full test split: on the chip, on fresh chips of the same
process, and under each of the chip's nuisances over its rated range (drift: the temperature).
The offline solutions' loss landscape is sliced along a random and the common-mode direction.
Writes ``report.md``, ``results.json`` and the plots (:mod:`blacksat.demo_plots`; skipped
without matplotlib).

``results.json`` (schema ``"blacksat.demo/3"``):

=========================  ===================================================================
``schema``                 ``"blacksat.demo/3"``
``device``                 ``chip.describe()``: class, controls, shapes, nuisances, config
``dataset``                the dataset's repr (name, split sizes, features, classes)
``seed``, ``quick``        the run's seed (data split, chip, training) and preset
``config``                 the :class:`~blacksat.demo_config.DemoConfig` used (all fields)
``offline``                ``steps``, ``batch_size``, ``optimizer``, ``lr``, ``model``, ``sat``
``online``                 ``budget`` (reconfigurations per method), ``zo`` settings,
                           ``nevergrad`` settings, ``start`` (``"offline_sat"``)
``methods``                per method id (``offline_bp``, ``offline_sat``, ``zo_sat``,
                           ``nevergrad``): ``label``, ``kind`` (``offline`` / ``query-only`` /
                           ``nevergrad``), ``stop``, ``steps``, ``final_loss``, and the
                           accuracies (full test split): ``nominal_model``, ``exact_model``
                           (the chip's noise-free truth), ``chip`` (through an unbudgeted
                           meter, noise and drift streams restarted), ``fresh_chips``
                           (``accuracies``, ``labels`` = chip seeds ``seed + 1000 + i``,
                           ``mean``, ``std``, ``min``, ``max``), ``drift``
                           (``{nuisance: {"values": [...], "accuracies": [...]}}`` on
                           ``chip.perturbed``); ``training_ledger`` and ``evaluation_ledger``
                           (``reconfigurations``, ``samples``, ``queries``, ``failures``)
``budget_curve``           ``{"evaluated_on": ..., "methods": {id: [{"reconfigurations": r,
                           "accuracy": a}, ...]}}``: test accuracy of the iterate held after
                           ``r`` reconfigurations (``0`` and ``checkpoints`` spends doubling
                           up to the budget), on the chip's noise-free exact model
                           (evaluation outside the budget; the chip itself is not queried)
``landscape``              ``{"model", "split", "radius", "rated_common_mode" (the rated
                           drift as a common shift, or null), "alphas", "methods": {id:
                           {"random": [...], "common_mode": [...]}}}``: mean loss at
                           ``theta + a * u`` for the offline methods (``u`` of unit RMS per
                           control; common mode: all ones, i.e. a shift of every phase by ``a``)
``plots``                  the PNG files written (empty without matplotlib)
``timings``                seconds per phase; ``wall_seconds``: the whole run
=========================  ===================================================================

This is an application layer: it resolves devices by registry name, so the core modules never
import a concrete device.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blacksat.data import load_digits
from blacksat.demo_config import (
    DEMO_DEVICE_ARGS,
    FRESH_SEED_OFFSET,
    LR,
    RHO,
    ZO_PERTURBATION,
    DemoConfig,
)
from blacksat.errors import ConfigError
from blacksat.estimators import Autograd
from blacksat.evaluation import accuracy, accuracy_many, nuisance_sweep, transfer
from blacksat.meter import Ledger, MeteredDevice
from blacksat.sat import sat
from blacksat.train_config import TrainConfig
from blacksat.trainer import Trainer

SCHEMA = "blacksat.demo/3"


def _offline(
    task: Any, chip: Any, est: Any, cfg: DemoConfig, lr: float, seed: int, bar: bool
) -> Any:
    config = TrainConfig(
        lr=lr,
        max_steps=cfg.offline_steps,
        epochs=None,
        batch_size=cfg.batch_size,
        seed=seed,
        progress=bar,
    )
    return Trainer(task, est, chip.space, config).fit(chip.initial_controls(seed))


def _evaluate(
    task: Any, chip: Any, theta: np.ndarray, models: dict[str, Any], cfg: DemoConfig, seed: int
) -> dict[str, Any]:
    """Accuracies of ``theta`` on the full test split: models, the chip, fresh chips, drift."""
    out: dict[str, Any] = {f"{k}_model": accuracy(task, m, theta) for k, m in models.items()}
    chip.reset()  # every method meets the chip with the same noise and drift streams
    metered = MeteredDevice(chip)
    out["chip"] = accuracy(task, metered, theta)
    out["evaluation_ledger"] = dataclasses.asdict(metered.ledger)
    fresh = [chip.fresh_chip(seed + FRESH_SEED_OFFSET + i) for i in range(cfg.fresh_chips)]
    out["fresh_chips"] = transfer(task, fresh, theta).to_dict()
    drift: dict[str, Any] = {}
    for nz in chip.nuisances:
        values = np.linspace(nz.rated[0], nz.rated[1], cfg.drift_points).tolist()
        table = nuisance_sweep(task, chip.perturbed, theta, {nz.name: values})
        drift[nz.name] = {"values": values, "accuracies": table.column("accuracy")}
    out["drift"] = drift
    return out


def run_demo(
    out: Path | str,
    *,
    quick: bool = False,
    seed: int = 0,
    device: str = "mzi",
    progress: bool = True,
    config: DemoConfig | None = None,
) -> dict[str, Any]:
    """Run the flow, write ``out/results.json``, ``out/report.md`` and the plots; return the
    results (the schema is in the module docstring). ``config`` overrides the preset that
    ``quick`` selects."""
    from blacksat.devices import DEVICES

    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; known: {sorted(DEVICES)}")
    cfg = DemoConfig.preset(quick) if config is None else config
    if not isinstance(cfg, DemoConfig):
        raise ConfigError(f"config must be a DemoConfig, got {type(cfg).__name__}")
    import nevergrad as ng

    import blacksat.ng_optimizers  # noqa: F401  (registers blacksat's optimizers)

    if cfg.ng_optimizer not in ng.optimizers.registry:
        raise ConfigError(
            f"demo ng_optimizer {cfg.ng_optimizer!r} is not in nevergrad's registry "
            "(e.g. 'DiagonalCMA', 'OnePlusOne', 'CMA', 'NGOpt')"
        )
    with torch_threads(cfg.threads):
        return _run(Path(out), quick, seed, device, progress, cfg)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads; the previous setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run(
    out: Path, quick: bool, seed: int, device: str, progress: bool, cfg: DemoConfig
) -> dict[str, Any]:
    from blacksat.demo_online import nevergrad, zo_sat
    from blacksat.demo_plots import write_plots
    from blacksat.demo_report import report_markdown
    from blacksat.devices import DEVICES
    from blacksat.devices.tasks import default_task
    from blacksat.landscape import common_mode, loss_slice, random_direction

    timings: dict[str, float] = {}
    t_start = tick = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        timings[name] = now - tick
        tick = now

    out.mkdir(parents=True, exist_ok=True)
    data = load_digits(seed=seed)
    chip = DEVICES[device](seed=seed, **DEMO_DEVICE_ARGS.get(device, {}))
    base_task = default_task(chip, data, seed=seed).to(torch.float64)
    models = {
        "nominal": chip.nominal_model(dtype=torch.float64),
        "exact": chip.exact_model(dtype=torch.float64),
    }
    nominal = models["nominal"]
    lr = cfg.offline_lr if cfg.offline_lr is not None else LR.get(device, 0.02)
    rho = cfg.rho if cfg.rho is not None else RHO.get(device, 0.1)

    # 1-2: offline on the nominal model (same initial digital front end for both)
    tasks, runs = {}, {}
    makers = {
        "offline_bp": lambda t: Autograd(nominal, t, space=chip.space),
        "offline_sat": lambda t: sat(Autograd(nominal, t, space=chip.space), rho=rho),
    }
    for key, make in makers.items():
        tasks[key] = copy.deepcopy(base_task)
        runs[key] = _offline(tasks[key], chip, make(tasks[key]), cfg, lr, seed, progress)
        lap(key)

    # 3-4: on the chip, from the offline SAT solution, at the same budget
    start = runs["offline_sat"].theta
    name = ZO_PERTURBATION.get(device)
    pert = chip.perturbation_models()[name] if name is not None else _l2(rho)
    tasks["zo_sat"] = copy.deepcopy(tasks["offline_sat"])
    chip.reset()
    online = {
        "zo_sat": zo_sat(
            tasks["zo_sat"], chip, start, budget=cfg.budget, q=cfg.zo_q, sigma=cfg.zo_sigma,
            lr=cfg.zo_lr, batch_size=cfg.zo_batch_size, perturbation=pert, seed=seed,
            progress=progress,
        )
    }  # fmt: skip
    lap("zo_sat")
    tasks["nevergrad"] = copy.deepcopy(tasks["offline_sat"])
    chip.reset()
    online["nevergrad"] = nevergrad(
        tasks["nevergrad"], chip, start, budget=cfg.budget, optimizer=cfg.ng_optimizer,
        workers=cfg.ng_workers, seed=seed, progress=progress,
    )  # fmt: skip
    lap("nevergrad")

    labels = {
        "offline_bp": "offline BP",
        "offline_sat": f"offline SAT (rho={rho:g})",
        "zo_sat": "query-only SAT",
        "nevergrad": f"nevergrad {cfg.ng_optimizer}",
    }
    methods: dict[str, Any] = {}
    for key, label in labels.items():
        if key in runs:
            r = runs[key]
            theta, ledger = r.theta, dataclasses.asdict(Ledger())  # no device queries
            info = {"kind": "offline", "stop": r.reason, "steps": r.steps}
            info["final_loss"] = r.history[-1]["loss"] if r.history else None
        else:
            o = online[key]
            theta, ledger = o.theta, dataclasses.asdict(o.ledger)
            info = {"kind": "query-only" if key == "zo_sat" else "nevergrad", "stop": o.stop}
            info.update(steps=o.steps, final_loss=_finite(o.final_loss))
        methods[key] = {
            "label": label,
            **info,
            **_evaluate(tasks[key], chip, theta, models, cfg, seed),
            "training_ledger": ledger,
            "theta": theta,
        }
    lap("evaluation")

    grid = budget_grid(cfg.budget, cfg.checkpoints)
    curve = {
        key: [
            {"reconfigurations": int(r), "accuracy": float(a)}
            for r, a in zip(
                grid, accuracy_many(tasks[key], models["exact"], o.at(grid)), strict=True
            )
        ]
        for key, o in online.items()
    }
    lap("budget_curve")

    alphas = np.linspace(-cfg.landscape_radius, cfg.landscape_radius, cfg.landscape_points)
    d = chip.space.dim
    dirs = {"random": random_direction(d, np.random.default_rng([seed, 17])), "common_mode": None}
    dirs["common_mode"] = common_mode(d)
    landscape = {
        "model": "nominal",
        "split": "train",
        "radius": cfg.landscape_radius,
        "rated_common_mode": getattr(pert, "radius", None) if name is not None else None,
        "alphas": alphas.tolist(),
        "methods": {
            key: {
                k: loss_slice(tasks[key], nominal, methods[key]["theta"], u, alphas).tolist()
                for k, u in dirs.items()
            }
            for key in runs
        },
    }
    lap("landscape")

    for m in methods.values():
        m.pop("theta")
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "device": chip.describe(),
        "dataset": repr(data),
        "seed": seed,
        "quick": quick,
        "config": dataclasses.asdict(cfg),
        "offline": {
            "steps": cfg.offline_steps,
            "batch_size": cfg.batch_size,
            "optimizer": "adam",
            "lr": lr,
            "model": "nominal (errors and hidden effects omitted)",
            "sat": f"L2 ball, worst case, rho = {rho:g}",
        },
        "online": {
            "budget": cfg.budget,
            "start": "offline_sat",
            "zo": {
                "q": cfg.zo_q,
                "sigma": cfg.zo_sigma,
                "lr": cfg.zo_lr,
                "schedule": "cosine",
                "batch_size": cfg.zo_batch_size,
                "perturbation": name or f"L2 ball rho = {rho:g}",
                "mode": "average",
            },
            "nevergrad": {
                "optimizer": cfg.ng_optimizer,
                "workers": cfg.ng_workers,
                "loss": "full training split",
            },
        },
        "methods": methods,
        "budget_curve": {
            "evaluated_on": "the chip's noise-free exact model, full test split (outside "
            "the budget)",
            "methods": curve,
        },
        "landscape": landscape,
    }
    report["plots"] = write_plots(report, out)
    lap("plots")
    report["timings"] = timings
    report["wall_seconds"] = time.perf_counter() - t_start
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(report_markdown(report))
    return report


def budget_grid(budget: int, checkpoints: int) -> np.ndarray:
    """``0`` and ``checkpoints`` spends doubling up to ``budget`` (most of the change happens
    early): ``budget / 2**(n-1), ..., budget / 2, budget``, rounded, duplicates dropped."""
    tail = np.geomspace(budget / 2.0 ** (checkpoints - 1), budget, checkpoints)
    return np.unique(np.concatenate([[0], np.maximum(1, tail.round())]).astype(np.int64))


def _l2(rho: float) -> Any:
    from blacksat.perturbations import L2Ball

    return L2Ball(rho)


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


__all__ = ["DEMO_DEVICE_ARGS", "RHO", "SCHEMA", "DemoConfig", "budget_grid", "run_demo"]
