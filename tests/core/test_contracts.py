"""Contracts every part of blacksat keeps: no global RNG is touched, dtypes are preserved and
the caller's arrays are not mutated, and every public constructor rejects invalid
hyperparameters with a ConfigError that names the offending parameter."""

from __future__ import annotations

import functools
import random
import warnings

import numpy as np
import pytest
import torch
from doubles import FlakyDevice, LinearDevice, NonFiniteDevice, RecordingDevice

from blacksat import ConfigError, ParamSpace
from blacksat.data import load_iris
from blacksat.devices import DiffractiveNetwork, MRRWeightBank, MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.estimators import Autograd, PhysicsAware, ZerothOrder
from blacksat.meter import Budget, MeteredDevice
from blacksat.ng.adapter import DeviceObjective, minimize
from blacksat.nonfinite import NonFinitePolicy
from blacksat.objective import StepContext
from blacksat.perturbations import (
    Adaptive,
    Combined,
    CommonMode,
    L2Ball,
    NuisanceModel,
    PerControl,
    Subspace,
)
from blacksat.retry import RetryPolicy
from blacksat.saf import TrajectoryLoss
from blacksat.sat import sat
from blacksat.task import Task
from blacksat.trainer import TrainConfig, Trainer


@functools.lru_cache(maxsize=1)
def iris():
    return load_iris(seed=0)


def mzi_task():
    return default_task(MZIMesh(n_modes=4), iris()).to(torch.float64)


def linear_model(theta, x):
    return x @ theta.reshape(*theta.shape[:-1], 4, 3).to(x.dtype)


def global_rng_state():
    return (
        torch.random.get_rng_state().clone(),
        np.random.get_state(),  # noqa: NPY002
        random.getstate(),
    )


def assert_same_global_state(before):
    t, n, r = global_rng_state()
    assert torch.equal(t, before[0])
    assert n[0] == before[1][0] and np.array_equal(n[1], before[1][1]) and n[2:] == before[1][2:]
    assert r == before[2]


# ---------------------------------------------------------------------- global RNGs
def test_devices_estimators_meters_and_training_leave_the_global_rngs_untouched():
    before = global_rng_state()
    # simulated devices with readout noise and drift, batched and single
    for cls in (MZIMesh, MRRWeightBank, DiffractiveNetwork):
        kw = {"n_modes": 4} if cls is MZIMesh else {}
        dev = cls(**kw) if cls is not DiffractiveNetwork else cls()
        x = np.random.default_rng(0).uniform(0, 1, (2, *dev.input_shape))
        dev.query_many(dev.space.sample(np.random.default_rng(1), 2), x)
        dev.query(dev.space.center, x)
    # estimators (with a retrying meter and a non-finite policy) and SAT models
    chip = MZIMesh(n_modes=4, noise=0.01)
    meter = MeteredDevice(FlakyDevice(chip, failures=1), retry=RetryPolicy(backoff=0.0))
    task = mzi_task()
    batch = task.batch("train", np.arange(16))
    ctx = StepContext(np.random.default_rng(0))
    theta = torch.as_tensor(chip.space.center)
    zo = ZerothOrder(meter, task, q=2)
    estimators = [
        NonFinitePolicy(zo, "skip"),
        PhysicsAware(meter, chip.nominal_model(torch.float64), task),
        Autograd(chip.nominal_model(torch.float64), task),
    ]
    for model in (L2Ball(0.1), Adaptive(0.1), PerControl(0.1, kind="gaussian"), CommonMode(0.1)):
        estimators += [sat(zo, perturbation=model), sat(zo, perturbation=model, mode="average")]
    for est in estimators:
        est(theta, batch, ctx)
    # a training run with a schedule and SAF, and a nevergrad run
    config = TrainConfig(lr=0.05, max_steps=3, batch_size=16, schedule="cosine", progress=False)
    Trainer(task, sat(zo, rho=0.05), chip.space, config, meter=meter, saf=TrajectoryLoss()).fit(
        chip.space.center
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("OnePlusOne", "BlacksatZOSAT"):
            obj = DeviceObjective(task, MeteredDevice(chip), batch_size=8)
            minimize(obj, name, budget=16, num_workers=4, seed=0)
    assert_same_global_state(before)


# ---------------------------------------------------------------------- dtypes, no mutation
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_estimates_are_float64_and_inputs_are_never_mutated(dtype):
    rec = RecordingDevice(LinearDevice(4, 3))
    task = Task(iris(), input_shape=(4,)).to(dtype)
    meter = MeteredDevice(rec)
    zo = ZerothOrder(meter, task, q=2, sigma=0.05)
    batch = task.batch("train", np.arange(8))
    assert batch.features.dtype == dtype
    theta = torch.linspace(-0.5, 0.5, 12, dtype=torch.float64)
    keep = theta.clone()
    for est in (
        zo,
        PhysicsAware(meter, linear_model, task),
        Autograd(linear_model, task),
        sat(zo, rho=0.1),
        sat(zo, perturbation=CommonMode(0.1), mode="average"),
        NonFinitePolicy(zo),
    ):
        e = est(theta, batch, StepContext(np.random.default_rng(0)))
        assert e.grad.dtype == torch.float64 and e.grad.shape == (12,)
        assert isinstance(e.loss, float)
        assert torch.equal(theta, keep)
        losses, _ = est.evaluate(theta[None], batch, StepContext(np.random.default_rng(0)))
        assert losses.dtype == torch.float64 and losses.shape == (1,)
    assert rec.dtypes == {np.dtype(np.float64)}


def test_meter_readings_are_float64_and_settings_are_copied():
    m = MeteredDevice(LinearDevice())
    t32 = np.full(6, 0.25, dtype=np.float32)
    x = np.ones((2, 3), dtype=np.float32)
    y = m.query(t32, x)
    assert y.dtype == np.float64 and t32.dtype == np.float32 and np.all(t32 == 0.25)
    assert m.query_many(np.stack([t32, t32]), x).dtype == np.float64


def test_training_returns_float64_controls_and_keeps_theta0():
    task = Task(iris(), input_shape=(4,)).to(torch.float32)
    est = Autograd(linear_model, task)
    theta0 = np.linspace(-0.5, 0.5, 12).astype(np.float32)
    keep = theta0.copy()
    config = TrainConfig(max_steps=2, batch_size=8, progress=False)
    res = Trainer(task, est, ParamSpace.box(12, -1, 1), config).fit(theta0)
    assert res.theta.dtype == np.float64 and res.state.theta.dtype == torch.float64
    assert np.array_equal(theta0, keep)


# ---------------------------------------------------------------------- constructors x bad values
def _dev():
    return LinearDevice(4, 3)


def _zo(**kw):
    return lambda: ZerothOrder(_dev(), Task(iris(), input_shape=(4,)), **kw)


def _ng(**kw):
    def build():
        obj = DeviceObjective(mzi_task(), MeteredDevice(MZIMesh(n_modes=4)), batch_size=4)
        minimize(obj, **{"optimizer": "OnePlusOne", "budget": 4, **kw})

    return build


def _trainer(**kw):
    task = Task(iris(), input_shape=(4,))
    est = Autograd(linear_model, task)
    args = {"task": task, "estimator": est, "space": ParamSpace.box(12, -1, 1), **kw}
    return lambda: Trainer(**args)


BAD = [
    ("ParamSpace.lower>upper", "upper < lower", lambda: ParamSpace([1.0], [0.0])),
    ("ParamSpace.nan", "finite", lambda: ParamSpace([np.nan], [1.0])),
    ("ParamSpace.2d", "1-D", lambda: ParamSpace(np.zeros((2, 2)), np.ones((2, 2)))),
    ("ParamSpace.box.dim", "dim", lambda: ParamSpace.box(0, 0, 1)),
    ("ParamSpace.levels", "levels", lambda: ParamSpace.box(2, 0, 1, levels=[0.5, 2.0])),
    ("ParamSpace.names", "names", lambda: ParamSpace.box(2, 0, 1, names=["a"])),
    ("Budget.samples", "samples", lambda: Budget(samples=-1)),
    ("Budget.reconf", "reconfigurations", lambda: Budget(reconfigurations=2.5)),
    ("Meter.max_samples", "samples", lambda: MeteredDevice(_dev(), max_samples=-3)),
    ("Meter.policy", "policy", lambda: MeteredDevice(_dev(), policy="wrap")),
    ("Meter.retry", "retry", lambda: MeteredDevice(_dev(), retry=3)),
    ("Meter.device", "space", lambda: MeteredDevice(object())),
    ("Retry.max_retries", "max_retries", lambda: RetryPolicy(max_retries=-1)),
    ("Retry.backoff", "backoff", lambda: RetryPolicy(backoff=float("nan"))),
    ("Retry.factor", "factor", lambda: RetryPolicy(factor=0.0)),
    ("Retry.retry_on", "retry_on", lambda: RetryPolicy(retry_on=(str,))),
    ("NonFinite.mode", "on_nonfinite", lambda: NonFinitePolicy(_zo()(), "ignore")),
    ("NonFinite.max", "max_consecutive", lambda: NonFinitePolicy(_zo()(), max_consecutive=0)),
    ("NonFinite.penalty", "penalty", lambda: NonFinitePolicy(_zo()(), penalty=float("nan"))),
    ("ZO.q", "q", _zo(q=0)),
    ("ZO.q_bool", "q", _zo(q=True)),
    ("ZO.sigma", "sigma", _zo(sigma=0.0)),
    ("ZO.sigma_nan", "sigma", _zo(sigma=float("nan"))),
    ("ZO.directions", "directions", _zo(directions="orthogonal")),
    ("ZO.scheme", "scheme", _zo(scheme="backward")),
    ("ZO.q>d", "q=13", _zo(q=13, directions="coordinate")),
    ("ZO.device", "device", lambda: ZerothOrder(object(), Task(iris(), input_shape=(4,)))),
    ("PA.model", "model", lambda: PhysicsAware(_dev(), 3, Task(iris(), input_shape=(4,)))),
    ("Autograd.model", "model", lambda: Autograd("f", Task(iris(), input_shape=(4,)))),
    ("sat.none", "rho", lambda: sat(_zo()())),
    ("sat.rho_neg", "rho", lambda: sat(_zo()(), rho=-0.1)),
    ("sat.rho_nan", "rho", lambda: sat(_zo()(), rho=float("nan"))),
    ("sat.both", "either", lambda: sat(_zo()(), rho=0.1, perturbation=L2Ball(0.1))),
    ("sat.mode", "mode", lambda: sat(_zo()(), rho=0.1, mode="best")),
    ("sat.draws", "draws", lambda: sat(_zo()(), rho=0.1, draws=0)),
    ("sat.ascent", "ascent", lambda: sat(_zo()(), ascent=object(), rho=0.1)),
    ("L2Ball", "rho", lambda: L2Ball(-1.0)),
    ("L2Ball.inf", "rho", lambda: L2Ball(float("inf"))),
    ("Adaptive.eta", "eta", lambda: Adaptive(0.1, eta=-1.0)),
    ("PerControl.kind", "kind", lambda: PerControl(0.1, kind="laplace")),
    ("PerControl.mask", "mask", lambda: PerControl(0.1, mask=[2, 3])),
    ("CommonMode.radius", "radius", lambda: CommonMode(float("nan"))),
    ("CommonMode.groups", "group", lambda: CommonMode(0.1, groups=[[]])),
    ("CommonMode.repeat", "repeated", lambda: CommonMode(0.1, groups=[[0, 0]])),
    ("Subspace.rank", "basis", lambda: Subspace(np.zeros((3, 0)), 0.1)),
    ("Subspace.dependent", "dependent", lambda: Subspace(np.ones((3, 2)), 0.1)),
    ("Nuisance.empty", "ranges", lambda: NuisanceModel({})),
    ("Nuisance.range", "range", lambda: NuisanceModel({"t": (1.0, 0.0)})),
    ("Combined.empty", "at least one", lambda: Combined()),
    ("SAF.lam", "lam", lambda: TrajectoryLoss(lam=-1.0)),
    ("SAF.lag", "lag", lambda: TrajectoryLoss(lag=0)),
    ("TrainConfig.lr", "lr", lambda: TrainConfig(lr=-1.0)),
    ("TrainConfig.batch", "batch_size", lambda: TrainConfig(batch_size=0)),
    ("Trainer.config", "config", _trainer(config={"lr": 0.1})),
    ("Trainer.space", "space", _trainer(space=(-1, 1))),
    ("Objective.meter", "MeteredDevice", lambda: DeviceObjective(mzi_task(), MZIMesh(n_modes=4))),
    (
        "Objective.batch",
        "batch_size",
        lambda: DeviceObjective(mzi_task(), MeteredDevice(MZIMesh(n_modes=4)), batch_size=0),
    ),
    ("minimize.budget", "budget", _ng(budget=0)),
    ("minimize.workers", "num_workers", _ng(num_workers=0)),
    ("minimize.optimizer", "unknown", _ng(optimizer="NoSuchOptimizer")),
    ("MZI.n_modes", "n_modes", lambda: MZIMesh(n_modes=1)),
    ("MZI.noise", "noise", lambda: MZIMesh(n_modes=4, noise=-0.1)),
    ("MZI.detection", "detection", lambda: MZIMesh(n_modes=4, detection="phase")),
    ("MRR.linewidth", "linewidth", lambda: MRRWeightBank(linewidth=0.0)),
    ("MRR.activation", "activation", lambda: MRRWeightBank(activation="relu6")),
    ("Diffractive.seed", "seed", lambda: DiffractiveNetwork(seed=-1)),
]


@pytest.mark.parametrize("build,needle", [(b, n) for _, n, b in BAD], ids=[i for i, _, _ in BAD])
def test_constructors_reject_invalid_hyperparameters(build, needle):
    with pytest.raises(ConfigError) as info:
        build()
    assert needle.lower() in str(info.value).lower()


def test_a_non_finite_device_double_really_is_rejected():
    # the doubles used across these tests do what they say (a sanity check of the harness)
    m = MeteredDevice(NonFiniteDevice(LinearDevice(), at=0, value=-np.inf))
    with pytest.raises(Exception, match="non-finite"):
        m.query(np.zeros(6), np.ones((2, 3)))
