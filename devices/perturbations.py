"""The perturbation models of the simulated devices' physics.

Each simulated device ships the geometry of its own disturbances
(:meth:`~blacksat.devices.SimulatedDevice.perturbation_models`), named by what they mean and
covering the rated ranges of its nuisance parameters, e.g. for a micro-ring bank the common-mode
``"thermal"`` shift of every control and the ``"temperature"`` nuisance itself. SAT trains flat
against them and robustness sweeps evaluate them (:mod:`blacksat.perturbations`).

This module imports no device class: it reads ``device.nuisances`` (a tuple of
:class:`~blacksat.devices.base.Nuisance`) only.
"""

from __future__ import annotations

from typing import Any

from blacksat.errors import ConfigError
from blacksat.perturbations import NuisanceModel, PerturbationModel


def rated_nuisances(device: Any, *names: str, **options: Any) -> NuisanceModel:
    """A :class:`~blacksat.perturbations.NuisanceModel` over the rated ranges of ``device``'s
    nuisance parameters ``names`` (all of them if none), centred on their nominal defaults.

    ``options`` go to :class:`~blacksat.perturbations.NuisanceModel` (``steps``,
    ``step_size``, ``fd``, ``method``). Unknown names raise :class:`ConfigError`.
    """
    known = {n.name: n for n in device.nuisances}
    if not known:
        raise ConfigError(f"{type(device).__name__} exposes no nuisance parameters")
    unknown = set(names) - set(known)
    if unknown:
        raise ConfigError(
            f"{type(device).__name__} has no nuisance parameter(s) {sorted(unknown)}; "
            f"known: {sorted(known)}"
        )
    chosen = [known[n] for n in names] if names else list(known.values())
    return NuisanceModel(
        {n.name: tuple(n.rated) for n in chosen},
        center={n.name: n.default for n in chosen},
        **options,
    )


def rated_extent(device: Any, name: str) -> float:
    """The largest deviation of nuisance ``name`` from its default over its rated range
    (e.g. 2 K for a temperature rated -2..2 K)."""
    for n in device.nuisances:
        if n.name == name:
            return max(abs(n.rated[0] - n.default), abs(n.rated[1] - n.default))
    raise ConfigError(f"{type(device).__name__} has no nuisance parameter {name!r}")


def physics_perturbations(device: Any) -> dict[str, PerturbationModel]:
    """``device``'s perturbation models by name: its ``perturbation_models()`` if it has one
    (every simulated device does), else one rated-range nuisance model per nuisance
    parameter."""
    method = getattr(device, "perturbation_models", None)
    if callable(method):
        return dict(method())
    return {n.name: rated_nuisances(device, n.name) for n in getattr(device, "nuisances", ())}


__all__ = ["physics_perturbations", "rated_extent", "rated_nuisances"]
