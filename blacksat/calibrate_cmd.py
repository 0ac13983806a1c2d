"""``blacksat calibrate``: fit a surrogate of a device from a recorded query log.

The device is named by registry name and constructor arguments (or read from a run's
``config.toml``): only its *nominal* physics is used (the grey-box starting point and the
residual's base); the readings come from the log alone, so the same command fits a surrogate of
real hardware whose queries were logged through a :class:`~blacksat.QueryLog`.

Kinds (:data:`blacksat.surrogates.SURROGATES`):

- ``greybox``: ``GreyBox(nominal_model)``, the nominal physics with fitted error parameters;
- ``residual``: ``Residual(GreyBox(nominal_model))``, plus a learned correction of the readings;
- ``ensemble``: ``Ensemble()``, black-box MLPs whose disagreement measures uncertainty.

Output: a surrogate file at ``--out`` (:mod:`blacksat.surrogates.files`: the fitted tensors plus
a JSON spec and the device it was fitted for; no pickle, read with ``weights_only=True``) and the
fit report as JSON beside it (``FILE.json``). A ``blacksat train`` run trains on it with
``[estimator] model = "FILE"``; loading rebuilds the device's nominal physics from its name and
arguments, so no code in the file runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from blacksat.errors import ConfigError

KINDS = ("greybox", "residual", "ensemble")


def make_surrogate(kind: str, chip: Any, *, steps: int | None = None, seed: int = 0) -> Any:
    """A fresh surrogate of ``kind`` for ``chip`` (its nominal model as the physics)."""
    from blacksat.surrogates import Ensemble, GreyBox, Residual

    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    opts: dict[str, Any] = {"seed": seed}
    if steps is not None:
        opts["steps"] = steps
    if kind == "ensemble":
        return Ensemble(**opts)
    nominal = chip.nominal_model(dtype=torch.float64)
    if kind == "greybox":
        return GreyBox(nominal, **opts)
    return Residual(GreyBox(nominal, **opts), **opts)


def report_path(out: Path) -> Path:
    """Where the JSON report of a surrogate saved at ``out`` goes (``FILE.json``)."""
    return out.with_name(out.name + ".json") if out.suffix != ".pt" else out.with_suffix(".json")


def calibrate_from_log(
    log_path: str | Path,
    device: str,
    device_args: dict[str, Any],
    kind: str,
    out: str | Path,
    *,
    steps: int | None = None,
    seed: int = 0,
    log_device: str | None = None,
) -> dict[str, Any]:
    """Fit a ``kind`` surrogate of ``device(**device_args)`` on every query of the log (or of
    the identity ``log_device``), save it to ``out`` and its report to ``FILE.json``; returns
    the report."""
    from blacksat.querylog import QueryLog
    from blacksat.run_config import DeviceSpec
    from blacksat.surrogates.files import FORMAT, save_surrogate

    path = Path(log_path)
    if not path.is_file():
        raise ConfigError(f"query log not found: {str(path)!r}")
    if not isinstance(device_args, dict):
        raise ConfigError(f"device arguments must be a JSON object, got {device_args!r}")
    args = dict(device_args)
    chip_seed = args.pop("seed", 0)
    if isinstance(chip_seed, bool) or not isinstance(chip_seed, int) or chip_seed < 0:
        raise ConfigError(f"the device seed must be an integer >= 0, got {chip_seed!r}")
    chip = DeviceSpec(name=device, seed=chip_seed, kwargs=args).build()
    t0 = time.perf_counter()
    with QueryLog(path, readonly=True) as log:
        known = log.devices()
        if log_device is not None and log_device not in known:
            raise ConfigError(f"the log holds no queries of {log_device!r}; it holds {known}")
        if not known:
            raise ConfigError(f"the query log {str(path)!r} holds no queries")
        data = log.data(device=log_device)
    d = data.groups[0][0].shape[1]
    in_shape = tuple(data.groups[0][1].shape[1:])
    if d != chip.space.dim or in_shape != tuple(chip.input_shape):
        raise ConfigError(
            f"the log's queries have {d} controls and inputs {in_shape}, but the device "
            f"{device} {args} has {chip.space.dim} controls and inputs {tuple(chip.input_shape)}"
        )
    surrogate = make_surrogate(kind, chip, steps=steps, seed=seed)
    surrogate.fit(data)
    rep = surrogate.report_
    report = {
        "format": FORMAT,
        "kind": kind,
        "device": {"name": device, "seed": chip_seed, "kwargs": args},
        "log": str(path),
        "log_device": log_device,
        "settings": data.n_settings,
        "fit": asdict(rep),
        "summary": str(rep),
        "wall_seconds": time.perf_counter() - t0,
    }
    target = Path(out)
    save_surrogate(surrogate, target, {"kind": kind, "device": report["device"]})
    report_path(target).write_text(json.dumps(report, indent=2))
    return report


def load_surrogate(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """A surrogate saved by :func:`calibrate_from_log` and the device it was fitted for
    (``{"name", "seed", "kwargs"}``); the device's nominal physics is rebuilt from that, the
    file only gives tensors and JSON (``weights_only=True``)."""
    from blacksat.run_config import DeviceSpec
    from blacksat.surrogates.files import load_surrogate as load_file
    from blacksat.surrogates.files import read_surrogate_file

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no surrogate file at {str(p)!r} (write one with blacksat calibrate)")
    _spec, meta, _state = read_surrogate_file(p)
    device = meta.get("device")
    if not isinstance(device, dict) or "name" not in device:
        raise ConfigError(f"{str(p)!r} does not say which device it was fitted for")
    spec = DeviceSpec(
        name=device["name"], seed=device.get("seed", 0), kwargs=device.get("kwargs", {})
    )
    physics = spec.build().nominal_model(dtype=torch.float64)
    surrogate, _ = load_file(p, physics)
    return surrogate, dict(device)


__all__ = [
    "KINDS",
    "calibrate_from_log",
    "load_surrogate",
    "make_surrogate",
    "report_path",
]
