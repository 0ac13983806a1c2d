"""The model-reality gap of each simulated device, effect by effect.

    python benchmarks/model_gap.py                 # runs what is not on disk, writes its section
    python benchmarks/model_gap.py --report-only   # re-renders the section from the saved runs
    python benchmarks/model_gap.py --quick         # fewer steps and chips, prints only

A network is trained offline with plain backprop on each device's *nominal* model (digits, the
device's default task), then evaluated on the full test split on chips that hold only the
fabrication errors, only the hidden (unmodelled) effects, or everything (the default chip), over
several fabrication draws. This shows what each class of imperfection costs a user who trusts the
nominal model, and that the hidden effects are not negligible (a surrogate benchmark on these
devices means something). The chips are the fresh chips of the training seed
(:func:`blacksat.evaluation.fresh_chip_seeds`); one run per device is saved as it completes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import Study, fresh_chip_seeds, parser, summary

from blacksat.data import load_digits
from blacksat.devices import DEVICES
from blacksat.devices.tasks import default_task
from blacksat.estimators import Autograd
from blacksat.evaluation import accuracy
from blacksat.train_config import TrainConfig
from blacksat.trainer import Trainer

ERRORS = {
    "mzi": ("s_bs", "s_ps"),
    "mrr": ("offset", "linewidth_spread"),
    "diffractive": ("s_align", "s_lut"),
}
HIDDEN = {
    "mzi": (
        "crosstalk",
        "loss_imbalance_db",
        "insertion_loss_db",
        "saturation",
        "responsivity_spread",
    ),
    "mrr": ("crosstalk", "imbalance", "heater_nonlinearity", "saturation"),
    "diffractive": ("crosstalk", "phase_amplitude", "illumination", "saturation", "gain_spread"),
}
BASE = {"mzi": {"s_bs": 0.15, "s_ps": 0.15}, "mrr": {}, "diffractive": {}}
STEPS = {"mzi": 600, "mrr": 600, "diffractive": 150}


SEED = 0
CHIPS = 5


def run(name: str, chips: list[int], steps: int, seed: int = SEED) -> list[dict]:
    data = load_digits(seed=seed)
    ref = DEVICES[name](seed=seed, **BASE[name])
    task = default_task(ref, data, seed=seed).to(torch.float64)
    cfg = TrainConfig(
        lr=0.02, max_steps=steps, epochs=None, batch_size=64, seed=seed, progress=False
    )
    est = Autograd(ref.nominal_model(dtype=torch.float64), task, space=ref.space)
    theta = Trainer(task, est, ref.space, cfg).fit(ref.initial_controls(seed)).theta
    rows = [
        {
            "device": name,
            "chip": "nominal model",
            "mean": accuracy(task, ref.nominal_model(), theta),
            "std": 0.0,
        }
    ]
    off_err = {k: 0.0 for k in ERRORS[name]}
    off_hid = {k: 0.0 for k in HIDDEN[name]}
    quiet = {"noise": 0.0, "drift": 0.0}
    cases = {
        "fabrication errors only": {**off_hid, **quiet},
        "hidden effects only": {**off_err, **quiet},
    }
    for k in HIDDEN[name]:
        cases[f"hidden: {k} only"] = {
            **off_err,
            **{h: 0.0 for h in HIDDEN[name] if h != k},
            **quiet,
        }
    cases["everything (default chip)"] = {}
    for label, kw in cases.items():
        accs = [accuracy(task, DEVICES[name](seed=c, **{**BASE[name], **kw}), theta) for c in chips]
        rows.append(
            {
                "device": name,
                "chip": label,
                "mean": summary(accs)[0],
                "std": summary(accs)[1],
            }
        )
    return rows


def main() -> None:
    args = parser(__doc__).parse_args()
    study = Study("model_gap", "model_gap", quick=args.quick)
    if args.force:
        study.reset()
    chips = fresh_chip_seeds(SEED, 3 if args.quick else CHIPS)
    if not args.report_only:
        for name in sorted(STEPS):
            steps = max(20, STEPS[name] // 10) if args.quick else STEPS[name]
            row = study.run(
                lambda n=name, st=steps: {"rows": run(n, chips, st)},
                device=name,
                steps=steps,
                chips=chips,
            )
            for r in row["rows"]:
                print(f"{r['device']:12s} {r['chip']:40s} {r['mean']:.3f} +- {r['std']:.3f}")
    runs = sorted(study.rows(), key=lambda r: r["device"])
    lines = [
        "## Model-reality gap of the simulated devices",
        "",
        study.header(
            "python benchmarks/model_gap.py",
            "Plain backprop on each device's nominal model (digits, default task, Adam lr 0.02, "
            "batch 64, seed 0; steps: "
            + ", ".join(f"{r['device']} {r['steps']}" for r in runs)
            + f"), evaluated on the full test split of the fresh chips of seed {SEED} "
            f"(fabrication draws {', '.join(map(str, chips))}; mean ± sample std). MZI at the "
            "paper's error level s_bs = s_ps = 0.15, the others at their defaults.",
        ),
        "",
        "| device | evaluated on | accuracy |",
        "| --- | --- | ---: |",
    ]
    lines += [
        f"| {r['device']} | {r['chip']} | {r['mean']:.3f} ± {r['std']:.3f} |"
        for run_ in runs
        for r in run_["rows"]
    ]
    study.write("\n".join(lines))


if __name__ == "__main__":
    main()
