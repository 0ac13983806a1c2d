"""Periodic controls through training: zeroth-order probes, SAT's perturbed point, the trainer's
projection, designs and the nevergrad objective wrap instead of clipping; the query log,
checkpoints and the built-in devices carry the declaration."""

import functools
import sqlite3

import numpy as np
import pytest
import torch
from doubles import RecordingDevice

from blacksat import ParamSpace
from blacksat.checkpoint import load_checkpoint
from blacksat.data import load_iris
from blacksat.errors import ConfigError
from blacksat.estimators import Autograd, ZerothOrder
from blacksat.meter import MeteredDevice
from blacksat.ng.adapter import PERIODIC_TURNS, DeviceObjective, minimize
from blacksat.objective import Estimate
from blacksat.perturbations import L2Ball, PerControl
from blacksat.querylog import QueryLog, log_queries
from blacksat.sat import sat
from blacksat.surrogates import designs
from blacksat.task import Task
from blacksat.trainer import TrainConfig, Trainer

TWO_PI = 2 * np.pi
D = 12
PHASES = ParamSpace.box(D, 0.0, TWO_PI, periodic=True)


@functools.lru_cache(maxsize=1)
def iris():
    return load_iris(seed=0)


def task():
    return Task(iris(), input_shape=(4,)).to(torch.float64)


def phase_model(theta, x):
    """``y = x @ cos(theta)``: periodic in every control, period 2 pi."""
    return x @ torch.cos(theta).reshape(*theta.shape[:-1], 4, 3)


class PhaseDevice:
    """A query-only double of :func:`phase_model` whose controls are phases."""

    def __init__(self, space: ParamSpace = PHASES) -> None:
        self.space, self.input_shape, self.output_shape = space, (4,), (3,)

    def query(self, theta, x):
        return self.query_many(np.asarray(theta)[None], x)[0]

    def query_many(self, thetas, x):
        t = torch.as_tensor(np.asarray(thetas, dtype=np.float64))
        return phase_model(t, torch.as_tensor(x, dtype=torch.float64)).numpy()


def near_bounds() -> np.ndarray:
    """Half the phases just above 0, half just below 2 pi."""
    return np.where(np.arange(D) % 2 == 0, 0.02, TWO_PI - 0.02)


def on_bound(space: ParamSpace, theta: np.ndarray) -> float:
    return float(np.mean((theta == space.lower) | (theta == space.upper)))


# ---------------------------------------------------------------------- zeroth order
@pytest.mark.parametrize("space", [PHASES, PHASES.bounded()], ids=["periodic", "bounded"])
def test_zeroth_order_probes_wrap_and_stay_two_sided(space):
    rec = RecordingDevice(PhaseDevice(space), space=PHASES)
    t = task()
    zo = ZerothOrder(MeteredDevice(rec), t, q=3, sigma=0.1, directions="rademacher")
    theta = torch.tensor(near_bounds())
    zo(theta, t.batch("train", np.arange(16)), _ctx())
    assert len(rec.received) == 6 and rec.outside == []
    steps = np.abs(PHASES.difference(np.array(rec.received), theta.numpy()))
    if space.periodic.any():  # theta +- sigma u on the circle: every probe a full sigma away
        np.testing.assert_allclose(steps, 0.1, atol=1e-12)
    else:  # clipped: half the probes of a control at 0.02 from a bound are cut short
        assert (steps < 0.099).sum() == 3 * D


def _ctx():
    from blacksat.objective import StepContext

    return StepContext(rng=np.random.default_rng(0))


# ---------------------------------------------------------------------- SAT's perturbed point
class Spy:
    """An estimator that records where it is asked and pushes outwards (towards the bounds)."""

    name = "spy"

    def __init__(self, t) -> None:
        self.task, self.space, self.at = t, PHASES, []

    def __call__(self, theta, batch, ctx):
        self.at.append(theta.detach().numpy().copy())
        grad = torch.as_tensor(np.where(np.arange(D) % 2 == 0, -1.0, 1.0))
        return Estimate(grad=grad, loss=0.0)

    def evaluate(self, thetas, batch, ctx):
        return torch.zeros(len(thetas), dtype=torch.float64), None


@pytest.mark.parametrize(
    "model,mode",
    [(L2Ball(0.5), "worst"), (PerControl(0.3), "worst"), (PerControl(0.3), "average")],
)
@pytest.mark.parametrize("space", [PHASES, PHASES.bounded()], ids=["periodic", "bounded"])
def test_sat_perturbed_point_wraps_and_keeps_its_radius(model, mode, space):
    t = task()
    spy = Spy(t)
    est = sat(spy, perturbation=model, mode=mode, space=space)
    theta = torch.tensor(near_bounds())
    est(theta, t.batch("train", np.arange(8)), _ctx())
    point = spy.at[-1]
    assert space.contains(point)
    delta = model.worst(theta, spy(theta, None, None).grad, None, None).delta.numpy()
    if mode == "worst" and space.periodic.any():  # the same point of the circle: no clipping
        np.testing.assert_allclose(PHASES.difference(point, theta.numpy()), delta, atol=1e-12)
    elif mode == "worst":  # pushed outwards from 0.02: clipped onto the bounds
        assert on_bound(space, point) == 1.0
    if space.periodic.any():
        assert on_bound(space, point) == 0.0


# ---------------------------------------------------------------------- training
def _train(space, estimator_kind):
    t = task()
    dev = RecordingDevice(PhaseDevice(space), space=PHASES)
    meter = MeteredDevice(dev)
    est = (
        ZerothOrder(meter, t, q=4, sigma=0.05)
        if estimator_kind == "zo"
        else Autograd(phase_model, t, space=space)
    )
    cfg = TrainConfig(lr=0.5, max_steps=25, batch_size=32, seed=0, progress=False)
    result = Trainer(t, est, space, cfg, meter=meter if estimator_kind == "zo" else None)
    theta = result.fit(near_bounds()).theta
    return theta, dev


@pytest.mark.parametrize("kind", ["zo", "white box"])
def test_no_periodic_control_sits_on_a_bound_after_training(kind):
    theta, dev = _train(PHASES, kind)
    assert PHASES.contains(theta) and dev.outside == []
    assert on_bound(PHASES, theta) == 0.0
    moved = PHASES.difference(theta, near_bounds())
    crossed = (theta > np.pi) != (near_bounds() > np.pi)
    assert crossed.any() and np.all(np.abs(moved[crossed]) < np.pi)  # the short way round
    clipped, _ = _train(PHASES.bounded(), kind)  # the same run, clipped: controls stick
    assert on_bound(PHASES, clipped) >= 0.25


# ---------------------------------------------------------------------- designs
def test_global_designs_cover_the_circle_and_its_levels_evenly():
    step = TWO_PI / 8
    sp = ParamSpace.box(2, 0.0, 7 * step, levels=np.arange(8) * step, periodic=TWO_PI)
    for design in (designs.sobol, designs.latin_hypercube, designs.uniform):
        pts = design(sp, 256, seed=0)
        counts = np.bincount(np.round(pts.ravel() / step).astype(int), minlength=8)
        assert counts.size == 8 and counts.min() >= 48, (design.__name__, counts)
    bounded = designs.latin_hypercube(sp.bounded(), 256, seed=0)
    ends = np.bincount(np.round(bounded.ravel() / step).astype(int))
    assert ends[0] < 48 and ends[-1] < 48  # on the line the end levels get half a stratum


@pytest.mark.parametrize("kind", ["latin_hypercube", "sobol", "gaussian"])
def test_local_designs_wrap_around_the_seam(kind):
    center = np.full(D, TWO_PI - 0.01)
    pts = designs.local(PHASES, center, 0.2, 64, seed=0, kind=kind)
    assert PHASES.contains(pts) and on_bound(PHASES, pts) == 0.0
    assert (pts < 0.5).any()  # came out on the other side
    assert np.abs(PHASES.difference(pts, center)).max() <= (2.0 if kind == "gaussian" else 0.2)
    clipped = designs.local(PHASES.bounded(), center, 0.2, 64, seed=0, kind=kind)
    assert on_bound(PHASES, clipped) > 0.2


# ---------------------------------------------------------------------- nevergrad
def test_nevergrad_parametrization_does_not_bounce_off_periodic_bounds():
    mixed = ParamSpace(
        np.zeros(D), np.r_[np.full(D - 2, TWO_PI), 1.0, 1.0], period=[TWO_PI] * (D - 2) + [0, 0]
    )
    rec = RecordingDevice(PhaseDevice(mixed))
    obj = DeviceObjective(task(), MeteredDevice(rec, policy="raise"), batch_size=16, seed=0)
    param = obj.parametrization(init=np.full(D, 0.5))
    lo, hi = param.bounds
    np.testing.assert_allclose(lo[: D - 2], -PERIODIC_TURNS * TWO_PI)
    np.testing.assert_allclose(hi[: D - 2], (PERIODIC_TURNS + 1) * TWO_PI)
    np.testing.assert_array_equal(lo[D - 2 :], 0.0)
    np.testing.assert_array_equal(hi[D - 2 :], 1.0)
    theta = np.full(D, 0.5)
    turned = theta + np.r_[np.full(D - 2, 3 * TWO_PI), 0.0, 0.0]
    np.testing.assert_allclose(obj.losses(turned[None]), obj.losses(theta[None]), rtol=1e-9)
    res = minimize(obj, "OnePlusOne", budget=40, num_workers=4, seed=0, init=np.full(D, 0.01))
    assert mixed.contains(res.theta) and rec.outside == []


# ---------------------------------------------------------------------- persistence
def test_query_log_keeps_the_space_and_old_logs_have_none(tmp_path):
    meter = MeteredDevice(PhaseDevice())
    log = log_queries(meter, tmp_path / "q.sqlite", device="chip")
    meter.query(near_bounds(), iris().x_train[:2])
    log.set_space(PHASES, device="chip")  # the same again: a no-op
    with pytest.raises(ConfigError, match="another control space"):
        log.set_space(PHASES.bounded(), device="chip")
    log.close()
    with QueryLog(tmp_path / "q.sqlite", device="chip", readonly=True) as again:
        assert again.space() == PHASES and again.space(device="other") is None
        assert len(again) == 1
    with sqlite3.connect(tmp_path / "q.sqlite") as conn:  # a log written before spaces were kept
        conn.execute("DELETE FROM meta WHERE key LIKE 'space:%'")
    with QueryLog(tmp_path / "q.sqlite", device="chip", readonly=True) as old:
        assert old.space() is None and len(old) == 1


def test_checkpoint_keeps_the_space_and_a_resume_in_another_space_is_refused(tmp_path):
    t = task()
    est = Autograd(phase_model, t, space=PHASES)
    cfg = TrainConfig(lr=0.5, max_steps=4, batch_size=32, seed=0, progress=False)
    path = tmp_path / "ckpt.pt"
    Trainer(t, est, PHASES, cfg, checkpoint_path=path).fit(near_bounds())
    state = load_checkpoint(path)
    assert state.space == PHASES
    longer = TrainConfig(lr=0.5, max_steps=6, batch_size=32, seed=0, progress=False)
    with pytest.raises(ConfigError, match="trained in"):
        Trainer(t, est, PHASES.bounded(), longer).resume(path)
    state.meta.pop("space")  # a checkpoint written before spaces were kept still resumes
    assert state.space is None
    assert Trainer(t, est, PHASES, longer).resume(state).steps == 6


# ---------------------------------------------------------------------- devices
def test_built_in_devices_declare_what_their_physics_says():
    from blacksat.devices import MRRWeightBank, MZIHybrid, MZIMesh
    from blacksat.devices.diffractive import DiffractiveNetwork

    for dev in (MZIMesh(n_modes=4), MZIHybrid(n_modes=4)):
        assert dev.space.periodic.all() and np.all(dev.space.period == TWO_PI)
        np.testing.assert_array_equal(dev.space.upper - dev.space.lower, TWO_PI)
    slm = DiffractiveNetwork(n=8, n_classes=4, levels=16)
    assert slm.space.periodic.all() and np.all(slm.space.period == TWO_PI)
    assert slm.space.levels.size == 16 and slm.space.levels[-1] < TWO_PI
    assert not MRRWeightBank().space.periodic.any()  # a heater drive with a power limit


# ---------------------------------------------------------------------- nuisance, sharpness
def test_a_periodic_nuisance_ascent_wraps_instead_of_stopping_at_the_end():
    from blacksat.perturbations import NuisanceModel

    def probe(perts):  # the worst offset is just past the end of the range, i.e. near its start
        return torch.tensor([np.cos(p.nuisance["offset"] - 0.1) for p in perts])

    kw = {"ranges": {"offset": (0.0, TWO_PI)}, "steps": 6, "step_size": 0.05, "center": {}}
    start = {"offset": 5.9}
    wrapped = NuisanceModel(**kw, periodic=("offset",)).worst(None, None, probe, _rng())
    bounded = NuisanceModel(**{**kw, "center": start}).worst(None, None, probe, _rng())
    assert bounded.nuisance["offset"] == TWO_PI  # stuck at the end of the range
    again = NuisanceModel(**{**kw, "center": start}, periodic=("offset",))
    assert 0.0 <= again.worst(None, None, probe, _rng()).nuisance["offset"] < 1.0  # came round
    assert 0.0 <= wrapped.nuisance["offset"] < TWO_PI
    assert again.scaled(2.0).ranges == again.ranges and again.scaled(0.5).periodic == ()
    with pytest.raises(ConfigError, match="periodic"):
        NuisanceModel(ranges={"a": (0, 1)}, periodic=("b",))


def _rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("space", [PHASES, PHASES.bounded()], ids=["periodic", "bounded"])
def test_query_sharpness_keeps_its_radius_on_the_circle(space):
    from blacksat.sharpness import query_sharpness

    t = task()
    dev = PhaseDevice(space)
    batch = t.batch("train", np.arange(16))
    res = query_sharpness(t, dev, near_bounds(), batch, rho=0.3, n=8, rng=0)
    assert len(res.radii) == 8
    if space.periodic.any():
        np.testing.assert_allclose(res.radii, 0.3, rtol=1e-9)
    else:  # draws across a bound are clipped: shorter than rho
        assert min(res.radii) < 0.29
