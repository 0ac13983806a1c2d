"""The ``blacksat`` command line: a thin layer over the library.

Every misuse ends with a one-line ``blacksat: error: ...`` message and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from blacksat.errors import BlacksatError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blacksat",
        description="Sharpness-aware training of physical neural networks on opaque devices.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="train on the nominal model, deploy on a simulated chip, evaluate robustness",
        description="End-to-end flow on a simulated chip; writes report.md and results.json.",
    )
    demo.add_argument("--out", default="demo-out", help="output directory (default: demo-out)")
    demo.add_argument("--quick", action="store_true", help="a shorter run (well under a minute)")
    demo.add_argument("--seed", type=int, default=0, help="seed for data, chip and training")
    demo.add_argument("--device", default="mzi", choices=["mzi", "mrr", "diffractive"])
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    cmp = sub.add_parser(
        "compare",
        help="blacksat vs nevergrad at equal reconfiguration budgets on a simulated chip",
        description="Run methods x seeds x budgets on the same chip(s), initialisation and data; "
        "writes results.csv, results.json, summary.md and plots.",
    )
    cmp.add_argument("--methods", default=None, help="comma-separated method names (default: all)")
    cmp.add_argument("--seeds", default="0,1,2", help="comma-separated run seeds (default 0,1,2)")
    cmp.add_argument("--budgets", default="1000,5000,20000", help="reconfiguration budgets")
    cmp.add_argument("--out", default="compare-out", help="output directory")
    cmp.add_argument("--workers", type=int, default=2, help="local worker processes")
    cmp.add_argument("--scheduler", default=None, help="a Dask scheduler address (optional)")
    cmp.add_argument("--list", action="store_true", help="list the registered methods and exit")
    cmp.add_argument("--quiet", action="store_true", help="no progress bar")
    devs = sub.add_parser("devices", help="list the simulated devices and their parameters")
    devs.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _devices(as_json: bool) -> None:
    from blacksat.devices import DEVICES

    info = {name: cls().describe() for name, cls in DEVICES.items()}
    if as_json:
        print(json.dumps(info, indent=2))
        return
    for name, d in info.items():
        nz = ", ".join(f"{k} [{v['unit']}] rated {v['rated']}" for k, v in d["nuisances"].items())
        print(
            f"{name:12s} {d['class']}: {d['controls']} controls, input {d['input_shape']}, "
            f"output {d['output_shape']}; nuisances: {nz or 'none'}"
        )


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise BlacksatError(f"{what} must be comma-separated integers, got {text!r}") from exc
    if not values or any(v < 0 for v in values):
        raise BlacksatError(f"{what} must be non-empty and >= 0, got {text!r}")
    return values


def _compare(args: argparse.Namespace) -> None:
    from blacksat.compare import METHODS, compare

    if args.list:
        for name, m in METHODS.items():
            print(f"{name:18s} {m.kind:9s} {m.doc}")
        return
    names = list(METHODS) if args.methods is None else [m.strip() for m in args.methods.split(",")]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise BlacksatError(f"unknown method(s) {unknown}; `blacksat compare --list` shows them")
    if args.workers < 1:
        raise BlacksatError(f"--workers must be >= 1, got {args.workers}")
    compare(
        names,
        seeds=_ints(args.seeds, "--seeds"),
        budgets=_ints(args.budgets, "--budgets"),
        scheduler=args.scheduler,
        max_workers=args.workers,
        out_dir=args.out,
        progress=not args.quiet,
    )
    print((Path(args.out) / "summary.md").read_text())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from blacksat.demo import run_demo

            if args.seed < 0:
                raise BlacksatError(f"--seed must be >= 0, got {args.seed}")
            run_demo(
                args.out,
                quick=args.quick,
                seed=args.seed,
                device=args.device,
                progress=not args.quiet,
            )
            print((Path(args.out) / "report.md").read_text())
        elif args.command == "compare":
            _compare(args)
        elif args.command == "devices":
            _devices(args.json)
    except (BlacksatError, OSError) as exc:
        parser.exit(2, f"blacksat: error: {exc}\n")
    except KeyboardInterrupt:
        parser.exit(130, "blacksat: interrupted\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
