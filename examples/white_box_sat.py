"""White-box SAT: when the device's model is known exactly, backpropagate through it, and make the
solution flat against the drift the device will see.

    python examples/white_box_sat.py                 # MZI mesh, common-mode phase drift
    python examples/white_box_sat.py --device mrr    # micro-ring bank, thermal drift

Both runs train on the chip's **exact** model with :class:`~blacksat.estimators.Autograd`: plain
backprop (BP), and SAT against the device's own drift geometry, the ``thermal`` /
``phase_drift`` perturbation model of ``chip.perturbation_models()`` (random common-mode shifts
covering the rated range, average case). Then both are evaluated on the chip (full test split)
while its temperature drifts over the rated range: a perfect model does not protect against a
disturbance that happens after deployment; a flat solution does.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from blacksat.data import load_digits
from blacksat.devices import DEVICES
from blacksat.devices.tasks import default_task
from blacksat.estimators import Autograd
from blacksat.evaluation import nuisance_sweep
from blacksat.sat import sat
from blacksat.trainer import TrainConfig, Trainer

SETUP = {
    "mzi": {"chip": {"s_bs": 0.15, "s_ps": 0.15}, "drift": "phase_drift", "lr": 0.02, "steps": 400},
    "mrr": {"chip": {}, "drift": "thermal", "lr": 0.01, "steps": 1000},
}


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=sorted(SETUP), default="mzi")
    ap.add_argument("--steps", type=int, default=None, help="Adam steps (mzi 400, mrr 1000)")
    ap.add_argument("--points", type=int, default=5, help="temperatures over the rated range")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    setup = SETUP[args.device]
    chip = DEVICES[args.device](seed=args.seed, **setup["chip"])
    base = default_task(chip, load_digits(seed=args.seed), seed=args.seed).to(torch.float64)
    exact = chip.exact_model(dtype=torch.float64)  # white box: the true chip, no noise
    drift = chip.perturbation_models()[setup["drift"]]
    config = TrainConfig(
        lr=setup["lr"],
        max_steps=args.steps or setup["steps"],
        epochs=None,
        batch_size=64,
        seed=args.seed,
        progress=not args.quiet,
    )
    nz = next(n for n in chip.nuisances if n.name == "temperature")
    temps = np.linspace(nz.rated[0], nz.rated[1], args.points).tolist()
    curves: dict[str, list[float]] = {}
    for name in ("BP", "SAT"):
        task = copy.deepcopy(base)  # the same initial digital front end for both
        est = Autograd(exact, task, space=chip.space)
        if name == "SAT":
            est = sat(est, perturbation=drift, mode="average")
        theta = Trainer(task, est, chip.space, config).fit(chip.initial_controls(args.seed)).theta
        sweep = nuisance_sweep(task, chip.perturbed, theta, {"temperature": temps})
        curves[name] = sweep.column("accuracy")

    print(f"{args.device}: white-box BP vs SAT against {setup['drift']!r} ({drift!r})")
    print(f"  {'temperature [K]':>16s} {'BP':>7s} {'SAT':>7s}")
    for i, t in enumerate(temps):
        print(f"  {t:16.2f} {curves['BP'][i]:7.3f} {curves['SAT'][i]:7.3f}")
    print(f"  ({time.perf_counter() - t0:.1f} s)")
    return {f"{m} {t:+g} K": curves[m][i] for m in curves for i, t in enumerate(temps)}


if __name__ == "__main__":
    main()
