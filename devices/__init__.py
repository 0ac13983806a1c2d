"""Simulated physical neural network devices.

Each device is built from a seed and error levels, and exposes the true (hidden) device as a
:class:`blacksat.Device`, the nominal differentiable model a user would believe, the exact
differentiable model of the true chip, post-deployment perturbations, seeded readout noise and
drift, and ``K x B`` vectorized evaluation.

``DEVICES`` maps registry names to the device classes.
"""

from blacksat.devices.base import Nuisance, PhysicsModel, SimulatedDevice
from blacksat.devices.crossbar import Crossbar
from blacksat.devices.diffractive import DiffractiveNetwork
from blacksat.devices.hybrid import MZIHybrid
from blacksat.devices.mrr import MRRWeightBank
from blacksat.devices.mzi import MZIMesh
from blacksat.devices.twins import ErrorTwin, mzi_error_twin

DEVICES: dict[str, type[SimulatedDevice]] = {
    cls.name: cls for cls in (MZIMesh, MRRWeightBank, DiffractiveNetwork, MZIHybrid, Crossbar)
}

__all__ = [
    "DEVICES",
    "Crossbar",
    "DiffractiveNetwork",
    "ErrorTwin",
    "MRRWeightBank",
    "MZIHybrid",
    "MZIMesh",
    "Nuisance",
    "PhysicsModel",
    "SimulatedDevice",
    "mzi_error_twin",
]
