"""Safety before the device, as properties: for any estimator (zeroth-order, physics-aware, SAT
with every perturbation model, a model-only autograd ascent), any starting point in the box
(faces included), any radius and any step size, no control setting outside the device's
ParamSpace ever reaches the device. The same for the nevergrad objective, whatever it is asked
to evaluate.

Each example trains for a few steps with the real :class:`~blacksat.Trainer`; the device is a
recording double that keeps every setting it received (and each one outside the space), behind
a meter with ``policy="raise"`` (so an estimator that even *asked* for an out-of-bounds setting
would fail) or with nothing in between (so the estimator's own clipping is what protects).
"""

import functools

import numpy as np
import pytest
import torch
from doubles import LinearDevice, RecordingDevice
from hypothesis import given, settings
from hypothesis import strategies as st

from blacksat import ParamSpace
from blacksat.data import load_iris
from blacksat.errors import ShapeError
from blacksat.estimators import Autograd, PhysicsAware, ZerothOrder
from blacksat.meter import MeteredDevice
from blacksat.ng.adapter import DeviceObjective
from blacksat.perturbations import (
    Adaptive,
    CommonMode,
    L2Ball,
    NuisanceModel,
    PerControl,
    Subspace,
)
from blacksat.sat import FreeAscent, sat
from blacksat.task import Task
from blacksat.trainer import TrainConfig, Trainer

D = 12  # LinearDevice(4, 3): iris features -> 3 class scores
LOWER = np.linspace(-1.0, -0.2, D)
UPPER = np.linspace(0.1, 1.5, D)
SPACE = ParamSpace(LOWER, UPPER)


@functools.lru_cache(maxsize=1)
def iris():
    return load_iris(seed=0)


def linear_model(theta, x):
    return x @ theta.reshape(*theta.shape[:-1], 4, 3)


def device():
    dev = LinearDevice(4, 3)
    dev.space = SPACE
    return RecordingDevice(dev)


PERTURBATIONS = {
    "l2": lambda r: L2Ball(r),
    "adaptive": lambda r: Adaptive(r),
    "per_control": lambda r: PerControl(r),
    "per_control_gauss": lambda r: PerControl(r, kind="gaussian"),
    "common_mode": lambda r: CommonMode(r, groups=[np.arange(6), np.arange(6, 12)]),
    "subspace": lambda r: Subspace(np.eye(D)[:, :3] + 0.1, r),
    "nuisance": lambda r: NuisanceModel({"temperature": (-r, r)}),
}
KINDS = ["zo", "zo_forward_coord", "physics_aware", *PERTURBATIONS, "autograd_ascent", "free"]


def estimator(kind, source, task, rho, sigma, mode):
    family = lambda temperature=0.0: source  # noqa: E731  (nuisance: same device, recorded)
    zo = ZerothOrder(source, task, q=3, sigma=sigma, family=family)
    if kind == "zo":
        return zo
    if kind == "zo_forward_coord":
        return ZerothOrder(
            source, task, q=4, sigma=sigma, directions="coordinate", scheme="forward"
        )
    if kind == "physics_aware":
        return PhysicsAware(source, linear_model, task)
    if kind == "autograd_ascent":  # model-only ascent, device descent
        return sat(zo, Autograd(linear_model, task, space=SPACE), rho=rho)
    if kind == "free":
        return sat(zo, FreeAscent(), rho=rho)
    return sat(zo, perturbation=PERTURBATIONS[kind](rho), mode=mode, draws=2)


corner = st.sampled_from(["lower", "upper", "inside", "mixed"])


def start(where, u):
    if where == "lower":
        return LOWER.copy()
    if where == "upper":
        return UPPER.copy()
    t = np.clip(LOWER + np.asarray(u) * (UPPER - LOWER), LOWER, UPPER)
    if where == "mixed":
        t[::2] = np.where(np.asarray(u)[::2] > 0.5, UPPER[::2], LOWER[::2])
    return t


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=6)
@given(
    metered=st.booleans(),
    where=corner,
    u=st.lists(st.floats(0, 1), min_size=D, max_size=D),
    rho=st.floats(0.0, 5.0),
    sigma=st.floats(1e-3, 2.0),
    lr=st.floats(1e-3, 1e3),
    optimizer=st.sampled_from(["adam", "sgd"]),
    mode=st.sampled_from(["worst", "average"]),
)
def test_no_setting_outside_the_space_ever_reaches_the_device(
    kind, metered, where, u, rho, sigma, lr, optimizer, mode
):
    rec = device()
    source = MeteredDevice(rec, policy="raise") if metered else rec
    task = Task(iris(), input_shape=(4,)).to(torch.float64)
    est = estimator(kind, source, task, rho, sigma, mode)
    config = TrainConfig(
        optimizer=optimizer, lr=lr, max_steps=3, batch_size=16, seed=0, progress=False
    )
    meter = source if metered else None
    Trainer(task, est, SPACE, config, meter=meter).fit(start(where, u))
    assert rec.received, "the device was never queried"
    assert rec.outside == []
    assert rec.dtypes == {np.dtype(np.float64)}


finite = st.floats(-1e6, 1e6)


@given(
    rows=st.lists(st.lists(finite, min_size=D, max_size=D), min_size=1, max_size=5),
    poison=st.sampled_from([None, np.nan, np.inf, -np.inf]),
)
def test_the_nevergrad_objective_never_sends_an_out_of_bounds_setting(rows, poison):
    rec = device()
    meter = MeteredDevice(rec, policy="raise")
    obj = DeviceObjective(Task(iris(), input_shape=(4,)).to(torch.float64), meter, batch_size=8)
    thetas = np.array(rows)
    if poison is not None:
        thetas[0, 0] = poison
    losses = obj.losses(thetas)  # never raises for NaN/inf candidates: they get +inf, unsent
    assert losses.shape == (len(rows),) and losses.dtype == np.float64
    assert len(rec.received) == len(rows) - (poison is not None)
    if poison is not None:
        assert losses[0] == np.inf
    assert rec.outside == []
    sent = len(rec.received)
    with pytest.raises(ShapeError, match="shape"):  # a candidate of the wrong size: refused
        obj.losses(thetas[:, :-1])
    assert len(rec.received) == sent and rec.outside == []
