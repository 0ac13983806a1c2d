"""Periodic controls in ParamSpace: declaration, validation (accept and wrap), projection (wrap,
never stick), snapping on the circle, wrapped differences and distances, uniform draws over the
circle, persistence; as examples and as properties over random spaces that mix periodic,
bounded and discrete controls."""

import json

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from blacksat import ParamSpace
from blacksat.errors import ConfigError, NonFiniteError, OutOfBoundsError

TWO_PI = 2 * np.pi


def phases(d: int = 4) -> ParamSpace:
    return ParamSpace.box(d, 0.0, TWO_PI, periodic=True)


def slm(d: int = 3, levels: int = 8) -> ParamSpace:
    step = TWO_PI / levels
    return ParamSpace.box(
        d, 0.0, step * (levels - 1), levels=np.arange(levels) * step, periodic=TWO_PI
    )


# ---------------------------------------------------------------------- declaration
def test_declarations_mask_periods_and_box():
    sp = ParamSpace([0.0, -1.0, 0.0], [TWO_PI, 1.0, 1.0], period=[True, False, True])
    np.testing.assert_array_equal(sp.period, [TWO_PI, 0.0, 1.0])
    np.testing.assert_array_equal(sp.periodic, [True, False, True])
    np.testing.assert_array_equal(sp.span, [TWO_PI, 2.0, 1.0])
    assert ParamSpace([0.0, 0.0], [1.0, 1.0], period=[1.0, 0.0]).periodic.tolist() == [1, 0]
    assert not ParamSpace.box(3, 0, 1).periodic.any()  # bounded unless declared
    assert phases().periodic.all() and "periodic=4" in repr(phases())
    with pytest.raises(ConfigError, match="span its period"):  # a heater that cannot wrap
        ParamSpace.box(2, 0.0, 3.0, periodic=TWO_PI)
    with pytest.raises(ConfigError, match="lower, lower \\+ period"):
        ParamSpace.box(2, 0.0, TWO_PI, levels=np.linspace(0, TWO_PI, 5), periodic=TWO_PI)
    with pytest.raises(ConfigError, match=">= 0"):
        ParamSpace.box(2, 0.0, 1.0, periodic=-1.0)
    with pytest.raises(ConfigError, match="mask"):
        ParamSpace([0.0, 0.0], [1.0, 1.0], period=[True, False, True])


def test_bounded_copy_and_equality():
    sp = slm()
    b = sp.bounded()
    assert not b.periodic.any() and b != sp and b == sp.bounded()
    np.testing.assert_array_equal(b.levels, sp.levels)
    np.testing.assert_array_equal(b.upper, sp.upper)


def test_to_dict_round_trip_and_old_descriptions_are_bounded():
    for sp in (
        phases(),
        slm(),
        ParamSpace([0.0, -1.0], [TWO_PI, 1.0], None, ("a", "b"), [True, False]),
    ):
        again = ParamSpace.from_dict(json.loads(json.dumps(sp.to_dict())))
        assert again == sp
    old = {k: v for k, v in phases().to_dict().items() if k != "period"}
    assert ParamSpace.from_dict(old) == phases().bounded()
    with pytest.raises(ConfigError, match="unknown keys"):
        ParamSpace.from_dict({**old, "wrap": True})


# ---------------------------------------------------------------------- validation
def test_validation_accepts_and_wraps_periodic_values_and_still_guards_bounded_ones():
    sp = ParamSpace([0.0, -1.0], [TWO_PI, 1.0], period=[TWO_PI, 0.0])
    out = sp.validate([TWO_PI + 0.1, 0.5])
    np.testing.assert_allclose(out, [0.1, 0.5])
    np.testing.assert_allclose(sp.validate([-0.1, 0.5])[0], TWO_PI - 0.1)
    assert sp.validate([TWO_PI, 0.5])[0] == TWO_PI  # an in-range value passes unchanged
    with pytest.raises(OutOfBoundsError, match="1"):  # the bounded control is still guarded
        sp.validate([0.1, 1.5])
    np.testing.assert_allclose(sp.validate([7.0, 1.5], policy="clip"), [7.0 - TWO_PI, 1.0])
    with pytest.raises(NonFiniteError):  # infinity names no phase: never wrapped
        sp.validate([np.inf, 0.0])


def test_levels_snap_on_the_circle():
    sp = slm(levels=8)
    step = TWO_PI / 8
    got = sp.validate_many(
        [[TWO_PI - 0.3 * step, 7 * step + 0.3 * step, -0.2 * step], [9.6 * step, 3.4 * step, 0]]
    )
    np.testing.assert_allclose(got, [[0.0, 7 * step, 0.0], [step * 2, 3 * step, 0.0]])
    np.testing.assert_allclose(sp.snap([-0.6 * step] * 3), 7 * step)  # below 0: nearer the last
    # the bounded copy clips and snaps on the line instead
    np.testing.assert_allclose(sp.bounded().snap([TWO_PI - 0.3 * step] * 3), 7 * step)


def test_sample_is_uniform_over_the_circle_and_its_levels():
    sp = slm(d=1, levels=8)
    draws = sp.sample(0, 16000)[:, 0]
    counts = np.bincount(np.round(draws / (TWO_PI / 8)).astype(int), minlength=8)
    assert counts.size == 8 and counts.min() > 1800 and counts.max() < 2200  # each ~2000
    # the bounded copy gives the two end levels half as many draws
    bcounts = np.bincount(np.round(sp.bounded().sample(0, 16000)[:, 0] / (TWO_PI / 8)).astype(int))
    assert bcounts[0] < 1300 and bcounts[-1] < 1300


# ---------------------------------------------------------------------- projection, distance
def test_project_wraps_instead_of_sticking():
    sp = ParamSpace([0.0, -1.0], [TWO_PI, 1.0], period=[TWO_PI, 0.0])
    out = sp.project(np.array([[TWO_PI + 0.3, 2.0], [-0.3, -2.0]]))
    np.testing.assert_allclose(out, [[0.3, 1.0], [TWO_PI - 0.3, -1.0]])
    t = sp.project(torch.tensor([7.0, 3.0], dtype=torch.float32))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), [7.0 - TWO_PI, 1.0], rtol=1e-6)


def test_an_l2_ball_around_6_2_rad_contains_0_05_rad():
    sp = phases(1)
    assert sp.distance([6.2], [0.05]) == pytest.approx(TWO_PI - 6.2 + 0.05)
    assert sp.distance([6.2], [0.05]) < 0.2 < sp.bounded().distance([6.2], [0.05])
    np.testing.assert_allclose(sp.difference([0.05], [6.2]), [0.05 + TWO_PI - 6.2])
    a = torch.tensor([6.2], dtype=torch.float64, requires_grad=True)
    d = sp.difference(a, torch.tensor([0.05], dtype=torch.float64))
    d.sum().backward()  # differentiable: a retreat gradient the short way round
    assert a.grad.item() == 1.0 and d.item() == pytest.approx(6.2 - 0.05 - TWO_PI)


# ---------------------------------------------------------------------- properties
@st.composite
def spaces(draw):
    """A space mixing bounded, periodic (continuous) and, when drawn, discrete controls."""
    d = draw(st.integers(1, 6))
    kinds = draw(st.lists(st.sampled_from(["bounded", "periodic"]), min_size=d, max_size=d))
    discrete = draw(st.booleans())
    if discrete:  # shared levels k * step; periodic ones have period n * step
        n = draw(st.integers(2, 12))
        step = draw(st.floats(0.05, 3.0))
        lower, upper = np.zeros(d), np.full(d, (n - 1) * step)
        period = [n * step if k == "periodic" else 0.0 for k in kinds]
        return ParamSpace(lower, upper, np.arange(n) * step, None, period)
    lower = np.array(draw(st.lists(st.floats(-10, 10), min_size=d, max_size=d)))
    width = np.array(draw(st.lists(st.floats(0.01, 10), min_size=d, max_size=d)))
    period = [w if k == "periodic" else 0.0 for k, w in zip(kinds, width, strict=True)]
    return ParamSpace(lower, lower + width, None, None, period)


values = st.floats(-1e4, 1e4, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(sp=spaces(), data=st.data())
def test_projection_is_idempotent_equivariant_and_lands_in_the_space(sp, data):
    x = np.array(data.draw(st.lists(values, min_size=sp.dim, max_size=sp.dim)))
    k = data.draw(st.integers(-5, 5))
    p = sp.project(x)
    assert sp.contains(p)
    np.testing.assert_array_equal(sp.project(p), p)  # idempotent, exactly
    inside = (x >= sp.lower) & (x <= sp.upper)
    np.testing.assert_array_equal(p[inside], x[inside])  # in-range values untouched
    # equivariant: a shift by whole periods projects to the same point of the circle
    shifted = sp.project(x + k * sp.period)
    tol = 1e-9 * (1 + np.abs(x) + np.abs(k) * sp.period)
    assert np.all(np.abs(sp.difference(shifted, p)) <= tol)
    # periodic controls wrap (the same phase); bounded ones clip
    on = sp.periodic
    assert np.all(np.abs(sp.difference(p, x))[on] <= tol[on])
    np.testing.assert_array_equal(p[~on], np.clip(x, sp.lower, sp.upper)[~on])


@settings(max_examples=150, deadline=None)
@given(sp=spaces(), data=st.data())
def test_validation_never_lets_an_out_of_range_value_through(sp, data):
    x = np.array(data.draw(st.lists(values, min_size=sp.dim, max_size=sp.dim)))
    bounded_out = ~sp.periodic & ((x < sp.lower) | (x > sp.upper))
    if bounded_out.any():
        with pytest.raises(OutOfBoundsError):
            sp.validate(x)
    out = sp.validate(x, policy="clip")
    assert sp.contains(out) and np.all(out >= sp.lower) and np.all(out <= sp.upper + 1e-9)
    if sp.levels is not None:
        assert np.all(np.isin(out, sp.levels))
        # snapped to the nearest level on the circle: within half a step of the wrapped value
        half = 0.5 * np.diff(sp.levels).max() + 1e-9 * (1 + np.abs(x))
        on = sp.periodic
        assert np.all(np.abs(sp.difference(out, x))[on] <= half[on])


@settings(max_examples=150, deadline=None)
@given(sp=spaces(), data=st.data())
def test_difference_is_the_short_way_round_and_antisymmetric(sp, data):
    a = np.array(data.draw(st.lists(values, min_size=sp.dim, max_size=sp.dim)))
    b = np.array(data.draw(st.lists(values, min_size=sp.dim, max_size=sp.dim)))
    d = sp.difference(a, b)
    on = sp.periodic
    tol = 1e-9 * (1 + np.abs(a) + np.abs(b))
    assert np.all(np.abs(d[on]) <= 0.5 * sp.period[on] + tol[on])
    np.testing.assert_array_equal(d[~on], (a - b)[~on])
    assume(np.all(np.abs(np.abs(d[on]) - 0.5 * sp.period[on]) > 1e-6))  # not a tie
    np.testing.assert_allclose(sp.difference(b, a), -d, atol=1e-6)
    assert sp.distance(a, b) == pytest.approx(np.linalg.norm(d))
    assert sp.distance(a, b) <= sp.bounded().distance(a, b) + 1e-9
    # wrap: canonical values in [lower, lower + period), the same points
    w = sp.wrap(a)
    assert np.all(w[on] >= sp.lower[on]) and np.all(w[on] < (sp.lower + sp.period)[on])
    np.testing.assert_array_equal(w[~on], a[~on])
