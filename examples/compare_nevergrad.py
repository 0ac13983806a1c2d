"""blacksat's query-only training vs nevergrad's optimizers, at the same reconfiguration budget.

    python examples/compare_nevergrad.py
    python examples/compare_nevergrad.py --modes 8 --budget 4000 --methods zo-sat,cma,ngopt

Every method gets the same problem: one small simulated MZI chip, iris, the same initial
controls and a hard budget of reconfigurations on its own metered device
(:func:`blacksat.product.compare.run_one`). blacksat's methods (``zo-sat``, ``zo-adam``) take
minibatch zeroth-order gradient estimates; nevergrad's (``one-plus-one``, ``cma``, ...,
``blacksat compare --list``) evaluate the loss on the full training split per setting. Each
result is evaluated on the full test split: on the chip, under temperature drift and on a fresh
chip. For the full sweep with seeds, chips, budgets and plots, use ``blacksat compare``.
"""

from __future__ import annotations

import argparse
import time

from blacksat.product.compare import METHODS, Scenario, run_one


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="zo-sat,zo-adam,one-plus-one,cma")
    ap.add_argument("--budget", type=int, default=2000, help="reconfigurations per method")
    ap.add_argument("--modes", type=int, default=4, help="MZI mesh size (4: 12 controls)")
    ap.add_argument("--seed", type=int, default=0, help="run seed; the chip seed too")
    args = ap.parse_args(argv)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        ap.error(f"unknown methods {unknown}; known: {sorted(METHODS)}")

    scenario = Scenario(
        device="mzi",
        device_kwargs={"n_modes": args.modes, "s_bs": 0.1, "s_ps": 0.1},
        dataset="iris",
        drift={"temperature": (-2.0, 2.0)},
    )
    print(
        f"iris on a {args.modes}-mode MZI chip (seed {args.seed}), "
        f"budget {args.budget} reconfigurations per method"
    )
    print(
        f"{'method':14s} {'kind':10s} {'reconf':>7s} {'samples':>9s} {'chip':>6s} "
        f"{'-2 K':>6s} {'+2 K':>6s} {'fresh':>6s} {'time':>6s}"
    )
    out: dict[str, float] = {}
    for name in names:
        t0 = time.perf_counter()
        row = run_one(name, scenario, args.seed, args.seed, args.budget)
        print(
            f"{name:14s} {row['label']:10s} {row['reconfigurations']:7d} {row['samples']:9d} "
            f"{row['test_accuracy']:6.3f} {row['acc_temperature-2']:6.3f} "
            f"{row['acc_temperature+2']:6.3f} {row['fresh_chip_accuracy']:6.3f} "
            f"{time.perf_counter() - t0:5.1f}s"
        )
        out[name] = float(row["test_accuracy"])
    return out


if __name__ == "__main__":
    main()
