"""Diffractive network under misalignment: backprop, noise-aware, unstructured and structured SAT.

    python benchmarks/diffractive_misalignment.py                # runs what is missing, writes
                                                                 # its section of BENCHMARKS.md
    python benchmarks/diffractive_misalignment.py --report-only  # section, plots, cells from disk
    python benchmarks/diffractive_misalignment.py --force        # discard the saved runs first
    python benchmarks/diffractive_misalignment.py --quick        # few steps, one seed, prints only
    python benchmarks/diffractive_misalignment.py --tune         # hyperparameter search, seed 100
    python benchmarks/diffractive_misalignment.py --paper-geometry [--n 64]
        # the same study at the paper's geometry: its aperture (128 px at 2 um = 256 um: the
        # pitch is 256 um / n, so 8 um at 32 px, 4 um at 64, 2 um at 128), the shift range and
        # sweep the paper's fraction of the aperture (2 px of 128, 1.6 %), rotation +-2 deg and
        # scale 0.9-1.1 as before (fractions of the aperture already); its own folder and section

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

One run is one method trained under one seed (reference device, data split, initialisation,
minibatch order and draws of seed ``s``) and evaluated: on the full test split of the nominal
model under the misalignment alone (sweeps of rotation 0-2 deg, shift 0-2 px along the columns,
scale 1.0-1.1 and a 2-D rotation x shift grid), and on the fresh chips
:func:`blacksat.evaluation.fresh_chip_seeds` names for seed ``s`` (``s + 1000 + i``; fabrication
draws: static per-mask misalignment, SLM LUT errors, hidden effects, readout noise and drift)
under the 1-D sweeps (every other point). Each run is appended to
``benchmarks/results/diffractive_misalignment/rows.jsonl`` as it completes (``_study.Study``,
identified by ``method`` and ``seed``; the settings beside it in ``settings.json``), so an
interrupted run resumes and ``--report-only`` re-renders the section, the plots and the cells of
the cross-study table from disk alone. The tuning runs (``--tune``) go to ``tuning.json`` there.
"""

from __future__ import annotations

import inspect
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
from _report import save_cells
from _study import Study, field_filter, parser, redo, summary

from blacksat.data import load_digits
from blacksat.devices import DEVICES
from blacksat.devices.tasks import default_task
from blacksat.estimators import Autograd
from blacksat.evaluation import FRESH_CHIP_OFFSET, accuracy_many, fresh_chip_seeds
from blacksat.perturbations import Adaptive, Combined, L2Ball, NuisanceModel
from blacksat.sat import FreeAscent, sat
from blacksat.train_config import TrainConfig
from blacksat.trainer import Trainer

#: the results folder (``benchmarks/results/<STUDY>``) and the BENCHMARKS.md section key
STUDY, KEY = "diffractive_misalignment", "diffractive-misalignment"
COMMAND = "python benchmarks/diffractive_misalignment.py"
#: the paper-geometry variant (``--paper-geometry``)
PAPER_STUDY, PAPER_KEY = "diffractive_paper_geometry", "diffractive-paper-geometry"
#: the paper's shift as a fraction of its aperture (2 px of a 128 px SLM)
PAPER_SHIFT_FRACTION = 2.0 / 128.0
#: the paper's aperture, m: 128 px at 2 um (PHYSICS.md). With the spacing and the wavelength it
#: sets how far across the aperture light spreads between masks (Fresnel number about 15); at a
#: fixed 8 um pitch a 64 px mask is twice as wide (four times the Fresnel number), and each
#: pixel's light reaches a smaller share of the next mask
PAPER_APERTURE = 128 * 2e-6
#: ``DiffractiveNetwork``'s default pitch, m (the 32 px study's)
DEFAULT_PITCH = float(inspect.signature(DEVICES["diffractive"]).parameters["pitch"].default)
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
    #: the shift range (px, both axes) the robust methods train against
    shift_range: float = 2.0

    @classmethod
    def paper_geometry(cls, n: int = 32, quick: bool = False) -> Settings:
        """The paper's geometry on an ``n x n`` SLM: the paper's aperture (pitch
        ``PAPER_APERTURE / n``; not stated where it is the default 8 um, at 32 px), shifts up to
        the paper's fraction of the aperture (sweeps and training range), the rest as the full
        (or quick) run."""
        base = cls.quick() if quick else cls()
        top = PAPER_SHIFT_FRACTION * n
        pitch = round(PAPER_APERTURE / n, 12)
        return replace(
            base,
            device={**base.device, "n": n, **({} if pitch == DEFAULT_PITCH else {"pitch": pitch})},
            shift_range=top,
            shifts=tuple(np.linspace(0.0, top, len(base.shifts)).tolist()),
            grid_shifts=tuple(np.linspace(0.0, top, len(base.grid_shifts)).tolist()),
        )

    @property
    def n(self) -> int:
        """SLM pixels per side."""
        return int(self.device.get("n", 32))

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

    def to_json(self) -> dict[str, Any]:
        """The settings as saved in ``settings.json`` (tuples as lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Settings:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def misalignment(s: Settings, factor: float = 1.0) -> NuisanceModel:
    """The finite-difference adversary over the rated misalignment ranges (scaled by
    ``factor`` about the nominal alignment)."""
    ranges = {**RANGES, "shift_x": (-s.shift_range, s.shift_range)}
    ranges["shift_y"] = ranges["shift_x"]
    model = NuisanceModel(
        ranges, center=NOMINAL, steps=s.adversary_steps, step_size=s.adversary_step_size
    )
    return model.scaled(factor)


def estimator(chip: Any, task: Any, s: Settings, method: str) -> Any:
    """One method's gradient estimator, on the nominal model (offline)."""
    family = chip.model_family("nominal", dtype=task.dtype, cache_size=64)
    base = Autograd(chip.nominal_model(dtype=task.dtype), task, family=family, space=chip.space)
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
    return table[method]()


#: per process: the reference device and task of a seed, and the backprop warm start shared by
#: the methods (and tuning candidates) of one seed -> (theta, its wall seconds)
_SETUP: dict[tuple, tuple[Any, Any]] = {}
_WARM: dict[tuple, tuple[np.ndarray, float]] = {}


def setup(seed: int, s: Settings) -> tuple[Any, Any]:
    """The reference device of ``seed`` (its nominal model is what every method trains on) and
    the task (data split of ``seed``)."""
    k = (seed, json.dumps(s.device, sort_keys=True))
    if k not in _SETUP:
        chip = DEVICES["diffractive"](seed=seed, **s.device)
        _SETUP[k] = chip, default_task(chip, load_digits(seed=seed), seed=seed)
    return _SETUP[k]


def config(seed: int, s: Settings, steps: int) -> TrainConfig:
    return TrainConfig(
        lr=s.lr, max_steps=steps, epochs=None, batch_size=s.batch_size, seed=seed, progress=False
    )


def warm_start(seed: int, s: Settings) -> tuple[np.ndarray, float]:
    """``s.warmup`` steps of plain backprop from the initial controls (computed once per seed
    and process; deterministic, so a resumed study recomputes the same start)."""
    chip, task = setup(seed, s)
    k = (seed, s.lr, s.batch_size, s.warmup, json.dumps(s.device, sort_keys=True))
    if k not in _WARM:
        theta0, warm_s = chip.initial_controls(seed), 0.0
        if s.warmup > 0:
            t0 = time.perf_counter()
            est = estimator(chip, task, s, "BP")
            theta0 = Trainer(task, est, chip.space, config(seed, s, s.warmup)).fit(theta0).theta
            warm_s = time.perf_counter() - t0
        _WARM[k] = np.asarray(theta0), warm_s
    return _WARM[k]


def run_one(seed: int, method: str, s: Settings) -> dict[str, Any]:
    """One run: ``method`` trained under ``seed`` (from the shared warm start, for the remaining
    ``s.steps - s.warmup`` steps, fresh Adam state) and evaluated -> its row (without the ids).

    ``train_s`` counts the warm start in; ``chips`` are the fresh chips it was deployed on."""
    chip, task = setup(seed, s)
    theta0, warm_s = warm_start(seed, s)
    est = estimator(chip, task, s, method)
    t0 = time.perf_counter()
    theta = Trainer(task, est, chip.space, config(seed, s, s.steps - s.warmup)).fit(theta0).theta
    train_s = time.perf_counter() - t0 + warm_s
    t1 = time.perf_counter()
    acc = evaluate(chip, task, theta, s)
    print(
        f"  seed {seed} {method:24s} trained in {train_s:6.1f} s, "
        f"evaluated in {time.perf_counter() - t1:6.1f} s",
        flush=True,
    )
    return {
        "train_s": train_s,
        "chips": fresh_chip_seeds(seed, s.chips),
        "acc": {
            t: [{"condition": dict(c), "accuracy": float(a)} for c, a in d.items()]
            for t, d in acc.items()
        },
    }


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


def evaluate(chip: Any, task: Any, theta: np.ndarray, s: Settings) -> dict[str, dict]:
    """Accuracies ``{target: {condition: accuracy}}`` of one setting on the full test split:
    target ``"nominal"`` (the nominal model under the misalignment alone) over the sweeps and the
    grid, and ``"chip <c>"`` for each fresh chip ``c`` of ``fresh_chip_seeds(chip.seed,
    s.chips)`` (the fabricated chip under the misalignment) over the sweeps."""
    stacked = np.asarray(theta)[None]
    family = chip.model_family("nominal", dtype=task.dtype, cache_size=1)
    out: dict[str, dict[Condition, float]] = {"nominal": {}}
    for cond in dict.fromkeys(sweep_conditions(s) + grid_conditions(s)):
        out["nominal"][cond] = float(accuracy_many(task, family(**dict(cond)), stacked)[0])
    for c in fresh_chip_seeds(chip.seed, s.chips):
        fab = chip.fresh_chip(c)
        out[f"chip {c}"] = {
            cond: float(accuracy_many(task, fab.perturbed(**dict(cond)), stacked)[0])
            for cond in sweep_conditions(s, "chips")
        }
    return out


def run_all(study: Study, s: Settings) -> list[dict[str, Any]]:
    """Every (seed, method) run of ``s`` through ``study``: a saved one is read back, a missing
    one runs and is saved as it completes -> the runs, loaded (:func:`load`).
    ``--only seed=2`` (or ``seed=0,1``, ``method=BP,SAM``) restricts this process to those runs,
    so that two processes can share them on two cores; give each process its own runs (a run is
    on disk only once it has finished, so two processes given the same run would both run it).
    The warm start is deterministic, so a seed's methods may run in different processes."""
    rows = []
    for seed in s.seeds:
        if study.skips(seed=seed):
            continue
        for method in s.methods:
            if study.skips(method=method):
                continue
            fn = lambda seed=seed, method=method: run_one(seed, method, s)  # noqa: E731
            rows.append(study.run(fn, method=method, seed=seed))
    return load(rows)


def load(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Saved rows with their accuracies as ``{target: {condition: accuracy}}`` (``"table"``)."""
    return [
        {
            **r,
            "table": {
                t: {key(**e["condition"]): float(e["accuracy"]) for e in entries}
                for t, entries in r["acc"].items()
            },
        }
        for r in rows
    ]


# ---------------------------------------------------------------------------- pooling
def methods_of(runs: Sequence[dict[str, Any]], s: Settings) -> list[str]:
    """The methods with runs, in the settings' order."""
    have = {r["method"] for r in runs}
    return [m for m in s.methods if m in have]


def pooled(
    runs: Sequence[dict[str, Any]], method: str, cond: Condition, on: str
) -> tuple[float, float, int]:
    """Mean and sample std (%, :func:`summary`, ``ddof=1``) of ``method`` at ``cond`` over its
    seeds (``on="nominal"``) or over its seed x fresh-chip pairs (``on="chips"``), and how many
    values."""
    vals = []
    for r in runs:
        if r["method"] != method:
            continue
        t = r["table"]
        targets = ["nominal"] if on == "nominal" else [k for k in t if k != "nominal"]
        vals += [100 * t[k][cond] for k in targets if cond in t[k]]
    return summary(vals)


def fmt(m: float, sd: float) -> str:
    return f"{m:.1f} ± {sd:.1f}"


def sweep_table(runs: Sequence[dict[str, Any]], s: Settings, on: str) -> list[str]:
    lines = []
    for label, (param, unit) in SWEEPS.items():
        pts = points(s, param, "chips")
        head = [f"{label} {v:g}{(' ' + unit) if unit else ''}" for v in pts]
        lines += ["| method | " + " | ".join(head) + " |", "| --- |" + " ---: |" * len(pts)]
        for m in methods_of(runs, s):
            cells = [fmt(*pooled(runs, m, key(**{param: v}), on)[:2]) for v in pts]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def plots(runs: Sequence[dict[str, Any]], s: Settings, out: Path) -> list[str]:
    """Accuracy vs each misalignment (nominal model and chips) and the 2-D heat maps, saved in
    ``out`` -> the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = methods_of(runs, s)
    out.mkdir(parents=True, exist_ok=True)
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
        fig.savefig(out / name, dpi=120)
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
    fig.savefig(out / name, dpi=120)
    plt.close(fig)
    return [*names, name]


def sweep_ends(s: Settings) -> dict[str, Condition]:
    """The last point of each 1-D sweep, by label."""
    return {
        f"rotation {s.rotations[-1]:g} deg": key(rotation=s.rotations[-1]),
        f"shift {s.shifts[-1]:g} px": key(shift_x=s.shifts[-1]),
        f"scale {s.scales[-1]:g}": key(scale=s.scales[-1]),
    }


def worst_point(runs: Sequence[dict[str, Any]], s: Settings) -> tuple[str, Condition]:
    """The end of the 1-D sweeps with BP's lowest mean accuracy on the nominal model."""
    ends = sweep_ends(s)
    name = min(ends, key=lambda n: pooled(runs, "BP", ends[n], "nominal")[0])
    return name, ends[name]


def cells(runs: Sequence[dict[str, Any]], s: Settings) -> list[dict[str, Any]]:
    """This study's cells of the "where SAT helps" table (nominal model at :func:`worst_point`)."""
    name, cond = worst_point(runs, s)
    out = []
    for m, row in CELL_METHOD.items():
        if m not in methods_of(runs, s):
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
                "device": f"diffractive {s.n}x{s.n}, 2 masks",
            }
        )
    return out


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


def tune(out: Path) -> None:
    """The hyperparameter search on the tuning seeds (never the reported ones), scored by the
    mean accuracy on the nominal model over no misalignment and the three sweep ends; prints
    and writes ``out/tuning.json`` (its runs are kept in memory only, never in ``rows.jsonl``)."""
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
        memory = Study(STUDY, KEY, quick=True)
        runs = run_all(memory, st)
        m = st.methods[0]
        row: dict[str, Any] = {"candidate": label, "wall_s": memory.minutes() * 60}
        for name, cond in TUNE_POINTS.items():
            row[name] = pooled(runs, m, cond, "nominal")[:2]
        row["score"] = float(np.mean([row[n][0] for n in TUNE_POINTS]))
        rows.append(row)
        print(row, flush=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / "tuning.json").write_text(json.dumps(rows, indent=1) + "\n")


# ---------------------------------------------------------------------------- report
#: the paper's free-space experiment at the worst point of each sweep (PHYSICS.md), %
PAPER = {"BP": (20.0, 8.0, 1.0), "SAT": (87.0, 89.0, 86.0)}


def tuning_table(out: Path) -> list[str]:
    """The tuning runs (``tuning.json``, written by ``--tune``) as a markdown table, if any."""
    path = out / "tuning.json"
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


def section(study: Study, runs: Sequence[dict[str, Any]], s: Settings, files: list[str]) -> str:
    """The generated section: command, set-up, tables and figures (no reading of them; that is
    the hand-written ``diffractive-misalignment_reading`` section)."""
    methods = methods_of(runs, s)
    worst, _ = worst_point(runs, s)
    ends = sweep_ends(s)
    corner = key(rotation=s.grid_rotations[-1], shift_x=s.grid_shifts[-1])
    both = {
        **ends,
        f"rotation {s.grid_rotations[-1]:g} deg + shift {s.grid_shifts[-1]:g} px": corner,
    }
    train_s = {m: summary(r["train_s"] for r in runs if r["method"] == m)[0] for m in methods}
    seeds = sorted({r["seed"] for r in runs})
    pairs = sorted({(r["seed"], c) for r in runs for c in r["chips"]})
    distinct = sorted({c for _, c in pairs})
    folder = f"benchmarks/results/{study.name}"

    def row(m: str, conds: dict[str, Condition], on: str) -> str:
        vals = [fmt(*pooled(runs, m, key(), on)[:2])]
        vals += [fmt(*pooled(runs, m, c, on)[:2]) for c in conds.values()]
        return f"| {m} | " + " | ".join(vals)

    chips_of = "; ".join(
        f"seed {seed}: {', '.join(str(c) for c in fresh_chip_seeds(seed, s.chips))}"
        for seed in seeds
    )
    paper = study.key.startswith(PAPER_KEY)
    command = COMMAND + (f" --paper-geometry --n {s.n}" if paper else "")
    where = s.device.get("torch_device", "cpu")
    if where != "cpu":
        command += f" --torch-device {where}"
    top = s.shifts[-1]
    pitch = float(s.device.get("pitch", DEFAULT_PITCH))
    lines = [
        "## Diffractive network: misalignment"
        + (f" at the paper's geometry, {s.n} x {s.n} pixels" if paper else ""),
        "",
        study.header(command, f"`--report-only` re-renders this section from `{folder}`."),
        "",
        f"Setup: `DiffractiveNetwork`, 2 phase masks of **{s.n} x {s.n}** SLM pixels "
        f"({pitch * 1e6:g} um pitch: a {s.n * pitch * 1e6:g} um aperture, the paper's is "
        f"{PAPER_APERTURE * 1e6:g} um; 532 nm, 2 mm spacing, 256 levels; other arguments at "
        f"their defaults). The paper's network has 128 x 128 pixels: here a {top:g} px shift is "
        f"{100 * top / s.n:.1f} % of the aperture (paper: 2 px, 1.6 %) and a 2 deg rotation "
        f"moves the mask edge by {np.radians(2.0) * s.n / 2:.2f} px (paper: 2.2 px; the same "
        "fraction of the aperture). Digits (1347 train / 450 test), the "
        f"default task. Training is offline on the nominal model, Adam lr {s.lr:g}, batches of "
        f"{s.batch_size}: {s.warmup} steps of plain backprop from the box centre (shared by the "
        f"methods of a seed), then {s.steps - s.warmup} steps of each method (BP included, fresh "
        f"Adam state). One run is one method trained under one seed; seeds {seeds} (reference "
        "device, data split, initialisation, minibatch order, draws). Fresh chips, one rule "
        "for every study (`blacksat.evaluation.fresh_chip_seeds`): a setting trained with seed "
        f"s is deployed on the {s.chips} fabricated chips s + {FRESH_CHIP_OFFSET} + i, i = 0.."
        f"{max(s.chips - 1, 0)} ({chips_of}; {len(pairs)} seed x chip pairs on {len(distinct)} "
        "distinct chips; fabrication draws: static per-mask misalignment s_align = 0.25 px, SLM "
        "LUT errors, crosstalk, phase-amplitude coupling, illumination, detector gains and "
        "saturation, readout noise and drift). Test accuracy on the **full test split**, mean ± "
        f"sample std over the {len(seeds)} seeds (nominal model under the misalignment alone) "
        f"or over the {len(pairs)} seed x chip pairs (chips under the misalignment).",
        "",
        "Methods; those trained against misalignment use these ranges, all four parameters at "
        f"once: rotation ±2 deg, shift ±{s.shift_range:g} px on both axes, scale 0.9-1.1 "
        "(covering the sweeps):",
        "",
        "- **BP**: backprop on the nominal model.",
        f"- **noise-aware**: average case, {s.draws} uniformly random misalignments per step "
        f"over {s.noise_range:g} x the rated ranges "
        '(`sat(..., perturbation=NuisanceModel, mode="average")`).',
        f"- **ASAM**: unstructured SAT in control space, ASAM rho = {s.asam_rho:g} (the paper's "
        f"diffractive setting); **SAM**: L2 ball, rho = {s.sam_rho:g}.",
        "- **structured SAT**: worst case found by the paper's one-sided finite-difference "
        f"nuisance adversary (`NuisanceModel`: {s.adversary_steps} ascent step(s) of "
        f"{s.adversary_step_size:g} x each range's width from the nominal alignment over "
        f"{s.adversary_range:g} x the rated ranges, differences u ~ U(0, 0.1 x width]; no "
        "control gradient needed, so the ascent is `FreeAscent`), then the descent gradient at "
        "that misalignment.",
        "",
        f"Hyperparameters were chosen on tuning seed {', '.join(map(str, TUNING_SEEDS))} "
        f"(`--tune`, `benchmarks/results/{STUDY}/tuning.json`, at 32 x 32 pixels and ±2 px "
        "shifts; score: mean accuracy on the nominal model with no misalignment and at the "
        "three sweep ends), never on the reported seeds: the adversary's step count, step size "
        "and range, the noise-aware draws per step and range, and the SAM radius; the warm "
        "start and the step count were set there too"
        + (
            " (not re-tuned for this geometry; the adversary's steps are fractions of each "
            "range's width, so they follow the smaller shift range)."
            if paper
            else "."
        ),
        "",
        *([] if paper else tuning_table(study.dir)),
        "### Worst sweep points, nominal model under the misalignment alone (%)",
        "",
        "| method | none | " + " | ".join(both) + " | train (s) |",
        "| --- | ---: |" + " ---: |" * len(both) + " ---: |",
    ]
    lines += [row(m, both, "nominal") + f" | {train_s[m]:.0f} |" for m in methods]
    lines += [
        "",
        "Paper (free-space experiment at 128 x 128 pixels, rotation 2 deg / shift 2 px / "
        "scale 1.1): "
        + ", ".join(f"{m} {' / '.join(f'{v:g}' for v in vs)} %" for m, vs in PAPER.items())
        + ".",
        "",
        f"### The same on fabricated chips ({len(pairs)} seed x chip pairs, %)",
        "",
        "| method | none | " + " | ".join(ends) + " |",
        "| --- | ---: |" + " ---: |" * len(ends),
    ]
    lines += [row(m, ends, "chips") + " |" for m in methods]
    lines += [
        "",
        "### Sweeps, nominal model (%)",
        "",
        *sweep_table(runs, s, "nominal"),
        f"### Sweeps, fabricated chips (%; mean ± sample std over {len(pairs)} pairs)",
        "",
        *sweep_table(runs, s, "chips"),
    ]
    if files:
        lines += [
            "Plots (accuracy vs each misalignment; heat maps of the rotation x shift grid, "
            "nominal model): " + ", ".join(f"`{folder}/{f}`" for f in files) + ".",
            "",
        ]
    lines.append(
        f"Cross-study cells (`{folder}/cells.json`): the nominal model at the sweep end with "
        f"BP's lowest mean accuracy, **{worst}** (unstructured SAT = ASAM)."
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def saved_settings(study: Study) -> Settings | None:
    path = study.dir / "settings.json"
    return Settings.from_json(json.loads(path.read_text())) if path.exists() else None


def main(argv: Sequence[str] | None = None, study: Study | None = None) -> None:
    ap = parser(__doc__)
    ap.add_argument("--tune", action="store_true", help="hyperparameter search on tuning seed 100")
    ap.add_argument(
        "--paper-geometry", action="store_true", help="shift as the paper's aperture fraction"
    )
    ap.add_argument("--n", type=int, default=32, help="SLM pixels per side (--paper-geometry)")
    ap.add_argument(
        "--torch-device", default="cpu", help="where the simulations run (cpu, cuda); saved"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if study is None:
        name, key_ = STUDY, KEY
        if args.paper_geometry:  # one folder and section per SLM size
            name, key_ = f"{PAPER_STUDY}_{args.n}", f"{PAPER_KEY}-{args.n}"
        study = Study(name, key_, quick=args.quick, only=field_filter(args.only, "--only"))
    if args.tune:
        tune(study.dir)
        return
    if args.force:
        study.reset()
        (study.dir / "settings.json").unlink(missing_ok=True)
    redo(study, args)
    if args.report_only:
        s = saved_settings(study)
        if s is None or not study.rows():
            raise SystemExit(f"no saved runs in {study.dir}; run without --report-only first")
        runs = load(study.rows())
    else:
        if args.paper_geometry:
            s = Settings.paper_geometry(args.n, quick=args.quick)
        else:
            s = Settings.quick() if args.quick else Settings()
        if args.torch_device != "cpu":  # part of the settings: a resume must run there too
            s = replace(s, device={**s.device, "torch_device": args.torch_device})
        if not study.quick:
            old = saved_settings(study)
            if old is not None and old != s and study.rows():
                raise SystemExit(
                    f"the runs in {study.path} used other settings; --force discards them"
                )
            study.dir.mkdir(parents=True, exist_ok=True)
            (study.dir / "settings.json").write_text(json.dumps(s.to_json(), indent=1) + "\n")
        run_all(study, s)
        runs = load(study.rows())
    runs = [r for r in runs if r["seed"] in s.seeds and r["method"] in s.methods]
    if study.quick:  # a smoke run: nothing written, the section printed
        study.write(section(study, runs, s, []))
        return
    files = plots(runs, s, study.dir)
    if study.key == KEY:  # the cross-study table takes the main study's cells only
        save_cells(study.name, cells(runs, s))
    study.write(section(study, runs, s, files))


if __name__ == "__main__":
    main()
