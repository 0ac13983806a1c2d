"""Does SAT against a *measured* perturbation model help on an opaque analog array?

    python benchmarks/characterize.py                # tuning + reported runs, writes its section
    python benchmarks/characterize.py --report-only  # re-render the section from the saved runs
    python benchmarks/characterize.py --force        # discard the saved runs first
    python benchmarks/characterize.py --quick        # a smoke run, prints only

Device: the ``Crossbar`` (16 -> 10, 320 conductances in [0, 1], programming noise at every write,
power-law drift, stuck cells, IR drop, ADC), re-programming on every call, treated as opaque: no
model of it is used. Task: digits through its generic task (PCA to 16 read voltages fitted on the
training split, the 10 signed currents as logits). Every method trains from queries alone
(``ZerothOrder``, Adam) on a metered chip with the same budget of reconfigurations, from the
device's initial setting:

- ``plain ZO``: zeroth-order training;
- ``SAT (measured, average)``: ``blacksat.characterize`` spends part of the budget measuring
  the chip (readout and programming noise, drift, sensitivity), the rest trains zeroth-order SAT
  averaged over draws of the measured ``PerControl`` model (one draw per step);
- ``SAT (measured, worst)``: the same measurement, the worst case of the linearised loss in the
  model (an ascent step per descent step: half the steps).

Evaluation, full test split, on the chip the method trained on: (a) re-programming: the mean
accuracy over 3 evaluations, each batch a fresh write; (b) drift: the conductances read 1 day
after programming (``age = 86400 s``); (c) fresh devices: two other chips of the process, the
library's rule :func:`blacksat.evaluation.fresh_chip_seeds` (a run trained on chip ``c`` is
deployed on chips ``c + 1000 + i``, i = 0, 1). Settings (learning rate in 0.01, 0.03, 0.1) are
chosen on tuning chips (seeds 100, 101), frozen, then reported on 3 run seeds x 3 chips (seeds
0, 1, 2): mean +- sample std (ddof = 1) over the 9 runs.

Every finished run (tuning included) is appended to ``benchmarks/results/characterize/rows.jsonl``
as it completes; a restarted study skips the runs already there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import Study, fresh_chip_seeds, summary
from _study import main as run_study

from blacksat import MeteredDevice, TrainConfig, Trainer
from blacksat.characterize import characterize
from blacksat.data import load_digits
from blacksat.devices import Crossbar
from blacksat.devices.tasks import default_task
from blacksat.estimators import ZerothOrder
from blacksat.sat import sat

METHODS = ("plain ZO", "SAT (measured, average)", "SAT (measured, worst)")
CHAR_BUDGET = 200  # reconfigurations the measurement costs (out of the method's budget)
FRESH = 2  # fresh chips per run: fresh_chip_seeds(chip, FRESH)
TUNE_CHIPS = (100, 101)
LRS = (0.01, 0.03, 0.1)
COMMAND = "python benchmarks/characterize.py"


def _task(chip: Crossbar, seed: int) -> Any:
    task = default_task(chip, load_digits(seed=0), seed=seed).to(torch.float64)
    return task


def train_one(method: str, chip_seed: int, seed: int, budget: int, lr: float) -> dict[str, Any]:
    """Train ``method`` on chip ``chip_seed`` with run seed ``seed``; evaluate it on that chip
    and on the fresh chips of ``chip_seed`` (:func:`fresh_chip_seeds`)."""
    chip = Crossbar(seed=chip_seed)
    task = _task(chip, seed)
    meter = MeteredDevice(chip, max_reconfigurations=budget)
    theta0 = chip.initial_controls(seed)
    base = ZerothOrder(meter, task, q=8, sigma=0.05)
    est: Any = base
    radius = None
    if method != "plain ZO":
        with torch.no_grad():
            feats = torch.as_tensor(task.data.split("train")[0][:32], dtype=torch.float64)
            x = task.encode(feats).numpy()
        c = characterize(meter, x, budget=CHAR_BUDGET, theta=theta0, seed=seed)
        radius = c.model.radius
        mode = "average" if "average" in method else "worst"
        est = sat(base, perturbation=c.model, mode=mode)
    steps = (budget - meter.ledger.reconfigurations) // base.settings_per_step()
    if method == "SAT (measured, worst)":
        steps //= 2
    cfg = TrainConfig(lr=lr, max_steps=max(1, steps), epochs=None, batch_size=64, seed=seed,
                      progress=False)  # fmt: skip
    result = Trainer(task, est, chip.space, cfg, meter=meter).fit(theta0)
    theta = result.theta
    reprog = float(np.mean([task.accuracy(chip, theta) for _ in range(3)]))
    drifted = task.accuracy(chip.perturbed(age=86400.0), theta)
    fresh_chips = fresh_chip_seeds(chip_seed, FRESH)
    fresh = float(np.mean([task.accuracy(chip.fresh_chip(s), theta) for s in fresh_chips]))
    return {
        "method": method, "chip": chip_seed, "seed": seed, "lr": lr, "radius": radius,
        "reprogramming": reprog, "drift_1day": drifted, "fresh": fresh,
        "fresh_chips": fresh_chips,
        "reconfigurations": meter.ledger.reconfigurations, "steps": result.steps,
    }  # fmt: skip


def tune(study: Study, budget: int, lrs: tuple[float, ...]) -> dict[str, float]:
    """Every tuning run not already saved (saved as each completes), then the chosen rates."""
    for m in METHODS:
        for lr in lrs:
            for c in TUNE_CHIPS:
                study.run(
                    lambda m=m, c=c, lr=lr: train_one(m, c, 0, budget, lr),
                    stage="tune", method=m, chip=c, seed=0, budget=budget, lr=lr,
                )  # fmt: skip
    out = chosen(study.rows())
    print(f"tuning: lr {out}", flush=True)
    return out


def chosen(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each method's learning rate with the best mean re-programming accuracy over the saved
    tuning runs (the smallest rate on a tie)."""
    out = {}
    for m in METHODS:
        scores: dict[float, list[float]] = {}
        for r in rows:
            if r.get("stage") == "tune" and r["method"] == m:
                scores.setdefault(r["lr"], []).append(r["reprogramming"])
        if scores:
            out[m] = max(sorted(scores), key=lambda lr: float(np.mean(scores[lr])))
    return out


def run(study: Study, quick: bool) -> None:
    """Tuning, then every reported run not already saved (each saved as it completes)."""
    budget = 600 if quick else 2400
    lrs = (0.02,) if quick else LRS
    lr = {m: 0.02 for m in METHODS} if quick else tune(study, budget, lrs)
    seeds, chips = ((0,), (0, 1)) if quick else ((0, 1, 2), (0, 1, 2))
    for m in METHODS:
        for s in seeds:
            for c in chips:
                row = study.run(
                    lambda m=m, c=c, s=s: train_one(m, c, s, budget, lr[m]),
                    stage="reported", method=m, chip=c, seed=s, budget=budget, lr=lr[m],
                )  # fmt: skip
                print(json.dumps(row), flush=True)


def _ms(vals: list[float]) -> str:
    mean, std, n = summary(100 * v for v in vals)
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"


def section(study: Study) -> str:
    """The generated section, from the saved runs alone: the set-up and the tables."""
    all_rows = study.rows()
    lr = chosen(all_rows)
    rows = [r for r in all_rows if r.get("stage") == "reported"]
    rows = [r for r in rows if r["method"] not in lr or r["lr"] == lr[r["method"]]]
    budget = max((r["budget"] for r in rows), default=0)
    seeds = sorted({r["seed"] for r in rows})
    chips = sorted({r["chip"] for r in rows})
    radius = summary(r["radius"] for r in rows)
    table = [
        f"| method (budget {budget} reconfigurations) | lr | re-programming | drift, 1 day | "
        "fresh devices |",
        "| --- | --- | --- | --- | --- |",
    ]
    for m in METHODS:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue
        lrs = ", ".join(f"{v:g}" for v in sorted({r["lr"] for r in rs}))
        table.append(
            f"| {m} | {lrs} | {_ms([r['reprogramming'] for r in rs])} | "
            f"{_ms([r['drift_1day'] for r in rs])} | {_ms([r['fresh'] for r in rs])} |"
        )
    plain = {(r["chip"], r["seed"]): r["reprogramming"] for r in rows if r["method"] == "plain ZO"}
    diffs = [
        "| method - plain ZO, re-programming (points, paired by chip and run seed) | mean ± std "
        "| standard error | pairs |",
        "| --- | --- | --- | --- |",
    ]
    for m in METHODS[1:]:
        d = [
            100 * (r["reprogramming"] - plain[(r["chip"], r["seed"])])
            for r in rows
            if r["method"] == m and (r["chip"], r["seed"]) in plain
        ]
        if not d:
            continue
        mean, std, n = summary(d)
        se = std / np.sqrt(n) if n > 1 else float("nan")
        diffs.append(f"| {m} | {mean:+.1f} ± {std:.1f} | {se:.1f} | {n} |")
    tuned = (
        f"learning rates chosen on tuning chips {', '.join(map(str, TUNE_CHIPS))} (the best mean "
        "re-programming accuracy)"
        if lr
        else "learning rates fixed (no tuning runs)"
    )
    what = (
        f"{len(seeds)} run seeds x {len(chips)} chips ({', '.join(map(str, chips))}), full test "
        f"split, mean ± sample std over the {len(seeds) * len(chips)} runs; {tuned}. The "
        "`Crossbar` (16 -> 10, 320 conductances, re-programming on every call) is treated as "
        "opaque; every method trains zeroth-order from queries alone with the same budget of "
        f"reconfigurations; the SAT methods first spend {CHAR_BUDGET} of them on `characterize` "
        f"(measured model: `PerControl` gaussian, radius {radius[0]:.4f} ± {radius[1]:.4f} "
        "control units over the runs; the programming noise is 0.03 (0.5 + 0.5 g) of Gmax, "
        "0.015-0.03). Accuracy (%) re-programmed (mean of 3 evaluations, each batch a fresh "
        "write), read 1 day after programming, and on "
        f"{FRESH} fresh devices, the library's rule `blacksat.evaluation.fresh_chip_seeds`: a "
        f"run trained on chip c is deployed on chips c + 1000 + i, i = 0..{FRESH - 1}."
    )
    return "\n".join(
        [
            "## SAT against a measured perturbation model (crossbar, queries only)",
            "",
            study.header(COMMAND, what),
            "",
            *table,
            "",
            *diffs,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    run_study(__doc__, "characterize", run, section, argv)


if __name__ == "__main__":
    main()
