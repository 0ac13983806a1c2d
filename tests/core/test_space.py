import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from blacksat import (
    BlacksatError,
    ConfigError,
    NonFiniteError,
    OutOfBoundsError,
    ParamSpace,
    ShapeError,
)


def test_box_properties():
    s = ParamSpace.box(3, -1.0, 2.0, names=["a", "b", "c"])
    assert s.dim == 3 and s.shape == (3,)
    np.testing.assert_array_equal(s.width, [3, 3, 3])
    np.testing.assert_array_equal(s.center, [0.5, 0.5, 0.5])
    assert "d=3" in repr(s)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lower=[0.0, 0.0], upper=[1.0]),
        dict(lower=[1.0], upper=[0.0]),
        dict(lower=[np.nan], upper=[1.0]),
        dict(lower=[], upper=[]),
        dict(lower=[0.0], upper=[1.0], names=("a", "b")),
        dict(lower=[0.0], upper=[1.0], levels=[0.5]),
        dict(lower=[0.0], upper=[1.0], levels=[0.0, 2.0]),
    ],
)
def test_invalid_spaces_rejected(kwargs):
    with pytest.raises(ConfigError):
        ParamSpace(**kwargs)


def test_validate_returns_copy_and_never_aliases():
    s = ParamSpace.box(3, 0, 1)
    theta = np.array([0.1, 0.2, 0.3])
    out = s.validate(theta)
    out[0] = 0.9
    assert theta[0] == 0.1
    assert out.dtype == np.float64


def test_wrong_shape_message_names_expected_and_got():
    s = ParamSpace.box(3, 0, 1)
    with pytest.raises(ShapeError, match=r"\(3,\).*\(4,\)"):
        s.validate(np.zeros(4))
    with pytest.raises(ShapeError):
        s.validate_many(np.zeros((2, 4)))
    with pytest.raises(ShapeError):
        s.validate_many(np.zeros((0, 3)))
    with pytest.raises(ShapeError):
        s.validate("abc")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_rejected_even_with_clip(bad):
    s = ParamSpace.box(3, 0, 1)
    theta = np.array([0.1, bad, 0.2])
    for policy in ("raise", "clip"):
        with pytest.raises(NonFiniteError, match="control 1"):
            s.validate(theta, policy=policy)


def test_out_of_bounds_raises_unless_clip_opted_in():
    s = ParamSpace.box(3, 0, 1, names=["h0", "h1", "h2"])
    theta = np.array([0.5, 1.5, -0.1])
    with pytest.raises(OutOfBoundsError, match="h1") as info:
        s.validate(theta)
    assert list(info.value.indices) == [1, 2]
    assert isinstance(info.value, ValueError) and isinstance(info.value, BlacksatError)
    np.testing.assert_array_equal(s.validate(theta, policy="clip"), [0.5, 1.0, 0.0])
    with pytest.raises(ConfigError):
        s.validate(theta, policy="wrap")  # type: ignore[arg-type]


def test_levels_snap_to_nearest():
    s = ParamSpace.box(4, 0, 3, levels=[0, 1, 2, 3])
    np.testing.assert_array_equal(s.validate([0.4, 0.6, 2.49, 3.0]), [0, 1, 2, 3])
    draws = s.sample(0, 50)
    assert set(np.unique(draws)) <= {0.0, 1.0, 2.0, 3.0}


def test_sample_is_seeded_and_inside():
    s = ParamSpace(np.array([0.0, -2.0]), np.array([1.0, 2.0]))
    a, b = s.sample(7, 100), s.sample(7, 100)
    np.testing.assert_array_equal(a, b)
    assert s.contains(a)
    assert not s.contains(np.array([0.0, 3.0]))
    assert not s.contains(np.array([np.nan, 0.0]))


def test_equality():
    assert ParamSpace.box(2, 0, 1) == ParamSpace.box(2, 0, 1)
    assert ParamSpace.box(2, 0, 1) != ParamSpace.box(2, 0, 2)
    assert ParamSpace.box(2, 0, 1, levels=[0, 1]) != ParamSpace.box(2, 0, 1)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, 5, elements=st.floats(-10, 10, allow_nan=False)),
    st.sampled_from(["raise", "clip"]),
)
def test_validated_settings_always_inside(theta, policy):
    s = ParamSpace(np.linspace(-3, 0, 5), np.linspace(0.5, 4, 5))
    try:
        out = s.validate(theta, policy=policy)
    except OutOfBoundsError:
        assert policy == "raise" and not s.contains(theta)
        return
    assert s.contains(out)
    if policy == "raise":
        np.testing.assert_array_equal(out, theta)
