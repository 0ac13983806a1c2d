"""Devices by name, by factory path or as objects: how every entry point resolves a device.

A device can be given

- by **registry name**: the simulated devices of :mod:`blacksat.devices` and every device other
  packages register under the entry-point group ``blacksat.devices`` (a lab's driver package
  declares, in its ``pyproject.toml``::

      [project.entry-points."blacksat.devices"]
      bench-7 = "labdriver.bench:make_device"

  and ``name = "bench-7"`` then works wherever a built-in name does);
- by **factory path** ``"package.module:callable"`` (the module importable from the working
  directory or the environment), called with keyword arguments;
- as a :class:`~blacksat.Device` **instance**, or a **factory** (any callable returning one).

Errors are :class:`~blacksat.errors.ConfigError` s on one line naming what was expected: a
factory path that does not import, a factory that raises, an object that is not a device, a
device without shapes where a task needs them.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from blacksat.device import device_shapes as shapes
from blacksat.errors import ConfigError
from blacksat.space import ParamSpace

ENTRY_POINT_GROUP = "blacksat.devices"


def _entry_points() -> dict[str, Any]:
    """The entry points of :data:`ENTRY_POINT_GROUP` by name (not loaded)."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def registered() -> dict[str, Any]:
    """Every registered device name -> its class or factory (built-ins first; an entry point
    that fails to load is left out of this listing and raises when asked for by name)."""
    from blacksat.devices import DEVICES

    out: dict[str, Any] = dict(DEVICES)
    for name, ep in _entry_points().items():
        if name in out:
            continue  # a built-in name cannot be taken over
        try:
            out[name] = ep.load()
        except Exception:  # an unloadable entry point raises when asked for by name
            continue
    return out


def lookup(name: str) -> Any:
    """The class or factory registered as ``name``."""
    from blacksat.devices import DEVICES

    if name in DEVICES:
        return DEVICES[name]
    eps = _entry_points()
    if name in eps:
        try:
            return eps[name].load()
        except Exception as exc:
            raise ConfigError(
                f"device {name!r} (entry point {eps[name].value!r}) does not load: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    known = sorted({*DEVICES, *eps})
    raise ConfigError(
        f"unknown device {name!r}; known: {known} (or give a factory 'package.module:callable')"
    )


def load_factory(path: str) -> Callable[..., Any]:
    """The callable named by ``"package.module:callable"`` (``callable`` may be dotted); the
    working directory is searched before the environment."""
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise ConfigError(f"a device factory must be 'package.module:callable', got {path!r}")
    mod_name, attr = path.split(":")
    cwd = str(Path.cwd())
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(mod_name)
    except Exception as exc:
        raise ConfigError(
            f"device factory {path!r}: module {mod_name!r} does not import "
            f"({type(exc).__name__}: {exc})"
        ) from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"device factory {path!r}: {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"device factory {path!r} is not callable ({type(obj).__name__})")
    return obj


def accepts(factory: Callable[..., Any], name: str) -> bool:
    """Whether ``factory`` takes keyword argument ``name`` (or any keyword)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return True
    p = params.get(name)
    return p is not None and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)


def check_device(obj: Any, what: str = "device") -> Any:
    """``obj`` if it satisfies the :class:`~blacksat.Device` protocol, else a one-line
    :class:`ConfigError` saying what is missing."""
    if not isinstance(getattr(obj, "space", None), ParamSpace):
        raise ConfigError(
            f"{what} must be a Device with a `space` (ParamSpace) and query/query_many; got "
            f"{type(obj).__name__} without a ParamSpace `space`"
        )
    for method in ("query", "query_many"):
        if not callable(getattr(obj, method, None)):
            raise ConfigError(f"{what} {type(obj).__name__} has no {method}() method")
    return obj


def call_factory(factory: Callable[..., Any], kwargs: Mapping[str, Any], label: str) -> Any:
    """``factory(**kwargs)``, checked to be a device; a raising factory is a ConfigError."""
    try:
        dev = factory(**dict(kwargs))
    except ConfigError as exc:
        raise ConfigError(f"device factory {label}: {exc}") from None
    except Exception as exc:
        raise ConfigError(f"device factory {label} raised {type(exc).__name__}: {exc}") from None
    return check_device(dev, f"device factory {label} returned an object that")


def make_device(
    device: Any, *, seed: int | None = None, kwargs: Mapping[str, Any] | None = None
) -> Any:
    """A device from a registry name, a ``"package.module:callable"`` path, a factory or an
    instance. ``seed`` (and ``kwargs``) are passed to a factory that accepts them; an instance
    is returned as it is (then neither may be given)."""
    kw = dict(kwargs or {})
    if isinstance(device, str):
        factory = load_factory(device) if ":" in device else lookup(device)
        label = repr(device)
    elif inspect.isclass(device) or (callable(device) and not hasattr(device, "query")):
        factory, label = device, getattr(device, "__name__", type(device).__name__)
    else:
        if kw:
            raise ConfigError("device arguments cannot be given with a device instance")
        return check_device(device)
    if seed is not None:
        if "seed" in kw:
            raise ConfigError("give the device seed once (seed=), not also in its arguments")
        if accepts(factory, "seed"):
            kw["seed"] = int(seed)
    return call_factory(factory, kw, label)


def check_task_fits(task: Any, device: Any) -> None:
    """A one-line ConfigError when ``task`` encodes inputs of another shape than ``device``
    takes, or the device declares no shapes."""
    in_shape, _ = shapes(device)
    got = tuple(int(v) for v in getattr(task, "input_shape", ()))
    if got != in_shape:
        raise ConfigError(
            f"the task encodes inputs of shape {got}, but the device "
            f"{type(device).__name__} expects {in_shape}"
        )


def describe(device: Any) -> dict[str, Any]:
    """A JSON-friendly description of any device: controls, bounds, shapes, what it declares,
    and the names of its perturbation models."""
    if callable(getattr(device, "describe", None)):
        base = dict(device.describe())
    else:
        base = {"name": getattr(device, "name", type(device).__name__)}
    space = device.space
    base.setdefault("class", type(device).__name__)
    base.setdefault("controls", space.dim)
    base.setdefault("bounds", [float(space.lower.min()), float(space.upper.max())])
    for name in ("input_shape", "output_shape"):
        s = getattr(device, name, None)
        base.setdefault(name, None if s is None else [int(v) for v in s])
    base["reprograms_on_query"] = bool(getattr(device, "reprograms_on_query", False))
    base["output_kind"] = getattr(device, "output_kind", None)
    rng = getattr(device, "input_range", None)
    base["input_range"] = None if rng is None else [float(v) for v in rng]
    models = getattr(device, "perturbation_models", None)
    try:
        base["perturbation_models"] = sorted(models()) if callable(models) else []
    except Exception as exc:  # a description never fails
        base["perturbation_models"] = f"unavailable ({type(exc).__name__})"
    return base


def device_model(chip: Any, kind: str) -> Any:
    """The device's ``"nominal"`` or ``"exact"`` differentiable model (float64), or ``None``
    when the device offers none (a lab's own device)."""
    make = getattr(chip, f"{kind}_model", None)
    if not callable(make):
        return None
    import torch

    return make(dtype=torch.float64)


def device_perturbations(chip: Any, name: str | None = None) -> dict[str, Any]:
    """The device's perturbation models by name, plus a measured one when ``name`` is the path
    of a ``blacksat characterize`` model file (``*.json``)."""
    method = getattr(chip, "perturbation_models", None)
    models = dict(method()) if callable(method) else {}
    if name is not None and name not in models and name.endswith(".json"):
        from blacksat.characterize import load_model

        models[name] = load_model(name, chip.space.dim)
    return models


def fresh_builder(spec: Any, chip: Any) -> Any:
    """``seed -> another chip of the same process`` for a device built from ``spec`` (a
    :class:`~blacksat.product.run_config.DeviceSpec`), or ``None`` when the device cannot make
    one (a factory that takes no seed)."""
    if callable(getattr(chip, "fresh_chip", None)):
        return chip.fresh_chip
    factory = load_factory(spec.factory) if spec.factory else lookup(spec.name)
    return (lambda s: spec.build(seed=s)) if accepts(factory, "seed") else None


__all__ = [
    "ENTRY_POINT_GROUP",
    "accepts",
    "call_factory",
    "check_device",
    "check_task_fits",
    "describe",
    "device_model",
    "device_perturbations",
    "fresh_builder",
    "load_factory",
    "lookup",
    "make_device",
    "registered",
    "shapes",
]
