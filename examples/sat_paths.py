"""Train a simulated chip with SAT through each path: autograd, physics-aware, zeroth-order.

    python examples/sat_paths.py --device mzi --path autograd
    python examples/sat_paths.py --device mrr --path physics_aware
    python examples/sat_paths.py --device diffractive --path zeroth_order --budget 3000

- ``autograd``: offline SAT on the *nominal* model (what a user believes), deployed unchanged.
- ``physics_aware``: online SAT, forward on the (metered) chip, backward through the nominal model.
- ``zeroth_order``: SAT from queries alone, under a hard reconfiguration budget, starting from the
  nominal-model solution (the usual workflow: pre-train offline, fine-tune on the chip); it
  prints the offline start's accuracy on the chip, and says so if the fine-tuning ended below it.

SAT is flat against the set that protects against each device's disturbance (README, "When to
use what"): the common-mode drift of a mesh or a ring bank (worst of 9 probed shifts over the
rated range offline, the average over random shifts on the chip), an adaptive ball for the
diffractive stack (whose misalignment is not a control-space set).

Each run prints the accuracy on the full test split: on the chip, on a fresh chip of the same
process, and under the chip's rated post-deployment perturbation; plus what the device cost.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from blacksat.data import load_digits
from blacksat.devices import DEVICES
from blacksat.devices.tasks import default_task
from blacksat.estimators import Autograd, PhysicsAware, ZerothOrder
from blacksat.evaluation import accuracy, nuisance_sweep
from blacksat.meter import MeteredDevice
from blacksat.perturbations import Adaptive
from blacksat.sat import sat
from blacksat.trainer import TrainConfig, Trainer


def _drift(name: str):
    """The device's common-mode drift model, probed at 9 shifts over its rated range."""
    return lambda chip: dataclasses.replace(chip.perturbation_models()[name], grid=9)


# the error level and the set SAT is flat against, per device
SETUP = {
    "mzi": dict(chip=dict(s_bs=0.15, s_ps=0.15), flat=_drift("phase_drift"), lr=0.02),
    "mzi-hybrid": dict(chip=dict(s_bs=0.15, s_ps=0.15), flat=_drift("phase_drift"), lr=0.02),
    "mrr": dict(chip=dict(), flat=_drift("thermal"), lr=0.01),
    "diffractive": dict(chip=dict(), flat=lambda chip: Adaptive(0.1), lr=0.05),
}


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=sorted(DEVICES), default="mzi")
    ap.add_argument(
        "--path", choices=["autograd", "physics_aware", "zeroth_order"], default="autograd"
    )
    ap.add_argument("--steps", type=int, default=300, help="optimization steps")
    ap.add_argument("--budget", type=int, default=5000, help="reconfiguration budget on the chip")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    setup = SETUP[args.device]
    chip = DEVICES[args.device](seed=args.seed, **setup["chip"])
    task = default_task(chip, load_digits(seed=args.seed), seed=args.seed).to(torch.float64)
    nominal = chip.nominal_model(dtype=torch.float64)
    meter = MeteredDevice(chip, max_reconfigurations=args.budget)
    flat = setup["flat"](chip)
    config = TrainConfig(
        lr=setup["lr"],
        max_steps=args.steps,
        epochs=None,
        batch_size=64,
        seed=args.seed,
        progress=not args.quiet,
    )
    theta0 = chip.initial_controls(args.seed)
    start = None

    if args.path == "autograd":
        est = sat(Autograd(nominal, task, space=chip.space), perturbation=flat)
        result = Trainer(task, est, chip.space, config).fit(theta0)
    else:
        mode = "worst"
        if args.path == "zeroth_order":  # pre-train offline, then fine-tune from queries alone
            warm = sat(Autograd(nominal, task, space=chip.space), perturbation=flat)
            theta0 = Trainer(task, warm, chip.space, config).fit(theta0).theta
            start = accuracy(task, chip, theta0)
            print(f"offline start (SAT on the nominal model): accuracy on the chip {start:.3f}")
            # the query-only settings of BENCHMARKS.md ("Query-only training"): q = 4
            # antithetic directions, sigma 0.05, Adam lr 0.02 with a cosine schedule, batch
            # 128, average case over random draws of the flat set (no ascent queries)
            descent = ZerothOrder(meter, task, q=4, sigma=0.05)
            mode = "average"
            config = dataclasses.replace(
                config, lr=0.02, schedule="cosine", batch_size=128, train_digital=False
            )
        else:
            descent = PhysicsAware(meter, nominal, task)
        est = sat(descent, perturbation=dataclasses.replace(flat, grid=0)
                  if mode == "average" and hasattr(flat, "grid") else flat, mode=mode)  # fmt: skip
        result = Trainer(task, est, chip.space, config, meter=meter).fit(theta0)

    theta = result.theta
    nz = chip.nuisances[0]
    sweep = nuisance_sweep(task, chip.perturbed, theta, {nz.name: [nz.rated[1]]})
    out = {
        "chip": accuracy(task, chip, theta),
        "fresh_chip": accuracy(task, chip.fresh_chip(args.seed + 1000), theta),
        f"{nz.name}={nz.rated[1]:g}": float(sweep.column("accuracy")[0]),
        "nominal_model": accuracy(task, nominal, theta),
    }
    if start is not None:
        out = {"start": start, **out}
    print(f"{args.device} / {args.path}: stopped ({result.reason}) after {result.steps} steps")
    for k, v in out.items():
        print(f"  accuracy {k:22s} {v:.3f}")
    if start is not None and out["chip"] < start:
        print(
            f"  the fine-tuning ended below its offline start on the chip ({out['chip']:.3f} < "
            f"{start:.3f}): more budget, a smaller lr or a larger batch may help"
        )
    led = meter.ledger
    print(
        f"  device cost: {led.reconfigurations} reconfigurations, {led.samples} samples "
        f"(budget {args.budget}); {time.perf_counter() - t0:.1f} s"
    )
    return out


if __name__ == "__main__":
    main()
