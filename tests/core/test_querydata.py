import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from blacksat import ConfigError, NonFiniteError, QueryData, ShapeError


def _data(n_groups=4, k=3, b=5, d=2, seed=0):
    rng = np.random.default_rng(seed)
    groups = []
    for _ in range(n_groups):
        t = rng.uniform(-1, 1, (k, d))
        x = rng.normal(size=(b, 3))
        groups.append((t, x, rng.normal(size=(k, b, 2))))
    return QueryData(tuple(groups))


def _rows(a):
    return {tuple(r) for r in np.asarray(a)}


def test_from_arrays_shapes_and_counts():
    data = QueryData.from_arrays(np.zeros((4, 2)), np.ones((3, 5)), np.zeros((4, 3, 7)))
    assert (data.n_groups, data.n_settings, data.n_samples) == (1, 4, 12)
    assert (data.dim, data.input_shape, data.output_shape) == (2, (5,), (7,))
    assert data.settings().shape == (4, 2)
    t, _, y = data.groups[0]
    assert t.dtype == np.float64 and not t.flags.writeable and not y.flags.writeable


def test_arrays_are_copied_from_the_caller():
    t = np.zeros((2, 2))
    data = QueryData.from_arrays(t, np.ones((1, 1)), np.zeros((2, 1, 1)))
    t[0, 0] = 5.0
    assert data.groups[0][0][0, 0] == 0.0


@pytest.mark.parametrize(
    ("thetas", "x", "y"),
    [
        (np.zeros(3), np.ones((2, 1)), np.zeros((1, 2, 1))),  # thetas not (K, d)
        (np.zeros((0, 3)), np.ones((2, 1)), np.zeros((0, 2, 1))),  # K = 0
        (np.zeros((2, 3)), np.ones((2, 1)), np.zeros((3, 2, 1))),  # K mismatch
        (np.zeros((2, 3)), np.ones((2, 1)), np.zeros((2, 4, 1))),  # B mismatch
        (np.zeros((2, 3)), np.ones((2, 1)), np.zeros(2)),  # y not (K, B, ...)
        (np.zeros((2, 3)), np.ones((0, 1)), np.zeros((2, 0, 1))),  # B = 0
    ],
)
def test_from_arrays_rejects_bad_shapes(thetas, x, y):
    with pytest.raises(ShapeError, match="shape"):
        QueryData.from_arrays(thetas, x, y)


def test_rejects_non_finite_and_non_numeric():
    y = np.zeros((1, 2, 1))
    y[0, 1, 0] = np.nan
    with pytest.raises(NonFiniteError, match="readings y holds 1 non-finite"):
        QueryData.from_arrays(np.zeros((1, 2)), np.ones((2, 1)), y)
    with pytest.raises(ShapeError, match="numeric"):
        QueryData.from_arrays("abc", np.ones((2, 1)), np.zeros((1, 2, 1)))


def test_groups_must_agree_on_shapes():
    a = QueryData.from_arrays(np.zeros((1, 2)), np.ones((2, 3)), np.zeros((1, 2, 4)))
    other_d = QueryData.from_arrays(np.zeros((1, 5)), np.ones((2, 3)), np.zeros((1, 2, 4)))
    other_out = QueryData.from_arrays(np.zeros((1, 2)), np.ones((2, 3)), np.zeros((1, 2, 1)))
    with pytest.raises(ShapeError, match="d = 5"):
        a + other_d
    with pytest.raises(ShapeError, match="output shape"):
        a.extend(other_out)
    with pytest.raises(ShapeError, match="triple"):
        QueryData(((np.zeros((1, 2)), np.ones((2, 3))),))


def test_concatenate_keeps_order_and_shares_inputs():
    a, b = _data(2, seed=1), _data(3, seed=2)
    c = a + b
    assert c.n_groups == 5 and c.n_settings == a.n_settings + b.n_settings
    np.testing.assert_array_equal(c.settings(), np.concatenate([a.settings(), b.settings()]))
    assert c.groups[0][1] is a.groups[0][1]  # read-only arrays are not copied again
    assert QueryData.concatenate().n_groups == 0
    with pytest.raises(ConfigError, match="QueryData"):
        QueryData.concatenate(a, "b")


def test_flat_rows_match_groups():
    data = _data(2, k=3, b=4)
    t, x, y = data.flat()
    assert t.shape == (24, 2) and x.shape == (24, 3) and y.shape == (24, 2)
    g_t, g_x, g_y = data.groups[1]
    row = 12 + 2 * 4 + 3  # group 1, setting 2, input 3
    np.testing.assert_array_equal(t[row], g_t[2])
    np.testing.assert_array_equal(x[row], g_x[3])
    np.testing.assert_array_equal(y[row], g_y[2, 3])
    with pytest.raises(ConfigError, match="empty"):
        QueryData().flat()


def test_empty_data():
    empty = QueryData()
    assert (empty.n_settings, empty.n_samples, empty.dim) == (0, 0, None)
    assert empty.settings().shape == (0, 0)
    assert "empty" in repr(empty)


def test_split_keeps_settings_disjoint_and_loses_nothing():
    data = _data(6, k=4, b=3)
    train, held = data.split(0.25, seed=3)
    assert _rows(train.settings()).isdisjoint(_rows(held.settings()))
    assert train.n_settings + held.n_settings == data.n_settings
    assert held.n_settings == 6  # round(0.25 * 24)
    # every held-out reading is the one recorded for its setting and input
    lookup = {tuple(t[i]): y[i] for t, _, y in data.groups for i in range(len(t))}
    for t, _, y in held.groups:
        for i in range(len(t)):
            np.testing.assert_array_equal(y[i], lookup[tuple(t[i])])


def test_split_holds_out_repeated_settings_everywhere():
    # the same settings are sent with two different minibatches
    t = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    a = QueryData.from_arrays(t, np.ones((2, 1)), np.zeros((3, 2, 1)))
    b = QueryData.from_arrays(t[::-1], np.zeros((4, 1)), np.ones((3, 4, 1)))
    for seed in range(5):
        train, held = (a + b).split(0.5, seed=seed)
        assert _rows(train.settings()).isdisjoint(_rows(held.settings()))
        assert held.n_settings in (2, 4) and train.n_settings + held.n_settings == 6


def test_split_is_seeded():
    data = _data()
    s1 = data.split(0.3, seed=7)[1].settings()
    s2 = data.split(0.3, seed=np.random.default_rng(7))[1].settings()
    s3 = data.split(0.3, seed=8)[1].settings()
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, s3)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 2, True])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ConfigError, match="fraction"):
        _data().split(fraction, seed=0)


@given(
    n_groups=st.integers(1, 4),
    k=st.integers(1, 4),
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**16),
)
def test_split_property(n_groups, k, fraction, seed):
    data = _data(n_groups, k=k, b=2, seed=seed)
    train, held = data.split(fraction, seed=seed)
    assert held.n_settings >= 1
    assert train.n_settings >= (1 if data.n_settings >= 2 else 0)
    assert train.n_settings + held.n_settings == data.n_settings
    assert _rows(train.settings()).isdisjoint(_rows(held.settings()))
