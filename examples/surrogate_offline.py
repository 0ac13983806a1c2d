"""Offline SAT on a surrogate calibrated from budgeted, logged chip queries.

    python examples/surrogate_offline.py [--quick]    # about a minute on a CPU (--quick: seconds)

A MeteredDevice enforces the budget, a QueryLog keeps every answer. Residual(GreyBox(nominal)) is
calibrated on a Sobol design; SAT trains on it offline and is deployed on the chip (against SAT on
the nominal model); a later session replays the log into a new fit without touching the chip.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from blacksat import Autograd, MeteredDevice, QueryLog, TrainConfig, Trainer, sat
from blacksat.data import load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.querylog import log_queries
from blacksat.surrogates import GreyBox, Residual, calibrate, input_subset


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", type=int, default=200, help="calibration design size")
    ap.add_argument(
        "--steps", type=int, default=None, help="SAT steps on each model (default 300; 3 quick)"
    )
    ap.add_argument(
        "--quick", action="store_true", help="tiny run: 24 settings, a short fit, 3 SAT steps"
    )
    ap.add_argument(
        "--run-dir", default=None, help="keep the query log here (default: a temporary folder)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.run_dir is not None:
        return run(args, Path(args.run_dir))
    with tempfile.TemporaryDirectory(prefix="blacksat-") as tmp:  # removed when done
        return run(args, Path(tmp))


def run(args: argparse.Namespace, run_dir: Path) -> dict[str, float]:
    n_settings = 24 if args.quick else args.settings
    steps = args.steps if args.steps is not None else (3 if args.quick else 300)
    fit = {"steps": 20} if args.quick else {}  # else the surrogates' default fitting steps

    chip = MZIMesh(n_modes=8, s_bs=0.15, s_ps=0.15, seed=args.seed)
    meter = MeteredDevice(chip, max_reconfigurations=n_settings + 10)  # a hard budget
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path, chip_id = run_dir / "queries.sqlite", f"mzi-{args.seed}"
    log = log_queries(meter, log_path, device=chip_id)  # each answer is stored before its use
    data = load_iris(seed=args.seed)  # 8 ports: room for 3 classes (not for 10 digits)

    def fresh_task():  # the same seeded digital front end for every run
        return default_task(chip, data, seed=args.seed).to(torch.float64)

    def make_surrogate():
        nominal = chip.nominal_model(dtype=torch.float64)
        return Residual(GreyBox(nominal, **fit), **fit, seed=args.seed)

    # calibration inputs: 32 training samples (stratified by class), encoded as the task does
    idx = input_subset(data.x_train, 32, seed=args.seed, labels=data.y_train)
    x = fresh_task().encode(torch.as_tensor(data.x_train[idx])).detach().numpy()
    cal = calibrate(make_surrogate(), meter, x, n_settings, seed=args.seed)
    sur = cal.surrogate
    print(f"calibration ({cal.reason}, {cal.spent.reconfigurations} settings): {sur.report_}")
    print(f"  (the grey box alone: train RMSE {sur.base_.report_.train_rmse:.3g})")

    config = TrainConfig(lr=0.02, max_steps=steps, epochs=None, batch_size=64, progress=False)
    accuracy = {}
    for kind, model in (("surrogate", sur), ("nominal", chip.nominal_model(dtype=torch.float64))):
        task = fresh_task()
        est = sat(Autograd(model, task, space=chip.space), rho=0.3)  # offline: no device time
        theta = Trainer(task, est, chip.space, config).fit(chip.initial_controls()).theta
        accuracy[kind] = task.accuracy(meter, theta)  # deploy: one reconfiguration
        print(f"SAT on the {kind} model: accuracy on the chip {accuracy[kind]:.3f}")

    log.close()  # a later session: replay all the chip answered (deployments too), for free
    with QueryLog(log_path, readonly=True) as old:
        replayed = old.data(device=chip_id)
    again = make_surrogate().fit(replayed)
    print(f"refit on {replayed.n_settings} logged settings: {again.report_}")
    where = (
        run_dir if args.run_dir is not None else "a temporary folder (removed; --run-dir keeps it)"
    )
    print(f"device cost: {meter.ledger.reconfigurations} reconfigurations; log in {where}")
    return {**accuracy, "r2": sur.report_.held_out_r2, "replayed_r2": again.report_.held_out_r2}


if __name__ == "__main__":
    main()
