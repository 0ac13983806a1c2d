"""blacksat's zeroth-order optimizers in nevergrad's registry, on nevergrad-style problems."""

from __future__ import annotations

import pickle
import warnings

import nevergrad as ng
import numpy as np
import pytest
from nevergrad.functions import corefuncs

import blacksat.ng.optimizers as bo
from blacksat.errors import ConfigError

NAMES = ("BlacksatZOAdam", "BlacksatZOSAT")
TARGET = np.linspace(-0.8, 0.8, 10)


def sphere(x: np.ndarray) -> float:
    return corefuncs.sphere(np.asarray(x) - TARGET)


def rotated_ellipsoid(d: int = 10, seed: int = 0):
    rot, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    shift = np.random.default_rng(seed + 1).uniform(-1, 1, d)
    return lambda x: corefuncs.ellipsoid(rot @ (np.asarray(x) - shift))


def make(name: str, d: int = 10, seed: int = 0, **kw) -> ng.optimizers.base.Optimizer:
    param = ng.p.Array(shape=(d,))
    param.random_state = np.random.RandomState(seed)
    return ng.optimizers.registry[name](param, **{"budget": 2000, **kw})


def run_batches(opt, f, n_batches: int, k: int, order_rng: np.random.Generator | None = None):
    """ask k, then tell them (shuffled if order_rng), n_batches times"""
    for _ in range(n_batches):
        cands = [opt.ask() for _ in range(k)]
        order = np.arange(k) if order_rng is None else order_rng.permutation(k)
        for i in order:
            opt.tell(cands[i], f(cands[i].value))


# ------------------------------------------------------------------ registry and convergence
@pytest.mark.parametrize("name", NAMES)
def test_registered_and_plain_minimize_solves_sphere(name):
    opt = make(name)
    assert isinstance(opt, bo.BlacksatZOAdam) and opt.name == name
    rec = opt.minimize(sphere)
    assert sphere(rec.value) < 1e-2 * sphere(np.zeros(10))
    assert opt.num_ask == 2000


@pytest.mark.parametrize(("name", "kw"), [("BlacksatZOAdam", {}), ("BlacksatZOSAT", {"rho": 0.01})])
def test_rotated_ellipsoid(name, kw):
    """condition number 1e6: SAT hovers where lambda_max * rho^2 ~ f, hence a small rho"""
    f = rotated_ellipsoid()
    rec = make(name, **kw).minimize(f)
    assert f(rec.value) < 2e-2 * f(np.zeros(10))


def test_first_step_is_adam_on_the_central_difference():
    """Oracle: on a linear function the central difference is exact; Adam's first step is
    -lr * g / (|g| + eps) (bias corrections cancel)."""
    a = np.arange(1.0, 6.0)
    opt = make("BlacksatZOAdam", d=5, q=3, lr=0.1, sigma=0.2)
    cands = [opt.ask() for _ in range(6)]
    data = np.stack([c.get_standardized_data(reference=opt.parametrization) for c in cands])
    u = (data[0::2] - data[1::2]) / (2 * 0.2)
    np.testing.assert_allclose(data[0::2] + data[1::2], 0.0, atol=1e-12)  # antithetic at 0
    losses = data @ a
    for c, loss in zip(cands, losses, strict=True):
        opt.tell(c, float(loss))
    g = ((losses[0::2] - losses[1::2]) / 0.4) @ u / 3
    np.testing.assert_allclose(g, u.T @ u @ a / 3)
    np.testing.assert_allclose(opt.center, -0.1 * g / (np.abs(g) + 1e-8), rtol=1e-10)
    assert opt.steps == 1


def test_sat_descent_set_is_centered_at_the_ascent_point():
    opt = make("BlacksatZOSAT", d=4, q=2, rho=0.3)
    f = rotated_ellipsoid(4)
    cands = [opt.ask() for _ in range(4)]
    losses = [f(c.value) for c in cands]
    for c, loss in zip(cands, losses, strict=True):
        opt.tell(c, loss)
    data = np.stack([c.get_standardized_data(reference=opt.parametrization) for c in cands])
    g1 = bo.central_difference((data[0::2] - data[1::2]) / (2 * 0.1), np.array(losses), 0.1)
    assert opt.steps == 0  # the ascent set does not move the center
    desc = [opt.ask() for _ in range(4)]
    dd = np.stack([c.get_standardized_data(reference=opt.parametrization) for c in desc])
    for mid in (dd[0::2] + dd[1::2]) / 2:
        np.testing.assert_allclose(mid, 0.3 * g1 / np.linalg.norm(g1), rtol=1e-10)


def test_sat_with_rho_zero_is_zo_adam():
    a, b = make("BlacksatZOAdam", seed=3), make("BlacksatZOSAT", seed=3, rho=0.0)
    run_batches(a, sphere, 20, 8)
    run_batches(b, sphere, 20, 8)
    np.testing.assert_array_equal(a.center, b.center)


# ------------------------------------------------------------------ parallel asks
def test_set_size_aligns_with_batches():
    assert bo.set_size(4, 1) == 8
    assert bo.set_size(4, 16) == 16
    assert bo.set_size(4, 3) == 12
    assert bo.set_size(4, 5) == 10
    assert make("BlacksatZOAdam", num_workers=16).set_size == 16


@pytest.mark.parametrize("name", NAMES)
def test_shuffled_tells_equal_in_order_tells(name):
    """Members are matched by uid: the tell order inside a set does not matter."""
    a, b = make(name, seed=5, num_workers=6), make(name, seed=5, num_workers=6)
    run_batches(a, sphere, 40, 6)
    run_batches(b, sphere, 40, 6, order_rng=np.random.default_rng(0))
    assert a.steps > 0
    np.testing.assert_array_equal(a.center, b.center)
    assert sphere(b.recommend().value) < 0.5 * sphere(np.zeros(10))


def test_parallel_minimize_with_many_workers():
    opt = make("BlacksatZOAdam", num_workers=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nevergrad: num_workers > 1 run sequentially
        rec = opt.minimize(sphere, batch_mode=True)
    assert sphere(rec.value) < 1e-2 * sphere(np.zeros(10))


def test_asks_beyond_an_incomplete_set_probe_the_center():
    opt = make("BlacksatZOAdam", d=3, q=1)
    first = [opt.ask() for _ in range(2)]
    opt.tell(first[0], 1.0)
    probe = opt.ask()  # the set is out but not told: no new directions can be drawn yet
    np.testing.assert_array_equal(probe.get_standardized_data(reference=opt.parametrization), 0)
    opt.tell(probe, -100.0)  # archived only
    assert opt.steps == 0
    opt.tell(first[1], 3.0)
    assert opt.steps == 1
    assert opt.center[0] != 0  # moved against the +- difference


# ------------------------------------------------------------------ failures
def test_failed_evaluations_void_their_pair_and_drop_completes_the_set():
    opt = make("BlacksatZOAdam", d=3, q=2)
    c = [opt.ask() for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nevergrad warns about the clipped loss
        opt.tell(c[0], float("nan"))  # nevergrad clips it to 5e20: pair 0 is void
    opt.tell(c[1], 1.0)
    opt.tell(c[2], 2.0)
    opt.drop(c[3])  # never told: pair 1 is void too, the set completes without a step
    assert opt.steps == 0 and np.all(opt.center == 0)
    c = [opt.ask() for _ in range(4)]
    for cand, loss in zip(c, [1.0, 2.0, 5.0, float("inf")], strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.tell(cand, loss)
    assert opt.steps == 1 and np.all(np.isfinite(opt.center)) and np.any(opt.center != 0)


def test_tell_not_asked_is_archived_only():
    opt = make("BlacksatZOAdam", d=3)
    opt.tell(opt.parametrization.spawn_child(new_value=np.ones(3)), -5.0)
    assert opt.num_tell_not_asked == 1 and opt.steps == 0
    assert opt.current_bests["minimum"].mean == -5.0


# ------------------------------------------------------------------ bounds
@pytest.mark.parametrize("method", ["bouncing", "clipping"])
def test_center_and_recommendation_stay_in_bounds(method):
    param = ng.p.Array(init=np.zeros(4)).set_mutation(sigma=0.5).set_bounds(-1, 1, method=method)
    param.random_state = np.random.RandomState(0)
    opt = bo.BlacksatZOAdam(param, budget=800, lr=0.2)
    rec = opt.minimize(lambda x: float(np.sum((x - 3.0) ** 2)))  # optimum outside the box
    assert np.all(np.abs(rec.value) <= 1) and np.all(rec.value > 0.9)
    assert np.all(np.abs(opt.center * 0.5) <= 1 + 1e-12)  # data * sigma = value - init


# ------------------------------------------------------------------ dump / load
@pytest.mark.parametrize("name", NAMES)
def test_dump_load_continues_identically(name, tmp_path):
    ref = make(name, seed=7, num_workers=4)
    run_batches(ref, sphere, 30, 4)

    opt = make(name, seed=7, num_workers=4)
    run_batches(opt, sphere, 12, 4)
    pending = [opt.ask() for _ in range(4)]  # asked before the dump, told after the load
    opt.dump(tmp_path / "opt.pkl")
    pending = pickle.loads(pickle.dumps(pending))  # as a driver would persist them
    loaded = type(opt).load(tmp_path / "opt.pkl")
    for c in reversed(pending):
        loaded.tell(c, sphere(c.value))
    run_batches(loaded, sphere, 17, 4)
    np.testing.assert_array_equal(loaded.center, ref.center)
    np.testing.assert_array_equal(loaded.recommend().value, ref.recommend().value)
    assert loaded.num_ask == ref.num_ask and loaded.steps == ref.steps


# ------------------------------------------------------------------ configuration
def test_configured_variants():
    conf = bo.ConfiguredZOSAT(rho=0.2, q=2)
    assert repr(conf) == "ConfiguredZOSAT(q=2, rho=0.2)"
    opt = conf(ng.p.Array(shape=(3,)), budget=10)
    assert isinstance(opt, bo.BlacksatZOSAT) and opt.rho == 0.2 and opt.q == 2
    conf.set_name("BlacksatTestSAT", register=True)
    try:
        assert ng.optimizers.registry["BlacksatTestSAT"] is conf
    finally:
        ng.optimizers.registry.unregister("BlacksatTestSAT")
    assert bo.BlacksatZOSAT(3, lr=0.1).name == "BlacksatZOSAT(lr=0.1)"
    assert bo.ConfiguredZOAdam()(3).name == "ConfiguredZOAdam()"


@pytest.mark.parametrize(
    "kw",
    [
        {"q": 0},
        {"q": 1.5},
        {"sigma": -1.0},
        {"lr": float("nan")},
        {"betas": (0.9, 1.0)},
        {"betas": 0.9},
        {"directions": "sphere"},
        {"rho": -0.1},
    ],
)
def test_invalid_hyperparameters_raise_config_error(kw):
    with pytest.raises(ConfigError):
        bo.BlacksatZOSAT(3, **kw)


def test_rademacher_directions():
    opt = make("BlacksatZOAdam", d=4, directions="rademacher")
    c = opt.ask()
    np.testing.assert_allclose(np.abs(c.get_standardized_data(reference=opt.parametrization)), 0.1)
