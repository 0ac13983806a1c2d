"""The ``blacksat`` command line: a thin layer over the library.

Commands: ``demo`` (the main job, :func:`blacksat.product.demo.run_demo`), ``train`` and
``evaluate`` (:mod:`blacksat.product.run`), ``calibrate`` (:mod:`blacksat.product.calibrate_cmd`),
``compare`` (:mod:`blacksat.product.compare`), ``devices``, and ``serve`` / ``token`` (a device
server, :mod:`blacksat.product.serve_cmd`). Every misuse (a bad argument, a missing or invalid
config file, a directory that is not a run) ends with a one-line ``blacksat: error: ...`` message
and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from blacksat import __version__
from blacksat.errors import BlacksatError, ConfigError

#: seeds reach numpy, torch and scikit-learn; the last accepts [0, 2**32 - 1]
MAX_SEED = 2**32 - 1


class _Parser(argparse.ArgumentParser):
    """argparse with blacksat's one-line errors: ``blacksat: error: ...``, exit status 2 (no
    usage block; ``--help`` shows it)."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"blacksat: error: {text} (see `{self.prog} --help`)\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows every default."""


def _path(text: str) -> str:
    """A path argument (the OS refuses a NUL byte with a ValueError, not an OSError)."""
    if "\x00" in text:
        raise argparse.ArgumentTypeError("a path cannot contain a NUL byte")
    return text


def _count(text: str) -> int:
    """A non-negative integer argument."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    """An integer argument >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="blacksat",
        description="Sharpness-aware training of physical neural networks on opaque devices.",
        formatter_class=_Help,
    )
    p.add_argument("--version", action="version", version=f"blacksat {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub_parser = sub.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub_parser(name, formatter_class=_Help, **kwargs)

    sub.add_parser = add_parser  # type: ignore[method-assign]
    demo = sub.add_parser(
        "demo",
        help="the main job: offline BP and SAT, query-only SAT and nevergrad on a simulated chip",
        description="End-to-end flow on a simulated chip (digits, 16-mode MZI mesh): offline "
        "BP and SAT on the nominal model, query-only SAT fine-tuning and a nevergrad baseline "
        "on the chip at the same reconfiguration budget, evaluated on the chip, fresh chips "
        "and under drift; writes report.md, results.json and plots.",
    )
    demo.add_argument("--out", default="demo-out", type=_path, help="output directory")
    demo.add_argument("--quick", action="store_true", help="a shorter run (well under a minute)")
    demo.add_argument("--force", action="store_true", help="overwrite results already in --out")
    demo.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted demo in --out: its finished seeds are kept",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed for data, chip and training")
    demo.add_argument(
        "--device",
        default="mzi",
        choices=["mzi", "mzi-hybrid", "mrr", "diffractive"],
        help="the simulated chip: a 16-mode MZI mesh, two meshes with a digital layer between "
        "them, a micro-ring weight bank, or a diffractive network",
    )
    demo.add_argument(
        "--config",
        type=_path,
        default=None,
        help=(
            "TOML file of demo settings overriding the preset "
            "(keys: blacksat.product.demo.DemoConfig)"
        ),
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    train = sub.add_parser(
        "train",
        help="a training run from a TOML config into a run directory",
        description="Train from a TOML run file (device, task, estimator, sat, train, budget, "
        "log); writes config.toml, checkpoint.pt, log.jsonl, queries.sqlite, task.pt and "
        "result.json into the run directory.",
    )
    train.add_argument("--config", type=_path, default=None, help="the TOML run file")
    train.add_argument("--out", default="train-out", type=_path, help="run directory")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint (config: --config or the saved one)",
    )
    train.add_argument(
        "--force", action="store_true", help="replace a run already in --out (not with --resume)"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    ev = sub.add_parser(
        "evaluate",
        help="robustness of a finished train run: fresh chips and nuisance sweeps",
        description="Evaluate a train run on its chip, fresh chips and (--sweep) under each "
        "nuisance and perturbation model; prints a table and writes DIR/evaluation.json.",
    )
    ev.add_argument("run_dir", type=_path, metavar="DIR", help="a directory written by train")
    ev.add_argument("--fresh-chips", type=_count, default=3, help="fresh chips")
    ev.add_argument("--sweep", action="store_true", help="nuisance and perturbation sweeps")
    ev.add_argument("--force", action="store_true", help="overwrite DIR/evaluation.json")
    ev.add_argument("--quiet", action="store_true", help="no progress output")
    cal = sub.add_parser(
        "calibrate",
        help="fit a surrogate of a device from a query log",
        description="Fit a grey-box, residual, ensemble or linear-response surrogate on the "
        "queries of a log; prints the fit report (and what the data cannot support), saves the "
        "surrogate (torch.save) and FILE.json.",
    )
    cal.add_argument("--log", required=True, type=_path, help="a queries.sqlite file")
    cal.add_argument("--device", default=None, help="device registry name (or via --config)")
    cal.add_argument(
        "--device-args", default=None, help="device arguments as JSON, e.g. '{\"n_modes\": 4}'"
    )
    cal.add_argument("--config", type=_path, default=None, help="a run's TOML ([device] used)")
    cal.add_argument(
        "--kind", required=True, choices=["greybox", "residual", "ensemble", "linear_response"]
    )
    cal.add_argument("--out", required=True, type=_path, help="where the surrogate goes")
    cal.add_argument("--force", action="store_true", help="overwrite --out and its report")
    cal.add_argument("--steps", type=_positive, default=None, help="fit steps (None: kind's)")
    cal.add_argument("--seed", type=int, default=0, help="seed of the fit")
    cal.add_argument("--log-device", default=None, help="only this device identity's queries")
    cal.add_argument("--quiet", action="store_true", help="no progress output")
    cmp = sub.add_parser(
        "compare",
        help="blacksat vs nevergrad at equal reconfiguration budgets on a simulated chip",
        description="Run methods x seeds x budgets on the same chip(s), initialisation and data; "
        "writes results.csv, results.json, summary.md and plots.",
    )
    cmp.add_argument(
        "--methods", default=None, help="comma-separated method names (default: all that fit)"
    )
    cmp.add_argument(
        "--config",
        type=_path,
        default=None,
        help="a run file: its [device] (name or factory, kwargs) and [task] dataset are compared",
    )
    cmp.add_argument(
        "--device", default=None, help="a device name or 'package.module:callable' factory"
    )
    cmp.add_argument("--seeds", default="0,1,2", help="comma-separated run seeds")
    cmp.add_argument("--budgets", default="1000,5000,20000", help="reconfiguration budgets")
    cmp.add_argument(
        "--out",
        default="compare-out",
        type=_path,
        help="output directory (each finished run's row is written to rows.jsonl at once)",
    )
    cmp.add_argument("--force", action="store_true", help="overwrite results already in --out")
    cmp.add_argument(
        "--resume", action="store_true", help="keep the finished runs in --out, run the rest"
    )
    cmp.add_argument("--workers", type=int, default=2, help="local worker processes")
    cmp.add_argument("--scheduler", default=None, help="a Dask scheduler address (optional)")
    cmp.add_argument("--list", action="store_true", help="list the registered methods and exit")
    cmp.add_argument("--quiet", action="store_true", help="no progress bar")
    ch = sub.add_parser(
        "characterize",
        help="measure a device's noise from queries and write a perturbation model",
        description="Measure readout noise, programming noise, drift and sensitivity of the "
        "run file's device at its initial setting, on inputs encoded from the training split; "
        "writes characterization.json, characterization.md and model.json (use it as "
        '[sat] perturbation = "DIR/model.json").',
    )
    ch.add_argument("--config", type=_path, required=True, help="a run file ([device], [task])")
    ch.add_argument("--out", default="characterize-out", type=_path, help="output directory")
    ch.add_argument("--budget", type=_count, default=200, help="reconfigurations to spend")
    ch.add_argument("--inputs", type=_count, default=32, help="training inputs per reading")
    ch.add_argument("--seed", type=int, default=0, help="seed of the probe directions")
    ch.add_argument("--force", action="store_true", help="overwrite an earlier report")
    ch.add_argument("--quiet", action="store_true", help="no output but errors")
    devs = sub.add_parser(
        "devices",
        help="list the registered devices: controls, shapes, perturbation models",
    )
    devs.add_argument("--json", action="store_true", help="machine-readable output")
    from blacksat.product.serve_cmd import add_parsers as add_remote_parsers

    add_remote_parsers(sub, _path)  # serve, token
    return p


def _devices(as_json: bool) -> None:
    from blacksat.product.device_registry import describe, registered

    info: dict[str, Any] = {}
    for name, factory in registered().items():
        try:
            info[name] = describe(factory())
        except Exception as exc:  # a lab device may need arguments (or hardware) to build
            info[name] = {"name": name, "error": f"{type(exc).__name__}: {exc}"}
    if as_json:
        print(json.dumps(info, indent=2))
        return
    for name, d in info.items():
        if "error" in d:
            print(f"{name:12s} (cannot be built without arguments: {d['error']})")
            continue
        nz = ", ".join(
            f"{k} [{v['unit']}] rated {v['rated']}" for k, v in d.get("nuisances", {}).items()
        )
        pm = d["perturbation_models"]
        print(
            f"{name:12s} {d['class']}: {d['controls']} controls in {d['bounds']}, input "
            f"{d['input_shape']}, output {d['output_shape']}; perturbation models: "
            f"{', '.join(pm) if isinstance(pm, list) and pm else 'none'}; nuisances: {nz or 'none'}"
            + ("; re-programs on every query" if d["reprograms_on_query"] else "")
        )


def _ints(text: str, what: str, low: int = 0, upper: int | None = None) -> list[int]:
    """Comma-separated integers in ``[low, upper]``; every refusal says the whole range."""
    span = f">= {low}" + ("" if upper is None else f" and <= {upper}")
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BlacksatError(
            f"{what} must be comma-separated integers {span}, got {text!r}"
        ) from None
    if not values or any(v < low or (upper is not None and v > upper) for v in values):
        raise BlacksatError(f"{what} must be comma-separated integers {span}, got {text!r}")
    return values


def _seed(value: int, what: str = "--seed") -> int:
    if not 0 <= value <= MAX_SEED:
        raise BlacksatError(f"{what} must be >= 0 and <= {MAX_SEED}, got {value}")
    return value


def _compare(args: argparse.Namespace) -> None:
    from blacksat.product.compare import METHODS, compare

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
    scenario = _compare_scenario(args)
    if scenario is not None:
        from blacksat.product.compare import method_fits

        chip = scenario.build_chip(0)
        misfits = {n: why for n in names if (why := method_fits(METHODS[n], chip))}
        if args.methods is not None and misfits:
            n, why = next(iter(misfits.items()))
            raise BlacksatError(f"method {n!r} {why}, which the device does not offer")
        names = [n for n in names if n not in misfits]
    compare(
        names,
        scenario=scenario,
        seeds=_ints(args.seeds, "--seeds", 0, MAX_SEED),
        budgets=_ints(args.budgets, "--budgets", 1),
        scheduler=args.scheduler,
        max_workers=args.workers,
        out_dir=args.out,
        progress=not args.quiet,
        force=args.force,
        resume=args.resume,
    )
    print((Path(args.out) / "summary.md").read_text())


def _compare_scenario(args: argparse.Namespace) -> Any:
    """The scenario of ``--config`` / ``--device`` (``None``: the default scenario)."""
    from blacksat.product.compare import Scenario

    if args.config is None and args.device is None:
        return None
    kw: dict[str, Any] = {}
    if args.config is not None:
        from blacksat.product.run_config import RunConfig

        config = RunConfig.load(args.config)
        spec = config.device
        kw = {
            "device": spec.factory or spec.name,
            "device_kwargs": dict(spec.kwargs),
            "dataset": config.task.dataset,
        }
        if config.task.dataset in ("digits", "iris"):
            kw["dataset_kwargs"] = {"seed": config.task.seed}
        if args.device is not None and args.device != kw["device"]:
            raise ConfigError(f"--device {args.device!r} contradicts the config's {kw['device']!r}")
    else:
        kw = {"device": args.device}
    return Scenario(**kw)


def _demo(args: argparse.Namespace) -> None:
    from blacksat.product.demo import DemoConfig, run_demo
    from blacksat.product.run_config import load_toml

    config = None
    if args.config is not None:
        config = DemoConfig.from_mapping(
            load_toml(args.config), quick=args.quick, device=args.device
        )
    run_demo(
        args.out,
        quick=args.quick,
        seed=_seed(args.seed),
        device=args.device,
        progress=not args.quiet,
        config=config,
        force=args.force,
        resume=args.resume,
    )
    print((Path(args.out) / "report.md").read_text())


def _train(args: argparse.Namespace) -> None:
    from blacksat.product.run import result_markdown, train
    from blacksat.product.run_config import RunConfig

    source = args.config
    if source is None:
        if not args.resume:
            raise ConfigError("train needs --config FILE (or --resume to continue --out)")
        source = Path(args.out) / "config.toml"
        if not Path(source).is_file():
            raise ConfigError(f"{args.out!r} holds no config.toml to resume from")
    report = train(
        RunConfig.load(source),
        args.out,
        resume=args.resume,
        progress=not args.quiet,
        force=args.force,
    )
    print(result_markdown(report, args.out))


def _evaluate(args: argparse.Namespace) -> None:
    from blacksat.product.run import evaluate, evaluation_markdown

    ev = evaluate(
        args.run_dir,
        fresh_chips=args.fresh_chips,
        sweep=args.sweep,
        force=args.force,
        progress=not args.quiet,
    )
    print(evaluation_markdown(ev))


def _calibrate(args: argparse.Namespace) -> None:
    from blacksat.product.calibrate_cmd import calibrate_from_log, report_path
    from blacksat.product.run_config import RunConfig

    identity = None
    if args.config is not None:
        run_config = RunConfig.load(args.config)
        spec, identity = run_config.device, run_config.log.device_id
        name, dev_args = spec.factory or spec.name, {**spec.kwargs, "seed": spec.seed}
        if args.device is not None and args.device != name:
            raise ConfigError(f"--device {args.device!r} contradicts the config's {name!r}")
    elif args.device is not None:
        name, dev_args = args.device, {}
    else:
        raise ConfigError("calibrate needs --device NAME or --config FILE")
    if args.device_args is not None:
        try:
            extra: Any = json.loads(args.device_args)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--device-args is not valid JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise ConfigError(f"--device-args must be a JSON object, got {args.device_args!r}")
        dev_args = {**dev_args, **extra}
    report = calibrate_from_log(
        args.log,
        name,
        dev_args,
        args.kind,
        args.out,
        steps=args.steps,
        seed=_seed(args.seed),
        log_device=args.log_device,
        identity=identity,
        force=args.force,
        progress=not args.quiet,
    )
    print(f"{args.kind} surrogate of {name}: {report['summary']}")
    for check in report["checks"]:
        print(f"  {check['assumption']}: {'holds' if check['holds'] else 'CONTRADICTED'} "
              f"(R^2 {check['r2']:.3f})")  # fmt: skip
    for warning in report["warnings"]:
        print(f"WARNING: {warning}")
    print(f"saved {args.out} and {report_path(Path(args.out))}")


def _characterize(args: argparse.Namespace) -> None:
    import torch

    from blacksat import characterize as ch
    from blacksat.devices.tasks import default_task
    from blacksat.product.run_config import RunConfig

    config = RunConfig.load(args.config)
    out = Path(args.out)
    for name in ("characterization.json", "characterization.md", "model.json"):
        if (out / name).exists() and not args.force:
            raise ConfigError(f"{str(out / name)!r} exists; pass --force to overwrite it")
    device = config.device.build()
    task = default_task(device, config.task.load(), seed=config.task.seed).to(torch.float64)
    features = task.data.split("train")[0][: args.inputs]
    with torch.no_grad():
        x = task.encode(torch.as_tensor(features, dtype=torch.float64)).numpy()
    init = getattr(device, "initial_controls", None)
    theta = (
        init(config.task.seed)
        if config.task.init == "device" and callable(init)
        else device.space.center.copy()
    )
    result = ch.characterize(device, x, budget=args.budget, theta=theta, seed=_seed(args.seed))
    paths = ch.save(result, out, force=args.force)
    if not args.quiet:
        print(result.markdown())
        print(f"wrote {', '.join(str(p) for p in paths.values())}")


COMMANDS = {
    "characterize": _characterize,
    "demo": _demo,
    "train": _train,
    "evaluate": _evaluate,
    "calibrate": _calibrate,
    "compare": _compare,
    "devices": lambda args: _devices(args.json),
    "serve": lambda args: _remote("serve_command", args),
    "token": lambda args: _remote("token_command", args),
}


def _remote(name: str, args: argparse.Namespace) -> None:
    from blacksat.product import serve_cmd as command

    getattr(command, name)(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (BlacksatError, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, BlacksatError):
            from blacksat.outputs import os_message

            text = os_message(exc)  # in words, never "[Errno 17] ..."
        else:
            text = str(exc)
        message = " ".join(text.split())  # one line, whatever the message holds
        parser.exit(2, f"blacksat: error: {message}\n")
    except KeyboardInterrupt:
        parser.exit(130, "blacksat: interrupted\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
