"""Surrogate files without pickle: the tensors of a fitted surrogate plus a JSON spec.

A file written by :func:`save_surrogate` is a ``torch.save`` of plain values only:
``{"format", "spec": JSON text, "meta": JSON text, "state": {name: tensor}}``. The spec names
the kind (:data:`KINDS`), its constructor arguments (:meth:`Surrogate.get_config`), the sizes of
its fitted parts (:meth:`Surrogate.fitted_shapes`), its fit report and, for a residual, its
base's spec. :func:`load_surrogate` reads it with ``torch.load(weights_only=True)`` (no code runs
while reading), rebuilds the surrogate from the spec around a physics model the caller supplies
(e.g. the device's ``nominal_model()``: the physics is code, not data) and loads the tensors
(``strict``: every tensor must fit).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from blacksat.errors import ConfigError
from blacksat.surrogates.base import Coverage, FitReport, Surrogate
from blacksat.surrogates.ensemble import Ensemble
from blacksat.surrogates.greybox import GreyBox
from blacksat.surrogates.linear_response import LinearResponse
from blacksat.surrogates.residual import Residual

FORMAT = "blacksat.surrogate/3"
#: the kinds a file can hold
KINDS: dict[str, type[Surrogate]] = {
    "greybox": GreyBox,
    "residual": Residual,
    "ensemble": Ensemble,
    "linear_response": LinearResponse,
}
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _kind(surrogate: Surrogate) -> str:
    for name, cls in KINDS.items():
        if type(surrogate) is cls:
            return name
    raise ConfigError(f"cannot save a {type(surrogate).__name__}; kinds: {sorted(KINDS)}")


def surrogate_spec(surrogate: Surrogate) -> dict[str, Any]:
    """The JSON description of a surrogate (without its tensors)."""
    rep = surrogate.report_
    spec: dict[str, Any] = {
        "kind": _kind(surrogate),
        "config": surrogate.get_config(),
        "shapes": surrogate.fitted_shapes(),
        "report": None if rep is None else dataclasses.asdict(rep),
        "coverage": None if surrogate.coverage_ is None else surrogate.coverage_.to_dict(),
        "checks": [dataclasses.asdict(c) for c in getattr(surrogate, "checks_", [])],
        "base": None,
    }
    base = getattr(surrogate, "base", None)
    if isinstance(surrogate, Residual) and isinstance(base, Surrogate):
        spec["base"] = surrogate_spec(base)
    return spec


def build_surrogate(spec: Mapping[str, Any], physics: nn.Module | None) -> Surrogate:
    """A surrogate of the structure ``spec`` describes (fitted parts allocated, values not
    loaded), around the physics model ``physics`` where its kind needs one."""
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"unknown surrogate kind {kind!r}; known: {sorted(KINDS)}")
    config = dict(spec.get("config") or {})
    if "dtype" in config:
        if config["dtype"] not in _DTYPES:
            raise ConfigError(f"unknown surrogate dtype {config['dtype']!r}")
        config["dtype"] = _DTYPES[config["dtype"]]
    for key in ("hidden", "params"):
        if isinstance(config.get(key), list):
            config[key] = tuple(config[key])
    try:
        if not KINDS[kind].needs_physics:
            out: Surrogate = KINDS[kind](**config)
        else:
            if physics is None:
                raise ConfigError(f"a {kind} surrogate needs the physics model it was fitted on")
            if kind == "greybox":
                out = GreyBox(physics, **config)
            else:
                base = spec.get("base")
                inner = physics if base is None else build_surrogate(base, physics)
                out = Residual(inner, **config)
    except TypeError as exc:
        raise ConfigError(f"the surrogate spec does not fit {kind}: {exc}") from None
    out.allocate(dict(spec.get("shapes") or {}))
    if spec.get("report") is not None:
        out.report_ = FitReport(**spec["report"])
    if spec.get("coverage") is not None:
        out.coverage_ = Coverage.from_dict(spec["coverage"])
    if spec.get("checks") and hasattr(out, "checks_"):
        from blacksat.surrogates.linear_response import StructureCheck

        out.checks_ = [StructureCheck(**c) for c in spec["checks"]]
    return out


def save_surrogate(
    surrogate: Surrogate, path: str | Path, meta: Mapping[str, Any] | None = None
) -> Path:
    """Write ``surrogate`` (fitted) and the JSON values ``meta`` (e.g. the device it was fitted
    for) to ``path``."""
    if surrogate.report_ is None:
        raise ConfigError("the surrogate is not fitted: call fit(data) before saving it")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "spec": json.dumps(surrogate_spec(surrogate)),
        "meta": json.dumps(dict(meta or {})),
        "state": {k: v.detach().clone() for k, v in surrogate.state_dict().items()},
    }
    torch.save(payload, target)
    return target


def read_surrogate_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any], dict]:
    """``(spec, meta, state)`` of a surrogate file, read with ``weights_only=True``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no surrogate file at {str(p)!r}")
    try:
        saved = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign, damaged or pickled file: say which
        detail = (str(exc).splitlines() or [""])[0][:160]
        raise ConfigError(
            f"cannot read surrogate {str(p)!r}: {type(exc).__name__}: {detail}"
        ) from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ConfigError(f"{str(p)!r} is not a blacksat surrogate file (format {FORMAT})")
    try:
        spec, meta = json.loads(saved["spec"]), json.loads(saved["meta"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{str(p)!r} holds a damaged surrogate spec: {exc}") from None
    return spec, meta, saved.get("state", {})


def load_surrogate(path: str | Path, physics: nn.Module | None = None) -> tuple[Surrogate, dict]:
    """The fitted surrogate saved at ``path`` and its ``meta``; ``physics`` is the model the
    surrogate was built around (for ``greybox`` and ``residual``)."""
    spec, meta, state = read_surrogate_file(path)
    surrogate = build_surrogate(spec, physics)
    try:
        surrogate.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = (str(exc).splitlines() or [""])[0][:160]
        raise ConfigError(f"{str(path)!r} does not fit its spec: {detail}") from None
    if surrogate.report_ is None:
        raise ConfigError(f"{str(path)!r} holds no fitted surrogate")
    return surrogate, meta


__all__ = [
    "FORMAT",
    "KINDS",
    "build_surrogate",
    "load_surrogate",
    "read_surrogate_file",
    "save_surrogate",
    "surrogate_spec",
]
