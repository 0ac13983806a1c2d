"""The main job: one end-to-end flow from a nominal model to a deployed, drifting chip, on each
of three seeds.

digits -> a simulated chip (``--device``: a 16-mode MZI mesh at the paper's error level, the
two-layer hybrid, a micro-ring weight bank or a diffractive network) -> four ways to get
controls for it:

1. ``offline_bp``: backprop on the *nominal* model (what a user believes), deployed unchanged;
2. ``offline_sat``: SAT on the nominal model against the perturbation model that the
   measurements say protects against this device's disturbance
   (:data:`~blacksat.product.demo_config.OFFLINE_PERTURBATION`: the common-mode drift of a
   mesh or a ring bank, worst of 9 probed shifts covering the rated range; the misalignment of
   a diffractive stack, average case), deployed unchanged;
3. ``zo_sat``: query-only SAT fine-tuning **on the chip** from the offline SAT solution:
   zeroth-order gradient estimates from queries alone, average case over the chip's rated
   common-mode drift (plain zeroth order on a diffractive chip, which cannot be misaligned on
   demand), under a hard reconfiguration budget (:mod:`blacksat.product.demo_online`);
4. ``nevergrad``: a nevergrad optimizer (DiagonalCMA by default) on the chip from the same
   start, at the same budget.

Every method is evaluated on the full test split: on the chip, on fresh chips of the same
process, and under each of the chip's nuisances over its rated range. The offline solutions'
loss landscape is sliced along a random and the common-mode direction, up to twice the rated
drift. Everything runs on ``config.seeds`` seeds (data split, chip and training seeded alike);
each seed's results are written as soon as it is done; the report gives mean ± sample std and
min-max bands over the seeds, and findings computed from them (:mod:`blacksat.product.demo_report`).
Writes ``report.md``, ``results.json``, ``seeds/seed-<s>.json`` and the plots
(:mod:`blacksat.product.demo_plots`; skipped without matplotlib).

``results.json`` (schema ``"blacksat.demo/4"``):

=========================  ===================================================================
``schema``                 ``"blacksat.demo/4"``
``device``                 ``chip.describe()`` of the first seed's chip: class, controls,
                           shapes, nuisances (with units), config
``dataset``                the dataset's repr (name, split sizes, features, classes)
``chance``                 ``1 / classes``
``seeds``, ``quick``       the seeds run and the preset
``config``                 the :class:`~blacksat.product.demo_config.DemoConfig` used (all fields)
``offline``                ``steps``, ``batch_size``, ``optimizer``, ``lr`` (resolved),
                           ``rho`` (an L2 radius when the config set one, else null),
                           ``model``, ``sat`` (in words), ``perturbation`` (model, mode, grid
                           or draws)
``online``                 ``budget`` (reconfigurations per method), ``zo`` settings (with its
                           ``perturbation``, null for plain zeroth order), ``nevergrad``
                           settings, ``start`` (``"offline_sat"``)
``runs``                   one record per seed: ``seed``; ``methods`` per method id
                           (``offline_bp``, ``offline_sat``, ``zo_sat``, ``nevergrad``):
                           ``label``, ``kind`` (``offline`` / ``query-only`` / ``nevergrad``),
                           ``stop``, ``steps``, ``final_loss``, and the accuracies (full test
                           split): ``nominal_model``, ``exact_model`` (the chip's noise-free
                           truth), ``chip`` (through an unbudgeted meter, noise and drift
                           streams restarted), ``fresh_chips`` (``accuracies``, ``labels`` =
                           chip seeds ``seed + 1000 + i``, ``mean``, ``std``, ``min``,
                           ``max``), ``drift`` (``{nuisance: {"values", "accuracies"}}`` on
                           ``chip.perturbed``); ``training_ledger`` and ``evaluation_ledger``;
                           ``budget_curve`` (``{id: [{"reconfigurations", "accuracy"}]}``: the
                           iterate held after ``0`` and ``checkpoints`` spends doubling up to
                           the budget, on the exact model, outside the budget);
                           ``landscape`` (``alphas``, ``methods: {id: {"random",
                           "common_mode"}}``: mean loss at ``theta + a * u``); ``timings``
``summary``                over the seeds (:func:`blacksat.product.demo_report.aggregate`): per
                           method ``metrics`` (``chip``, ``nominal_model``, ``exact_model``,
                           ``fresh_chips``, ``<nuisance>=<value>``: ``mean``, ``std``
                           (ddof = 1), ``min``, ``max``, ``values``), ``budget_curve`` and
                           ``landscape`` (mean, min, max)
``landscape``              ``model``, ``split``, ``radius`` (per control, RMS),
                           ``rated_common_mode`` (the rated drift per control, or null),
                           ``l2_norm_of_radius``, ``alphas``
``plots``                  the PNG files written (empty without matplotlib)
``wall_seconds``           the whole run
=========================  ===================================================================

This is an application layer: it resolves devices by registry name, so the core modules never
import a concrete device.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blacksat.data import load_digits
from blacksat.errors import ConfigError
from blacksat.estimators import Autograd
from blacksat.evaluation import (
    accuracy,
    accuracy_many,
    fresh_chip_seeds,
    nuisance_sweep,
    transfer,
)
from blacksat.meter import Ledger, MeteredDevice
from blacksat.outputs import prepare_dir, write_private
from blacksat.product.demo_config import DEMO_DEVICE_ARGS, RHO, DemoConfig
from blacksat.product.demo_plan import Plan, offline_sat, offline_sat_label, plan
from blacksat.train_config import TrainConfig
from blacksat.trainer import Trainer

SCHEMA = "blacksat.demo/4"


def _offline(
    task: Any, chip: Any, est: Any, cfg: DemoConfig, lr: float, seed: int, bar: bool, label: str
) -> Any:
    config = TrainConfig(
        lr=lr,
        max_steps=cfg.offline_steps,
        epochs=None,
        batch_size=cfg.batch_size,
        seed=seed,
        progress=bar,
    )
    trainer = Trainer(task, est, chip.space, config)
    trainer.label = label
    return trainer.fit(chip.initial_controls(seed))


class _Perturbed:
    """``chip.perturbed(**nuisance)``, each perturbed chip built once and handed out with its
    noise and drift streams restarted (what a newly built one has): every method meets the same
    perturbed chip, and a diffractive chip's masks are not resampled once per method."""

    def __init__(self, chip: Any) -> None:
        self.chip, self.cache = chip, {}

    def __call__(self, **nuisance: float) -> Any:
        key = tuple(sorted(nuisance.items()))
        if key not in self.cache:
            self.cache[key] = self.chip.perturbed(**nuisance)
        self.cache[key].reset()
        return self.cache[key]


def _evaluate(
    task: Any,
    chip: Any,
    theta: np.ndarray,
    models: dict[str, Any],
    cfg: DemoConfig,
    seed: int,
    perturbed: Any = None,
) -> dict[str, Any]:
    """Accuracies of ``theta`` on the full test split: models, the chip, fresh chips, drift."""
    out: dict[str, Any] = {f"{k}_model": accuracy(task, m, theta) for k, m in models.items()}
    chip.reset()  # every method meets the chip with the same noise and drift streams
    metered = MeteredDevice(chip)
    out["chip"] = accuracy(task, metered, theta)
    out["evaluation_ledger"] = dataclasses.asdict(metered.ledger)
    fresh = [chip.fresh_chip(s) for s in fresh_chip_seeds(seed, cfg.fresh_chips)]
    out["fresh_chips"] = transfer(task, fresh, theta).to_dict()
    drift: dict[str, Any] = {}
    for nz in chip.nuisances:
        values = np.linspace(nz.rated[0], nz.rated[1], cfg.drift_points).tolist()
        table = nuisance_sweep(task, perturbed or chip.perturbed, theta, {nz.name: values})
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
    force: bool = False,
    resume: bool = False,
) -> dict[str, Any]:
    """Run the flow on ``config.seeds`` seeds from ``seed`` on, write ``out/results.json``,
    ``out/report.md`` and the plots; return the results (the schema is in the module
    docstring). Each seed's results go to ``out/seeds/seed-<s>.json`` as soon as that seed is
    done. ``config`` overrides the preset that ``quick`` selects. ``out`` is checked before any
    work: it must be a writable directory (created) and may hold a previous demo's results only
    with ``force``, or with ``resume``: the seeds an interrupted demo of the same device, preset
    and settings finished (``seeds/seed-<s>.json``) are kept and only the others run."""
    from blacksat.devices import DEVICES
    from blacksat.product.demo_plots import PLOTS

    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; known: {sorted(DEVICES)}")
    cfg = DemoConfig.preset(quick, device) if config is None else config
    if not isinstance(cfg, DemoConfig):
        raise ConfigError(f"config must be a DemoConfig, got {type(cfg).__name__}")
    import nevergrad as ng

    import blacksat.ng.optimizers  # noqa: F401  (registers blacksat's optimizers)

    if cfg.ng_optimizer not in ng.optimizers.registry:
        raise ConfigError(
            f"demo ng_optimizer {cfg.ng_optimizer!r} is not in nevergrad's registry "
            "(e.g. 'DiagonalCMA', 'OnePlusOne', 'CMA', 'NGOpt')"
        )
    if resume and force:
        raise ConfigError("give --resume or --force, not both")
    results = ("results.json", "report.md", "seeds", *PLOTS)
    hint = ", or --resume to finish an interrupted demo"
    target = prepare_dir(out, force=force or resume, results=results, resume_hint=hint)
    manifest = json.dumps(
        {"device": device, "quick": quick, "seed": seed, "config": dataclasses.asdict(cfg)},
        sort_keys=True,
        default=str,
    )
    done = _finished_seeds(target, manifest) if resume else {}
    if not resume and (target / "seeds").is_dir():
        shutil.rmtree(target / "seeds")  # --force: the old demo's seeds go with it
    (target / "seeds").mkdir(exist_ok=True)
    write_private(target / "seeds" / MANIFEST, manifest)
    with torch_threads(cfg.threads):
        return _run(target, quick, seed, device, progress, cfg, done)


#: what a demo's ``seeds/`` folder was started with (a resume must match it)
MANIFEST = "demo.json"


def _finished_seeds(out: Path, manifest: str) -> dict[int, dict[str, Any]]:
    """The seeds an interrupted demo in ``out`` finished, if it was started as this one."""
    seeds = out / "seeds"
    if not (seeds / MANIFEST).is_file():
        if any(out.iterdir()):
            raise ConfigError(f"{str(out)!r} holds no demo to resume ({MANIFEST} is missing)")
        return {}
    if (seeds / MANIFEST).read_text() != manifest:
        raise ConfigError(
            f"{str(out)!r} holds a demo started with another device, preset, seed or settings; "
            "resume it with those, or write this one to another --out"
        )
    done = {}
    for path in sorted(seeds.glob("seed-*.json")):
        try:
            run = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a seed cut short while it was written: it runs again
        done[int(run["seed"])] = run
    return done


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
    out: Path,
    quick: bool,
    seed: int,
    device: str,
    progress: bool,
    cfg: DemoConfig,
    done: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    from blacksat.devices import DEVICES
    from blacksat.product.demo_plots import write_plots
    from blacksat.product.demo_report import aggregate, report_markdown

    t_start = time.perf_counter()
    seeds = [seed + i for i in range(cfg.seeds)]
    runs = []
    for s in seeds:
        if s in done:  # finished by the demo this one resumes
            runs.append(done[s])
            continue
        run = json.loads(json.dumps(_run_seed(s, device, progress, cfg, len(seeds) > 1)))
        write_private(out / "seeds" / f"seed-{s}.json", json.dumps(run, indent=2))  # done: kept
        runs.append(run)
    chip = DEVICES[device](seed=seed, **DEMO_DEVICE_ARGS.get(device, {}))
    p = plan(device, chip, cfg)
    data = load_digits(seed=seed)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "device": chip.describe(),
        "dataset": repr(data),
        "chance": 1.0 / data.n_classes,
        "seeds": seeds,
        "quick": quick,
        "config": dataclasses.asdict(cfg),
        "offline": {
            "steps": cfg.offline_steps,
            "batch_size": cfg.batch_size,
            "optimizer": "adam",
            "lr": p.lr,
            "rho": p.rho,
            "model": "nominal (errors and hidden effects omitted)",
            "sat": offline_sat_label(p),
            "perturbation": p.offline,
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
                "perturbation": p.zo_model,
                "mode": "average" if p.zo_model else None,
            },
            "nevergrad": {
                "optimizer": cfg.ng_optimizer,
                "workers": cfg.ng_workers,
                "loss": "full training split"
                if cfg.ng_batch_size is None
                else f"minibatches of {cfg.ng_batch_size} training samples",
            },
        },
        "runs": runs,
        "summary": aggregate(runs),
        "landscape": {
            "model": "nominal",
            "split": cfg.landscape_split,
            "radius": p.landscape_radius,
            "rated_common_mode": p.drift_radius,
            "l2_norm_of_radius": p.landscape_radius * float(np.sqrt(chip.space.dim)),
            "alphas": runs[0]["landscape"]["alphas"],
        },
    }
    report["plots"] = write_plots(report, out)
    report["wall_seconds"] = time.perf_counter() - t_start
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(report_markdown(report))
    return report


def _run_seed(seed: int, device: str, progress: bool, cfg: DemoConfig, tag: bool) -> dict[str, Any]:
    """Every method on the chip of ``seed`` (data split, chip and training seeded by it)."""
    from blacksat.devices import DEVICES
    from blacksat.devices.tasks import default_task
    from blacksat.landscape import common_mode, loss_slice, random_direction
    from blacksat.product.demo_online import nevergrad, zo_sat

    timings: dict[str, float] = {}
    tick = time.perf_counter()
    prefix = f"seed {seed}: " if tag else ""

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        timings[name] = now - tick
        tick = now

    data = load_digits(seed=seed)
    chip = DEVICES[device](seed=seed, **DEMO_DEVICE_ARGS.get(device, {}))
    p = plan(device, chip, cfg)
    base_task = default_task(chip, data, seed=seed).to(torch.float64)
    models = {
        "nominal": chip.nominal_model(dtype=torch.float64),
        "exact": chip.exact_model(dtype=torch.float64),
    }
    nominal = models["nominal"]

    # 1-2: offline on the nominal model (same initial digital front end for both)
    tasks, runs = {}, {}
    makers = {
        "offline_bp": lambda t: Autograd(nominal, t, space=chip.space),
        "offline_sat": lambda t: offline_sat(chip, t, p),
    }
    for key, make in makers.items():
        tasks[key] = copy.deepcopy(base_task)
        runs[key] = _offline(
            tasks[key], chip, make(tasks[key]), cfg, p.lr, seed, progress,
            prefix + LABELS[key],
        )  # fmt: skip
        lap(key)

    # 3-4: on the chip, from the offline SAT solution, at the same budget
    start = runs["offline_sat"].theta
    pert = chip.perturbation_models()[p.zo_model] if p.zo_model is not None else None
    tasks["zo_sat"] = copy.deepcopy(tasks["offline_sat"])
    chip.reset()
    online = {
        "zo_sat": zo_sat(
            tasks["zo_sat"], chip, start, budget=cfg.budget, q=cfg.zo_q, sigma=cfg.zo_sigma,
            lr=cfg.zo_lr, batch_size=cfg.zo_batch_size, perturbation=pert, seed=seed,
            progress=progress, label=prefix + LABELS["zo_sat"],
        )
    }  # fmt: skip
    lap("zo_sat")
    tasks["nevergrad"] = copy.deepcopy(tasks["offline_sat"])
    chip.reset()
    online["nevergrad"] = nevergrad(
        tasks["nevergrad"], chip, start, budget=cfg.budget, optimizer=cfg.ng_optimizer,
        workers=cfg.ng_workers, seed=seed, progress=progress, batch_size=cfg.ng_batch_size,
        label=f"{prefix}nevergrad {cfg.ng_optimizer}",
    )  # fmt: skip
    lap("nevergrad")

    labels = {**LABELS, "nevergrad": f"nevergrad {cfg.ng_optimizer}"}
    methods: dict[str, Any] = {}
    thetas: dict[str, np.ndarray] = {}
    perturbed = _Perturbed(chip)
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
        thetas[key] = theta
        methods[key] = {
            "label": label,
            **info,
            **_evaluate(tasks[key], chip, theta, models, cfg, seed, perturbed),
            "training_ledger": ledger,
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

    alphas = np.linspace(-p.landscape_radius, p.landscape_radius, cfg.landscape_points)
    d = chip.space.dim
    dirs = {"random": random_direction(d, np.random.default_rng([seed, 17])), "common_mode": None}
    dirs["common_mode"] = common_mode(d)
    landscape = {
        "alphas": alphas.tolist(),
        "methods": {
            key: {
                k: loss_slice(
                    tasks[key], nominal, thetas[key], u, alphas, split=cfg.landscape_split
                ).tolist()
                for k, u in dirs.items()
            }
            for key in runs
        },
    }
    lap("landscape")
    return {
        "seed": seed,
        "methods": methods,
        "budget_curve": curve,
        "landscape": landscape,
        "timings": timings,
    }


#: the report's names of the methods (nevergrad's adds the optimizer)
LABELS = {
    "offline_bp": "offline BP",
    "offline_sat": "offline SAT",
    "zo_sat": "query-only SAT",
    "nevergrad": "nevergrad",
}


def budget_grid(budget: int, checkpoints: int) -> np.ndarray:
    """``0`` and ``checkpoints`` spends doubling up to ``budget`` (most of the change happens
    early): ``budget / 2**(n-1), ..., budget / 2, budget``, rounded, duplicates dropped."""
    tail = np.geomspace(budget / 2.0 ** (checkpoints - 1), budget, checkpoints)
    return np.unique(np.concatenate([[0], np.maximum(1, tail.round())]).astype(np.int64))


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


__all__ = [
    "DEMO_DEVICE_ARGS",
    "LABELS",
    "RHO",
    "SCHEMA",
    "DemoConfig",
    "Plan",
    "budget_grid",
    "offline_sat_label",
    "plan",
    "run_demo",
]
