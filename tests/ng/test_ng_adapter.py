"""The nevergrad adapter: a PNN task on a metered device as a nevergrad problem."""

from __future__ import annotations

import warnings

import nevergrad as ng
import numpy as np
import pytest
import torch
from doubles import CountingDevice, LinearDevice
from nevergrad.optimization import base as ng_base

from blacksat import MeteredDevice, ParamSpace
from blacksat.data import load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.errors import ConfigError, ShapeError
from blacksat.ng.adapter import DeviceObjective, build_optimizer, minimize
from blacksat.task import Task

DATA = load_iris()


def chip(seed: int = 0, *, quiet: bool = False) -> MZIMesh:
    """a 4-mode chip (12 phases); ``quiet``: no readout noise and no drift (exact repeats)"""
    return MZIMesh(n_modes=4, seed=seed, **({"noise": 0.0, "drift": 0.0} if quiet else {}))


def objective(device=None, **kw) -> DeviceObjective:
    dev = chip() if device is None else device
    meter = kw.pop("meter", None) or MeteredDevice(dev, **kw.pop("meter_kw", {}))
    return DeviceObjective(default_task(chip(), DATA), meter, **kw)


class NaNAbove:
    """A device double: NaN readings for every setting whose first control exceeds ``limit``."""

    def __init__(self, inner, limit: float) -> None:
        self.inner, self.limit = inner, limit
        self.space = inner.space
        self.input_shape, self.output_shape = inner.input_shape, inner.output_shape

    def query_many(self, thetas, x):
        y = self.inner.query_many(thetas, x)
        y[np.asarray(thetas)[:, 0] > self.limit] = np.nan
        return y

    def query(self, theta, x):
        return self.query_many(np.asarray(theta)[None], x)[0]


@pytest.fixture
def told_losses(monkeypatch):
    """Every loss any nevergrad optimizer is told during the test."""
    seen: list[float] = []
    tell = ng_base.Optimizer.tell

    def spy(self, candidate, loss, *args, **kwargs):
        seen.append(float(loss))
        return tell(self, candidate, loss, *args, **kwargs)

    monkeypatch.setattr(ng_base.Optimizer, "tell", spy)
    return seen


# ------------------------------------------------------------------ parametrization
def test_parametrization_per_control_bounds_and_unit_prior():
    lower, upper = np.array([0.0, -1.0, 2.0]), np.array([1.0, 3.0, 2.5])
    dev = LinearDevice(n_in=3, n_out=1)
    dev.space = ParamSpace(lower, upper)
    obj = DeviceObjective(Task(DATA, input_shape=(3,)), MeteredDevice(dev))
    param = obj.parametrization()
    np.testing.assert_array_equal(param.value, (lower + upper) / 2)
    np.testing.assert_array_equal(param.bounds[0], lower)
    np.testing.assert_array_equal(param.bounds[1], upper)
    np.testing.assert_allclose(param.sigma.value, (upper - lower) / 4)
    for face, z in ((lower, -2.0), (upper, 2.0)):  # unit prior: the faces at z = +-2
        np.testing.assert_allclose(
            param.spawn_child(new_value=face).get_standardized_data(reference=param), z
        )
    far = param.spawn_child().set_standardized_data(np.full(3, 2.5))  # bounced back in
    np.testing.assert_allclose(far.value, upper - 0.5 * (upper - lower) / 4)
    clip = (
        obj.parametrization(method="clipping").spawn_child().set_standardized_data(np.full(3, 9.0))
    )
    np.testing.assert_array_equal(clip.value, upper)
    init = np.array([0.25, 0.0, 2.1])
    np.testing.assert_array_equal(obj.parametrization(init).value, init)
    assert init[0] == 0.25  # not mutated
    with pytest.raises(ConfigError):
        obj.parametrization(np.array([2.0, 0.0, 2.1]))  # out of bounds
    with pytest.raises(ConfigError):
        obj.parametrization(np.zeros(2))
    dev.space = ParamSpace(lower, np.array([1.0, -1.0, 2.5]))  # a fixed control
    with pytest.raises(ConfigError, match="lower < upper"):
        DeviceObjective(Task(DATA, input_shape=(3,)), MeteredDevice(dev)).parametrization()


# ------------------------------------------------------------------ losses
def test_losses_one_call_clipped_float64_and_caller_array_untouched():
    obj = objective(chip(quiet=True))
    sp = obj.space
    thetas = np.stack([sp.center, sp.upper + 1.0, sp.lower - 1.0])
    keep = thetas.copy()
    before = obj.device.ledger
    out = obj.losses(thetas)  # the meter's policy is "raise": clipping happened before it
    after = obj.device.ledger
    assert out.dtype == np.float64 and out.shape == (3,) and np.all(np.isfinite(out))
    assert after.queries - before.queries == 1
    assert after.reconfigurations - before.reconfigurations == 3
    assert after.samples - before.samples == 3 * len(DATA.y_train)
    np.testing.assert_array_equal(thetas, keep)
    # the MZI phases are periodic: upper + 1 is the phase lower + 1 (wrapped, not clipped)
    assert sp.periodic.all()
    np.testing.assert_allclose(out[1], objective(chip(quiet=True))(sp.lower + 1.0), rtol=1e-12)
    with pytest.raises(ShapeError):
        obj.losses(np.zeros((2, sp.dim + 1)))


def test_nonfinite_reading_gives_inf_for_that_setting_only():
    obj = objective(NaNAbove(chip(quiet=True), limit=np.pi))
    thetas = np.stack([obj.space.center, obj.space.upper, obj.space.lower])
    out = obj.losses(thetas)
    assert np.isinf(out[1]) and np.all(np.isfinite(out[[0, 2]]))
    reference = objective(chip(quiet=True)).losses(thetas[[0, 2]])
    np.testing.assert_allclose(out[[0, 2]], reference, rtol=1e-12)
    assert obj.device.ledger.failures == 1  # charged, counted as a failure, nothing raised


def test_minibatches_are_seeded_and_shared_by_the_settings_of_a_call():
    a, b = objective(batch_size=16, seed=3), objective(batch_size=16, seed=3)
    thetas = np.stack([a.space.center] * 2)
    la, lb = a.losses(thetas), b.losses(thetas)
    np.testing.assert_array_equal(la, lb)
    assert abs(la[0] - la[1]) < 0.05  # same inputs, only readout noise differs
    assert a.device.ledger.samples == 32
    assert a(a.space.center) != objective(batch_size=16, seed=4)(a.space.center)
    assert objective(batch_size=10_000).inputs_per_call == len(DATA.y_train)


def test_digital_layers_frozen_and_modes_restored():
    obj = DeviceObjective(default_task(chip(), DATA), MeteredDevice(chip(quiet=True)))
    front = obj.task.front
    if front is None:  # iris has 4 features = 4 modes: add a trainable front end to check
        front = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
        obj.task.front = front
    front.train()
    w = [p.detach().clone() for p in front.parameters()]
    a = [obj(obj.space.center) for _ in range(3)]
    assert front.training and all(m.training for m in front.modules())
    assert all(p.grad is None for p in front.parameters())
    assert all(torch.equal(p, q) for p, q in zip(front.parameters(), w, strict=True))
    assert a[0] == a[1] == a[2]  # dropout off (a quiet chip): every call sees the same inputs


def test_accuracy_on_the_full_test_split_through_the_given_device():
    obj = objective()
    bare = CountingDevice(chip())
    theta = obj.space.center
    acc = obj.accuracy(theta, device=bare)
    assert bare.samples == len(DATA.y_test) and bare.reconfigurations == 1
    assert obj.device.ledger.samples == 0  # the training budget is untouched
    x = obj.task.encode(torch.as_tensor(DATA.x_test, dtype=obj.task.dtype)).double().numpy()
    logits = obj.task.decode(torch.as_tensor(chip().query(theta, x), dtype=obj.task.dtype))
    assert acc == pytest.approx(float((logits.argmax(-1).numpy() == DATA.y_test).mean()))
    obj.accuracy(theta)  # default: through the metered device, charged
    assert obj.device.ledger.samples == len(DATA.y_test)


def test_constructor_validation():
    task = default_task(chip(), DATA)
    with pytest.raises(ConfigError, match="MeteredDevice"):
        DeviceObjective(task, chip())
    with pytest.raises(ConfigError):
        DeviceObjective(task, MeteredDevice(chip()), batch_size=0)
    obj = objective()
    with pytest.raises(ConfigError):
        minimize(obj, "OnePlusOne", budget=0)
    with pytest.raises(ConfigError):
        minimize(obj, "NoSuchOptimizer", budget=10)
    with pytest.raises(ConfigError):
        minimize(obj, "BlacksatZOAdam", budget=10, optimizer_kwargs={"nope": 1})
    with pytest.raises(ConfigError, match="parallelization"):
        minimize(obj, "SPSA", budget=10, num_workers=4)
    assert obj.device.ledger.queries == 0


def test_build_optimizer_passes_kwargs_to_classes_and_configured_entries():
    param = ng.p.Array(shape=(3,))
    assert (
        build_optimizer(
            "BlacksatZOAdam", param, budget=10, num_workers=1, optimizer_kwargs={"q": 2}
        ).q
        == 2
    )
    opt = build_optimizer(
        "OnePlusOne", param, budget=10, num_workers=1, optimizer_kwargs={"mutation": "cauchy"}
    )
    assert "cauchy" in opt.name


# ------------------------------------------------------------------ minimize on a PNN task
@pytest.mark.parametrize("name", ["OnePlusOne", "BlacksatZOAdam"])
def test_minimize_improves_and_accounts_exactly(name, told_losses):
    sent: list[np.ndarray] = []
    meter = MeteredDevice(chip(), max_reconfigurations=250)
    meter.add_observer(lambda rec: sent.append(rec.thetas))
    obj = objective(meter=meter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = minimize(obj, name, budget=400, num_workers=16, seed=0)
    assert res.stop == "budget" and res.optimizer == name
    assert res.ledger == meter.ledger  # a fresh meter: the run's cost is the whole ledger
    assert meter.ledger.reconfigurations <= 250
    assert sum(r["batch_reconfigurations"] for r in res.trace) == res.ledger.reconfigurations
    assert sum(r["batch_samples"] for r in res.trace) == res.ledger.samples
    last = res.trace[-1]
    assert (last["reconfigurations"], last["samples"]) == (
        meter.ledger.reconfigurations,
        meter.ledger.samples,
    )
    cumulative = np.cumsum([r["batch_reconfigurations"] for r in res.trace])
    np.testing.assert_array_equal([r["reconfigurations"] for r in res.trace], cumulative)
    assert len(res.trace) == res.ledger.queries
    assert res.told == len(told_losses) == sum(r["told"] for r in res.trace)
    assert all(obj.space.contains(t) for t in sent) and obj.space.contains(res.theta)
    evaluator = objective(seed=0)
    start, end = evaluator(obj.space.center), evaluator(res.theta)
    assert end < 0.75 * start
    assert res.best_loss == min(told_losses) == res.trace[-1]["best_loss"]


@pytest.mark.parametrize("name", ["OnePlusOne", "BlacksatZOAdam"])
def test_nonfinite_losses_are_never_told(name, told_losses):
    dev = NaNAbove(chip(), limit=np.pi + 0.05)
    obj = objective(dev)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = minimize(obj, name, budget=160, num_workers=16, seed=1)
    assert res.skipped_nonfinite > 0 and res.told > 0
    assert res.told + res.skipped_nonfinite == obj.evaluations
    assert all(np.isfinite(told_losses)) and len(told_losses) == res.told
    assert obj.device.ledger.failures > 0
    assert obj.space.contains(res.theta) and not np.array_equal(res.theta, obj.space.center)
    if name == "OnePlusOne":  # recommends a told point; ZO-Adam's center may sit past the edge
        assert res.theta[0] <= np.pi + 0.05


def test_nothing_finite_told_returns_the_init(told_losses):
    obj = objective(NaNAbove(chip(), limit=-1.0))  # every reading is NaN
    init = np.full(obj.space.dim, 1.0)
    res = minimize(obj, "BlacksatZOAdam", budget=32, num_workers=8, init=init)
    assert res.told == 0 and res.skipped_nonfinite == 32 and told_losses == []
    np.testing.assert_array_equal(res.theta, init)


def test_sample_budget_stops_cleanly():
    meter_kw = {"max_samples": 10 * len(DATA.y_train) + 5}
    obj = objective(meter_kw=meter_kw)
    res = minimize(obj, "BlacksatZOSAT", budget=100, num_workers=4, seed=2)
    assert res.stop == "budget" and obj.device.ledger.samples <= meter_kw["max_samples"]
    assert res.ledger.reconfigurations == 10


def test_minimize_is_reproducible_from_the_seed():
    runs = [
        minimize(objective(), "BlacksatZOSAT", budget=64, num_workers=16, seed=4) for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].theta, runs[1].theta)
    other = minimize(objective(), "BlacksatZOSAT", budget=64, num_workers=16, seed=5)
    assert not np.array_equal(runs[0].theta, other.theta)


def test_numpy_compat_shim_for_nevergrads_meta_model():
    import numpy as np
    from nevergrad.optimization import metamodel

    from blacksat.ng import compat as ng_compat

    assert ng_compat.install() and ng_compat.install()  # idempotent
    assert metamodel.float(np.array([2.5])) == 2.5 and metamodel.float(3) == 3.0
    with pytest.raises(TypeError):
        metamodel.float(np.array([1.0, 2.0]))


def test_cma_batches_never_cross_a_generation():
    # DiagonalCMA in 480 dimensions draws generations of 22; batches of 16 used to ask the next
    # generation before telling the current one, which cma's TPA refused with a RuntimeError
    from blacksat.devices import MZIHybrid

    dev = MZIHybrid(n_modes=16, seed=0)
    obj = DeviceObjective(default_task(dev, DATA), MeteredDevice(dev))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = minimize(obj, "DiagonalCMA", budget=250, num_workers=16, seed=0)
    assert res.stop in ("budget", "completed") and res.ledger.reconfigurations == 250
    sizes = [r["batch_reconfigurations"] for r in res.trace]
    assert sizes[:4] == [16, 6, 16, 6]
    assert np.all(np.cumsum(sizes)[1::2] % 22 == 0)
