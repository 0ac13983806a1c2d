"""Surrogate-assisted SAT: calibrate a model of the chip from a budget of queries, train SAT on it
offline, deploy on the chip.

    python benchmarks/surrogates.py              # full run, writes its section of BENCHMARKS.md
    python benchmarks/surrogates.py --quick      # one run, tiny budgets, prints only

Chip: 16-mode MZI mesh at the paper's error level (``s_bs = s_ps = 0.15``) **with the unmodelled
effects at their default strength** (crosstalk, arm loss imbalance, insertion loss, detector
saturation and responsivity spread, readout noise, slow drift). Task: digits, the default MZI task
(trainable ``Linear(64, 16)`` front end, class scores = power fractions on the first 10 ports).

Per run (training seed x chip), every method trains the same way: offline SAT (L2 ball,
``rho = 0.3``), Adam, lr 0.02, 600 steps of batch 64, from the same start, then the controls are
deployed unchanged and scored on the full test split on the chip. Models trained on:

- ``white-box``: the chip's exact model (the upper bound the target refers to);
- ``nominal``: the nominal model (no calibration);
- a surrogate calibrated from ``n`` reconfigurations (Sobol design over the whole box, 32 random
  unit-power inputs per setting) on a ``MeteredDevice`` with ``max_reconfigurations = n``:
  ``greybox`` (nominal physics with fitted coupler errors, phase offsets and crosstalk),
  ``residual`` (that grey box plus a learned correction of the readings), ``ensemble`` (a black
  box: 4 MLPs on (sin, cos) of the phases and the inputs).

A sweep multiplies the strength of the effects outside the grey-box class (arm loss imbalance,
insertion loss, saturation, responsivity spread) by 0, 1, 2, 4 at the full calibration budget, on
the three diagonal (seed, chip) pairs.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, summary, write_section

from blacksat import Autograd, MeteredDevice, TrainConfig, Trainer, sat
from blacksat.data import load_digits
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.evaluation import accuracy
from blacksat.surrogates import Ensemble, GreyBox, Residual, calibrate, quality

OUT = Path(__file__).resolve().parent / "results" / "surrogates"
FIGS = "benchmarks/results/surrogates"
CHIP = {"n_modes": 16, "s_bs": 0.15, "s_ps": 0.15}
UNMODELLED = {  # defaults of the effects outside the grey-box class (scaled by the sweep)
    "loss_imbalance_db": 0.1,
    "insertion_loss_db": 0.1,
    "saturation": 0.1,
    "responsivity_spread": 0.02,
}
RHO = 0.3
KINDS = ("greybox", "residual", "ensemble")


def make_surrogate(kind: str, chip: MZIMesh, seed: int, quick: bool) -> Any:
    scale = 0.2 if quick else 1.0
    grey = GreyBox(chip.nominal_model(), steps=max(10, int(150 * scale)), seed=seed)
    if kind == "greybox":
        return grey
    if kind == "residual":
        return Residual(grey, steps=max(10, int(400 * scale)), seed=seed)
    return Ensemble(
        members=4,
        hidden=(128, 128),
        periodic=True,
        steps=max(10, int(250 * scale)),
        batch_samples=4096,
        seed=seed,
    )


def train_and_deploy(
    chip: MZIMesh, base_task: Any, model: Any, seed: int, steps: int
) -> dict[str, float]:
    task = copy.deepcopy(base_task)  # same initial front end for every method
    cfg = TrainConfig(
        lr=0.02, max_steps=steps, epochs=None, batch_size=64, seed=seed, progress=False
    )
    est = sat(Autograd(model, task, space=chip.space), rho=RHO)
    run = Trainer(task, est, chip.space, cfg).fit(chip.initial_controls(seed))
    chip.reset()  # every method is scored against the same noise and drift streams
    return {
        "model_accuracy": accuracy(task, model, run.theta),
        "chip_accuracy": accuracy(task, chip, run.theta),
    }


def one_run(seed: int, chip_seed: int, budgets: list[int], factors: list[float], quick: bool):
    """Every method at strength 1 (and, where ``factors`` holds more, the strength sweep) on
    one (training seed, chip) pair."""
    torch.set_num_threads(1)
    steps = 60 if quick else 600
    data = load_digits(seed=seed)
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng([seed, chip_seed])
    x = rng.standard_normal((32, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    probe = rng.uniform(0, 2 * np.pi, size=(64, 240))  # fit quality on fresh settings
    for factor in factors:
        hidden = {k: v * factor for k, v in UNMODELLED.items()}
        chip = MZIMesh(seed=chip_seed, **CHIP, **hidden)
        base_task = default_task(chip, data, seed=seed).to(torch.float64)
        truth = chip.exact_model(torch.float64)
        with torch.no_grad():
            y_probe = truth(torch.as_tensor(probe), torch.as_tensor(x)).numpy()
        common = {"seed": seed, "chip": chip_seed, "factor": factor}

        def add(method: str, budget: int, model: Any, **extra: Any) -> None:
            t0 = time.perf_counter()
            res = train_and_deploy(chip, base_task, model, seed, steps)  # noqa: B023
            rows.append(
                {
                    **common,  # noqa: B023
                    "method": method,
                    "budget": budget,
                    **res,
                    "probe_r2": quality(model, [(probe, x, y_probe)])["r2"],  # noqa: B023
                    "train_seconds": time.perf_counter() - t0,
                    **extra,
                }
            )

        add("white-box", 0, chip.exact_model(torch.float64))
        if factor == 1.0:
            add("nominal", 0, chip.nominal_model(torch.float64))
        kinds = KINDS if factor == 1.0 else ("greybox", "residual")
        for budget in budgets if factor == 1.0 else budgets[-1:]:
            for kind in kinds:
                chip.reset()
                meter = MeteredDevice(chip, max_reconfigurations=budget)
                t0 = time.perf_counter()
                # the Sobol design these rows ran with (calibrate's default until
                # benchmarks/designs.py measured it against a Latin hypercube)
                sur = make_surrogate(kind, chip, seed, quick)
                cal = calibrate(sur, meter, x, budget, seed=seed, design="sobol")
                fit_s = time.perf_counter() - t0
                rep = cal.report
                add(
                    kind,
                    budget,
                    cal.surrogate,
                    reconfigurations=meter.ledger.reconfigurations,
                    held_out_relative_error=rep.relative_error,
                    fit_seconds=fit_s,
                )
        print(f"seed {seed} chip {chip_seed} factor {factor}: done", flush=True)
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, float]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["factor"], r["method"], r["budget"]), []).append(r)
    out = {}
    for key, rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        acc = np.array([r["chip_accuracy"] for r in rs]) * 100
        r2 = np.array([r["probe_r2"] for r in rs])
        mean, std, n = summary(acc)
        out[key] = {
            "n": n,
            "mean": mean,
            "std": std,
            "min": float(acc.min()),
            "r2": float(np.mean(r2)),
            "rel_err": float(np.mean([r.get("held_out_relative_error", 0.0) for r in rs])),
            "fit_s": float(np.mean([r.get("fit_seconds", 0.0) for r in rs])),
        }
    return out


def plot(summary: dict, sweep: dict, budgets: list[int], factors: list[float], out: Path) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind in KINDS:
        m = [summary[(1.0, kind, b)] for b in budgets]
        ax.errorbar(budgets, [v["mean"] for v in m], [v["std"] for v in m], marker="o", label=kind)
    for ref, style in (("white-box", "--"), ("nominal", ":")):
        v = summary[(1.0, ref, 0)]
        ax.axhline(v["mean"], ls=style, color="k", label=f"{ref} SAT")
    ax.set_xscale("log")
    ax.set_xlabel("calibration budget (reconfigurations)")
    ax.set_ylabel("accuracy on the chip (%)")
    ax.set_title("offline SAT on a calibrated surrogate, 16-mode MZI 0.15/0.15")
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.append(out / "accuracy_vs_budget.png")
    fig.savefig(files[-1], dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind in ("white-box", "greybox", "residual"):
        b = 0 if kind == "white-box" else budgets[-1]
        m = [sweep[(f, kind, b)] for f in factors]
        ax.errorbar(factors, [v["mean"] for v in m], [v["std"] for v in m], marker="o", label=kind)
    ax.set_xlabel("strength of the unmodelled effects (x default)")
    ax.set_ylabel("accuracy on the chip (%)")
    ax.set_title(f"calibrated from {budgets[-1]} reconfigurations")
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.append(out / "accuracy_vs_unmodelled.png")
    fig.savefig(files[-1], dpi=120)
    plt.close(fig)
    return files


def report(summary, sweep, budgets, factors, runs, minutes, command) -> str:
    def cell(key, table=summary):
        v = table[key]
        return f"{v['mean']:.1f} ± {v['std']:.1f}"

    lines = [
        "## Surrogate-assisted SAT: calibrate from queries, train offline, deploy",
        "",
        f"`{command}` ({minutes:.1f} min with 2 worker processes of one thread each, on "
        f"{machine()}; the script's docstring has the setup; `--report-only` re-renders this "
        "section from the saved rows). "
        f"{len(runs)} runs = {len({s for s, _ in runs})} training seeds x "
        f"{len({c for _, c in runs})} chips, full digits test split, accuracy on the chip "
        "in % (mean ± std over runs). Every model trains offline SAT (L2, rho = 0.3, 600 Adam "
        "steps); the chip has all its unmodelled effects at default strength.",
        "",
        "| calibration budget (reconfigurations) | "
        + " | ".join(str(b) for b in budgets)
        + " | model R² on fresh settings at the largest budget |",
        "| --- |" + " --- |" * (len(budgets) + 1),
    ]
    for kind in KINDS:
        r2 = summary[(1.0, kind, budgets[-1])]["r2"]
        lines.append(
            f"| {kind} | " + " | ".join(cell((1.0, kind, b)) for b in budgets) + f" | {r2:.3f} |"
        )
    lines += [
        f"| white-box SAT (exact model) | {cell((1.0, 'white-box', 0))} (no calibration) |"
        + " |" * len(budgets),
        f"| nominal SAT | {cell((1.0, 'nominal', 0))} (no calibration) |" + " |" * len(budgets),
        "",
        f"Sweep of the unmodelled-effect strength (x default; calibration {budgets[-1]} "
        "reconfigurations; the three (seed i, chip i) pairs, so strength 1 here is a subset of "
        "the runs above):",
        "",
        "| strength | " + " | ".join(f"{f:g}" for f in factors) + " |",
        "| --- |" + " --- |" * len(factors),
    ]
    for kind in ("white-box", "greybox", "residual"):
        b = 0 if kind == "white-box" else budgets[-1]
        lines.append(f"| {kind} | " + " | ".join(cell((f, kind, b), sweep) for f in factors) + " |")
    lines += [
        "",
        "Fit quality behind the sweep (held-out relative RMSE of the readings / R² on 64 fresh "
        "random settings, against the noise-free truth):",
        "",
        "| strength | " + " | ".join(f"{f:g}" for f in factors) + " |",
        "| --- |" + " --- |" * len(factors),
    ]
    for kind in ("greybox", "residual"):
        q = [sweep[(f, kind, budgets[-1])] for f in factors]
        lines.append(
            f"| {kind} | " + " | ".join(f"{v['rel_err']:.2f} / {v['r2']:.2f}" for v in q) + " |"
        )
    fits = ", ".join(f"{k} {summary[(1.0, k, budgets[-1])]['fit_s']:.0f} s" for k in KINDS)
    lines += [
        "",
        f"Mean fit time at {budgets[-1]} reconfigurations (one core): {fits}.",
        "",
        f"![accuracy vs budget]({FIGS}/accuracy_vs_budget.png)",
        f"![accuracy vs unmodelled strength]({FIGS}/accuracy_vs_unmodelled.png)",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one run, tiny budgets; prints only")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument(
        "--report-only",
        action="store_true",
        help=f"re-render the section and plots from the saved {OUT.name}/rows.json (no new runs)",
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.report_only:
        saved = json.loads((OUT / "rows.json").read_text())
        meta, rows = saved["meta"], saved["rows"]
        budgets, factors, pairs = (
            meta["budgets"],
            meta["factors"],
            [tuple(p) for p in meta["pairs"]],
        )
        render(rows, budgets, factors, pairs, meta["minutes"], meta["command"], quick=False)
        return
    if args.quick:
        budgets, factors, pairs = [10, 40], [1.0, 2.0], [(0, 1)]
    else:
        budgets, factors = [10, 30, 100, 500], [0.0, 1.0, 2.0, 4.0]
        pairs = [(s, c) for s in (0, 1, 2) for c in (11, 12, 13)]
    with ProcessPoolExecutor(args.workers) as pool:
        # the strength sweep runs on the diagonal pairs (seed i, chip i): 3 runs per strength
        futures = [
            pool.submit(one_run, s, c, budgets, factors if i % 4 == 0 else [1.0], args.quick)
            for i, (s, c) in enumerate(pairs)
        ]
        rows = [r for f in futures for r in f.result()]
    minutes = (time.perf_counter() - t0) / 60
    command = "python benchmarks/surrogates.py" + (" --quick" if args.quick else "")
    if not args.quick:
        OUT.mkdir(parents=True, exist_ok=True)
        meta = {"budgets": budgets, "factors": factors, "pairs": pairs, "minutes": minutes}
        saved = {"meta": {**meta, "command": command}, "rows": rows}
        (OUT / "rows.json").write_text(json.dumps(saved, indent=1))
    render(rows, budgets, factors, pairs, minutes, command, quick=args.quick)


def render(rows, budgets, factors, pairs, minutes, command, *, quick: bool) -> None:
    """Summaries, the BENCHMARKS.md section and the plots from the measured rows."""
    summary = summarize([r for r in rows if r["factor"] == 1.0])
    diagonal = {tuple(pairs[i]) for i in range(0, len(pairs), 4)}
    sweep = summarize([r for r in rows if (r["seed"], r["chip"]) in diagonal])
    for key, v in summary.items():
        print(key, f"{v['mean']:.1f} ± {v['std']:.1f} (n={v['n']}, R² {v['r2']:.3f})")
    text = report(summary, sweep, budgets, factors, pairs, minutes, command)
    if quick:  # exercise the report and the plots, keep the committed results
        with tempfile.TemporaryDirectory() as tmp:
            plot(summary, sweep, budgets, factors, Path(tmp))
        print(text)
        return
    plot(summary, sweep, budgets, factors, OUT)
    write_section("surrogates", text)


if __name__ == "__main__":
    main()
