"""A surrogate of a device whose physics nobody wrote down, from a hundred reconfigurations.

    python examples/physics_free_surrogate.py [--budget 100] [--seed 0]

The device is an analog crossbar reached only through queries (a lab's own array: no model, no
internals). What the lab *can* state without equations, ``LinearResponse`` checks from the
data: for a fixed setting the array is a linear map of its inputs, each weight is set by a few
controls (which ones is discovered), and each control acts through a smooth tuning curve. A
space-filling design of ``--budget`` settings, each read with 64 inputs, fits it in about a
second; offline SAT on it then trains the array without spending another reconfiguration,
inside the range the data covers, and the result is deployed on the device.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from blacksat import MeteredDevice, TrainConfig, Trainer, sat
from blacksat.data import load_digits
from blacksat.devices import Crossbar
from blacksat.devices.tasks import default_task
from blacksat.estimators import Autograd
from blacksat.evaluation import accuracy
from blacksat.surrogates import LinearResponse


class Opaque:
    """The array as a lab sees it: ``space``, shapes and queries, nothing else."""

    def __init__(self, chip: Any) -> None:
        self._chip = chip
        self.space, self.input_shape, self.output_shape = (
            chip.space, chip.input_shape, chip.output_shape
        )  # fmt: skip
        self.input_range, self.output_kind = chip.input_range, chip.output_kind

    def query(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self._chip.query(theta, x)

    def query_many(self, thetas: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self._chip.query_many(thetas, x)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=100, help="reconfigurations of the design")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)

    device = Opaque(Crossbar(seed=args.seed))
    meter = MeteredDevice(device, max_reconfigurations=args.budget)
    task = default_task(device, load_digits(seed=args.seed), seed=args.seed).to(torch.float64)

    # the design: settings spread over the whole box, each read with 64 training inputs
    rng = np.random.default_rng(args.seed)
    thetas = device.space.sample(rng, args.budget)
    features, _ = task.data.split("train")
    with torch.no_grad():
        x = task.encode(torch.as_tensor(features[:64])).double().numpy()
    y = meter.query_many(thetas, x)

    surrogate = LinearResponse(seed=args.seed).fit([(thetas, x, y)])
    print(surrogate.report_)
    for check in surrogate.checks_:
        print(" ", check)

    # offline SAT on the surrogate, inside the range its data covers (no device time)
    space = surrogate.coverage_.region(device.space)
    rho = 0.02 * float(np.linalg.norm(space.upper - space.lower))
    est = sat(Autograd(surrogate, task, space=space), rho=rho)
    cfg = TrainConfig(lr=0.02, max_steps=600, epochs=None, batch_size=64, seed=args.seed,
                      progress=False)  # fmt: skip
    theta = Trainer(task, est, space, cfg).fit(space.center).theta

    out = {
        "surrogate": accuracy(task, surrogate, theta),
        "device": accuracy(task, device, theta),
        "reconfigurations": float(meter.ledger.reconfigurations),
    }
    print(
        f"after {meter.ledger.reconfigurations} reconfigurations: test accuracy "
        f"{100 * out['device']:.1f} % on the device ({100 * out['surrogate']:.1f} % on the "
        "surrogate)"
    )
    return out


if __name__ == "__main__":
    main()
