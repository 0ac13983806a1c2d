"""Sharpness for free on a query budget: SAF against zeroth-order SAT at equal reconfigurations.

SAF (Du et al., NeurIPS 2022; :class:`blacksat.saf.TrajectoryLoss`) adds
``lam * tau^2 * KL(softmax(z_old / tau) || softmax(z / tau))`` to the loss, ``z_old`` the logits
recorded ``lag`` epochs earlier for the same samples. On an opaque device those logits are
readings already paid for, so the term costs no reconfiguration; a zeroth-order SAT step pays for
its perturbed point (the cheapest worst case probes two common-mode ends: +2 settings per step).

Protocol (every device the same):

- devices: the 16-mode MZI (s_bs = s_ps = 0.05) under ambient drift (+-2 K) and on fresh chips;
  the MRR 64-32-10 network under drift (+-2 K); the analog crossbar under re-programming noise
  (every evaluation re-programs and draws new programming noise) and conductance drift (age
  one day, against the one minute it is read at) and on fresh devices;
- start: backprop on the nominal (imprecise) model, 300 Adam steps, then query-only training on
  the chip through a :class:`~blacksat.MeteredDevice` with 1,000 and 5,000 reconfigurations:
  antithetic Gaussian zeroth order (q = 4, 8 settings per step), smoothing radius and Adam step
  relative to each control's range (0.8 % and 0.3 %: the MZI's tuned 0.05 rad and 0.02 rad),
  minibatches of 128;
- methods: plain zeroth order; ZO + SAF (no extra setting); ZO-SAT average case over the device's
  own disturbance model (MZI ``phase_drift``, MRR ``thermal``, crossbar ``programming``; one
  draw, no extra setting: the estimate is taken at the drawn point); ZO-SAT with the cheapest
  worst case (MZI and MRR: the worse of the two common-mode ends, two probes; crossbar: the
  per-control worst case along the optimizer's momentum, no extra setting);
- SAF's ``lam`` and ``lag`` are chosen on tuning chip 100 of the MZI and the crossbar at 1,000
  reconfigurations (``tau = 5``, the paper's) and frozen; reported seeds 0, 1, 2 (seed ``s``
  trains on chip ``s``), each scored on its chip and on 3 fresh chips, the library's rule
  :func:`blacksat.evaluation.fresh_chip_seeds`: a run trained on chip ``c`` is deployed on chips
  ``c + 1000 + i``, i = 0, 1, 2; full test split;
- sharpness: query-only (the mean loss increase over 16 draws of the disturbance model, on the
  chip, one ``query_many``) and on the exact model (the second difference
  ``L(theta + delta) + L(theta - delta) - 2 L(theta)`` averaged over 16 draws, no noise).

Every finished run (tuning included) is appended to ``benchmarks/results/saf/rows.jsonl`` as it
completes; a restarted study skips the runs already there.

    python benchmarks/saf.py                # tuning + the study, writes its BENCHMARKS.md section
    python benchmarks/saf.py --report-only  # re-render the section from rows.jsonl alone
    python benchmarks/saf.py --force        # discard the saved runs first
    python benchmarks/saf.py --quick        # a smoke run (seconds), prints only
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import Study, fresh_chip_seeds, summary
from _study import main as run_study

from blacksat import MeteredDevice, TrainConfig, Trainer, ZerothOrder, sat
from blacksat.data import load_digits
from blacksat.devices import DEVICES, MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.estimators import Autograd
from blacksat.saf import TrajectoryLoss
from blacksat.sat import FreeAscent
from blacksat.sharpness import query_sharpness

DATA = load_digits()
SEEDS = (0, 1, 2)
TUNE_SEED = 100
BUDGETS = (1000, 5000)
FRESH = 3
Q, BATCH, OFFLINE_STEPS = 4, 128, 300
SIGMA_REL, LR_REL = 0.05 / (2 * np.pi), 0.02 / (2 * np.pi)
TAU = 5.0
SAF_GRID = ((0.3, 1), (0.3, 2), (1.0, 1), (1.0, 2))  # (lam, lag in epochs)
METHODS = ("ZO", "ZO + SAF", "ZO-SAT average", "ZO-SAT cheapest worst")
COMMAND = "python benchmarks/saf.py"


@dataclass(frozen=True)
class Family:
    """A device configuration of the study."""

    name: str
    make: Callable[[int], Any]
    drift: dict[str, tuple[float, ...]]  # nuisance -> the values it is scored at
    disturbance: str  # the device's own perturbation model SAT is flat against
    worst: str  # "common-mode ends" or "momentum"


FAMILIES = {
    "mzi": Family(
        "MZI 16 modes, s = 0.05",
        lambda s: MZIMesh(n_modes=16, s_bs=0.05, s_ps=0.05, seed=s),
        {"temperature": (-2.0, 2.0)},
        "phase_drift",
        "common-mode ends",
    ),
    "mrr": Family(
        "MRR 64-32-10",
        lambda s: DEVICES["mrr"](seed=s),
        {"temperature": (-2.0, 2.0)},
        "thermal",
        "common-mode ends",
    ),
    "crossbar": Family(
        "analog crossbar",
        lambda s: DEVICES["crossbar"](seed=s),
        {"age": (86400.0,)},
        "programming",
        "momentum",
    ),
}


def task_of(chip: Any) -> Any:
    return default_task(chip, DATA).to(torch.float64)


def offline_start(chip: Any, task: Any, seed: int, steps: int) -> np.ndarray:
    """Backprop on the nominal model from the device's initial controls (or the box center);
    the task's digital layers are trained with the controls (in place)."""
    space = chip.space
    init = getattr(chip, "initial_controls", None)
    theta0 = init(seed) if callable(init) else space.center.copy()
    model = chip.nominal_model(dtype=torch.float64)
    width = float(np.mean(space.upper - space.lower))
    cfg = TrainConfig(
        max_steps=steps, epochs=None, lr=0.01 * width, batch_size=64, seed=seed, progress=False
    )
    return Trainer(task, Autograd(model, task, space=space), space, cfg).fit(theta0).theta


def estimator(method: str, fam: Family, chip: Any, meter: MeteredDevice, task: Any) -> Any:
    width = float(np.mean(chip.space.upper - chip.space.lower))
    zo = ZerothOrder(meter, task, q=Q, sigma=SIGMA_REL * width)
    model = chip.perturbation_models()[fam.disturbance]
    if method in ("ZO", "ZO + SAF"):
        return zo
    if method == "ZO-SAT average":
        return sat(zo, perturbation=model, mode="average", draws=1, space=chip.space)
    if fam.worst == "common-mode ends":
        ends = dataclasses.replace(model, grid=2)
        return sat(zo, perturbation=ends, mode="worst", space=chip.space)
    return sat(zo, FreeAscent(), perturbation=model, mode="worst", space=chip.space)


def train(
    fam: Family,
    seed: int,
    budget: int,
    method: str,
    start: tuple[Any, np.ndarray],
    saf: tuple[float, int],
) -> dict[str, Any]:
    """Query-only fine-tuning of the controls from ``start = (offline task, controls)`` on chip
    ``seed``; the task's digital layers stay as the offline start left them."""
    chip = fam.make(seed)
    task, theta0 = copy.deepcopy(start[0]), start[1]
    meter = MeteredDevice(chip, max_reconfigurations=budget)
    est = estimator(method, fam, chip, meter, task)
    per_step = int(est.settings_per_step())
    width = float(np.mean(chip.space.upper - chip.space.lower))
    cfg = TrainConfig(
        max_steps=budget // per_step,
        epochs=None,
        lr=LR_REL * width,
        batch_size=BATCH,
        seed=seed,
        progress=False,
        train_digital=False,
    )
    traj = TrajectoryLoss(lam=saf[0], tau=TAU, lag=saf[1]) if method == "ZO + SAF" else None
    t0 = time.perf_counter()
    res = Trainer(task, est, chip.space, cfg, saf=traj).fit(theta0)
    row: dict[str, Any] = {"method": method, "seed": seed, "budget": budget}
    row["settings_per_step"] = per_step
    if traj is not None:
        row.update(lam=saf[0], lag=saf[1], tau=TAU)
    row["reconfigurations"] = meter.ledger.reconfigurations
    row["wall_s"] = time.perf_counter() - t0
    row.update(score(fam, chip, task, res.theta, seed))
    return row


def score(fam: Family, chip: Any, task: Any, theta: np.ndarray, chip_seed: int) -> dict[str, Any]:
    """Accuracy on the chip (clean and under the nuisances), on the fresh chips of ``chip_seed``
    (:func:`fresh_chip_seeds`) and the two sharpness measures."""
    out: dict[str, Any] = {"clean": float(task.accuracy(chip, theta))}
    drift = [
        float(task.accuracy(chip.perturbed(**{k: v}), theta))
        for k, values in fam.drift.items()
        for v in values
    ]
    out["drift"] = float(np.mean(drift))
    seeds = fresh_chip_seeds(chip_seed, FRESH)
    out["fresh_chips"] = seeds
    out["fresh"] = float(np.mean([task.accuracy(chip.fresh_chip(s), theta) for s in seeds]))
    model = chip.perturbation_models()[fam.disturbance]
    batch = task.batch("train", np.arange(512))
    qs = query_sharpness(task, chip, theta, batch, perturbation=model, n=16, rng=chip_seed)
    out["query_sharpness"] = float(qs.mean_increase)
    out["model_curvature"] = model_curvature(chip, task, theta, model, batch, chip_seed)
    return out


def model_curvature(
    chip: Any, task: Any, theta: np.ndarray, model: Any, batch: Any, seed: int
) -> float:
    """Mean second difference of the loss along 16 draws of the disturbance, exact model."""
    exact = chip.exact_model(dtype=torch.float64)
    th = torch.as_tensor(theta, dtype=torch.float64)
    rng = np.random.default_rng(seed)
    deltas = torch.stack([model.sample(th, rng).delta for _ in range(16)])
    pts = torch.cat([th[None], th + deltas, th - deltas])
    with torch.no_grad():
        logits = task.logits_model(exact, pts, batch.features)
        losses = torch.stack([task.loss(z, batch.labels) for z in logits])
    f0, fp, fm = losses[0], losses[1:17], losses[17:]
    return float((fp + fm - 2 * f0).mean())


def starter(fam: Family, seed: int, steps: int) -> Callable[[], tuple[Any, Any, np.ndarray]]:
    """The offline start ``(chip, task, controls)`` on chip ``seed``, computed on first use only
    (a resumed study whose runs of this chip are all on disk never trains it)."""
    cache: list[tuple[Any, Any, np.ndarray]] = []

    def get() -> tuple[Any, Any, np.ndarray]:
        if not cache:
            chip = fam.make(seed)
            task = task_of(chip)
            cache.append((chip, task, offline_start(chip, task, seed, steps)))
        return cache[0]

    return get


def tune(study: Study, quick: bool) -> tuple[float, int]:
    """SAF's (lam, lag) on tuning chip 100 of the MZI and the crossbar (one saved run per device
    and grid point): the best mean of clean and drift accuracy over the two devices."""
    grid = SAF_GRID[:1] if quick else SAF_GRID
    budget = 200 if quick else BUDGETS[0]
    for key in ("mzi", "crossbar"):
        fam = FAMILIES[key]
        start = starter(fam, TUNE_SEED, 30 if quick else OFFLINE_STEPS)
        for lam, lag in grid:
            r = study.run(
                lambda f=fam, g=(lam, lag), st=start: train(
                    f, TUNE_SEED, budget, "ZO + SAF", st()[1:], g
                ),
                stage="tune",
                device=key,
                seed=TUNE_SEED,
                budget=budget,
                lam=lam,
                lag=lag,
            )
            print(f"  tune {key} lam={lam} lag={lag}: {tune_score(r):.3f}", flush=True)
    return chosen(study.rows())


def tune_score(row: dict[str, Any]) -> float:
    return (row["clean"] + row["drift"]) / 2


def chosen(rows: list[dict[str, Any]]) -> tuple[float, int]:
    """The (lam, lag) of the saved tuning runs with the best mean score (first in grid order on a
    tie)."""
    scores: dict[tuple[float, int], list[float]] = {}
    for r in rows:
        if r.get("stage") == "tune":
            scores.setdefault((r["lam"], r["lag"]), []).append(tune_score(r))
    if not scores:
        raise SystemExit("no tuning runs saved: run the study first")
    order = sorted(scores, key=lambda g: SAF_GRID.index(g) if g in SAF_GRID else len(SAF_GRID))
    return max(order, key=lambda g: float(np.mean(scores[g])))


def run(study: Study, quick: bool) -> None:
    """Tuning, then every reported run not already saved (each saved as it completes)."""
    saf = tune(study, quick)
    print(f"SAF: lam={saf[0]} lag={saf[1]} tau={TAU}", flush=True)
    families = ("mzi", "crossbar") if quick else tuple(FAMILIES)
    seeds = SEEDS[:1] if quick else SEEDS
    budgets = (200,) if quick else BUDGETS
    steps = 30 if quick else OFFLINE_STEPS
    for key in families:
        fam = FAMILIES[key]
        for seed in seeds:
            start = starter(fam, seed, steps)
            study.run(
                lambda f=fam, s=seed, st=start: score(f, *st(), s),
                stage="reported",
                device=key,
                seed=seed,
                method="offline start",
            )
            for budget in budgets:
                for method in METHODS:
                    r = study.run(
                        lambda f=fam, s=seed, b=budget, m=method, st=start: train(
                            f, s, b, m, st()[1:], saf
                        ),
                        stage="reported",
                        device=key,
                        seed=seed,
                        budget=budget,
                        method=method,
                    )
                    print(
                        f"{key} seed {seed} {budget} {method}: clean {r['clean']:.3f} "
                        f"drift {r['drift']:.3f} fresh {r['fresh']:.3f} ({r['wall_s']:.0f} s)",
                        flush=True,
                    )


# ---------------------------------------------------------------------- report
def ms(values: list[float]) -> str:
    mean, sd, _ = summary(100 * v for v in values)
    return f"{mean:.1f} ± {sd:.1f}"


def msf(values: list[float]) -> str:
    mean, sd, _ = summary(values)
    return f"{mean:.3f} ± {sd:.3f}"


def pick(rows: list[dict[str, Any]], **where: Any) -> list[dict[str, Any]]:
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def section(study: Study) -> str:
    """The generated section, from the saved runs alone: the set-up and the tables."""
    all_rows = study.rows()
    lam, lag = chosen(all_rows)
    rows = pick(all_rows, stage="reported")
    budgets = tuple(sorted({r["budget"] for r in rows if "budget" in r}))
    seeds = sorted({r["seed"] for r in rows})
    what = (
        "Query-only training with the SAF trajectory loss against plain zeroth order and "
        "zeroth-order SAT at equal reconfigurations. Protocol in the script's docstring: "
        "offline backprop on the nominal model, then query-only fine-tuning on the chip; "
        f"SAF's lam = {lam}, lag = {lag} epochs, tau = {TAU} chosen on tuning chip "
        f"{TUNE_SEED} of the MZI and the crossbar (the best mean of clean and drift accuracy); "
        f"seeds {', '.join(map(str, seeds))} (seed s trains on chip s), full test split, "
        "mean ± sample std over seeds. Drift: the mean accuracy at -2 K and +2 K (MZI, MRR) or "
        f"after a day of conductance drift (crossbar); fresh: the mean over {FRESH} fresh chips, "
        "the library's rule `blacksat.evaluation.fresh_chip_seeds`: a run trained on chip c is "
        f"deployed on chips c + 1000 + i, i = 0..{FRESH - 1}. "
        "Sharpness: query-only = mean loss increase over 16 draws of the "
        "device's disturbance model on the chip; model = the mean second difference of the loss "
        "along the same draws on the exact model."
    )
    lines = [study.header(COMMAND, what), ""]
    for key, fam in FAMILIES.items():
        if not pick(rows, device=key):
            continue
        lines += [
            f"**{fam.name}** (disturbance model `{fam.disturbance}`; cheapest worst case: "
            f"{fam.worst})",
            "",
            "| budget | method | settings / step | clean % | drift % | fresh % | "
            "query-only sharpness | model curvature |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        start = pick(rows, device=key, method="offline start")
        if start:
            lines.append(
                f"| 0 | offline start | - | {ms([r['clean'] for r in start])} | "
                f"{ms([r['drift'] for r in start])} | {ms([r['fresh'] for r in start])} | "
                f"{msf([r['query_sharpness'] for r in start])} | "
                f"{msf([r['model_curvature'] for r in start])} |"
            )
        for b in budgets:
            for m in METHODS:
                rs = pick(rows, device=key, budget=b, method=m)
                if not rs:
                    continue
                lines.append(
                    f"| {b} | {m} | {rs[0]['settings_per_step']} | "
                    f"{ms([r['clean'] for r in rs])} | {ms([r['drift'] for r in rs])} | "
                    f"{ms([r['fresh'] for r in rs])} | "
                    f"{msf([r['query_sharpness'] for r in rs])} | "
                    f"{msf([r['model_curvature'] for r in rs])} |"
                )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    run_study(__doc__, "saf", run, section, argv)


if __name__ == "__main__":
    main()
