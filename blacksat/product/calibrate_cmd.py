"""``blacksat calibrate``: fit a surrogate of a device from a recorded query log.

The device is named by registry name and constructor arguments (or read from a run's
``config.toml``): only its *nominal* physics is used (the grey-box starting point and the
residual's base); the readings come from the log alone, so the same command fits a surrogate of
real hardware whose queries were logged through a :class:`~blacksat.QueryLog`.

Kinds (:data:`blacksat.surrogates.SURROGATES`):

- ``greybox``: ``GreyBox(nominal_model)``, the nominal physics with fitted error parameters;
- ``residual``: ``Residual(GreyBox(nominal_model))``, plus a learned correction of the readings;
- ``ensemble``: ``Ensemble()``, black-box MLPs whose disagreement measures uncertainty;
- ``linear_response``: ``LinearResponse()``, physics-free: a linear (or intensity) response to
  the inputs, local controls and smooth tuning curves, each assumption checked against the data
  (the log's settings must each be read with more inputs than the response has coefficients).

The report says where the data is evidence about the device (``coverage``: the spread of its
settings; a log of one training run covers the neighbourhood of one trajectory) and which
structural assumption the data contradicted (``checks``); ``warnings`` repeats what a user must
know before training on the surrogate (``blacksat train`` repeats it and trains inside the
covered range).

Output: a surrogate file at ``--out`` (:mod:`blacksat.surrogates.files`: the fitted tensors plus
a JSON spec and the device it was fitted for; no pickle, read with ``weights_only=True``) and the
fit report as JSON beside it (``FILE.json``). A ``blacksat train`` run trains on it with
``[estimator] model = "FILE"``; loading rebuilds the device's nominal physics from its name and
arguments, so no code in the file runs.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from blacksat.errors import ConfigError
from blacksat.space import ParamSpace

KINDS = ("greybox", "residual", "ensemble", "linear_response")


def make_surrogate(kind: str, chip: Any, *, steps: int | None = None, seed: int = 0) -> Any:
    """A fresh surrogate of ``kind`` for ``chip`` (its nominal model as the physics)."""
    import inspect

    from blacksat.surrogates import SURROGATES, GreyBox, Residual

    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    cls = SURROGATES[kind]
    opts: dict[str, Any] = {"seed": seed}
    if steps is not None:
        if "steps" not in inspect.signature(cls).parameters:
            raise ConfigError(f"a {kind} surrogate is fitted in closed form: it takes no --steps")
        opts["steps"] = steps
    if not cls.needs_physics:
        return cls(**opts)
    make = getattr(chip, "nominal_model", None)
    if not callable(make):
        raise ConfigError(
            f"kind {kind!r} starts from the device's nominal physics, which "
            f"{type(chip).__name__} does not offer (nominal_model()); a device without a "
            "physics model calibrates an 'ensemble'"
        )
    nominal = make(dtype=torch.float64)
    if kind == "greybox":
        return GreyBox(nominal, **opts)
    return Residual(GreyBox(nominal, **opts), **opts)


def report_path(out: Path) -> Path:
    """Where the JSON report of a surrogate saved at ``out`` goes (``FILE.json``)."""
    return out.with_name(out.name + ".json") if out.suffix != ".pt" else out.with_suffix(".json")


def calibrate_from_log(
    log_path: str | Path,
    device: Any,
    device_args: dict[str, Any],
    kind: str,
    out: str | Path,
    *,
    steps: int | None = None,
    seed: int = 0,
    log_device: str | None = None,
    identity: str | None = None,
    force: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit a ``kind`` surrogate of ``device(**device_args)`` (a registry name or a
    ``"package.module:callable"`` factory) on every query of the log (or of
    the identity ``log_device``), save it to ``out`` and its report to ``FILE.json``; returns
    the report.

    Before anything is fitted: ``out`` must be writable and, unless ``force``, neither it nor
    its report may exist; ``steps`` must be >= 1; and the log's device identities must be the
    device's: ``identity`` (a run's ``[log] device_id``) when given, else any identity of the
    form ``<registry name>-<seed>`` must name this device and seed (a log of ``mzi-1`` is not
    fitted for ``mzi`` seed 7). Identities of other forms (a lab instrument's) are accepted.
    ``progress``: a bar over the fit's steps on stderr.
    """
    from blacksat.outputs import prepare_file
    from blacksat.product.run_config import DeviceSpec
    from blacksat.querylog import QueryLog
    from blacksat.surrogates.files import FORMAT, save_surrogate

    path = Path(log_path)
    if not path.is_file():
        raise ConfigError(f"query log not found: {str(path)!r}")
    if not isinstance(device_args, dict):
        raise ConfigError(f"device arguments must be a JSON object, got {device_args!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"--steps must be an integer >= 1 (a fit needs steps), got {steps!r}")
    target = Path(out)
    prepare_file(target, force=force, also=[report_path(target)])
    args = dict(device_args)
    chip_seed = args.pop("seed", 0)
    if isinstance(chip_seed, bool) or not isinstance(chip_seed, int) or chip_seed < 0:
        raise ConfigError(f"the device seed must be an integer >= 0, got {chip_seed!r}")
    if isinstance(device, str):
        factory = device if ":" in device else ""
        spec = DeviceSpec(
            name="" if factory else device, seed=chip_seed, kwargs=args, factory=factory
        )
        chip = spec.build()
        label = spec.name
    else:  # a factory or an instance
        from blacksat.product.device_registry import make_device

        chip = make_device(device, seed=chip_seed, kwargs=args)
        factory, label = "", getattr(device, "__name__", type(chip).__name__)
    from blacksat.product.device_registry import shapes

    shapes(chip)
    t0 = time.perf_counter()
    with QueryLog(path, readonly=True) as log:
        known = log.devices()
        if log_device is not None and log_device not in known:
            raise ConfigError(f"the log holds no queries of {log_device!r}; it holds {known}")
        if not known:
            raise ConfigError(f"the query log {str(path)!r} holds no queries")
        check_identities(
            [log_device] if log_device is not None else known, device, chip_seed, identity
        )
        data = log.data(device=log_device)
    d = data.groups[0][0].shape[1]
    in_shape = tuple(data.groups[0][1].shape[1:])
    if d != chip.space.dim or in_shape != tuple(chip.input_shape):
        raise ConfigError(
            f"the log's queries have {d} controls and inputs {in_shape}, but the device "
            f"{device} {args} has {chip.space.dim} controls and inputs {tuple(chip.input_shape)}"
        )
    surrogate = make_surrogate(kind, chip, steps=steps, seed=seed)
    from blacksat.surrogates import Surrogate

    for part in surrogate.modules():
        if isinstance(part, Surrogate):
            part.progress = progress
    surrogate.fit(data)
    for part in surrogate.modules():
        if isinstance(part, Surrogate):
            part.progress = False
    rep = surrogate.report_
    from blacksat.surrogates import narrow_data_warning

    checks = list(getattr(surrogate, "checks_", []))
    warnings = [w for w in [narrow_data_warning(surrogate.coverage_, chip.space)] if w]
    contradicted = getattr(surrogate, "contradicted", None)
    for check in contradicted() if callable(contradicted) else ():
        warnings.append(f"the data contradicted an assumption: {check}")
    report = {
        "format": FORMAT,
        "kind": kind,
        "device": {"name": label, "seed": chip_seed, "kwargs": args, "factory": factory},
        "log": str(path),
        "log_device": log_device,
        "settings": data.n_settings,
        "fit": asdict(rep),
        "summary": str(rep),
        "coverage": {
            "spread": surrogate.coverage_.spread(chip.space),
            "settings": surrogate.coverage_.n_settings,
        },
        "checks": [{**asdict(c), "holds": c.holds} for c in checks],
        "warnings": warnings,
        "wall_seconds": time.perf_counter() - t0,
    }
    save_surrogate(
        surrogate,
        target,
        {"kind": kind, "device": report["device"], "space": chip.space.to_dict()},
    )
    report_path(target).write_text(json.dumps(report, indent=2))
    return report


def check_identities(
    identities: list[str], device: str, seed: int, identity: str | None = None
) -> None:
    """Refuse a log whose queries were recorded on another device than the one to fit.

    ``identity``: the identity the queries must carry (a run's ``[log] device_id``; its
    ``<identity>/evaluation`` queries too). Without it, an identity ``<name>-<seed>`` with a
    registered device name must be ``<device>-<seed>``."""
    from blacksat.devices import DEVICES

    def base(ident: str) -> str:
        return ident.split("/", 1)[0]

    if identity is not None:
        wrong = [i for i in identities if base(i) != identity]
        expected = f"the config's identity {identity!r}"
    else:
        pattern = re.compile(rf"^({'|'.join(map(re.escape, DEVICES))})-(\d+)$")
        wrong = []
        for ident in identities:
            m = pattern.match(base(ident))
            if m and (m.group(1) != device or int(m.group(2)) != seed):
                wrong.append(ident)
        expected = f"{device!r} seed {seed} ({device}-{seed})"
    if wrong:
        raise ConfigError(
            f"the log holds queries of {wrong[0]!r}, recorded on another device than "
            f"{expected}; give the device that produced the log (--config of its run, or "
            "--device and --device-args with its seed), or --log-device to choose queries"
        )


def load_surrogate(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """A surrogate saved by :func:`calibrate_from_log` and the device it was fitted for
    (``{"name", "seed", "kwargs", "factory", "space"}``; ``space``: the
    :class:`~blacksat.ParamSpace` it was fitted over, ``None`` in files written before it was
    kept). The device's nominal physics is rebuilt from that (for grey-box and residual
    surrogates); the file only gives tensors and JSON (``weights_only=True``), so loading it
    never executes code."""
    from blacksat.product.device_registry import device_model
    from blacksat.product.run_config import DeviceSpec
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
        name=device["name"] if not device.get("factory") else "",
        seed=device.get("seed", 0),
        kwargs=device.get("kwargs", {}),
        factory=device.get("factory", ""),
    )
    physics = device_model(spec.build(), "nominal")
    surrogate, _ = load_file(p, physics)
    info = dict(device)
    space = meta.get("space")  # absent from files written before spaces were kept
    info["space"] = None if space is None else ParamSpace.from_dict(space)
    return surrogate, info


__all__ = [
    "KINDS",
    "calibrate_from_log",
    "check_identities",
    "load_surrogate",
    "make_surrogate",
    "report_path",
]
