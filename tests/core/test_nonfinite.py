"""The non-finite policy: raise, skip or penalize a step whose readings, loss or gradient are not
finite; a limit on failures in a row; the cost of a failed attempt is still reported."""

import numpy as np
import pytest
import torch
from doubles import CountingDevice, LinearDevice, NonFiniteDevice, WrongShapeDevice
from fakes import PlainTask, batch

from blacksat import ConfigError, InvalidReading, NonFiniteError
from blacksat.data import load_iris
from blacksat.estimators import ZerothOrder
from blacksat.meter import Ledger, MeteredDevice
from blacksat.nonfinite import NonFinitePolicy
from blacksat.objective import Estimate, StepContext
from blacksat.sat import sat
from blacksat.task import Task
from blacksat.trainer import TrainConfig, Trainer

D = 6  # LinearDevice(3, 2)


def zo(inner, **kw):
    meter = MeteredDevice(CountingDevice(inner), policy="clip")
    return ZerothOrder(meter, PlainTask(), q=2, sigma=0.05, **kw), meter


def ctx(seed=0):
    return StepContext(np.random.default_rng(seed))


def theta(v):
    return torch.full((D,), float(v), dtype=torch.float64)


class Scripted:
    """An estimator returning prepared estimates (NaN where a test says so)."""

    name = "scripted"

    def __init__(self, script):
        self.task, self.script, self.calls = PlainTask(), list(script), 0

    def __call__(self, theta, batch, ctx):
        what = self.script[self.calls]
        self.calls += 1
        grad, loss, dg = torch.ones(D, dtype=torch.float64), 1.5, None
        if what == "nan_loss":
            loss = float("nan")
        elif what == "inf_grad":
            grad = grad * float("inf")
        elif what == "nan_digital":
            dg = [torch.tensor([float("nan")])]
        elif what == "invalid":
            raise InvalidReading("device returned 1 non-finite value(s) (NaN/inf)")
        return Estimate(grad, loss, Ledger(1, 4, 1, 0), dg)

    def evaluate(self, thetas, batch, ctx):
        return torch.zeros(len(thetas), dtype=torch.float64), Ledger()


def test_skip_returns_a_zero_gradient_with_the_cost_spent():
    est, meter = zo(NonFiniteDevice(LinearDevice(), at=1))
    wrapped = NonFinitePolicy(est, "skip")
    assert wrapped.meter is meter and wrapped.task is est.task
    good = wrapped(theta(0.1), batch(), ctx())
    before = meter.ledger
    skipped = wrapped(theta(0.2), batch(), ctx())
    assert torch.equal(skipped.grad, torch.zeros(D, dtype=torch.float64))
    assert skipped.loss == good.loss and skipped.logits is None and skipped.digital_grads is None
    assert skipped.cost == Ledger(4, 16, 1, 1)  # the charged, failed query_many of 2q settings
    assert (
        meter.ledger.failures == 1 and meter.ledger.reconfigurations - before.reconfigurations == 4
    )
    assert wrapped.consecutive == 1 and wrapped.failures == 1
    wrapped(theta(0.3), batch(), ctx())
    assert wrapped.consecutive == 0 and wrapped.failures == 1


def test_skip_before_any_finite_estimate_reports_a_zero_loss():
    wrapped = NonFinitePolicy(Scripted(["invalid"]), "skip")
    est = wrapped(theta(0.0), batch(), ctx())
    assert est.loss == 0.0 and est.cost == Ledger()  # no meter: the raised attempt's cost unknown


def test_penalize_retreats_towards_the_last_good_point():
    est, _ = zo(WrongShapeDevice(LinearDevice(), at=(1, 2)))
    wrapped = NonFinitePolicy(est, "penalize", penalty=7.0, pull=0.5)
    wrapped(theta(0.1), batch(), ctx())
    pen = wrapped(theta(0.3), batch(), ctx())
    assert pen.loss == 7.0
    torch.testing.assert_close(pen.grad, 0.5 * (theta(0.3) - theta(0.1)), rtol=0, atol=1e-15)
    again = wrapped(theta(0.5), batch(), ctx())  # still pulled back to the last *good* point
    torch.testing.assert_close(again.grad, 0.5 * (theta(0.5) - theta(0.1)), rtol=0, atol=1e-15)
    first = NonFinitePolicy(Scripted(["invalid"]), "penalize")(theta(0.2), batch(), ctx())
    assert torch.equal(first.grad, torch.zeros(D, dtype=torch.float64)) and first.loss == 10.0


@pytest.mark.parametrize("what", ["nan_loss", "inf_grad", "nan_digital"])
def test_non_finite_estimates_from_finite_readings_are_caught(what):
    wrapped = NonFinitePolicy(Scripted(["ok", what]), "skip")
    wrapped(theta(0.0), batch(), ctx())
    est = wrapped(theta(0.1), batch(), ctx())
    assert torch.all(est.grad == 0) and est.loss == 1.5 and est.cost == Ledger(1, 4, 1, 0)
    with pytest.raises(NonFiniteError, match="not finite"):
        NonFinitePolicy(Scripted([what]), "raise")(theta(0.0), batch(), ctx())


def test_raise_lets_an_invalid_reading_through():
    est, meter = zo(NonFiniteDevice(LinearDevice(), at=0, value=-np.inf))
    with pytest.raises(InvalidReading):
        NonFinitePolicy(est, "raise")(theta(0.0), batch(), ctx())
    assert meter.ledger.failures == 1


@pytest.mark.parametrize("mode", ["skip", "penalize"])
def test_too_many_failures_in_a_row_raise(mode):
    script = ["ok", "invalid", "invalid", "ok", "invalid", "nan_loss", "inf_grad"]
    wrapped = NonFinitePolicy(Scripted(script), mode, max_consecutive=2)
    for _ in range(6):  # two in a row absorbed, a success resets the count, two more absorbed
        wrapped(theta(0.0), batch(), ctx())
    with pytest.raises(NonFiniteError, match="3 non-finite estimates in a row") as info:
        wrapped(theta(0.0), batch(), ctx())
    assert isinstance(info.value.__cause__, NonFiniteError)
    assert wrapped.failures == 5


def test_sat_step_with_a_failed_descent_reports_the_ascent_cost_too():
    # one query_many for the ascent (2q settings), one for the descent: the descent is NaN
    inner = NonFiniteDevice(LinearDevice(), at=1)
    est, meter = zo(inner)
    wrapped = NonFinitePolicy(sat(est, rho=0.05), "skip")
    assert wrapped.meter is meter
    out = wrapped(theta(0.0), batch(), ctx())
    assert out.cost == meter.ledger and out.cost.queries == 2 and out.cost.failures == 1


def test_state_dict_round_trip_and_repr():
    wrapped = NonFinitePolicy(Scripted(["ok", "invalid"]), "penalize")
    wrapped(theta(0.1), batch(), ctx())
    wrapped(theta(0.2), batch(), ctx())
    twin = NonFinitePolicy(Scripted(["invalid"]), "penalize")
    twin.load_state_dict(wrapped.state_dict())
    assert twin.consecutive == 1 and twin.failures == 1
    torch.testing.assert_close(
        twin(theta(0.4), batch(), ctx()).grad, theta(0.3), atol=1e-15, rtol=0
    )
    assert "penalize" in repr(wrapped)
    wrapped.reset()
    assert wrapped.state_dict() == {
        "consecutive": 0,
        "failures": 0,
        "good": None,
        "loss": None,
        "inner_state": None,
    }


@pytest.mark.parametrize(
    "kw",
    [
        {"on_nonfinite": "ignore"},
        {"max_consecutive": 0},
        {"max_consecutive": 2.5},
        {"max_consecutive": True},
        {"penalty": float("inf")},
        {"penalty": "big"},
        {"pull": -1.0},
        {"meter": object()},
    ],
)
def test_rejects_bad_hyperparameters(kw):
    with pytest.raises(ConfigError):
        NonFinitePolicy(Scripted([]), **kw)
    with pytest.raises(ConfigError, match="gradient estimator"):
        NonFinitePolicy(object())


# ---------------------------------------------------------------------- inside a training run
def iris_trainer(device, mode, **kw):
    task = Task(load_iris(seed=0), input_shape=(4,)).to(torch.float64)
    meter = MeteredDevice(CountingDevice(device), policy="clip")
    est = NonFinitePolicy(ZerothOrder(meter, task, q=2, sigma=0.05), mode, **kw)
    config = TrainConfig(lr=0.05, max_steps=8, batch_size=16, seed=2, progress=False)
    return Trainer(task, est, meter.space, config, meter=meter), meter


def test_a_run_skips_bad_readings_and_completes():
    trainer, meter = iris_trainer(NonFiniteDevice(LinearDevice(4, 3), at=(2, 5, 6)), "skip")
    res = trainer.fit(np.linspace(-0.5, 0.5, 12))
    assert res.reason == "completed" and res.steps == 8
    assert meter.ledger.failures == 3 and res.ledger == meter.ledger
    assert np.all(np.isfinite(res.theta))
    losses = [h["loss"] for h in res.history]
    assert losses[2] == losses[1] and losses[6] == losses[5] == losses[4]


def test_a_run_stops_when_the_device_stays_broken():
    trainer, meter = iris_trainer(
        NonFiniteDevice(LinearDevice(4, 3), at=lambda k: k >= 3), "skip", max_consecutive=2
    )
    with pytest.raises(NonFiniteError, match="in a row"):
        trainer.fit(np.linspace(-0.5, 0.5, 12))
    assert trainer.snapshot().step == 5  # steps 4 and 5 skipped, the sixth failure raised
    assert meter.ledger.failures == 3


def config_trainer(device, tmp_path=None, **kw):
    task = Task(load_iris(seed=0), input_shape=(4,)).to(torch.float64)
    meter = MeteredDevice(CountingDevice(device), policy="clip")
    config = TrainConfig(
        lr=0.05, max_steps=8, batch_size=16, seed=2, progress=False, on_nonfinite="skip", **kw
    )
    ckpt = None if tmp_path is None else tmp_path / "run.ckpt"
    est = ZerothOrder(meter, task, q=2, sigma=0.05)
    return Trainer(task, est, meter.space, config, meter=meter, checkpoint_path=ckpt), meter


def test_the_policy_from_train_config_equals_wrapping_by_hand():
    bad = (2, 5, 6)
    by_hand, _ = iris_trainer(NonFiniteDevice(LinearDevice(4, 3), at=bad), "skip")
    by_config, _ = config_trainer(NonFiniteDevice(LinearDevice(4, 3), at=bad))
    assert isinstance(by_config.estimator, NonFinitePolicy)
    a = by_hand.fit(np.linspace(-0.5, 0.5, 12))
    b = by_config.fit(np.linspace(-0.5, 0.5, 12))
    assert np.array_equal(a.theta, b.theta) and b.reason == "completed"
    assert b.state.estimator == {
        "consecutive": 0,
        "failures": 3,
        "good": b.state.estimator["good"],
        "loss": b.state.estimator["loss"],
        "inner_state": None,
    }
    with pytest.raises(NonFiniteError, match="in a row"):
        config_trainer(
            NonFiniteDevice(LinearDevice(4, 3), at=lambda k: k >= 3), max_consecutive_failures=1
        )[0].fit(np.linspace(-0.5, 0.5, 12))


def test_the_policy_memory_is_checkpointed_and_restored(tmp_path):
    from blacksat.checkpoint import load_checkpoint, save_checkpoint

    trainer, _ = config_trainer(NonFiniteDevice(LinearDevice(4, 3), at=(6, 7)))
    res = trainer.fit(np.linspace(-0.5, 0.5, 12))  # the last two steps failed: a streak of 2
    assert res.state.estimator["consecutive"] == 2 and res.state.estimator["failures"] == 2
    state = load_checkpoint(save_checkpoint(res.state, tmp_path / "run.ckpt"))
    fresh, _ = config_trainer(NonFiniteDevice(LinearDevice(4, 3), at=()))
    assert fresh.estimator.consecutive == 0
    fresh.load_state(state)
    assert (fresh.estimator.consecutive, fresh.estimator.failures) == (2, 2)
    assert torch.equal(fresh.estimator.state_dict()["good"], res.state.estimator["good"])


@pytest.mark.parametrize("bad", [{"on_nonfinite": "ignore"}, {"max_consecutive_failures": 0}])
def test_train_config_rejects_bad_nonfinite_settings(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)
