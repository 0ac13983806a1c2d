import warnings

import numpy as np
import pytest
from doubles import CountingDevice, LinearDevice
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import qmc

from blacksat import (
    BudgetExhausted,
    ConfigError,
    Ledger,
    MeteredDevice,
    ParamSpace,
    QueryLog,
    ShapeError,
)
from blacksat.surrogates.designs import (
    collect,
    input_subset,
    latin_hypercube,
    local,
    sobol,
    uniform,
)

SPACE = ParamSpace(np.array([-1.0, 0.0, 2.0, -5.0]), np.array([1.0, 0.5, 3.0, 5.0]))
GLOBAL = [sobol, latin_hypercube, uniform]


def _unit(points, space=SPACE):
    return (points - space.lower) / space.width


@pytest.mark.parametrize("design", GLOBAL)
@pytest.mark.parametrize("n", [1, 7, 64, 100])
def test_global_designs_in_bounds_and_seeded(design, n):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. scipy's Sobol balance warning for n != 2**m
        a = design(SPACE, n, seed=3)
    assert a.shape == (n, 4)
    assert SPACE.contains(a)
    np.testing.assert_array_equal(a, design(SPACE, n, seed=3))
    np.testing.assert_array_equal(a, design(SPACE, n, seed=np.random.default_rng(3)))
    assert not np.array_equal(a, design(SPACE, n, seed=4))


def test_sobol_is_more_space_filling_than_uniform():
    for seed in range(5):
        d_sobol = qmc.discrepancy(_unit(sobol(SPACE, 100, seed=seed)))
        d_unif = qmc.discrepancy(_unit(uniform(SPACE, 100, seed=seed)))
        assert d_sobol < 0.5 * d_unif


@given(n=st.integers(1, 60), seed=st.integers(0, 2**32 - 1))
def test_latin_hypercube_one_point_per_stratum(n, seed):
    strata = np.floor(_unit(latin_hypercube(SPACE, n, seed=seed)) * n).astype(int)
    for j in range(SPACE.dim):
        assert sorted(strata[:, j]) == list(range(n))


@pytest.mark.parametrize("design", GLOBAL)
def test_designs_snap_to_levels(design):
    levels = np.linspace(0.0, 1.0, 5)
    space = ParamSpace.box(3, 0.0, 1.0, levels=levels)
    pts = design(space, 50, seed=0)
    assert np.all(np.isin(pts, levels))
    assert len(np.unique(pts)) == 5  # the whole range is used
    loc = local(space, np.full(3, 0.5), 0.3, 20, seed=0)
    assert np.all(np.isin(loc, levels))


@pytest.mark.parametrize("kind", ["latin_hypercube", "sobol"])
def test_local_cube_designs_stay_within_radius_and_box(kind):
    radius = np.array([0.1, 0.05, 0.2, 1.0])
    center = np.array([0.95, 0.25, 2.5, 0.0])  # control 0 near its upper bound
    pts = local(SPACE, center, radius, 200, seed=1, kind=kind)
    assert pts.shape == (200, 4) and SPACE.contains(pts)
    assert np.all(np.abs(pts - center) <= radius + 1e-12)
    assert np.any(pts[:, 0] == 1.0)  # clipped into the box rather than leaving it
    spread = (pts.max(axis=0) - pts.min(axis=0))[1:] / (2 * radius[1:])
    assert np.all(spread > 0.95)  # fills the cube
    np.testing.assert_array_equal(pts, local(SPACE, center, radius, 200, seed=1, kind=kind))


def test_local_default_is_a_latin_hypercube_whose_controls_vary_independently():
    """One point per stratum of every control (within the cube), and no pair of controls moving
    together the way a Sobol prefix of 100 points in 320 dimensions does."""
    space = ParamSpace.box(320, 0.0, 1.0)
    center, radius, n = np.full(320, 0.5), 0.1, 100
    pts = local(space, center, radius, n, seed=0)
    strata = np.floor((pts - (center - radius)) / (2 * radius) * n).astype(int)
    for j in range(0, 320, 37):
        assert sorted(strata[:, j]) == list(range(n))

    def max_corr(t):
        c = np.corrcoef(t.T)
        np.fill_diagonal(c, 0.0)
        return np.abs(c).max()

    sobol_pts = local(space, center, radius, n, seed=0, kind="sobol")
    assert max_corr(pts) < 0.6 < 0.9 < max_corr(sobol_pts)


def test_local_gaussian_has_radius_as_std():
    space = ParamSpace.box(3, -10.0, 10.0)
    pts = local(space, np.zeros(3), 0.5, 4000, seed=2, kind="gaussian")
    np.testing.assert_allclose(pts.std(axis=0), 0.5, rtol=0.05)
    np.testing.assert_allclose(pts.mean(axis=0), 0.0, atol=0.05)
    assert not np.array_equal(pts, local(space, np.zeros(3), 0.5, 4000, seed=3, kind="gaussian"))


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"center": np.zeros(3)}, ShapeError, "center must have shape"),
        ({"center": np.array([0.0, 0.0, 2.5, 9.0])}, ConfigError, "inside the bounds"),
        ({"center": np.array([0.0, np.nan, 2.5, 0.0])}, ConfigError, "finite"),
        ({"radius": 0.0}, ConfigError, "radius"),
        ({"radius": -1.0}, ConfigError, "radius"),
        ({"radius": np.inf}, ConfigError, "radius"),
        ({"radius": np.ones(3)}, ConfigError, "radius"),
        ({"radius": "wide"}, ConfigError, "radius"),
        ({"kind": "halton"}, ConfigError, "kind"),
        ({"n": 0}, ConfigError, "n must be"),
    ],
)
def test_local_rejects_bad_arguments(kwargs, err, match):
    args = {"center": np.array([0.0, 0.25, 2.5, 0.0]), "radius": 0.1, "n": 5} | kwargs
    kind = args.pop("kind", "sobol")
    with pytest.raises(err, match=match):
        local(SPACE, args["center"], args["radius"], args["n"], seed=0, kind=kind)


@pytest.mark.parametrize("design", GLOBAL)
@pytest.mark.parametrize("n", [0, -3, 2.5, True, "8"])
def test_global_designs_reject_bad_n(design, n):
    with pytest.raises(ConfigError, match="n must be an integer >= 1"):
        design(SPACE, n, seed=0)


def test_designs_reject_bad_seed_and_space():
    with pytest.raises(ConfigError, match="seed"):
        sobol(SPACE, 4, seed="abc")
    with pytest.raises(ConfigError, match="ParamSpace"):
        uniform((0, 1), 4, seed=0)


# ---------------------------------------------------------------------- input_subset
def test_input_subset_uniform():
    x = np.arange(40.0).reshape(20, 2)
    idx = input_subset(x, 8, seed=0)
    assert idx.shape == (8,) and idx.dtype == np.int64
    assert len(set(idx.tolist())) == 8 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, input_subset(x, 8, seed=0))
    assert not np.array_equal(idx, input_subset(x, 8, seed=1))
    with pytest.raises(ConfigError, match="cannot pick 21"):
        input_subset(x, 21, seed=0)


def test_input_subset_stratified_is_proportional():
    labels = np.repeat([2, 0, 1], [50, 30, 20])
    x = np.zeros((100, 1))
    for seed in range(3):
        idx = input_subset(x, 10, seed=seed, labels=labels)
        counts = {c: int(np.sum(labels[idx] == c)) for c in (0, 1, 2)}
        assert counts == {2: 5, 0: 3, 1: 2}


def test_input_subset_stratified_keeps_rare_classes():
    labels = np.array([0] * 97 + [1, 2, 3])
    idx = input_subset(np.zeros((100, 2)), 5, seed=0, labels=labels)
    assert set(labels[idx].tolist()) == {0, 1, 2, 3}
    with pytest.raises(ShapeError, match="labels"):
        input_subset(np.zeros((100, 2)), 5, seed=0, labels=labels[:-1])


@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=5),
    frac=st.floats(0.01, 1.0),
    seed=st.integers(0, 1000),
)
def test_input_subset_stratified_property(sizes, frac, seed):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    n = max(1, round(frac * labels.size))
    idx = input_subset(np.zeros((labels.size, 1)), n, seed=seed, labels=labels)
    assert idx.size == n and len(set(idx.tolist())) == n
    got = np.bincount(labels[idx], minlength=len(sizes))
    assert np.all(got <= sizes)
    if n >= len(sizes):
        assert np.all(got >= 1)


# ---------------------------------------------------------------------- collect
def _metered(**budget):
    counter = CountingDevice(LinearDevice())
    return MeteredDevice(counter, **budget), counter


def _design(n, seed=0):
    return uniform(LinearDevice().space, n, seed=seed)


X = np.random.default_rng(9).normal(size=(3, 3))


def test_collect_completes_without_budget_and_matches_the_device():
    meter, counter = _metered()
    design = _design(20)
    out = collect(meter, design, X, chunk=6)
    assert out.reason == "completed" and out.n_sent == 20
    assert out.data.n_groups == 1
    t, _, y = out.data.groups[0]
    np.testing.assert_array_equal(t, design)
    np.testing.assert_allclose(y, LinearDevice().query_many(design, X))
    assert meter.ledger.queries == 4  # chunks of 6, 6, 6, 2
    assert out.ledger_spent == Ledger(20, 60, 4, 0)
    assert (counter.reconfigurations, counter.samples) == (20, 60)


@pytest.mark.parametrize("budget", [1, 13, 23, 24, 25])
def test_collect_spends_a_reconfiguration_budget_exactly(budget):
    meter, counter = _metered(max_reconfigurations=budget)
    out = collect(meter, _design(50), X, chunk=8)
    assert out.reason == "budget" and out.n_sent == budget
    assert meter.ledger.reconfigurations == budget == counter.reconfigurations
    assert out.ledger_spent.reconfigurations == budget
    assert meter.ledger.samples == counter.samples == 3 * budget
    with pytest.raises(BudgetExhausted):  # nothing is left
        meter.query(_design(1, seed=5)[0], X)


def test_collect_spends_a_sample_budget_without_overshooting():
    meter, counter = _metered(max_samples=50)
    out = collect(meter, _design(40), X, chunk=7)
    assert out.reason == "budget" and out.n_sent == 16  # 16 * 3 = 48 <= 50 < 51
    assert meter.ledger.samples == counter.samples == 48


def test_collect_counts_repeated_settings_as_free():
    meter, counter = _metered(max_reconfigurations=6)
    design = np.repeat(_design(10), 3, axis=0)  # each setting three times in a row
    meter.query(design[0], X)  # the device already holds the first setting (1 of 6 spent)
    out = collect(meter, design, X, chunk=4)
    assert out.reason == "budget"
    assert out.n_sent == 3 * 6  # the held setting is free, then 5 more, each with its repeats
    assert meter.ledger.reconfigurations == counter.reconfigurations == 6
    assert out.ledger_spent.reconfigurations == 5


def test_collect_with_an_exact_budget_completes():
    meter, _ = _metered(max_reconfigurations=12)
    out = collect(meter, _design(12), X, chunk=5)
    assert (
        out.reason == "completed" and out.n_sent == 12 and meter.remaining().reconfigurations == 0
    )


def test_collect_on_a_plain_device():
    dev = CountingDevice(LinearDevice())
    out = collect(dev, _design(9), X, chunk=4)
    assert out.reason == "completed" and out.n_sent == 9
    assert out.ledger_spent == Ledger(9, 27, 3, 0)
    assert (dev.reconfigurations, dev.samples) == (9, 27)


class _NoPreflight:
    """Hides a meter's budget queries: collect learns of the budget only from the error."""

    def __init__(self, meter):
        self._meter = meter
        self.space = meter.space

    def query(self, theta, x):
        return self._meter.query(theta, x)

    def query_many(self, thetas, x):
        return self._meter.query_many(thetas, x)


def test_collect_stops_cleanly_on_budget_exhausted():
    meter, _ = _metered(max_reconfigurations=10)
    out = collect(_NoPreflight(meter), _design(30), X, chunk=4)
    assert out.reason == "budget" and out.n_sent == 8  # two full chunks; the third is refused
    assert meter.ledger.reconfigurations == 8


def test_collect_is_logged(tmp_path):
    meter, _ = _metered(max_reconfigurations=11)
    with QueryLog(tmp_path / "q.sqlite") as log:
        meter.add_observer(log)
        out = collect(meter, _design(30), X, chunk=4)
        logged = log.data()
    np.testing.assert_array_equal(logged.settings(), out.data.settings())
    assert logged.n_groups == 3


def test_collect_nothing_affordable():
    meter, counter = _metered(max_reconfigurations=0)
    out = collect(meter, _design(5), X)
    assert out.reason == "budget" and out.n_sent == 0 and out.data.n_groups == 0
    assert out.ledger_spent == Ledger() and counter.samples == 0


def test_collect_rejects_bad_arguments():
    meter, _ = _metered()
    for chunk in (0, -1, 2.0, True):
        with pytest.raises(ConfigError, match="chunk"):
            collect(meter, _design(4), X, chunk=chunk)
    with pytest.raises(ShapeError):
        collect(meter, np.zeros((4, 5)), X)
    with pytest.raises(ShapeError):
        collect(meter, _design(4), np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="ParamSpace"):
        collect(object(), _design(4), X)


def test_a_cut_discrete_space_keeps_its_levels_and_contains_the_box():
    from blacksat.surrogates.base import Coverage, sub_space

    step = 2 * np.pi / 16
    levels = np.arange(16) * step
    space = ParamSpace(np.zeros(5), np.full(5, 2 * np.pi), levels, period=np.full(5, 2 * np.pi))
    lo = np.array([0.5, 0.0, 3.0, 1.0, 6.2])
    hi = np.array([1.0, 2 * np.pi, 3.05, 1.0, 2 * np.pi])
    cut = sub_space(space, lo, hi)
    assert cut.levels is not None and np.all(np.isin(cut.levels, levels))
    assert np.all(cut.lower <= lo + 1e-12) and np.all(cut.upper >= hi - 1e-12)
    assert np.allclose(cut.lower / step, [1, 0, 7, 2, 14])  # ends moved out to levels
    assert np.allclose(cut.upper / step, [3, 16, 8, 3, 16])
    assert list(cut.period) == [0.0, 2 * np.pi, 0.0, 0.0, 0.0]  # the whole period kept
    for j in range(5):  # two levels at least in every control's box
        assert np.sum((levels >= cut.lower[j] - 1e-9) & (levels <= cut.upper[j] + 1e-9)) >= 2
    draws = cut.sample(np.random.default_rng(0), 500)  # snapped draws stay in the cut box
    assert np.all(draws >= cut.lower - 1e-12) and np.all(draws <= cut.upper + 1e-12)
    assert sub_space(space, np.zeros(5), np.full(5, 2 * np.pi)) is space
    # a bounded discrete space: levels outside every box are dropped
    box = ParamSpace.box(3, 0.0, 1.0, levels=np.linspace(0.0, 1.0, 9))
    small = sub_space(box, np.full(3, 0.3), np.full(3, 0.4))
    assert np.allclose(small.lower, 0.25) and np.allclose(small.upper, 0.5)
    assert np.allclose(small.levels, [0.25, 0.375, 0.5])
    # the region a narrow log covers is cut on a discrete space too (it was left whole)
    log = Coverage((0.3,) * 3, (0.4,) * 3, (0.01,) * 3, (0.0,), (1.0,), 10)
    assert log.region(box, margin=0.0) == small
