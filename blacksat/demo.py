"""The main job (until the full product demo lands): a short, real end-to-end flow.

digits -> a simulated chip (16-mode MZI mesh at the paper's error level by default) -> offline
training on the *nominal* model (what a user believes), with plain backprop and with SAT ->
deployment on the true chip through a metered, budgeted, validated device -> accuracy on the full
test split on the chip, on fresh chips, and under each of the chip's rated post-deployment
perturbations.

This is an application layer: it resolves devices by registry name, so the core modules never
import a concrete device.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blacksat.data import load_digits
from blacksat.estimators import Autograd
from blacksat.evaluation import accuracy
from blacksat.meter import MeteredDevice
from blacksat.sat import sat
from blacksat.train_config import TrainConfig
from blacksat.trainer import Trainer

DEMO_DEVICE_ARGS: dict[str, dict[str, Any]] = {
    "mzi": {"n_modes": 16, "s_bs": 0.15, "s_ps": 0.15},
    "mrr": {},
    "diffractive": {},
}
RHO = {"mzi": 0.3, "mrr": 0.5, "diffractive": 0.1}  # PHYSICS.md: the paper's rho per device


def run_demo(
    out: Path | str,
    *,
    quick: bool = False,
    seed: int = 0,
    device: str = "mzi",
    progress: bool = True,
) -> dict[str, Any]:
    """Run the flow, write ``out/results.json`` and ``out/report.md``; return the results."""
    from blacksat.devices import DEVICES
    from blacksat.devices.tasks import default_task

    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_digits(seed=seed)
    chip = DEVICES[device](seed=seed, **DEMO_DEVICE_ARGS.get(device, {}))
    base_task = default_task(chip, data, seed=seed).to(torch.float64)
    nominal = chip.nominal_model(dtype=torch.float64)
    steps = 60 if quick else 600
    config = TrainConfig(
        lr=0.02, max_steps=steps, epochs=None, batch_size=64, seed=seed, progress=progress
    )
    methods = {
        "offline BP": lambda task: Autograd(nominal, task, space=chip.space),
        f"offline SAT (rho={RHO[device]})": lambda task: sat(
            Autograd(nominal, task, space=chip.space), rho=RHO[device]
        ),
    }
    results: dict[str, Any] = {}
    n_fresh = 3
    for name, make in methods.items():
        task = copy.deepcopy(base_task)  # same initial digital front end for every method
        run = Trainer(task, make(task), chip.space, config).fit(chip.initial_controls(seed))
        theta = run.theta
        metered = MeteredDevice(chip, max_reconfigurations=10)
        sweeps = {
            nz.name: [
                [float(v), accuracy(task, chip.perturbed(**{nz.name: float(v)}), theta)]
                for v in np.linspace(nz.rated[0], nz.rated[1], 3 if quick else 5)
            ]
            for nz in chip.nuisances
        }
        results[name] = {
            "final_loss": run.history[-1]["loss"],
            "nominal_model": accuracy(task, nominal, theta),
            "true_chip": accuracy(task, metered, theta),
            "fresh_chips": [
                accuracy(task, chip.fresh_chip(seed + 1000 + i), theta) for i in range(n_fresh)
            ],
            "perturbation_sweeps": sweeps,
            "deployment_ledger": metered.ledger.__dict__,
        }
    report = {
        "schema": "blacksat.demo/2",
        "device": chip.describe(),
        "dataset": repr(data),
        "seed": seed,
        "quick": quick,
        "train": {
            "steps": steps,
            "batch_size": 64,
            "optimizer": "adam",
            "lr": 0.02,
            "model": "nominal (errors and hidden effects omitted)",
        },
        "methods": results,
        "wall_seconds": time.perf_counter() - t_start,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(_report(report))
    return report


def _report(r: dict[str, Any]) -> str:
    names = list(r["methods"])
    head = "| evaluated on (full test split) | " + " | ".join(names) + " |"
    lines = [
        "# blacksat demo report",
        "",
        f"Device: `{r['device']['class']}` ({r['device']['controls']} controls), "
        f"data: {r['dataset']}, seed {r['seed']}. Trained offline on the nominal model, "
        f"{r['train']['steps']} Adam steps, then deployed unchanged.",
        "",
        head,
        "| --- |" + " --- |" * len(names),
    ]
    m = r["methods"]
    rows = [
        ("nominal model (what training saw)", lambda v: f"{v['nominal_model']:.3f}"),
        ("true chip (metered queries)", lambda v: f"{v['true_chip']:.3f}"),
        ("fresh chips", lambda v: ", ".join(f"{a:.3f}" for a in v["fresh_chips"])),
    ]
    for label, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(m[n]) for n in names) + " |")
    for nz, grid in m[names[0]]["perturbation_sweeps"].items():
        for i, (value, _) in enumerate(grid):
            accs = " | ".join(f"{m[n]['perturbation_sweeps'][nz][i][1]:.3f}" for n in names)
            lines.append(f"| chip at {nz} = {value:+.3g} | {accs} |")
    lines += ["", f"Wall time {r['wall_seconds']:.1f} s.", ""]
    return "\n".join(lines)
