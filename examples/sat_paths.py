"""Train a simulated chip with SAT through each path: autograd, physics-aware, zeroth-order.

    python examples/sat_paths.py --device mzi --path autograd
    python examples/sat_paths.py --device mrr --path physics_aware
    python examples/sat_paths.py --device diffractive --path zeroth_order --budget 3000

- ``autograd``: offline SAT on the *nominal* model (what a user believes), deployed unchanged.
- ``physics_aware``: online SAT, forward on the (metered) chip, backward through the nominal model.
- ``zeroth_order``: SAT from queries alone, under a hard reconfiguration budget, starting from the
  nominal-model solution (the usual workflow: pre-train offline, fine-tune on the chip).

Each run prints the accuracy on the full test split: on the chip, on a fresh chip of the same
process, and under the chip's rated post-deployment perturbation; plus what the device cost.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from blacksat.builder import EstimatorSpec, SatSpec, build_estimator
from blacksat.data import load_digits
from blacksat.devices import DEVICES
from blacksat.devices.tasks import default_task
from blacksat.evaluation import accuracy, nuisance_sweep
from blacksat.meter import MeteredDevice
from blacksat.perturbations import Adaptive, L2Ball
from blacksat.trainer import TrainConfig, Trainer

# the error level and the set SAT is flat against, per device (PHYSICS.md: rho and variant)
SETUP = {
    "mzi": dict(chip=dict(s_bs=0.15, s_ps=0.15), flat=lambda chip: L2Ball(0.3), lr=0.02),
    "mzi-hybrid": dict(chip=dict(s_bs=0.15, s_ps=0.15), flat=lambda chip: L2Ball(0.3), lr=0.02),
    "mrr": dict(chip=dict(), flat=lambda chip: chip.perturbation_models()["thermal"], lr=0.01),
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
    mode = "average" if args.device == "mrr" else "worst"  # random common-mode shifts (DESIGN.md)
    config = TrainConfig(
        lr=setup["lr"],
        max_steps=args.steps,
        epochs=None,
        batch_size=64,
        seed=args.seed,
        progress=not args.quiet,
    )
    theta0 = chip.initial_controls(args.seed)

    flat_sat = SatSpec(perturbation="flat", mode=mode)

    def build(name: str, **args: float) -> Any:
        spec = EstimatorSpec(name, args=args)
        return build_estimator(
            spec, flat_sat, task=task, device=meter, chip=chip, model=nominal,
            perturbations={"flat": flat}, dtype=torch.float64,
        ).estimator  # fmt: skip

    if args.path == "autograd":
        result = Trainer(task, build("autograd"), chip.space, config).fit(theta0)
    else:
        if args.path == "zeroth_order":  # pre-train offline, then fine-tune from queries alone
            theta0 = Trainer(task, build("autograd"), chip.space, config).fit(theta0).theta
            config = TrainConfig(
                lr=setup["lr"] / 4,
                max_steps=args.steps,
                epochs=None,
                batch_size=64,
                seed=args.seed,
                progress=not args.quiet,
                train_digital=False,
            )
        est = build(args.path, **({"q": 8, "sigma": 0.02} if args.path == "zeroth_order" else {}))
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
    print(f"{args.device} / {args.path}: stopped ({result.reason}) after {result.steps} steps")
    for k, v in out.items():
        print(f"  accuracy {k:22s} {v:.3f}")
    led = meter.ledger
    print(
        f"  device cost: {led.reconfigurations} reconfigurations, {led.samples} samples "
        f"(budget {args.budget}); {time.perf_counter() - t0:.1f} s"
    )
    return out


if __name__ == "__main__":
    main()
