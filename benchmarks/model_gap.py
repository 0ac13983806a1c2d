"""The model-reality gap of each simulated device, effect by effect.

    python benchmarks/model_gap.py            # writes its section of BENCHMARKS.md
    python benchmarks/model_gap.py --quick    # fewer steps and chips, prints only

A network is trained offline with plain backprop on each device's *nominal* model (digits, the
device's default task), then evaluated on the full test split on chips that hold only the
fabrication errors, only the hidden (unmodelled) effects, or everything (the default chip), over
several fabrication draws. This shows what each class of imperfection costs a user who trusts the
nominal model, and that the hidden effects are not negligible (a surrogate benchmark on these
devices means something).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, summary, write_section

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


def run(name: str, chips: list[int], steps: int, seed: int = 0) -> list[dict]:
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    chips = [1, 2, 3] if args.quick else [1, 2, 3, 4, 5]
    rows = []
    for name in sorted(STEPS):
        steps = max(20, STEPS[name] // 10) if args.quick else STEPS[name]
        rows += run(name, chips, steps)
        for r in rows[-(len(HIDDEN[name]) + 4) :]:
            print(f"{r['device']:12s} {r['chip']:40s} {r['mean']:.3f} +- {r['std']:.3f}")
    if args.quick:
        return
    lines = [
        "## Model-reality gap of the simulated devices",
        "",
        "Command: `python benchmarks/model_gap.py`. Plain backprop on each device's nominal model "
        "(digits, default task, Adam lr 0.02, batch 64; steps: "
        + ", ".join(f"{k} {v}" for k, v in sorted(STEPS.items()))
        + f"), evaluated on the full test split of {len(chips)} fabrication draws (mean +- std). "
        f"MZI at the paper's error level s_bs = s_ps = 0.15, the others at their defaults. "
        f"Machine: {machine()}.",
        "",
        "| device | evaluated on | accuracy |",
        "| --- | --- | ---: |",
    ]
    lines += [f"| {r['device']} | {r['chip']} | {r['mean']:.3f} +- {r['std']:.3f} |" for r in rows]
    write_section("model_gap", "\n".join(lines))
    print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
