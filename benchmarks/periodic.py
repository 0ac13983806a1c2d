"""Periodic controls: wrapping phases vs clipping them to ``[0, 2 pi]``, at equal reconfigurations.

    python benchmarks/periodic.py            # the reported run, writes its BENCHMARKS.md section
    python benchmarks/periodic.py --quick    # one seed, tiny budgets; prints only
    python benchmarks/periodic.py --report   # rewrite the section from results/periodic/rows.json
    python benchmarks/periodic.py --white-box  # re-run only the white-box rows, keep the others

Phase shifters and SLM pixels act through ``exp(i phi)``. Before ``ParamSpace`` knew periodic
controls, every trainer projected a phase that left ``[0, 2 pi]`` onto the bound, where it stuck.
This script trains the same chips twice, at the same settings, seeds and budgets: once with the
chip's own (periodic) space, where a step across ``0``/``2 pi`` wraps (``wrap``), and once with
the same chip behind :meth:`ParamSpace.bounded` (``clip``): bounded controls, so the trainer, the
zeroth-order probes and the nevergrad parametrization clip (nevergrad: bounce) as they used to.

1. **MZI comparison** (the setup of ``benchmarks/compare.py``): ``MZIMesh(n_modes=16,
   s_bs=0.05)``, digits, the front end frozen at its seeded init, 240 phases from the centre of
   the box; the comparison's ``zo-adam`` and ``zo-sat`` recipes and nevergrad ``cma-tuned``
   (:data:`blacksat.product.compare_methods.METHODS`, settings frozen there) at 1000 and 5000
   reconfigurations.
2. **Diffractive, query-only**: ``DiffractiveNetwork(n=16, n_layers=2)`` (512 SLM phases,
   256 levels over ``2 pi``), digits, from a uniformly random phase start, the comparison's
   ``zo-adam`` recipe (not re-tuned) with minibatches of 128, 1000 reconfigurations.

White box: the same Adam recipe on the chip's truth with its readout noise drawn at every step
(``chip.noisy_model()``, autograd, no device queries), ``WHITE_STEPS`` steps, under each
projection: the fraction of its controls on a bound is what the optimum itself asks for. (It had
trained on the noise-free exact model, where the diffractive network's settings put so little
light on the detectors that the chip's readout noise read them near chance.) "On a bound": the
trained (continuous) control equals ``lower`` or ``upper`` to 1e-9.
Accuracy: full test split on the bare chip; mean ± std (ddof 1) over seeds 0, 1, 2 (seed ``s``
on chip ``s``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, machine, write_section

from blacksat import Autograd, MeteredDevice, TrainConfig, Trainer, sat
from blacksat.data import load_digits
from blacksat.devices import DiffractiveNetwork, MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.estimators import ZerothOrder
from blacksat.ng.adapter import DeviceObjective, minimize
from blacksat.product.compare_methods import method

OUT = ROOT / "benchmarks" / "results" / "periodic"
SEEDS = (0, 1, 2)
MZI_BUDGETS = (1000, 5000)
MZI_METHODS = ("zo-adam", "zo-sat", "cma-tuned")
DIFF_BUDGET = 1000
DIFF_BATCH = 128
WHITE_STEPS = 200
ARMS = ("wrap", "clip")
TOL = 1e-9


class Clipped:
    """``chip`` behind the bounded copy of its space (no periodic control): what every
    projection did before periodic controls existed. Everything else is the chip's."""

    def __init__(self, chip: Any) -> None:
        self.chip, self.space = chip, chip.space.bounded()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.chip, name)

    def query(self, theta: Any, x: Any) -> np.ndarray:
        return self.chip.query(self.space.validate(theta), x)

    def query_many(self, thetas: Any, x: Any) -> np.ndarray:
        return self.chip.query_many(self.space.validate_many(thetas), x)


def on_bound(space: Any, theta: np.ndarray) -> float:
    """Fraction of the controls of ``theta (d,)`` sitting on ``lower`` or ``upper``."""
    t = np.asarray(theta, dtype=np.float64)
    return float(np.mean((np.abs(t - space.lower) <= TOL) | (np.abs(t - space.upper) <= TOL)))


# ---------------------------------------------------------------------- one run
def run_method(
    name: str, chip: Any, task: Any, theta0: np.ndarray, budget: int, seed: int, batch: int | None
) -> np.ndarray:
    """Train with a registered comparison method; returns the final controls ``(d,)``."""
    m = method(name)
    meter = MeteredDevice(chip, max_reconfigurations=budget)
    if m.kind == "nevergrad":
        obj = DeviceObjective(task, meter, batch_size=None, seed=seed)
        kwargs = dict(m.options.get("optimizer_kwargs", {})) or None
        res = minimize(
            obj, m.options["optimizer"], budget=budget, num_workers=16, seed=seed, init=theta0,
            optimizer_kwargs=kwargs,
        )  # fmt: skip
        return np.asarray(res.theta, dtype=np.float64)
    o = m.options
    zo = ZerothOrder(meter, task, q=o["q"], sigma=o["sigma"], scheme=o["scheme"])
    est: Any = zo
    if "perturbation" in o:
        est = sat(zo, perturbation=chip.perturbation_models()[o["perturbation"]], mode=o["mode"])
    steps = max(1, budget // zo.settings_per_step())
    cfg = m.train_config(max_steps=steps, seed=seed)
    if batch is not None:
        cfg = dataclasses.replace(cfg, batch_size=batch)
    return Trainer(task, est, chip.space, cfg, meter=meter).fit(theta0).theta


def white_box(chip: Any, task: Any, theta0: np.ndarray, seed: int, batch: int) -> np.ndarray:
    """Adam on the chip's noisy model (the comparison's lr and schedule), ``WHITE_STEPS``."""
    o = method("zo-adam").options
    cfg = TrainConfig(
        lr=o["lr"], schedule=o["schedule"], epochs=None, max_steps=WHITE_STEPS, batch_size=batch,
        seed=seed, train_digital=False, progress=False,
    )  # fmt: skip
    est = Autograd(chip.noisy_model(seed=seed), task, space=chip.space)
    return Trainer(task, est, chip.space, cfg).fit(theta0).theta


def run(quick: bool, white_only: bool = False) -> list[dict[str, Any]]:
    """Every row (or, with ``white_only``, the white-box rows alone)."""
    data = load_digits()
    seeds = SEEDS[:1] if quick else SEEDS
    budgets = (200,) if quick else MZI_BUDGETS
    rows: list[dict[str, Any]] = []

    def record(setup: str, name: str, budget: Any, arm: str, seed: int, chip, task, theta, t0):
        acc = float(task.accuracy(chip, chip.space.project(theta), split="test"))
        rows.append(
            {
                "setup": setup, "method": name, "budget": budget, "arm": arm, "seed": seed,
                "accuracy": acc, "on_bound": on_bound(chip.space, theta),
                "wall_s": time.perf_counter() - t0,
            }
        )  # fmt: skip
        print(f"{setup:11s} {name:10s} {budget!s:>6} {arm:4s} seed {seed}: {100 * acc:5.1f} % "
              f"on bound {100 * rows[-1]['on_bound']:5.1f} %", flush=True)  # fmt: skip

    for seed in seeds:
        for arm in ARMS:
            # ------------------------------------------------------------ MZI comparison
            chip = MZIMesh(n_modes=16, s_bs=0.05, seed=seed)
            dev = chip if arm == "wrap" else Clipped(chip)
            task = default_task(chip, data, seed=seed)
            for p in task.digital_parameters():
                p.requires_grad_(False)
            theta0 = chip.space.center.copy()
            for name in () if white_only else MZI_METHODS:
                for budget in budgets:
                    t0 = time.perf_counter()
                    theta = run_method(name, dev, task, theta0, budget, seed, None)
                    record("mzi", name, budget, arm, seed, dev, task, theta, t0)
            t0 = time.perf_counter()
            theta = white_box(dev, task, theta0, seed, 256)
            record("mzi", "white box", "-", arm, seed, dev, task, theta, t0)
            # ------------------------------------------------------------ diffractive
            chip = DiffractiveNetwork(n=16, n_layers=2, seed=seed)
            dev = chip if arm == "wrap" else Clipped(chip)
            task = default_task(chip, data, seed=seed)
            theta0 = chip.space.sample(np.random.default_rng([seed, 7]))
            if not white_only:
                t0 = time.perf_counter()
                budget = 100 if quick else DIFF_BUDGET
                theta = run_method("zo-adam", dev, task, theta0, budget, seed, DIFF_BATCH)
                record("diffractive", "zo-adam", budget, arm, seed, dev, task, theta, t0)
            t0 = time.perf_counter()
            theta = white_box(dev, task, theta0, seed, DIFF_BATCH)
            record("diffractive", "white box", "-", arm, seed, dev, task, theta, t0)
            if arm == "wrap" and not white_only:
                rows.append(
                    {"setup": "diffractive", "method": "start", "budget": "-", "arm": "-",
                     "seed": seed, "accuracy": float("nan"),
                     "on_bound": on_bound(chip.space, theta0), "wall_s": 0.0}
                )  # fmt: skip
    return rows


# ---------------------------------------------------------------------- report
def _ms(values: list[float], scale: float = 100.0) -> str:
    v = scale * np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return f"{v.mean():.1f}"
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"


def table(rows: list[dict[str, Any]]) -> tuple[str, list[str]]:
    keys: list[tuple[str, str, Any]] = []
    for r in rows:
        k = (r["setup"], r["method"], r["budget"])
        if r["method"] != "start" and k not in keys:
            keys.append(k)
    lines = [
        "| setup | method | reconfigurations | accuracy %, wrap | accuracy %, clip | "
        "wrap - clip (pp) | on a bound %, wrap | on a bound %, clip |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for setup, name, budget in keys:
        by = {
            arm: [r for r in rows if (r["setup"], r["method"], r["budget"], r["arm"]) ==
                  (setup, name, budget, arm)]
            for arm in ARMS
        }  # fmt: skip
        acc = {a: [r["accuracy"] for r in by[a]] for a in ARMS}
        bound = {a: [r["on_bound"] for r in by[a]] for a in ARMS}
        diff = 100 * (np.mean(acc["wrap"]) - np.mean(acc["clip"]))
        lines.append(
            f"| {setup} | {name} | {budget} | {_ms(acc['wrap'])} | {_ms(acc['clip'])} | "
            f"{diff:+.1f} | {_ms(bound['wrap'])} | {_ms(bound['clip'])} |"
        )
        if name != "white box":
            paired = [
                (w["accuracy"] - c["accuracy"]) for w, c in zip(by["wrap"], by["clip"], strict=True)
            ]
            verdicts.append((setup, name, budget, diff, 100 * min(paired)))
    return "\n".join(lines), verdicts


def report(saved: dict[str, Any]) -> str:
    """The section from the saved run (``rows``, ``minutes``; a white-box re-run's time and
    machine where there was one)."""
    rows, minutes = saved["rows"], saved["minutes"]
    host = saved.get("machine") or machine()
    if "white_box_minutes" in saved:
        host += (
            f"; the white-box rows re-run by `--white-box` ({saved['white_box_minutes']:.1f} min) "
            f"on {saved['white_box_machine']}"
        )
    body, verdicts = table(rows)
    start = [r["on_bound"] for r in rows if r["method"] == "start"]
    white = {
        (s, a): np.mean([r["on_bound"] for r in rows
                         if (r["setup"], r["method"], r["arm"]) == (s, "white box", a)])
        for s in ("mzi", "diffractive") for a in ARMS
    }  # fmt: skip
    wrapped = [r for r in rows if r["arm"] == "wrap" and r["method"] not in ("white box", "start")]
    worst_wrap = max(r["on_bound"] for r in wrapped)
    never_loses = all(d >= 0 for *_, d, _ in verdicts)
    lines = [
        f"- {s} `{n}` at {b}: wrap - clip {d:+.1f} pp on average, worst seed {w:+.1f} pp"
        for s, n, b, d, w in verdicts
    ]
    return "\n".join(
        [
            "## Periodic controls: wrapping vs clipping phases",
            "",
            f"Command: `python benchmarks/periodic.py` ({minutes:.1f} min). Machine: {host}.",
            "",
            "The same chips, recipes, seeds and reconfiguration budgets, trained twice: **wrap** "
            "(the chips' periodic phases, `ParamSpace(period=2 pi)`: a step across 0 / 2 pi "
            "comes out on the other side) and **clip** (the same chip behind "
            "`ParamSpace.bounded()`: the trainer, the zeroth-order probes and nevergrad's "
            "parametrization clip, or bounce, at the bounds, as every run did before periodic "
            "controls). MZI: the setup of the nevergrad comparison (`MZIMesh(n_modes=16, "
            "s_bs=0.05)`, digits, frozen seeded front end, 240 phases from the box centre; the "
            "comparison's `zo-adam`, `zo-sat` and `cma-tuned` with their frozen settings). "
            "Diffractive, query-only: `DiffractiveNetwork(n=16, n_layers=2)` (512 SLM phases, "
            "256 levels over 2 pi), digits, uniformly random phase start, the comparison's "
            f"`zo-adam` recipe with minibatches of {DIFF_BATCH}, {DIFF_BUDGET} reconfigurations. "
            f"White box: Adam on the chip's truth through its readout noise (`noisy_model()`), "
            f"{WHITE_STEPS} steps, same lr and schedule. "
            "Accuracy on the full test split of the bare chip, mean ± std (ddof 1) over seeds "
            "0, 1, 2 (seed s on chip s); on a bound: the trained continuous control equals "
            "lower or upper (to 1e-9).",
            "",
            body,
            "",
            f"Diffractive random start: {_ms(start)} % of the phases on a level at a bound "
            "(levels 0 and 255).",
            "",
            "Target: wrapping never loses accuracy against clipping at equal reconfigurations, "
            "and the fraction of controls on a bound after training falls to the white box's: "
            f"accuracy {'**met**' if never_loses else '**not met**'} (mean over seeds, every "
            "row); on a bound after training with wrapping: at most "
            f"{100 * worst_wrap:.1f} % of any run's controls, vs the white box's "
            f"{100 * white[('mzi', 'wrap')]:.1f} % (MZI) and "
            f"{100 * white[('diffractive', 'wrap')]:.1f} % (diffractive) with wrapping and "
            f"{100 * white[('mzi', 'clip')]:.1f} % / {100 * white[('diffractive', 'clip')]:.1f} "
            "% with clipping.",
            "",
            "Paired by seed (the same chip, start and minibatch stream):",
            "",
            *lines,
        ]
    )


def with_white_box(
    saved: dict[str, Any], fresh: list[dict[str, Any]], minutes: float, host: str
) -> dict[str, Any]:
    """``saved`` with its white-box rows replaced, in place in the row order, by ``fresh`` (one
    per setup, arm and seed; the other rows kept), and the re-run's time and machine noted."""
    new = {(r["setup"], r["arm"], r["seed"]): r for r in fresh}
    rows = [
        new[(r["setup"], r["arm"], r["seed"])] if r["method"] == "white box" else r
        for r in saved["rows"]
    ]
    return {**saved, "rows": rows, "white_box_minutes": minutes, "white_box_machine": host}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed, tiny budgets; prints only")
    ap.add_argument("--report", action="store_true", help="rewrite the section from rows.json")
    ap.add_argument(
        "--white-box", action="store_true",
        help="re-run only the white-box rows (through the readout noise); keep the others",
    )  # fmt: skip
    args = ap.parse_args()
    if args.report:
        write_section("periodic", report(json.loads((OUT / "rows.json").read_text())))
        return
    torch.set_num_threads(1)
    if args.white_box:
        saved = json.loads((OUT / "rows.json").read_text())
        t0 = time.perf_counter()
        fresh = run(quick=False, white_only=True)
        saved = with_white_box(saved, fresh, (time.perf_counter() - t0) / 60, machine())
        text = report(saved)
        print(text)
        (OUT / "rows.json").write_text(json.dumps(saved, indent=1) + "\n")
        write_section("periodic", text)
        return
    t0 = time.perf_counter()
    rows = run(args.quick)
    minutes = (time.perf_counter() - t0) / 60
    saved = {"minutes": minutes, "rows": rows, "machine": machine()}
    text = report(saved)
    print(text)
    if args.quick:
        return
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "rows.json").write_text(json.dumps(saved, indent=1) + "\n")
    write_section("periodic", text)


if __name__ == "__main__":
    main()
