"""Training cost vs device size: reconfigurations and wall time to reach 90 % of the white box.

    python benchmarks/scaling_training.py            # 3 seeds x 16 / 32 / 64 modes
    python benchmarks/scaling_training.py --quick    # 16 modes, tiny budgets, prints only

The MZI mesh at the paper's error level (s_bs = s_ps = 0.15, readout noise and drift on) at
16, 32 and 64 modes (d = 240, 992, 4,032 phases), on the digits (64 features), with a digital
front end ``Linear(64, N)`` before the mesh at every size (``default_task(front=True)``, the
paper's set-up), trained from the device's initial controls along each of blacksat's paths:

- **autograd (nominal)**: backprop through the nominal model, offline, no chip query (front end
  and phases); this is also where every other path starts;
- **white box**: from there, backprop through the chip's exact model (offline; the ceiling);
- **physics-aware**: the forward pass on the chip, the backward pass through the nominal model
  (one reconfiguration per step), at several reconfiguration budgets;
- **query-only**: the default zeroth-order plan (``blacksat.query_plan``), at several budgets;
- **grey box**: the nominal physics with fitted errors (``GreyBox``), calibrated from a Sobol
  design of N reconfigurations, then backprop on it offline (surrogate-assisted).

From the common start every path keeps the trained front end (``train_digital=False``), so the
paths differ only in how they set the phases. Accuracy is measured on the chip (a copy that
answered none of the training queries; drift and noise on) over the full test split.
"Reconfigurations to 90 %" is the smallest budget of a path whose mean accuracy over the seeds
reaches 90 % of the white box's mean; its wall time is that run's (mean over seeds, 1 torch
thread).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import Study, summary
from _study import main as run_study

from blacksat import Autograd, MeteredDevice, TrainConfig, Trainer
from blacksat.builder import build_estimator
from blacksat.data import load_digits
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.estimators import PhysicsAware
from blacksat.query_plan import plan_query_only
from blacksat.surrogates import GreyBox, calibrate

SEEDS = (0, 1, 2)
MODES = (16, 32, 64)
#: reconfiguration budgets per path (the grey box's: its calibration design)
BUDGETS = {
    "physics-aware": (250, 1000, 4000),
    "query-only": (1000, 5000, 20000),
    "grey box": (100, 500, 2000),
}
OFFLINE_STEPS = 600
LR = 0.02
BATCH = 64
PATHS = ("white box", "autograd (nominal)", "physics-aware", "query-only", "grey box")


def chip_of(n: int, seed: int) -> MZIMesh:
    """The chip of one run; built afresh for each run (same seed: the same chip)."""
    return MZIMesh(n_modes=n, s_bs=0.15, s_ps=0.15, seed=seed)


def offline_config(seed: int, steps: int) -> TrainConfig:
    return TrainConfig(
        lr=LR, schedule="cosine", max_steps=steps, epochs=None, batch_size=BATCH, seed=seed,
        progress=False, train_digital=False,
    )  # fmt: skip


@functools.lru_cache(maxsize=4)
def start(n: int, seed: int, steps: int) -> tuple[Any, np.ndarray]:
    """The common start of every path: the task (its front end trained) and the phases after
    ``steps`` of backprop through the nominal model from the device's initial controls (what
    a user has before touching the chip)."""
    chip = chip_of(n, seed)
    task = default_task(chip, load_digits(seed=seed), seed=seed, front=True)
    cfg = dataclasses.replace(offline_config(seed, steps), train_digital=True)
    est = Autograd(chip.nominal_model(), task, space=chip.space)
    theta = Trainer(task, est, chip.space, cfg).fit(chip.initial_controls()).theta
    return task, theta


def accuracy(n: int, seed: int, task: Any, theta: np.ndarray) -> float:
    """Test accuracy (%) on a fresh copy of the chip (full test split)."""
    return 100 * task.accuracy(chip_of(n, seed), theta)


def run_path(path: str, n: int, seed: int, budget: int, quick: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    steps = 40 if quick else OFFLINE_STEPS
    chip = chip_of(n, seed)
    task, theta0 = start(n, seed, steps)
    task = copy.deepcopy(task)  # each path trains the phases only, from the same start
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if path == "autograd (nominal)":  # the start itself
        theta, spent = theta0, 0
    elif path == "white box":
        est = Autograd(chip.exact_model(), task, space=chip.space)
        theta = Trainer(task, est, chip.space, offline_config(seed, steps)).fit(theta0).theta
        spent = 0
    elif path == "physics-aware":
        meter = MeteredDevice(chip, max_reconfigurations=budget)
        est = PhysicsAware(meter, chip.nominal_model(), task)
        cfg = offline_config(seed, budget)
        theta = Trainer(task, est, chip.space, cfg, meter=meter).fit(theta0).theta
        spent = meter.ledger.reconfigurations
    elif path == "query-only":
        meter = MeteredDevice(chip, max_reconfigurations=budget)
        plan = plan_query_only(task, meter, theta0, budget=budget, seed=[seed, 11])
        built = build_estimator(plan.estimator_spec(), None, task=task, device=meter, chip=chip)
        cfg = plan.train_config(
            seed=seed,
            max_steps=built.max_steps(budget, spent=plan.calibration_reconfigurations),
            progress=False,
            train_digital=False,
        )
        origin = plan.initial(theta0)  # where the surrogate start left it (if it trained)
        theta = Trainer(task, built.estimator, chip.space, cfg, meter=meter).fit(origin).theta
        spent = meter.ledger.reconfigurations
        extra = {"sigma": plan.sigma, "batch": plan.batch_size}
    elif path == "grey box":
        meter = MeteredDevice(chip, max_reconfigurations=budget)
        rng = np.random.default_rng([seed, n])
        x = rng.standard_normal((32, n))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        grey = GreyBox(chip.nominal_model(), steps=40 if quick else 200, batch_samples=2048,
                       seed=seed)  # fmt: skip
        # the Sobol design these rows ran with (calibrate's default until benchmarks/designs.py)
        cal = calibrate(grey, meter, x, budget, seed=seed, design="sobol")
        fit_s = time.perf_counter() - t0
        est = Autograd(cal.surrogate, task, space=chip.space)
        theta = Trainer(task, est, chip.space, offline_config(seed, steps)).fit(theta0).theta
        spent = meter.ledger.reconfigurations
        extra = {"fit_s": fit_s, "held_out_r2": cal.report.held_out_r2}
    else:
        raise ValueError(path)
    train_s = time.perf_counter() - t0
    return {
        "accuracy": accuracy(n, seed, task, theta),
        "reconfigurations": spent,
        "train_s": train_s,
        **extra,
    }


def runs(quick: bool) -> list[tuple[str, int, int, int]]:
    """Every run (``--only modes=64`` restricts a process to some sizes, so that two processes
    given disjoint sizes share the work on two cores)."""
    seeds, modes = ((0,), (16,)) if quick else (SEEDS, MODES)
    out = []
    for n in modes:
        for seed in seeds:
            out.append(("white box", n, seed, 0))
            out.append(("autograd (nominal)", n, seed, 0))
            for path, budgets in BUDGETS.items():
                for b in budgets[:1] if quick else budgets:
                    out.append((path, n, seed, b // 10 if quick else b))
    return out


def run(study: Study, quick: bool) -> None:
    for path, n, seed, budget in runs(quick):
        if study.skips(modes=n):
            continue
        row = study.run(
            lambda: run_path(path, n, seed, budget, quick),  # noqa: B023
            path=path, modes=n, seed=seed, budget=budget,
        )  # fmt: skip
        print(f"{path:>20} n={n} seed={seed} budget={budget}: {row['accuracy']:.1f} %", flush=True)


def _cell(rows: list[dict[str, Any]], key: str = "accuracy") -> str:
    m, s, k = summary(r[key] for r in rows)
    return "–" if k == 0 else f"{m:.1f} ± {s:.1f}"


def section(study: Study) -> str:
    rows = study.rows()
    modes = sorted({r["modes"] for r in rows})
    lines = [
        "## Scaling: training cost vs device size (MZI mesh, 16 / 32 / 64 modes)",
        "",
        study.header(
            "python benchmarks/scaling_training.py",
            "Digits, full test split, accuracy on the chip (%), mean ± sample std over seeds "
            f"{', '.join(map(str, sorted({r['seed'] for r in rows})))}; MZI chip at the paper's "
            "error level (s_bs = s_ps = 0.15, noise and drift on); every path from the same start "
            "(the nominal model's "
            f"front end and phases after {OFFLINE_STEPS} Adam steps, lr {LR}, batch {BATCH}), "
            "then phases only; offline paths take as many steps again.",
        ),
        "",
        "| path | budget (reconfigurations) | "
        + " | ".join(f"{n} modes (d = {n * (n - 1)})" for n in modes)
        + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in modes) + " |",
    ]
    keys = sorted({(r["path"], r["budget"]) for r in rows}, key=lambda k: (PATHS.index(k[0]), k[1]))
    for path, budget in keys:
        cells = [
            _cell([r for r in rows if (r["path"], r["budget"], r["modes"]) == (path, budget, n)])
            for n in modes
        ]
        lines.append(f"| {path} | {budget or 'offline'} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Reconfigurations and wall time to reach 90 % of the white box's accuracy (the "
        "smallest budget measured whose mean reaches it; wall time of that run's training, "
        "mean over seeds; '>' = not reached at the largest budget):",
        "",
        "| path | " + " | ".join(f"{n} modes" for n in modes) + " |",
        "| --- | " + " | ".join("---" for _ in modes) + " |",
    ]
    for path in PATHS[1:]:
        cells = []
        for n in modes:
            white = [r["accuracy"] for r in rows if (r["path"], r["modes"]) == ("white box", n)]
            if not white:
                cells.append("–")
                continue
            goal = 0.9 * float(np.mean(white))
            hit = None
            budgets = sorted({r["budget"] for r in rows if (r["path"], r["modes"]) == (path, n)})
            for b in budgets:
                rs = [r for r in rows if (r["path"], r["modes"], r["budget"]) == (path, n, b)]
                if np.mean([r["accuracy"] for r in rs]) >= goal:
                    hit = (b, float(np.mean([r["train_s"] for r in rs])))
                    break
            if hit is None:
                cells.append(f"> {budgets[-1]}" if budgets else "–")
            else:
                cells.append(f"{hit[0]} ({hit[1]:.0f} s)")
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    white_s = {
        n: float(
            np.mean([r["train_s"] for r in rows if (r["path"], r["modes"]) == ("white box", n)])
        )
        for n in modes
    }
    lines += [
        "",
        "White-box training wall time (s): "
        + ", ".join(f"{n} modes {white_s[n]:.0f}" for n in modes)
        + ".",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_study(__doc__, "scaling_training", run, section)
