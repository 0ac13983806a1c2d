"""Simulated physical neural network devices.

Each device is built from a seed and error levels, and exposes the true (hidden) device as a
:class:`blacksat.Device`, the nominal differentiable model a user would believe, the exact
differentiable model of the true chip, post-deployment perturbations, seeded readout noise and
drift, and ``K x B`` vectorized evaluation.
"""

from blacksat.devices.base import Nuisance, PhysicsModel, SimulatedDevice

__all__ = ["Nuisance", "PhysicsModel", "SimulatedDevice"]
