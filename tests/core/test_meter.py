import pickle

import numpy as np
import pytest
from doubles import CountingDevice, FaultyDevice, LinearDevice
from hypothesis import given
from hypothesis import strategies as st

from blacksat import (
    BudgetExhausted,
    ConfigError,
    Device,
    DeviceError,
    DeviceTimeout,
    InvalidReading,
    NonFiniteError,
    OutOfBoundsError,
    ParamSpace,
    ShapeError,
)
from blacksat.meter import Budget, Ledger, MeteredDevice

X = np.ones((4, 3))


def test_plain_class_satisfies_protocol_and_meter_too():
    dev = LinearDevice()
    assert isinstance(dev, Device)
    assert isinstance(MeteredDevice(dev), Device)


def test_counts_reconfigurations_and_samples():
    dev = CountingDevice(LinearDevice())
    m = MeteredDevice(dev)
    t0, t1 = np.zeros(6), np.full(6, 0.5)
    m.query(t0, X)
    m.query(t0, X)  # same setting: no reconfiguration, 4 more samples
    assert m.ledger == Ledger(reconfigurations=1, samples=8, queries=2)
    m.query_many(np.stack([t0, t1, t1, t0]), X[:2])  # t0 held: changes at 1 and 3
    assert m.ledger.reconfigurations == 3
    assert m.ledger.samples == 8 + 8
    assert (dev.reconfigurations, dev.samples) == (m.ledger.reconfigurations, m.ledger.samples)


def test_budget_checked_before_query_is_sent():
    dev = LinearDevice()
    m = MeteredDevice(dev, max_reconfigurations=2, max_samples=100)
    m.query(np.zeros(6), X)
    m.query(np.full(6, 0.1), X)
    before = len(dev.received)
    with pytest.raises(BudgetExhausted) as info:
        m.query(np.full(6, 0.2), X)
    e = info.value
    assert (e.kind, e.used, e.requested, e.budget) == ("reconfigurations", 2, 1, 2)
    assert len(dev.received) == before  # nothing went out
    assert m.ledger.reconfigurations == 2
    # re-querying the held setting costs no reconfiguration, so it is still allowed
    m.query(np.full(6, 0.1), X)


def test_sample_budget_refuses_whole_batch():
    m = MeteredDevice(LinearDevice(), max_samples=10)
    m.query(np.zeros(6), X)
    with pytest.raises(BudgetExhausted, match="samples") as info:
        m.query_many(np.zeros((2, 6)), X)
    assert info.value.used == 4 and info.value.requested == 8
    assert m.remaining().samples == 6


def test_invalid_settings_never_reach_device():
    dev = LinearDevice()
    m = MeteredDevice(dev)
    for bad, err in [
        (np.full(6, 2.0), OutOfBoundsError),
        (np.full(6, np.nan), NonFiniteError),
        (np.zeros(5), ShapeError),
    ]:
        with pytest.raises(err):
            m.query(bad, X)
    with pytest.raises(NonFiniteError):
        m.query(np.zeros(6), np.full((2, 3), np.inf))
    with pytest.raises(ShapeError, match=r"\(B, 3\)"):
        m.query(np.zeros(6), np.ones((2, 4)))
    assert dev.received == [] and m.ledger == Ledger()


def test_clip_policy_is_explicit():
    dev = LinearDevice()
    m = MeteredDevice(dev, policy="clip")
    m.query(np.full(6, 5.0), X)
    np.testing.assert_array_equal(dev.received[-1], np.ones(6))


@pytest.mark.parametrize(
    "fault,err",
    [
        ("raise", DeviceError),
        ("timeout", DeviceTimeout),
        ("nan", InvalidReading),
        ("inf", InvalidReading),
        ("shape", InvalidReading),
        ("object", InvalidReading),
    ],
)
def test_faults_are_charged_and_reported(fault, err):
    m = MeteredDevice(FaultyDevice(fault, at=1))
    m.query(np.zeros(6), X)
    with pytest.raises(err) as info:
        m.query(np.full(6, 0.3), X)
    assert "expected" in str(info.value) or fault in ("raise", "timeout", "nan", "inf")
    assert m.ledger == Ledger(reconfigurations=2, samples=8, queries=2, failures=1)
    # after an exception the device state is unknown: re-applying costs a reconfiguration;
    # after a bad reading the device did hold the setting: re-reading it costs none
    m.query(np.full(6, 0.3), X)
    assert m.ledger.reconfigurations == (3 if fault in ("raise", "timeout") else 2)


def test_observer_sees_each_completed_query():
    seen = []
    m = MeteredDevice(LinearDevice(), observers=[seen.append])
    y = m.query_many(np.zeros((3, 6)), X)
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0].y, y)
    assert seen[0].cost.samples == 12 and seen[0].ledger == m.ledger


@pytest.mark.parametrize(
    "kw", [dict(max_samples=-1), dict(max_reconfigurations=1.5), dict(policy="x")]
)
def test_constructor_rejects_bad_hyperparameters(kw):
    with pytest.raises(ConfigError):
        MeteredDevice(LinearDevice(), **kw)


def test_rejects_non_devices():
    with pytest.raises(ConfigError, match="space"):
        MeteredDevice(object())  # type: ignore[arg-type]


class _QueryOnly:
    """A driver with ``query`` alone (no vectorized ``query_many``)."""

    def __init__(self) -> None:
        self.inner, self.calls = LinearDevice(), 0
        self.space = self.inner.space

    def query(self, theta, x):
        self.calls += 1
        return self.inner.query(theta, x)


def test_a_driver_with_query_alone_is_looped_with_the_same_accounting():
    plain, looped = MeteredDevice(LinearDevice()), MeteredDevice(_QueryOnly())
    thetas = np.stack([np.full(plain.space.dim, v) for v in (0.1, 0.1, -0.2)])
    x = np.ones((4, 3))
    np.testing.assert_allclose(looped.query_many(thetas, x), plain.query_many(thetas, x))
    assert looped.ledger == plain.ledger  # 2 reconfigurations (a repeat is free), 12 samples
    assert looped._device.calls == 3
    with pytest.raises(ConfigError, match="query"):
        MeteredDevice(type("NoQuery", (), {"space": plain.space})())


def test_budget_validation():
    with pytest.raises(ConfigError):
        Budget(samples=True)  # type: ignore[arg-type]


def test_pickles_with_its_ledger():
    m = MeteredDevice(LinearDevice(), max_samples=100)
    m.query(np.zeros(6), X)
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.ledger == m.ledger and m2.budget == m.budget


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 4), st.integers(1, 5)), max_size=25))
def test_budget_never_exceeded_and_ledger_equals_tally(ops):
    counter = CountingDevice(LinearDevice())
    m = MeteredDevice(counter, max_reconfigurations=12, max_samples=60)
    settings = np.linspace(-1, 1, 4)[:, None] * np.ones(6)
    for which, k, b in ops:
        thetas = settings[(which + np.arange(k)) % 4]
        try:
            m.query_many(thetas, np.ones((b, 3)))
        except BudgetExhausted:
            pass
        assert m.ledger.reconfigurations <= 12 and m.ledger.samples <= 60
        assert (m.ledger.reconfigurations, m.ledger.samples) == (
            counter.reconfigurations,
            counter.samples,
        )


def test_ledger_difference_is_the_spend_between_two_readings():
    from blacksat.meter import Ledger

    assert Ledger(7, 700, 5, 2) - Ledger(3, 300, 1, 1) == Ledger(4, 400, 4, 1)
    assert Ledger(3, 30, 2, 0) - Ledger(3, 30, 2, 0) == Ledger()


# ---------------------------------------------------------------------- odd settings, budgets
def _quiet_mesh():
    from blacksat.devices import MZIMesh

    return MZIMesh(n_modes=4, seed=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda c: c.space.center + 0.5j,
        lambda c: c.space.center > 0.5,
        lambda c: [True] * c.space.dim,
        lambda c: __import__("torch").zeros(c.space.dim, dtype=__import__("torch").bool),
        lambda c: __import__("torch").zeros(c.space.dim, dtype=__import__("torch").complex64),
    ],
    ids=["complex", "bool", "bool-list", "torch-bool", "torch-complex"],
)
def test_complex_and_boolean_settings_are_refused_before_sending(make):
    import warnings

    from blacksat.errors import ValidationError

    chip = _quiet_mesh()
    meter = MeteredDevice(chip)
    x = np.zeros((2, *chip.input_shape))
    theta = make(chip)
    many = [theta] if isinstance(theta, list) else theta[None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning on the way to the refusal
        with pytest.raises(ValidationError, match="real numbers"):
            meter.query(theta, x)
        with pytest.raises(ValidationError, match="real numbers"):
            meter.query_many(many, x)
    assert meter.ledger.queries == 0


def test_nan_and_infinite_budgets():
    import math

    chip = _quiet_mesh()
    for bad in (math.nan, -math.inf, -1, 2.5):
        with pytest.raises(ConfigError, match="integer >= 0, or None / inf for unlimited"):
            MeteredDevice(chip, max_reconfigurations=bad)
        with pytest.raises(ConfigError, match="budget samples"):
            MeteredDevice(chip, max_samples=bad)
    unlimited = MeteredDevice(chip, max_reconfigurations=math.inf, max_samples=math.inf)
    assert unlimited.budget.reconfigurations is None and unlimited.budget.samples is None
    assert MeteredDevice(chip, max_reconfigurations=5.0).budget.reconfigurations == 5


def test_the_random_state_of_a_simulator_passes_through_and_a_plain_device_has_none():
    from blacksat.devices import DEVICES

    chip = DEVICES["crossbar"](seed=1)
    meter = MeteredDevice(chip)
    x = np.zeros((2, 16))
    meter.query(chip.space.center, x)
    state = meter.rng_state()
    assert state is not None and set(state) >= {"noise", "drift", "program", "held"}
    fresh = MeteredDevice(DEVICES["crossbar"](seed=1))
    fresh.set_rng_state(state)
    theta = chip.space.center + 0.1
    np.testing.assert_array_equal(meter.query(theta, x), fresh.query(theta, x))

    class Plain:
        space = ParamSpace.box(2, 0.0, 1.0)

        def query(self, theta, x):
            return np.zeros((len(x), 1))

    plain = MeteredDevice(Plain())
    assert plain.rng_state() is None
    plain.set_rng_state({"anything": 1})  # nothing to restore: no error
