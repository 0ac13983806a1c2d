"""Diffractive network under misalignment: backprop, noise-aware, unstructured and structured SAT.

    python benchmarks/diffractive_misalignment.py          # writes its section of BENCHMARKS.md
    python benchmarks/diffractive_misalignment.py --quick  # few steps, one seed, prints only
    python benchmarks/diffractive_misalignment.py --tune   # hyperparameter search, seed 100
    python benchmarks/diffractive_misalignment.py --report # plots and section from results.json

A two-mask diffractive network (``DiffractiveNetwork``, 32 x 32 SLM pixels, digits, the default
task) is trained offline on its *nominal* model with each method (after a shared warm start of
plain backprop), then deployed unchanged under a misalignment of every mask (rotation, shift,
scale: the device's nuisance parameters, an affine resampling of the masks). Methods:

- ``BP``: plain backprop on the nominal model;
- ``noise-aware``: the average case over random misalignments covering the rated ranges
  (rotation +-2 deg, shift +-2 px on both axes, scale 0.9-1.1);
- ``ASAM`` / ``SAM``: unstructured SAT in control space (the paper's diffractive setting ASAM
  rho = 0.1; an L2 ball);
- ``structured SAT``: the worst case over the same misalignment ranges found by the paper's
  one-sided finite-difference adversary
  (:class:`blacksat.perturbations.nuisance.NuisanceModel`), descent at
  that worst case (``"structured SAT + ASAM"``, the same combined with the control-space ASAM
  ascent, is available in :class:`Settings` but not in the default run).

Each trained setting is evaluated on the full test split on the nominal model under the
misalignment alone (sweeps of rotation 0-2 deg, shift 0-2 px along the columns, scale 1.0-1.1
and a 2-D rotation x shift grid), and on 5 fabricated chips per seed (fabrication draws: static
per-mask misalignment, SLM LUT errors, hidden effects, readout noise and drift) under the 1-D
sweeps (every other point). Results: ``benchmarks/results/diffractive/`` (JSON, PNG plots,
cells of the cross-study table, the tuning runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, machine, save_cells, summary, write_section

from blacksat.data import load_digits
from blacksat.devices import DEVICES
from blacksat.devices.tasks import default_task
from blacksat.estimators import Autograd
from blacksat.evaluation import accuracy_many
from blacksat.perturbations import Adaptive, Combined, L2Ball, NuisanceModel
from blacksat.sat import FreeAscent, sat
from blacksat.train_config import TrainConfig
from blacksat.trainer import Trainer

OUT = ROOT / "benchmarks" / "results" / "diffractive"
SEEDS = (0, 1, 2)
TUNING_SEEDS = (100,)
#: the misalignment every method is robust against: the device's rated ranges
RANGES = {
    "rotation": (-2.0, 2.0),
    "shift_x": (-2.0, 2.0),
    "shift_y": (-2.0, 2.0),
    "scale": (0.9, 1.1),
}
NOMINAL = {"rotation": 0.0, "shift_x": 0.0, "shift_y": 0.0, "scale": 1.0}
#: the swept misalignment, name -> (nuisance parameter, unit)
SWEEPS = {"rotation": ("rotation", "deg"), "shift": ("shift_x", "px"), "scale": ("scale", "")}
#: method of this study -> its row in the cross-study table
CELL_METHOD = {
    "BP": "BP",
    "noise-aware": "noise-aware",
    "ASAM": "unstructured SAT",
    "structured SAT": "structured SAT",
}

Condition = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Settings:
    """What one run of the study does (the full run's values are the defaults)."""

    seeds: tuple[int, ...] = SEEDS
    chips: int = 5
    steps: int = 600
    lr: float = 0.05
    batch_size: int = 64
    asam_rho: float = 0.1
    sam_rho: float = 1.0
    adversary_steps: int = 2
    adversary_step_size: float = 0.25
    #: fraction of the rated ranges the structured adversary / the noise-aware draws cover
    adversary_range: float = 1.0
    noise_range: float = 1.0
    #: random misalignments averaged per noise-aware step
    draws: int = 4
    #: steps of plain backprop before the robust methods take over (0: none)
    warmup: int = 200
    methods: tuple[str, ...] = (
        "BP",
        "noise-aware",
        "ASAM",
        "SAM",
        "structured SAT",
    )
    rotations: tuple[float, ...] = tuple(np.linspace(0.0, 2.0, 9).tolist())
    shifts: tuple[float, ...] = tuple(np.linspace(0.0, 2.0, 9).tolist())
    scales: tuple[float, ...] = tuple(np.linspace(1.0, 1.1, 5).tolist())
    #: the chips see every ``chip_every``-th point of each 1-D sweep (ends included)
    chip_every: int = 2
    grid_rotations: tuple[float, ...] = tuple(np.linspace(0.0, 2.0, 5).tolist())
    grid_shifts: tuple[float, ...] = tuple(np.linspace(0.0, 2.0, 5).tolist())
    device: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            seeds=(0,),
            chips=2,
            steps=30,
            warmup=10,
            rotations=(0.0, 1.0, 2.0),
            shifts=(0.0, 1.0, 2.0),
            scales=(1.0, 1.1),
            grid_rotations=(0.0, 2.0),
            grid_shifts=(0.0, 2.0),
        )


def chip_seeds(seed: int, chips: int) -> list[int]:
    """The fabrication draws a setting trained with ``seed`` is deployed on (never the same
    across seeds)."""
    return [10 * seed + j + 1 for j in range(chips)]


def misalignment(s: Settings, factor: float = 1.0) -> NuisanceModel:
    """The finite-difference adversary over the rated misalignment ranges (scaled by
    ``factor`` about the nominal alignment)."""
    model = NuisanceModel(
        RANGES, center=NOMINAL, steps=s.adversary_steps, step_size=s.adversary_step_size
    )
    return model.scaled(factor)


def estimators(chip: Any, task: Any, s: Settings) -> dict[str, Any]:
    """Every method's gradient estimator, all on the nominal model (offline)."""
    dtype = task.dtype
    family = chip.model_family("nominal", dtype=dtype, cache_size=64)
    base = Autograd(chip.nominal_model(dtype=dtype), task, family=family, space=chip.space)
    table: dict[str, Callable[[], Any]] = {
        "BP": lambda: base,
        "noise-aware": lambda: sat(
            base, perturbation=misalignment(s, s.noise_range), mode="average", draws=s.draws
        ),
        "ASAM": lambda: sat(base, perturbation=Adaptive(s.asam_rho)),
        "SAM": lambda: sat(base, perturbation=L2Ball(s.sam_rho)),
        "structured SAT": lambda: sat(
            base, FreeAscent(), perturbation=misalignment(s, s.adversary_range)
        ),
        "structured SAT + ASAM": lambda: sat(
            base, perturbation=Combined(misalignment(s, s.adversary_range), Adaptive(s.asam_rho))
        ),
    }
    return {m: table[m]() for m in s.methods}


#: backprop warm starts, shared by the methods (and tuning candidates) of one seed
_WARM: dict[tuple, tuple[np.ndarray, float]] = {}


def train(seed: int, s: Settings) -> tuple[Any, Any, dict[str, np.ndarray], dict[str, float]]:
    """Train every method for ``seed`` -> (chip, task, thetas, wall seconds per method).

    With ``s.warmup`` steps, plain backprop runs first (once) and every method, BP included,
    continues from there for the remaining ``s.steps - s.warmup`` steps (fresh Adam state)."""
    chip = DEVICES["diffractive"](seed=seed, **s.device)
    task = default_task(chip, load_digits(seed=seed), seed=seed)

    def config(steps: int) -> TrainConfig:
        return TrainConfig(
            lr=s.lr,
            max_steps=steps,
            epochs=None,
            batch_size=s.batch_size,
            seed=seed,
            progress=False,
        )

    ests = estimators(chip, task, s)
    theta0, warm_s = chip.initial_controls(seed), 0.0
    if s.warmup > 0:
        t0 = time.perf_counter()
        theta0 = (
            Trainer(
                task,
                ests.get("BP") or estimators(chip, task, replace(s, methods=("BP",)))["BP"],
                chip.space,
                config(s.warmup),
            )
            .fit(theta0)
            .theta
        )
        warm_s = time.perf_counter() - t0
    thetas, walls = {}, {}
    for name, est in ests.items():
        t0 = time.perf_counter()
        thetas[name] = Trainer(task, est, chip.space, config(s.steps - s.warmup)).fit(theta0).theta
        walls[name] = time.perf_counter() - t0 + warm_s
        print(f"  seed {seed} {name:24s} trained in {walls[name]:6.1f} s", flush=True)
    return chip, task, thetas, walls


def key(**values: float) -> Condition:
    """A misalignment as a hashable key (every nuisance parameter, rounded)."""
    v = {**NOMINAL, **values}
    return tuple((n, round(float(v[n]), 6)) for n in NOMINAL)


def points(s: Settings, param: str, on: str = "nominal") -> tuple[float, ...]:
    """The values of one 1-D sweep evaluated on ``on`` (``"nominal"`` or ``"chips"``)."""
    values = {"rotation": s.rotations, "shift_x": s.shifts, "scale": s.scales}[param]
    if on == "chips" and len(values) > 2:
        picked = values[:: s.chip_every]
        return picked if picked[-1] == values[-1] else (*picked, values[-1])
    return values


def sweep_conditions(s: Settings, on: str = "nominal") -> list[Condition]:
    """The 1-D sweeps' conditions on ``on`` (unique, nominal first)."""
    out = [key()]
    for param in ("rotation", "shift_x", "scale"):
        out += [key(**{param: v}) for v in points(s, param, on)]
    return list(dict.fromkeys(out))


def grid_conditions(s: Settings) -> list[Condition]:
    return [key(rotation=r, shift_x=x) for r in s.grid_rotations for x in s.grid_shifts]


def evaluate(
    chip: Any, task: Any, thetas: dict[str, np.ndarray], s: Settings
) -> dict[str, dict[Condition, np.ndarray]]:
    """Accuracies ``{target: {condition: (K,)}}`` (methods in ``thetas`` order) on the full test
    split: target ``"nominal"`` (the nominal model under the misalignment alone) over the sweeps
    and the grid, and ``"chip <seed>"`` (fabricated chips under it) over the sweeps."""
    stacked = np.stack(list(thetas.values()))
    family = chip.model_family("nominal", dtype=task.dtype, cache_size=1)
    out: dict[str, dict[Condition, np.ndarray]] = {"nominal": {}}
    for cond in dict.fromkeys(sweep_conditions(s) + grid_conditions(s)):
        out["nominal"][cond] = accuracy_many(task, family(**dict(cond)), stacked, chunk=8)
    for c in chip_seeds(chip.seed, s.chips):
        fab = chip.fresh_chip(c)
        out[f"chip {c}"] = {
            cond: accuracy_many(task, fab.perturbed(**dict(cond)), stacked, chunk=8)
            for cond in sweep_conditions(s, "chips")
        }
    return out


# ---------------------------------------------------------------------------- pooling
def pooled(
    runs: list[dict[str, Any]], method: str, cond: Condition, on: str
) -> tuple[float, float, int]:
    """Mean and std (%, ``ddof=1``) of ``method`` at ``cond`` over seeds (``on="nominal"``) or
    over seeds x chips (``on="chips"``), and how many values."""
    vals = []
    for r in runs:
        k = r["methods"].index(method)
        targets = ["nominal"] if on == "nominal" else [t for t in r["acc"] if t != "nominal"]
        vals += [r["acc"][t][cond][k] for t in targets if cond in r["acc"][t]]
    return summary(100 * np.asarray(vals))


def fmt(m: float, sd: float) -> str:
    return f"{m:.1f} ± {sd:.1f}"


def sweep_table(runs: list[dict[str, Any]], s: Settings, on: str) -> list[str]:
    methods = runs[0]["methods"]
    lines = []
    for label, (param, unit) in SWEEPS.items():
        pts = points(s, param, "chips")
        head = [f"{label} {v:g}{(' ' + unit) if unit else ''}" for v in pts]
        lines += ["| method | " + " | ".join(head) + " |", "| --- |" + " ---: |" * len(pts)]
        for m in methods:
            cells = [fmt(*pooled(runs, m, key(**{param: v}), on)[:2]) for v in pts]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def plots(runs: list[dict[str, Any]], s: Settings) -> list[str]:
    """Accuracy vs each misalignment (nominal model and chips) and the 2-D heat maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = runs[0]["methods"]
    names = []
    for on in ("nominal", "chips"):
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), sharey=True)
        for ax, (label, (param, unit)) in zip(axes, SWEEPS.items(), strict=True):
            values = points(s, param, on)
            for m in methods:
                ms = np.array([pooled(runs, m, key(**{param: v}), on)[:2] for v in values])
                ax.errorbar(values, ms[:, 0], yerr=ms[:, 1], marker="o", ms=3, capsize=2, label=m)
            ax.set_xlabel(f"{label} ({unit})" if unit else label)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("test accuracy (%)")
        axes[0].set_ylim(0, 100)
        axes[-1].legend(fontsize=8)
        what = (
            "nominal model under misalignment (mean ± std over seeds)"
            if on == "nominal"
            else "fabricated chips under misalignment (mean ± std over seeds x chips)"
        )
        fig.suptitle(f"Diffractive network, {what}")
        fig.tight_layout()
        name = f"sweeps_{on}.png"
        fig.savefig(OUT / name, dpi=120)
        plt.close(fig)
        names.append(name)
    cols = min(3, len(methods))
    rows = -(-len(methods) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.4 * cols + 1.2, 4.0 * rows), squeeze=False, layout="constrained"
    )
    for i_ax, (ax, m) in enumerate(zip(axes.flat, methods, strict=False)):
        z = np.array(
            [
                [pooled(runs, m, key(rotation=r, shift_x=x), "nominal")[0] for x in s.grid_shifts]
                for r in s.grid_rotations
            ]
        )
        im = ax.imshow(z, origin="lower", vmin=0, vmax=100, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(s.grid_shifts)), [f"{x:g}" for x in s.grid_shifts])
        ax.set_yticks(range(len(s.grid_rotations)), [f"{r:g}" for r in s.grid_rotations])
        for i in range(z.shape[0]):
            for j in range(z.shape[1]):
                color = "k" if z[i, j] > 60 else "w"
                ax.text(j, i, f"{z[i, j]:.0f}", ha="center", va="center", fontsize=7, color=color)
        ax.set_title(m, fontsize=10)
        ax.set_xlabel("shift (px)")
        if i_ax % cols == 0:
            ax.set_ylabel("rotation (deg)")
    for ax in list(axes.flat)[len(methods) :]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.8, label="test accuracy (%)")
    fig.suptitle("Nominal model under rotation x shift (mean over seeds)")
    name = "grid_nominal.png"
    fig.savefig(OUT / name, dpi=120)
    plt.close(fig)
    return [*names, name]


def worst_point(runs: list[dict[str, Any]], s: Settings) -> tuple[str, Condition]:
    """The end of the 1-D sweeps where BP is worst on the nominal model."""
    ends = {
        f"rotation {s.rotations[-1]:g} deg": key(rotation=s.rotations[-1]),
        f"shift {s.shifts[-1]:g} px": key(shift_x=s.shifts[-1]),
        f"scale {s.scales[-1]:g}": key(scale=s.scales[-1]),
    }
    name = min(ends, key=lambda n: pooled(runs, "BP", ends[n], "nominal")[0])
    return name, ends[name]


def cells(runs: list[dict[str, Any]], s: Settings) -> list[dict[str, Any]]:
    name, cond = worst_point(runs, s)
    out = []
    for m, row in CELL_METHOD.items():
        if m not in runs[0]["methods"]:
            continue
        acc, sd, n = pooled(runs, m, cond, "nominal")
        variant = {
            "BP": "backprop on the nominal model",
            "noise-aware": "average case over random misalignments (rated ranges)",
            "ASAM": f"ASAM rho={s.asam_rho:g} (paper)",
            "structured SAT": "worst case by the finite-difference nuisance adversary",
        }[m]
        out.append(
            {
                "error": "misalignment",
                "method": row,
                "variant": variant,
                "condition": f"{name}, nominal model (pure misalignment)",
                "acc": acc,
                "acc_std": sd,
                "n": n,
                "clean": pooled(runs, m, key(), "nominal")[0],
                "device": "diffractive 32x32, 2 masks",
            }
        )
    return out


def run_all(s: Settings) -> tuple[list[dict[str, Any]], float]:
    t0 = time.perf_counter()
    runs = []
    for seed in s.seeds:
        chip, task, thetas, walls = train(seed, s)
        t1 = time.perf_counter()
        acc = evaluate(chip, task, thetas, s)
        print(f"  seed {seed} evaluated in {time.perf_counter() - t1:.1f} s", flush=True)
        runs.append({"seed": seed, "methods": list(thetas), "acc": acc, "train_s": walls})
    return runs, time.perf_counter() - t0


def from_json(path: Path) -> tuple[list[dict[str, Any]], Settings, float]:
    """``results.json`` back to (runs, settings, wall seconds), for ``--report``."""
    raw = json.loads(path.read_text())
    st = {k: tuple(v) if isinstance(v, list) else v for k, v in raw["settings"].items()}
    runs = []
    for r in raw["runs"]:
        acc = {
            t: {key(**e["condition"]): np.asarray(e["accuracy"]) for e in entries}
            for t, entries in r["acc"].items()
        }
        runs.append({**r, "acc": acc})
    return runs, Settings(**st), float(raw["wall_s"])


def to_json(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **{k: v for k, v in r.items() if k != "acc"},
            "acc": {
                t: [{"condition": dict(c), "accuracy": list(map(float, a))} for c, a in d.items()]
                for t, d in r["acc"].items()
            },
        }
        for r in runs
    ]


def print_summary(runs: list[dict[str, Any]], s: Settings) -> None:
    for on in ("nominal", "chips"):
        print(f"\n### {on}")
        print("\n".join(sweep_table(runs, s, on)))
    print(
        "grid corner",
        {
            m: fmt(*pooled(runs, m, key(rotation=2, shift_x=2), "nominal")[:2])
            for m in runs[0]["methods"]
        },
    )


# ---------------------------------------------------------------------------- tuning
TUNE_POINTS = {
    "clean": key(),
    "rotation 2 deg": key(rotation=2.0),
    "shift 2 px": key(shift_x=2.0),
    "scale 1.1": key(scale=1.1),
}


def tune_candidates(base: Settings) -> list[tuple[str, Settings]]:
    """The hyperparameters searched, one method per candidate (the others at the defaults)."""
    out: list[tuple[str, Settings]] = []
    for steps, size, rng in ((1, 0.5, 1.0), (2, 0.25, 1.0), (2, 0.25, 0.5)):
        st = replace(
            base,
            methods=("structured SAT",),
            adversary_steps=steps,
            adversary_step_size=size,
            adversary_range=rng,
        )
        out.append((f"structured SAT steps={steps} step_size={size} range={rng} x rated", st))
    for rng, draws in ((1.0, 2), (0.5, 2), (1.0, 4)):
        st = replace(base, methods=("noise-aware",), noise_range=rng, draws=draws)
        out.append((f"noise-aware range={rng} x rated draws={draws}", st))
    for rho in (1.0, 3.0):
        out.append((f"SAM rho={rho}", replace(base, methods=("SAM",), sam_rho=rho)))
    return out


def tune() -> None:
    """The hyperparameter search on the tuning seeds (never the reported ones), scored by the
    mean accuracy on the nominal model over no misalignment and the three sweep ends; prints
    and writes ``tuning.json``."""
    base = replace(
        Settings(),
        seeds=TUNING_SEEDS,
        chips=0,
        rotations=(0.0, 2.0),
        shifts=(0.0, 2.0),
        scales=(1.0, 1.1),
        grid_rotations=(),
        grid_shifts=(),
    )
    rows = []
    for label, st in tune_candidates(base):
        runs, wall = run_all(st)
        m = st.methods[0]
        row: dict[str, Any] = {"candidate": label, "wall_s": wall}
        for name, cond in TUNE_POINTS.items():
            row[name] = pooled(runs, m, cond, "nominal")[:2]
        row["score"] = float(np.mean([row[n][0] for n in TUNE_POINTS]))
        rows.append(row)
        print(row, flush=True)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "tuning.json").write_text(json.dumps(rows, indent=1) + "\n")


# ---------------------------------------------------------------------------- report
#: the paper's free-space experiment at the worst point of each sweep (PHYSICS.md), %
PAPER = {"BP": (20.0, 8.0, 1.0), "SAT": (87.0, 89.0, 86.0)}


def findings(runs: list[dict[str, Any]], s: Settings, points_: dict[str, Condition]) -> list[str]:
    """A paragraph of what the measurements say, every number computed from ``runs``."""
    methods = runs[0]["methods"]

    def at(m: str, cond: Condition, on: str = "nominal") -> float:
        return pooled(runs, m, cond, on)[0]

    hard = {n: c for n, c in points_.items() if not n.startswith("rotation") or "+" in n}
    out = []
    flat = [m for m in ("ASAM", "SAM") if m in methods]
    if flat:
        diff = max(abs(at(m, c) - at("BP", c)) for m in flat for c in points_.values())
        out.append(
            f"Control-space flatness ({' and '.join(flat)}) did not buy misalignment robustness: "
            f"within {diff:.1f} points of BP at every worst point above."
        )
    trained = [m for m in ("noise-aware", "structured SAT") if m in methods]
    if trained:
        out.append(
            "Training against the misalignment itself did, at a cost in clean accuracy: at "
            + " / ".join(hard)
            + " "
            + "; ".join(
                f"{m} {' / '.join(f'{at(m, c):.1f}' for c in hard.values())} %"
                for m in [*trained, "BP"]
            )
            + "; with no misalignment "
            + ", ".join(f"{m} {at(m, key()):.1f} %" for m in [*trained, "BP"])
            + "."
        )
    if len(trained) == 2:
        wins = sum(at("noise-aware", c) >= at("structured SAT", c) for c in points_.values())
        out.append(
            f"The average case (noise-aware) matched or beat the worst case (structured SAT) at "
            f"{wins} of the {len(points_)} worst points and kept "
            f"{at('noise-aware', key()) - at('structured SAT', key()):+.1f} points of clean "
            f"accuracy relative to it: the adversary ({s.adversary_steps} step(s) of "
            f"{s.adversary_step_size:g} x the width from the nominal alignment, by the sign of a "
            "finite difference) moves all four parameters at once towards the edges of their "
            "ranges, a set no single setting handles well at this size."
            if wins >= len(points_) / 2
            else f"The worst case (structured SAT) beat the average case (noise-aware) at "
            f"{len(points_) - wins} of the {len(points_)} worst points."
        )
    half, whole = key(shift_x=0.5), key(shift_x=1.0)
    if half in runs[0]["acc"]["nominal"] and at("BP", half) < at("BP", whole):
        out.append(
            f"Half-pixel shifts cost BP more than whole-pixel ones ({at('BP', half):.1f} % at "
            f"0.5 px, {at('BP', whole):.1f} % at 1 px): the shifted masks are resampled by "
            "interpolation, which also blurs them."
        )
    if s.chips:
        best = max(methods, key=lambda m: at(m, key(), "chips"))
        out.append(
            "On fabricated chips every method is bounded by the model-reality gap of offline "
            f"training (BP {at('BP', key(), 'chips'):.1f} % there with no misalignment vs "
            f"{at('BP', key()):.1f} % on the nominal model; see the model-reality gap "
            f"section); {best} did best there ({at(best, key(), 'chips'):.1f} % with no "
            "misalignment, "
            + ", ".join(
                f"{n} {at(best, c, 'chips'):.1f} %"
                for n, c in points_.items()
                if c in runs[0]["acc"][next(t for t in runs[0]["acc"] if t != "nominal")]
            )
            + ")."
        )
    return ["**Findings** (nominal model unless said otherwise): " + " ".join(out)]


def tuning_table() -> list[str]:
    """The tuning runs (``tuning.json``, written by ``--tune``) as a markdown table, if any."""
    path = OUT / "tuning.json"
    if not path.exists():
        return []
    rows = json.loads(path.read_text())
    names = list(TUNE_POINTS)
    lines = [
        f"Tuning runs (seed {', '.join(map(str, TUNING_SEEDS))}, nominal model, %):",
        "",
        "| candidate | " + " | ".join(names) + " | score |",
        "| --- |" + " ---: |" * (len(names) + 1),
    ]
    for r in rows:
        vals = " | ".join(f"{r[n][0]:.1f}" for n in names)
        lines.append(f"| {r['candidate']} | {vals} | {r['score']:.1f} |")
    return [*lines, ""]


def section(runs: list[dict[str, Any]], s: Settings, wall: float, files: list[str]) -> str:
    methods = runs[0]["methods"]
    worst, _ = worst_point(runs, s)
    corner = key(rotation=s.grid_rotations[-1], shift_x=s.grid_shifts[-1])
    ends = {
        f"rotation {s.rotations[-1]:g} deg": key(rotation=s.rotations[-1]),
        f"shift {s.shifts[-1]:g} px": key(shift_x=s.shifts[-1]),
        f"scale {s.scales[-1]:g}": key(scale=s.scales[-1]),
    }
    both = {
        **ends,
        f"rotation {s.grid_rotations[-1]:g} deg + shift {s.grid_shifts[-1]:g} px": corner,
    }
    train_s = {m: np.mean([r["train_s"][m] for r in runs]) for m in methods}
    n_seeds, n_chips = len(runs), len(runs) * s.chips

    def at(m: str, cond: Condition, on: str = "nominal") -> float:
        return pooled(runs, m, cond, on)[0]

    def row(m: str, conds: dict[str, Condition], on: str) -> str:
        vals = [fmt(*pooled(runs, m, key(), on)[:2])]
        vals += [fmt(*pooled(runs, m, c, on)[:2]) for c in conds.values()]
        return f"| {m} | " + " | ".join(vals)

    robust = [m for m in methods if m != "BP"]
    best = {n: max(robust, key=lambda m, c=c: at(m, c)) for n, c in ends.items()}
    sat_name = "structured SAT" if "structured SAT" in methods else robust[0]
    sat_ends = [at(sat_name, c) for c in ends.values()]
    lines = [
        "## Diffractive network: misalignment",
        "",
        f"Command: `python benchmarks/diffractive_misalignment.py` ({wall / 60:.1f} min). "
        f"Machine: {machine()}.",
        "",
        "Setup: `DiffractiveNetwork` with its defaults: 2 phase masks of **32 x 32** SLM pixels "
        "(8 um pitch, 532 nm, 2 mm spacing, 256 levels). The paper's network has 128 x 128 "
        "pixels: here a 2 px shift is 6 % of the aperture (paper: 1.6 %), while a 2 deg rotation "
        "moves the mask edge by 0.56 px (paper: 2.2 px). Digits (1347 train / 450 test), the "
        f"default task. Training is offline on the nominal model, Adam lr {s.lr:g}, batches of "
        f"{s.batch_size}: {s.warmup} steps of plain backprop from the box centre (shared), then "
        f"{s.steps - s.warmup} steps of each method (BP included, fresh Adam state). "
        f"Seeds {list(s.seeds)} (data split, initialisation, minibatch order, draws); each "
        f"seed's settings are deployed on {s.chips} fabricated chips of their own "
        f"({n_chips} in all: static per-mask misalignment s_align = 0.25 px, SLM LUT errors, "
        "crosstalk, phase-amplitude coupling, illumination, detector gains and saturation, "
        "readout noise and drift). Test accuracy on the **full test split**, mean ± std over "
        f"the {n_seeds} seeds (nominal model under the misalignment alone) or over the "
        f"{n_chips} seed x chip pairs (chips under the misalignment).",
        "",
        "Methods; those trained against misalignment use the device's rated ranges, all four "
        "parameters at once: rotation ±2 deg, shift ±2 px on both axes, scale 0.9-1.1 (covering "
        "the sweeps):",
        "",
        "- **BP**: backprop on the nominal model.",
        f"- **noise-aware**: average case, {s.draws} uniformly random misalignments per step "
        f"over {s.noise_range:g} x the rated ranges "
        '(`sat(..., perturbation=NuisanceModel, mode="average")`).',
        f"- **ASAM**: unstructured SAT in control space, ASAM rho = {s.asam_rho:g} (the paper's "
        f"diffractive setting); **SAM**: L2 ball, rho = {s.sam_rho:g}.",
        "- **structured SAT**: worst case found by the paper's one-sided finite-difference "
        f"nuisance adversary (`NuisanceModel`: {s.adversary_steps} ascent step(s) of "
        f"{s.adversary_step_size:g} x each range's width from the nominal alignment, "
        "differences u ~ U(0, 0.1 x width]; no control gradient needed, so the ascent is "
        "`FreeAscent`), then the descent gradient at that misalignment.",
        "",
        "Hyperparameters were chosen on tuning seed 100 (`--tune`, "
        "`results/diffractive/tuning.json`; score: mean accuracy on the nominal model with no "
        "misalignment and at the three sweep ends), never on the reported seeds: the "
        "adversary's step (one step of 0.5 x the width, straight to a corner of the 4-D box, "
        "collapsed training to near chance; two steps of 0.25 did not), the draws per "
        "noise-aware step (4 beat 2) and the SAM radius; the warm start and the step count were "
        "set there too. The adversary's range is the rated one, covering the sweeps, by design: "
        "on the tuning seed half the range scored higher (better clean accuracy) but lost more "
        "at the 2 px shift (`tuning.json`).",
        "",
        *tuning_table(),
        "### Worst sweep points, nominal model under the misalignment alone (%)",
        "",
        "| method | none | " + " | ".join(both) + " | train (s) |",
        "| --- | ---: |" + " ---: |" * len(both) + " ---: |",
    ]
    lines += [row(m, both, "nominal") + f" | {train_s[m]:.0f} |" for m in methods]
    lines += [
        "",
        f"### The same on fabricated chips ({n_chips} seed x chip pairs, %)",
        "",
        "| method | none | " + " | ".join(ends) + " |",
        "| --- | ---: |" + " ---: |" * len(ends),
    ]
    lines += [row(m, ends, "chips") + " |" for m in methods]
    gaps = [p - v for p, v in zip(PAPER["SAT"], sat_ends, strict=True)]
    lines += [
        "",
        "**Against the paper** (free-space experiment at 128 x 128, worst points rotation 2 deg "
        "/ shift 2 px / scale 1.1): BP 20 / 8 / 1 %, SAT 87 / 89 / 86 %. Here (nominal model): "
        "BP "
        + " / ".join(f"{at('BP', c):.1f}" for c in ends.values())
        + f" %, {sat_name} "
        + " / ".join(f"{v:.1f}" for v in sat_ends)
        + " %; best robust method per point: "
        + ", ".join(f"{n}: {best[n]} {at(best[n], c):.1f} %" for n, c in ends.items())
        + ". Target (SAT at the paper's level): "
        + (
            "**met**."
            if max(gaps) <= 0
            else "**missed** by " + " / ".join(f"{g:.1f}" for g in gaps) + " points."
        )
        + " Likely reasons: at 32 x 32 the 2 px shift is 4x harsher relative to the aperture "
        "than in the paper and two small masks have little room for features coarse enough to "
        "tolerate it; the training set covers all four parameters at once (both shift axes and "
        "shrinking as well as magnifying), which costs clean accuracy"
        + (
            "; rotation, by contrast, barely matters at this size (BP keeps "
            f"{at('BP', key(rotation=s.rotations[-1])):.0f} % at {s.rotations[-1]:g} deg, "
            "unlike the paper's BP)."
            if at("BP", key(rotation=s.rotations[-1])) >= 0.8 * at("BP", key())
            else "."
        ),
        "",
        *findings(runs, s, both),
        "",
        "### Sweeps, nominal model (%)",
        "",
        *sweep_table(runs, s, "nominal"),
        f"### Sweeps, fabricated chips (%; mean ± std over {n_chips})",
        "",
        *sweep_table(runs, s, "chips"),
        "Plots (accuracy vs each misalignment; heat maps of the rotation x shift grid, nominal "
        "model): " + ", ".join(f"`benchmarks/results/diffractive/{f}`" for f in files) + ".",
        "",
        "Cross-study cells (`results/diffractive/cells.json`): the nominal model at the sweep "
        f"end where BP is worst, **{worst}** (unstructured SAT = ASAM).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed, few steps, prints only")
    ap.add_argument("--tune", action="store_true", help="hyperparameter search on tuning seed 100")
    ap.add_argument(
        "--report", action="store_true", help="plots, cells and section from results.json only"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.tune:
        tune()
        return
    if args.report:
        runs, s, wall = from_json(OUT / "results.json")
    else:
        s = Settings.quick() if args.quick else Settings()
        runs, wall = run_all(s)
        print_summary(runs, s)
        print(f"total {wall:.0f} s")
        if args.quick:
            return
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "results.json").write_text(
            json.dumps({"settings": asdict(s), "wall_s": wall, "runs": to_json(runs)}, indent=1)
            + "\n"
        )
    files = plots(runs, s)
    save_cells("diffractive", cells(runs, s))
    write_section("diffractive-misalignment", section(runs, s, wall, files))
    print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
