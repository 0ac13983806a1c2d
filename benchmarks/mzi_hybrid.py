"""MZI networks at the paper's error level (``s_bs = s_ps = 0.15``): offline, online and
query-only SAT against backprop, noise-aware training and the white-box bound.

    python benchmarks/mzi_hybrid.py                       # both devices: runs what is not on
                                                          # disk, writes its BENCHMARKS.md section
    python benchmarks/mzi_hybrid.py --device mzi          # one device (the section shows every
                                                          # device with saved runs)
    python benchmarks/mzi_hybrid.py --report-only         # re-render section, plots and cells
                                                          # from the saved runs alone
    python benchmarks/mzi_hybrid.py --force               # discard the saved runs (all devices)
    python benchmarks/mzi_hybrid.py --quick               # one seed, two chips, short runs;
                                                          # prints only, saves nothing

Runs (one method on one seed for the offline methods, one method on one (seed, chip) pair for
the on-chip methods) are appended to ``benchmarks/results/mzi_hybrid/rows.jsonl`` as each finishes
(:class:`_study.Study`), so an interrupted study resumes where it stopped. The two devices may
run side by side, each in its own single-threaded process (``--device``).

Devices (digits, the default MZI task: a trainable digital front end ``Linear(64, 16)``, unit
input power, class scores = power fractions on the first 10 of 16 output ports):

- ``mzi``: one 16-mode Clements mesh (120 MZIs, d = 240 phases);
- ``mzi-hybrid``: two 16-mode meshes with an O/E/O stage between them (d = 480), the two-layer
  hybrid network.

16 modes rather than the paper's 64 keep the run time down; the 0.15 / 0.15 error level is the
paper's. Every chip also carries the simulator's hidden effects at their defaults (thermal
crosstalk, arm loss imbalance, insertion loss, detector saturation and responsivity spread,
readout noise, slow drift), which no model below knows.

Chips (one rule, :func:`blacksat.evaluation.fresh_chip_seeds`): training seeds ``s`` = 0, 1, 2
(data split, front-end init, training), each with six training chips (fabrication draws
``200 + 10 s + j``, j = 0..5). An on-chip method trains on one training chip ``c`` and is scored on
``c`` and on the fresh chips ``fresh_chip_seeds(c, 5)`` (``c + 1000 + i``, i = 0..4). Offline
methods train once per seed on the nominal model and are scored, unchanged, on the same
training chips and the same fresh chips, so both families are scored on identical chips.
Fresh-chip figures: per (seed, training chip), the mean over its five fresh chips; mean +- sample
std over those 18 means. Accuracies: full test split (450 digits).

Methods:

- ``BP``: backprop on the nominal model;
- ``noise-aware``: backprop on random nominal twins: every step draws a fresh chip's coupler
  errors ``N(0, 0.15^2)`` and phase errors ``N(0, 0.15^2)`` (the statistics the chips are drawn
  from) into the nominal physics;
- ``SAT``: SAM on the nominal model, L2 ball ``rho = 0.3`` (the paper's);
- ``structured SAT``: SAT with the errors' own perturbation model: the descent is taken on a
  random twin as in noise-aware training (average over the coupler and phase errors), at the
  worst case of a per-phase box ``|delta_i| <= r`` (one ascent step), averaged over random
  common-mode shifts of every phase covering the rated +-2 K drift (+-0.2 rad); ``r`` chosen on
  tuning seeds (0.05 rad for one mesh, 0.02 for the hybrid);
- ``online SAT``: physics-aware SAT on the chip (forward on a metered chip, backward through the
  nominal model, SAM ``rho = 0.3``), from the structured-SAT solution, front end trained too;
- ``zeroth-order SAT``: query-only SAT on the chip (central two-point estimates, average case
  over the rated common-mode phase drift), from the structured-SAT solution, front end frozen;
- ``white box``: SAM on the chip's exact (noise-free) model from the same start;
- ``+ readout re-fit``: the offline solutions with the digital readout re-fitted per training
  chip: the chip is configured once, the full training split (1347 samples) is read, and a
  linear classifier on the 16 normalised port powers replaces the fixed port readout (also from
  only 128 random training samples read in that one configuration).

Hyperparameters (structured-SAT radius, on-chip learning rates, noise-aware variants) were
chosen on tuning seeds 100-102 with chips 1000-1005, 1010-1015 and 1020-1025 (the draws
``10 s + j`` of those seeds, the rule before the offset of 200); the reported training chips
and their fresh chips (1200-1230) are disjoint from them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import save_cells
from _study import Study, fresh_chip_seeds, parser, summary

from blacksat.data import load_digits
from blacksat.devices import DEVICES, mzi_error_twin
from blacksat.devices.tasks import default_task
from blacksat.estimators import Autograd, PhysicsAware
from blacksat.evaluation import accuracy
from blacksat.meter import MeteredDevice
from blacksat.perturbations import PerControl
from blacksat.readout_fit import refit_readout
from blacksat.sat import sat
from blacksat.sharpness import hessian_top_eigenvalues
from blacksat.train_config import TrainConfig
from blacksat.trainer import Trainer

NAME = "mzi_hybrid"  # results folder: benchmarks/results/mzi_hybrid (rows.jsonl, cells.json, plots)
KEY = "mzi-study"
COMMAND = "python benchmarks/mzi_hybrid.py"
FIGS = f"benchmarks/results/{NAME}"
LEVEL = {"s_bs": 0.15, "s_ps": 0.15}
DEVICE_ARGS = {"mzi": {"n_modes": 16}, "mzi-hybrid": {"n_modes": 16}}
LABELS = {"mzi": "one 16-mode mesh", "mzi-hybrid": "two-layer hybrid (2 x 16 modes)"}
SEEDS = (0, 1, 2)
CHIPS = 6  # training chips per seed: fabrication draws 200 + 10 s + 0..5
FRESH = 5  # fresh chips per training chip c: fresh_chip_seeds(c, FRESH) = c + 1000 + 0..4
DTS = (-2.0, -1.0, 0.0, 1.0, 2.0)
# offline: Adam, lr 0.02, 600 steps of batch 64 (the demo's settings)
OFFLINE = {"lr": 0.02, "steps": 600, "batch": 64}
RHO = 0.3  # the paper's SAM radius for the MZI mesh
# structured SAT: per-phase box half width (rad), chosen on tuning seeds among 0.02-0.08
STRUCT_R = {"mzi": 0.05, "mzi-hybrid": 0.02}
# on-chip (online SAT, white box): Adam from the structured-SAT solution
ONCHIP = {"lr": 0.01, "steps": 200, "batch": 64}
ZO = {"budget": 2000, "q": 4, "sigma": 0.05, "lr": 0.02, "batch": 256}
TUNING_SEEDS = (100, 101, 102)  # the seeds hyperparameters were chosen on
TUNING_CHIPS = [10 * s + j for s in TUNING_SEEDS for j in range(CHIPS)]  # their chips then
REFIT_FEW = 128  # samples of the small readout re-fit (one reconfiguration either way)
OFFLINE_METHODS = ("bp", "noise_aware", "sat", "structured")
ONCHIP_METHODS = ("online_sat", "zo_sat", "white_box")
START = "structured"  # the offline solution the on-chip methods start from
NAMES = {
    "bp": "offline BP",
    "noise_aware": "noise-aware (random twins)",
    "sat": f"offline SAT (L2, rho = {RHO:g})",
    "structured": "structured offline SAT",
    "online_sat": "online SAT (chip forward, model backward)",
    "zo_sat": "zeroth-order SAT on the chip",
    "white_box": "white box (SAM on the exact model)",
}
CELL_METHOD = {
    "bp": "BP",
    "noise_aware": "noise-aware",
    "sat": "unstructured SAT",
    "structured": "structured SAT",
    "online_sat": "online SAT",
    "zo_sat": "zeroth-order SAT",
}


def settings(quick: bool = False) -> dict[str, Any]:
    """Every setting a run depends on (saved in its row; ``quick``: short runs, no Hessians)."""
    return {
        "offline": dict(OFFLINE, steps=60) if quick else dict(OFFLINE),
        "onchip": dict(ONCHIP, steps=20) if quick else dict(ONCHIP),
        "zo": dict(ZO, budget=160) if quick else dict(ZO),
        "rho": RHO,
        "fresh": FRESH,
        "hessian": not quick,
    }


# ------------------------------------------------------------------------------ models
def chip_of(device: str, seed: int, **over: float) -> Any:
    return DEVICES[device](seed=int(seed), **{**DEVICE_ARGS[device], **LEVEL, **over})


def chip_seeds(seed: int, n: int = CHIPS) -> list[int]:
    """The training chips of training seed ``seed``: fabrication draws ``200 + 10 seed + j``
    (their fresh chips, ``chip + 1000 + i``, stay clear of the tuning chips 1000-1025)."""
    return [200 + 10 * seed + j for j in range(n)]


def _config(cfg: Mapping[str, Any], seed: int, **kw: Any) -> TrainConfig:
    return TrainConfig(
        lr=cfg["lr"],
        max_steps=cfg["steps"],
        epochs=None,
        batch_size=cfg["batch"],
        seed=seed,
        progress=False,
        **kw,
    )


def offline_estimator(method: str, task: Any, chip: Any, seed: int) -> Any:
    nominal = chip.nominal_model(dtype=torch.float64)
    space = chip.space
    if method == "bp":
        return Autograd(nominal, task, space=space)
    if method == "sat":
        return sat(Autograd(nominal, task, space=space), rho=RHO)
    twin = mzi_error_twin(nominal, LEVEL["s_bs"], LEVEL["s_ps"], seed=seed)
    if method == "noise_aware":
        return Autograd(twin, task, space=space)
    if method == "structured":
        worst = sat(Autograd(twin, task, space=space), perturbation=PerControl(STRUCT_R[chip.name]))
        drift = chip.perturbation_models()["phase_drift"]  # common mode, the rated +-2 K
        return sat(worst, perturbation=drift, mode="average")
    raise ValueError(method)


def top_eig(task: Any, model: Any, theta: np.ndarray) -> float:
    return float(hessian_top_eigenvalues(task, model, theta, k=1, tol=1e-3, rng=0).top)


def _acc_on(task: Any, chip: Any, theta: np.ndarray) -> float:
    chip.reset()  # every method meets a chip with the same noise and drift streams
    return 100.0 * accuracy(task, chip, theta)


def _drift(task: Any, chip: Any, theta: np.ndarray) -> dict[str, float]:
    return {f"{dt:g}": _acc_on(task, chip.perturbed(temperature=dt), theta) for dt in DTS}


def _fresh(device: str, task: Any, chip_seed: int, theta: np.ndarray, n: int) -> dict[str, Any]:
    """Scores on the fresh chips of training chip ``chip_seed`` (the one rule)."""
    seeds = fresh_chip_seeds(chip_seed, n)
    return {
        "fresh_chips": seeds,
        "fresh": [_acc_on(task, chip_of(device, f), theta) for f in seeds],
    }


def _base(device: str, seed: int) -> tuple[Any, Any, Any]:
    """The seed's reference chip (first training chip), its task (float64) and nominal model."""
    ref = chip_of(device, chip_seeds(seed, 1)[0])
    task = default_task(ref, load_digits(seed=seed), seed=seed).to(torch.float64)
    return ref, task, ref.nominal_model(dtype=torch.float64)


def _front_state(task: Any) -> dict[str, list] | None:
    if task.front is None:
        return None
    return {k: v.detach().cpu().tolist() for k, v in task.front.state_dict().items()}


def _load_front(task: Any, state: Mapping[str, list] | None) -> None:
    if state is not None:
        task.front.load_state_dict(
            {k: torch.tensor(v, dtype=torch.float64) for k, v in state.items()}
        )


# ------------------------------------------------------------------------------ one run
def offline_run(device: str, method: str, seed: int, n_chips: int, cfg: Mapping[str, Any]) -> dict:
    """One offline method trained on the nominal model for one seed, then scored unchanged on
    the seed's training chips and on each one's fresh chips. The ``START`` method's solution
    (controls and front end) is kept in the row: the on-chip runs start from it."""
    ref, task, nominal = _base(device, seed)
    theta0 = ref.initial_controls(seed)
    est = offline_estimator(method, task, ref, seed)
    theta = Trainer(task, est, ref.space, _config(cfg["offline"], seed)).fit(theta0).theta
    row: dict[str, Any] = {
        "kind": "offline",
        "controls": int(ref.space.dim),
        "settings": {**cfg, "structured_r": STRUCT_R[device]},
        "nominal": 100.0 * accuracy(task, nominal, theta),
        "hessian_nominal": top_eig(task, nominal, theta) if cfg["hessian"] else None,
        "chips": [],
    }
    for j, c in enumerate(chip_seeds(seed, n_chips)):
        chip = chip_of(device, c)
        e: dict[str, Any] = {
            "chip": c,
            "acc": _acc_on(task, chip, theta),
            **_fresh(device, task, c, theta, cfg["fresh"]),
            "clean": _acc_on(task, chip_of(device, c, s_bs=0.0, s_ps=0.0), theta),
            "coupler": _acc_on(task, chip_of(device, c, s_ps=0.0), theta),
            "phase": _acc_on(task, chip_of(device, c, s_bs=0.0), theta),
            "drift": _drift(task, chip, theta),
        }
        refit, cost = refit_readout(task, chip, theta)
        e["refit"] = _acc_on(refit, chip, theta)
        e["refit_reconfigurations"] = cost.reconfigurations
        few, _ = refit_readout(task, chip, theta, n_samples=REFIT_FEW, seed=c)
        e["refit_few"] = _acc_on(few, chip, theta)
        if j == 0 and cfg["hessian"]:
            e["hessian_exact"] = top_eig(task, chip.exact_model(dtype=torch.float64), theta)
        row["chips"].append(e)
    if method == START:
        row["theta"] = np.asarray(theta, dtype=float).tolist()
        row["front"] = _front_state(task)
    return row


def onchip_run(
    device: str, method: str, seed: int, c: int, start: Mapping[str, Any], cfg: Mapping[str, Any]
) -> dict:
    """One on-chip method trained on training chip ``c`` from the saved ``START`` solution, then
    scored on ``c`` and on its fresh chips."""
    _, task, nominal = _base(device, seed)
    _load_front(task, start["front"])
    theta0 = np.asarray(start["theta"], dtype=float)
    chip = chip_of(device, c)
    on, zo = cfg["onchip"], cfg["zo"]
    chip.reset()
    if method == "online_sat":
        meter = MeteredDevice(chip, max_reconfigurations=2 * on["steps"])
        est = sat(PhysicsAware(meter, nominal, task), rho=RHO)
        res = Trainer(task, est, chip.space, _config(on, seed), meter=meter).fit(theta0)
        theta, reconf = res.theta, meter.ledger.reconfigurations
    elif method == "white_box":
        exact = chip.exact_model(dtype=torch.float64)
        est = sat(Autograd(exact, task, space=chip.space), rho=RHO)
        theta = Trainer(task, est, chip.space, _config(on, seed)).fit(theta0).theta
        reconf = 0
    elif method == "zo_sat":
        from blacksat.product.demo_online import zo_sat

        run = zo_sat(
            task, chip, theta0, budget=zo["budget"], q=zo["q"], sigma=zo["sigma"], lr=zo["lr"],
            batch_size=zo["batch"], perturbation=chip.perturbation_models()["phase_drift"],
            seed=seed, progress=False,
        )  # fmt: skip
        theta, reconf = run.theta, run.ledger.reconfigurations
    else:
        raise ValueError(method)
    row: dict[str, Any] = {
        "kind": "on-chip",
        "controls": int(chip.space.dim),
        "settings": {**cfg, "structured_r": STRUCT_R[device]},
        "reconfigurations": int(reconf),
        "nominal": 100.0 * accuracy(task, nominal, theta),
        "acc": _acc_on(task, chip, theta),
        **_fresh(device, task, c, theta, cfg["fresh"]),
        "clean": _acc_on(task, chip_of(device, c, s_bs=0.0, s_ps=0.0), theta),
        "drift": _drift(task, chip, theta),
    }
    if c == chip_seeds(seed, 1)[0] and cfg["hessian"]:
        row["hessian_nominal"] = top_eig(task, nominal, theta)
        row["hessian_exact"] = top_eig(task, chip.exact_model(dtype=torch.float64), theta)
    return row


# ------------------------------------------------------------------------------ one device
def run_device(
    study: Study, device: str, seeds: Iterable[int], n_chips: int, cfg: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Every run of one device, each from disk when it finished before, else run and saved as
    it completes. Ids: ``device, method, seed`` (offline) and ``device, method, seed, chip``
    (on-chip)."""
    out = []
    for seed in seeds:
        done = {}
        for m in OFFLINE_METHODS:
            done[m] = study.run(
                lambda m=m, s=seed: offline_run(device, m, s, n_chips, cfg),
                device=device,
                method=m,
                seed=seed,
            )
            out.append(done[m])
        for c in chip_seeds(seed, n_chips):
            for m in ONCHIP_METHODS:
                row = study.run(
                    lambda m=m, s=seed, c=c, st=done[START]: onchip_run(device, m, s, c, st, cfg),
                    device=device,
                    method=m,
                    seed=seed,
                    chip=c,
                )
                out.append(row)
        print(f"[{device}] seed {seed} done ({study.minutes(out):.1f} min of runs)", flush=True)
    return out


# ------------------------------------------------------------------------------ summaries
def entries(rows: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """One measurement per (method, seed, training chip): an offline run gives one per chip."""
    for r in rows:
        ident = {k: r[k] for k in ("device", "method", "seed", "kind")}
        if r["kind"] == "offline":
            for e in r["chips"]:
                yield {**ident, **e}
        else:
            yield {**ident, **{k: v for k, v in r.items() if k not in ident}}


def _worst_drift(e: Mapping[str, Any]) -> float:
    return min(e["drift"]["-2"], e["drift"]["2"])


def summarize(rows: list[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """One device's runs, per method: ``summary`` (mean, sample std, n) of every quantity.

    Training-chip, fresh-chip and other chip figures pool one value per (seed, training chip);
    a fresh-chip value is the mean over that chip's fresh chips. ``fresh_vs_bp``: the paired
    difference to offline BP's fresh-chip value on the same (seed, training chip)."""
    out: dict[str, dict[str, Any]] = {}
    bp = {
        (e["seed"], e["chip"]): float(np.mean(e["fresh"]))
        for e in entries(r for r in rows if r["method"] == "bp")
    }
    for m in (*OFFLINE_METHODS, *ONCHIP_METHODS):
        runs = [r for r in rows if r["method"] == m]
        if not runs:
            continue
        es = list(entries(runs))
        fresh = [float(np.mean(e["fresh"])) for e in es]
        s: dict[str, Any] = {
            "kind": runs[0]["kind"],
            "runs": len(runs),
            "nominal": summary(r["nominal"] for r in runs),
            "train_chip": summary(e["acc"] for e in es),
            "fresh": summary(fresh),
            "fresh_vs_bp": summary(
                f - bp[(e["seed"], e["chip"])]
                for f, e in zip(fresh, es, strict=True)
                if (e["seed"], e["chip"]) in bp
            ),
            "clean": summary(e["clean"] for e in es),
            "drift_worst": summary(_worst_drift(e) for e in es),
            "drift": {dt: summary(e["drift"][dt] for e in es) for dt in es[0]["drift"]},
            "hessian_nominal": summary(r.get("hessian_nominal") for r in runs),
            "hessian_exact": summary(e.get("hessian_exact") for e in es),
        }
        if s["kind"] == "offline":
            for k in ("coupler", "phase", "refit", "refit_few"):
                s[k] = summary(e.get(k) for e in es)
        else:
            s["reconfigurations"] = int(max(r["reconfigurations"] for r in runs))
        out[m] = s
    return out


def _devices(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Rows per device with saved runs, in ``DEVICE_ARGS`` order."""
    rows = list(rows)
    grouped = {d: [r for r in rows if r["device"] == d] for d in DEVICE_ARGS}
    return {d: rs for d, rs in grouped.items() if rs}


def _layout(rows: list[Mapping[str, Any]]) -> tuple[list[int], int, int]:
    """(seeds, training chips per seed, fresh chips per training chip) of one device's runs."""
    es = list(entries(rows))
    seeds = sorted({e["seed"] for e in es})
    per_seed = max(len({e["chip"] for e in es if e["seed"] == s}) for s in seeds)
    return seeds, per_seed, max(len(e["fresh"]) for e in es)


def cells(device: str, rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    summ = summarize(rows)
    seeds, n_chips, n_fresh = _layout(rows)
    pooled = f"{len(seeds)} seeds x {n_chips} training chips"
    out = []
    for m, s in summ.items():
        if m not in CELL_METHOD:
            continue
        entries_ = [
            (
                "fresh chip",
                s["fresh"],
                f"0.15/0.15 fresh chips fresh_chip_seeds(c, {n_fresh}) of each training chip c "
                f"({pooled}; per training chip the mean over its {n_fresh} fresh chips)",
            ),
            (
                "common-mode drift",
                s["drift_worst"],
                f"0.15/0.15 training chips at dT = +-2 K, worst sign ({pooled})",
            ),
        ]
        if "coupler" in s:
            entries_.append(("coupler ratio", s["coupler"], "chips with s_bs = 0.15, s_ps = 0"))
            entries_.append(("phase", s["phase"], "chips with s_bs = 0, s_ps = 0.15"))
        for err, (acc, sd, n), cond in entries_:
            out.append(
                {
                    "error": err,
                    "method": CELL_METHOD[m],
                    "variant": NAMES[m],
                    "condition": cond + "; clean = error-free chip (s_bs = s_ps = 0)",
                    "acc": round(acc, 2),
                    "acc_std": round(sd, 2),
                    "n": n,
                    "clean": round(s["clean"][0], 2),
                    "device": device,
                }
            )
    return out


# ------------------------------------------------------------------------------ plots
def plots(rows: Iterable[Mapping[str, Any]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = []
    for dev, rs in _devices(rows).items():
        summ = summarize(rs)
        ms = list(summ)
        fig, ax = plt.subplots(figsize=(9, 4))
        xs = np.arange(len(ms))
        tr = [summ[m]["train_chip"] for m in ms]
        fr = [summ[m]["fresh"] for m in ms]
        rf = [summ[m].get("refit", (np.nan, 0.0, 0)) for m in ms]
        w = 0.27
        ax.bar(xs - w, [t[0] for t in tr], w, yerr=[t[1] for t in tr], label="training chips")
        ax.bar(xs, [f[0] for f in fr], w, yerr=[f[1] for f in fr], label="fresh chips")
        ax.bar(xs + w, [r[0] for r in rf], w, yerr=[r[1] for r in rf], label="+ readout re-fit")
        ax.set_xticks(xs, [NAMES[m].split(" (")[0] for m in ms], rotation=20, ha="right")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{LABELS[dev]}, s_bs = s_ps = 0.15 (mean ± std)")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        name = f"accuracy_{dev}.png"
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        files.append(name)
        fig, ax = plt.subplots(figsize=(6, 4))
        for m in ms:
            dts = sorted(summ[m]["drift"], key=float)
            mean = [summ[m]["drift"][d][0] for d in dts]
            sd = [summ[m]["drift"][d][1] for d in dts]
            ax.errorbar([float(d) for d in dts], mean, yerr=sd, capsize=2, label=NAMES[m])
        ax.set_xlabel("temperature change dT (K)")
        ax.set_ylabel("test accuracy on the training chip (%)")
        ax.set_title(f"{LABELS[dev]}: drift")
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"drift_{dev}.png"
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        files.append(name)
    return files


# ------------------------------------------------------------------------------ report
def _cell(stat: Any, digits: int = 1, sign: str = "") -> str:
    if stat is None or stat[2] == 0 or not np.isfinite(stat[0]):
        return "—"
    return f"{stat[0]:{sign}.{digits}f} ± {stat[1]:.{digits}f}"


def _eig(stat: Any) -> str:
    if stat is None or stat[2] == 0:
        return "—"
    return f"{stat[0]:.3g} ± {stat[1]:.2g}"


def device_table(rows: list[Mapping[str, Any]]) -> list[str]:
    summ = summarize(rows)
    lines = [
        "| method | runs | nominal model | training chips | fresh chips "
        "| fresh chips − offline BP (paired) | + readout re-fit "
        f"| + re-fit from {REFIT_FEW} samples | coupler errors only | phase errors only "
        "| error-free chip | dT = ±2 K (worst) "
        "| top Hessian eig. (nominal / exact) | reconf. on chip |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: |",
    ]
    for m, s in summ.items():
        eig = f"{_eig(s['hessian_nominal'])} / {_eig(s['hessian_exact'])}"
        reconf = str(s.get("reconfigurations", 0))
        lines.append(
            f"| {NAMES[m]} | {s['runs']} | {_cell(s['nominal'])} | {_cell(s['train_chip'])} "
            f"| {_cell(s['fresh'])} | {_cell(s['fresh_vs_bp'], sign='+')} "
            f"| {_cell(s.get('refit'))} | {_cell(s.get('refit_few'))} "
            f"| {_cell(s.get('coupler'))} | {_cell(s.get('phase'))} | {_cell(s['clean'])} "
            f"| {_cell(s['drift_worst'])} | {eig} | {reconf} |"
        )
    return lines


def _ranges(xs: Iterable[int]) -> str:
    """``[1000, 1001, 1002, 1010]`` -> ``"1000-1002, 1010"``."""
    out: list[list[int]] = []
    for x in sorted(xs):
        if out and x == out[-1][1] + 1:
            out[-1][1] = x
        else:
            out.append([x, x])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)


def _fresh_seen(rows: Iterable[Mapping[str, Any]]) -> set[int]:
    return {f for e in entries(rows) for f in e["fresh_chips"]}


def section(rows: list[Mapping[str, Any]], header: str, files: list[str]) -> str:
    """The generated section: the set-up and the tables, from the saved runs alone."""
    devs = _devices(rows)
    any_rows = next(iter(devs.values()))
    st = any_rows[0]["settings"]
    on, zo, off = st["onchip"], st["zo"], st["offline"]
    seeds, nc, nf = _layout(any_rows)
    ns = len(seeds)
    r_of = {d: rs[0]["settings"]["structured_r"] for d, rs in devs.items()}
    lines = [
        "## MZI network at the paper's error level (0.15 / 0.15)",
        "",
        header,
        "",
        "Chips: coupler errors `s_bs = 0.15` and phase errors `s_ps = 0.15` (the paper's "
        "training chip) plus the simulator's hidden effects at their defaults (thermal "
        "crosstalk, arm loss imbalance, insertion loss, detector saturation and responsivity "
        "spread, readout noise, slow drift), which no model knows. Devices: "
        + "; ".join(
            f"`{d}` = {LABELS[d]}, d = {rs[0]['controls']} phases" for d, rs in devs.items()
        )
        + ". Task: digits, trainable digital front end `Linear(64, 16)`, unit input power, "
        "class scores = power fractions on 10 of 16 output ports. 16 modes instead of the "
        "paper's 64; the error level is the paper's.",
        "",
        f"Chip rule: training seeds {seeds}, each with {nc} training chips (fabrication draws "
        f"`200 + 10 s + j`, j = 0..{nc - 1}). An on-chip method trains on one training chip `c` "
        f"({ns * nc} runs per method) and is scored on `c` and on the fresh chips "
        f"`blacksat.evaluation.fresh_chip_seeds(c, {nf})` (`c + 1000 + i`, i = 0..{nf - 1}). "
        f"Offline methods train once per seed on the nominal model ({ns} runs per method) and "
        f"are scored, unchanged, on the same {nc} training chips per seed and the same fresh "
        "chips, so both families are scored on identical chips. *Fresh chips*: per (seed, "
        f"training chip) the mean over its {nf} fresh chips, then mean ± sample std over the "
        f"{ns * nc} (seed, training chip) pairs; the other chip columns pool one value per pair "
        f"as well. Every accuracy is on the full test split (450 digits). Hyperparameters "
        f"were chosen on tuning seeds {TUNING_SEEDS[0]}-{TUNING_SEEDS[-1]} with chips "
        f"{_ranges(TUNING_CHIPS)} (the draws `10 s + j` of those seeds); of these, "
        f"{_ranges(sorted(set(TUNING_CHIPS) & _fresh_seen(rows))) or 'none'} are among the "
        "fresh chips above.",
        "",
        f"- **offline BP**: Adam lr {off['lr']}, {off['steps']} steps of batch {off['batch']} "
        "on the nominal model. All offline methods use these settings.",
        "- **noise-aware**: backprop through random nominal twins: every step draws fresh "
        "coupler errors N(0, 0.15²) and phase errors N(0, 0.15²) into the nominal physics "
        "(the statistics the chips are drawn from; the hidden effects are not modelled).",
        f"- **offline SAT**: SAM on the nominal model, L2 ball rho = {st['rho']:g} (the paper's).",
        "- **structured offline SAT**: descent on a random twin (average over coupler and phase "
        "errors, as noise-aware) at the worst case of a per-phase box |delta_i| <= r "
        "(`PerControl` worst case, one ascent step), averaged over random common-mode shifts "
        "of every phase within the rated ±2 K drift (±0.2 rad, `CommonMode`, average case); "
        "r = " + ", ".join(f"{r:g} rad ({d})" for d, r in r_of.items()) + ".",
        "- **online SAT**: physics-aware SAT on the chip (forward on a `MeteredDevice`, "
        f"backward through the nominal model, SAM rho = {st['rho']:g}), from the structured "
        f"SAT solution, Adam lr {on['lr']}, {on['steps']} steps of batch {on['batch']} "
        f"(at most {2 * on['steps']} reconfigurations), front end trained too.",
        f"- **zeroth-order SAT**: query-only on the chip, q = {zo['q']} antithetic Gaussian "
        f"directions, sigma = {zo['sigma']} rad, Adam lr {zo['lr']} (cosine), batch "
        f"{zo['batch']}, average case over the rated common-mode phase drift (±0.2 rad), "
        f"budget {zo['budget']} reconfigurations, from the structured SAT solution, front end "
        "frozen.",
        "- **white box**: SAM (same settings as online SAT) on the chip's exact noise-free "
        "model, from the structured SAT solution.",
        "- **+ readout re-fit** (offline methods, one reconfiguration per training chip): the "
        "chip is configured once and the full training split is read (1347 samples); a linear "
        "classifier on the 16 normalised port powers replaces the fixed port readout "
        f"(`blacksat.readout_fit.refit_readout`); the *re-fit from {REFIT_FEW} samples* column "
        f"reads only {REFIT_FEW} random training samples in that one configuration.",
        "",
        "Columns: *runs* = trainings pooled; *nominal model* = accuracy on the nominal model "
        "(one value per run); *training chips* = the 0.15/0.15 chips `200 + 10 s + j` (on-chip "
        "methods: the chip each trained on; offline methods: the same chips, deployed "
        "unchanged); *fresh chips* = the chip rule above; *fresh chips − offline BP* = per "
        "(seed, training chip) the method's fresh-chip value minus offline BP's on the same "
        "fresh chips; *+ readout re-fit*, *coupler / phase errors only* (chips `200 + 10 s + j`"
        " with `s_ps = 0` / `s_bs = 0`) = offline methods; *error-free chip* = `s_bs = s_ps = "
        "0`, hidden effects at default in all three; *dT = ±2 K* = the training chip at the "
        "worse of -2 / +2 K; Hessian = top eigenvalue of the control-space Hessian of the "
        "training loss (Lanczos) on the nominal model and on the exact model of the first "
        "training chip of each seed (one value per seed).",
    ]
    for dev, rs in devs.items():
        lines += ["", f"### {LABELS[dev]} (`{dev}`)", "", *device_table(rs)]
    lines += [""]
    lines += [f"![{f}]({FIGS}/{f})" for f in files]
    lines += [
        "",
        f"Runs: `{FIGS}/rows.jsonl` (one line per run); table cells: `{FIGS}/cells.json` (error "
        "types coupler ratio = chips with `s_ps = 0`, phase = chips with `s_bs = 0`, fresh "
        "chip, common-mode drift = ±2 K worst sign; clean = the same method on the error-free "
        "chip; the offline solutions were trained for the 0.15/0.15 statistics in every case).",
    ]
    return "\n".join(lines)


def report(study: Study, command: str = COMMAND) -> str | None:
    """Render the section (and, unless quick, the plots and the "where SAT helps" cells) from
    the study's saved runs alone."""
    rows = study.rows()
    if not rows:
        print(f"no saved runs in {study.path}")
        return None
    files: list[str] = []
    if not study.quick:
        files = plots(rows, study.dir)
        save_cells(study.name, [c for d, rs in _devices(rows).items() for c in cells(d, rs)])
    what = (
        "Runs both devices; `--device mzi` or `--device mzi-hybrid` runs one, each "
        "single-threaded; `--report-only` re-renders from the saved runs."
    )
    body = section(rows, study.header(command, what), files)
    study.write(body)
    return body


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    ap = parser(__doc__)
    ap.add_argument("--device", choices=("all", *DEVICE_ARGS), default="all")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    study = Study(NAME, KEY, quick=args.quick)
    if args.force:
        study.reset()
    devices = list(DEVICE_ARGS) if args.device == "all" else [args.device]
    seeds, n_chips = ((0,), 2) if args.quick else (SEEDS, CHIPS)
    if not args.report_only:
        cfg = settings(args.quick)
        for d in devices:
            run_device(study, d, seeds, n_chips, cfg)
    report(study)


if __name__ == "__main__":
    main()
