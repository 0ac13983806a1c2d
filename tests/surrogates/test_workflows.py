"""Surrogate workflows: calibrate under a budget, replay a query log, refine, train actively,
and the two online compositions (physics-aware descent; surrogate ascent + device descent).

Every device cost is checked twice: on the :class:`~blacksat.MeteredDevice` ledger and on an
independent :class:`CountingDevice` tally underneath it.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from doubles import CountingDevice

from blacksat import BudgetExhausted, ConfigError, MeteredDevice, QueryLog
from blacksat.data import Dataset, load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.estimators import Autograd, PhysicsAware
from blacksat.querylog import log_queries
from blacksat.sat import sat
from blacksat.surrogates import (
    Ensemble,
    GreyBox,
    calibrate,
    local,
    refine,
    train_active,
    train_trust_region,
)
from blacksat.trainer import TrainConfig, Trainer

BATCH = 16
CONFIG = TrainConfig(max_steps=5, epochs=None, batch_size=BATCH, progress=False)


def _grey(chip: MZIMesh, **kw) -> GreyBox:
    return GreyBox(chip.nominal_model(dtype=torch.float64), **{"steps": 15, "lr": 0.05, **kw})


@pytest.fixture(scope="module")
def chip() -> MZIMesh:
    return MZIMesh(n_modes=4, s_bs=0.1, s_ps=0.1, seed=2)


@pytest.fixture
def task(chip):
    """Iris on the 4-mode mesh, cut to 48 training and 30 test samples."""
    full = load_iris(seed=0)
    tiny = Dataset(
        "iris-tiny", full.x_train[:48], full.y_train[:48], full.x_test[:30], full.y_test[:30], 3
    )
    return default_task(chip, tiny, seed=0).to(torch.float64)


@pytest.fixture
def x(task) -> np.ndarray:
    """Device inputs for calibration: 6 training samples, encoded as the task encodes them."""
    with torch.no_grad():
        return task.encode(torch.as_tensor(task.data.x_train[:6])).numpy()


def _metered(chip: MZIMesh, **budget) -> tuple[MeteredDevice, CountingDevice]:
    counting = CountingDevice(chip)
    return MeteredDevice(counting, **budget), counting


def _same_tally(meter: MeteredDevice, counting: CountingDevice) -> None:
    assert meter.ledger.reconfigurations == counting.reconfigurations
    assert meter.ledger.samples == counting.samples


# ---------------------------------------------------------------------- calibrate
def test_calibrate_spends_exactly_the_budget(chip, x):
    meter, counting = _metered(chip, max_reconfigurations=40)
    cal = calibrate(_grey(chip), meter, x, 64, chunk=16)  # the design is larger than the budget
    assert cal.reason == "budget"
    assert meter.ledger.reconfigurations == 40 and meter.ledger.samples == 40 * len(x)
    _same_tally(meter, counting)
    assert cal.spent == meter.ledger
    assert cal.data.n_settings == 40
    assert cal.report is cal.surrogate.report_
    assert cal.report.n_settings + cal.report.n_held_out == 40
    with pytest.raises(BudgetExhausted):
        meter.query(chip.space.center, x)
    _same_tally(meter, counting)


def test_calibrate_completes_within_the_budget(chip, x):
    meter, counting = _metered(chip, max_reconfigurations=40)
    cal = calibrate(_grey(chip), meter, x, 24, chunk=10)
    assert cal.reason == "completed" and cal.data.n_settings == 24
    assert cal.spent.reconfigurations == 24 and cal.spent.queries == 3
    _same_tally(meter, counting)


def test_calibrate_merges_data_replayed_from_a_query_log(chip, x, tmp_path):
    path = tmp_path / "queries.sqlite"
    # run 1: every query the calibration makes lands in the log
    meter, _ = _metered(chip)
    with log_queries(meter, path, device="chip-2"):
        first = calibrate(_grey(chip), meter, x, 24, seed=0)
    # a new run: the log, replayed read-only, fits the same surrogate to the same predictions
    with QueryLog(path, readonly=True) as log:
        replayed = log.data(device="chip-2")
    assert replayed.n_settings == 24 and log.closed
    again = _grey(chip).fit(replayed)
    thetas = torch.as_tensor(first.data.settings()[:5])
    with torch.no_grad():
        torch.testing.assert_close(again(thetas, x), first.surrogate(thetas, x), rtol=0, atol=0)
    # and the new run's calibration adds to it: fitted on both, charged for the new part only
    meter2, counting2 = _metered(chip)
    second = calibrate(_grey(chip), meter2, x, 16, seed=1, data=replayed)
    assert second.data.n_settings == 40
    assert second.report.n_settings + second.report.n_held_out == 40
    assert second.spent.reconfigurations == 16 == counting2.reconfigurations
    # earlier data may also be a plain list of (thetas, x, y) groups
    third = calibrate(_grey(chip), _metered(chip)[0], x, 8, seed=2, data=list(replayed.groups))
    assert third.data.n_settings == 32


def test_calibrate_rejects_non_surrogates_and_empty_collections(chip, x):
    meter, counting = _metered(chip, max_reconfigurations=0)
    with pytest.raises(ConfigError, match="Surrogate"):
        calibrate(chip.nominal_model(), meter, x, 8)
    with pytest.raises(ConfigError, match="no queries"):
        calibrate(_grey(chip), meter, x, 8)  # the budget allows none, and no data was given
    with pytest.raises(ConfigError):
        calibrate(_grey(chip), meter, x, 8, design="grid")
    with pytest.raises(ConfigError, match="center and radius"):
        calibrate(_grey(chip), meter, x, 8, design="local")
    assert counting.calls == 0


# ---------------------------------------------------------------------- refine
def test_refine_adds_local_settings_and_refits(chip, x):
    meter, counting = _metered(chip)
    cal = calibrate(_grey(chip), meter, x, 24)
    theta = chip.space.center + 0.5
    spent_before = meter.ledger
    more = refine(cal, meter, x, theta, n_local=8, radius=0.1)
    assert more.data.n_settings == 32 and more.reason == "completed"
    new = more.data.settings()[24:]
    assert new.shape == (8, chip.space.dim)
    assert np.all(np.abs(new - theta) <= 0.1 + 1e-12)
    assert more.spent.reconfigurations == 8
    assert meter.ledger.reconfigurations - spent_before.reconfigurations == 8
    assert more.surrogate is cal.surrogate
    assert more.report.n_settings + more.report.n_held_out == 32
    _same_tally(meter, counting)


def test_refine_where_the_ensemble_is_uncertain(chip, x):
    meter, counting = _metered(chip)
    theta = chip.space.center
    ens = Ensemble(members=3, hidden=(16,), steps=30)
    cal = calibrate(ens, meter, x, 32, design="local", center=theta, radius=0.3)
    before = copy.deepcopy(ens)
    more = refine(cal, meter, x, theta, n_local=4, n_uncertain=4, pool=64, radius=0.1, seed=3)
    assert more.data.n_settings == 40 and more.spent.reconfigurations == 8
    near, picked = more.data.settings()[32:36], more.data.settings()[36:]
    assert np.all(np.abs(near - theta) <= 0.1 + 1e-12)
    # the picks are the most uncertain of their candidate pool: every one of them is more
    # uncertain than 3/4 of a fresh pool drawn like it (measured: above 9/10, seeds 0-5)
    xs = torch.as_tensor(x)

    def score(t: np.ndarray) -> np.ndarray:
        return before.uncertainty(torch.as_tensor(t), xs).reshape(len(t), -1).mean(-1).numpy()

    pool = local(chip.space, theta, 0.2, 64, seed=99, kind="gaussian")
    assert score(picked).min() > np.quantile(score(pool), 0.75)
    assert score(picked).mean() > score(near).mean()
    _same_tally(meter, counting)


def test_refine_by_the_default_uncertainty_goes_where_the_data_is_not(chip, x):
    """Every surrogate has an uncertainty: the grey box's grows outside its data's range."""
    meter, counting = _metered(chip)
    cal = calibrate(_grey(chip), meter, x, 16, design="local", radius=0.05,
                    center=chip.space.center)  # fmt: skip
    spent = meter.ledger
    with pytest.raises(ConfigError):
        refine(cal, meter, x, chip.space.center, n_local=0)
    assert meter.ledger == spent  # nothing was sent
    covered = cal.surrogate.coverage_  # refine refits the same surrogate
    new = refine(cal, meter, x, chip.space.center, n_local=0, n_uncertain=2, radius=0.3, seed=1)
    picked = new.data.groups[-1][0]
    assert len(picked) == 2 and np.all(covered.inside(picked) < 1.0)
    _same_tally(meter, counting)


# ---------------------------------------------------------------------- train_active
def _active(task, chip, x, rounds: int, **budget):
    meter, counting = _metered(chip, **budget)
    cal = calibrate(_grey(chip), meter, x, 24)
    after_calibration = meter.ledger
    result = train_active(
        task,
        cal,
        meter,
        x,
        chip.initial_controls(0),
        make_estimator=lambda sur, t: Autograd(sur, t, space=chip.space),
        config=CONFIG,
        rounds=rounds,
        n_local=6,
        radius=0.1,
    )
    return result, meter, counting, after_calibration


def test_train_active_charges_its_refinements_to_the_meter(task, chip, x):
    result, meter, counting, after_calibration = _active(task, chip, x, rounds=2)
    assert [r["round"] for r in result.rounds] == [0, 1]
    assert all(r["reason"] == "completed" and np.isfinite(r["loss"]) for r in result.rounds)
    # training on the surrogate is free: the meter moved by the refinements only
    assert (
        result.spent.reconfigurations
        == 12
        == (meter.ledger.reconfigurations - after_calibration.reconfigurations)
    )
    assert result.spent.samples == meter.ledger.samples - after_calibration.samples
    _same_tally(meter, counting)
    assert result.calibration.data.n_settings == 24 + 12
    assert not np.array_equal(result.theta, chip.initial_controls(0))
    assert chip.space.contains(result.theta)


def test_train_active_stops_when_the_budget_cuts_a_refinement(task, chip, x):
    result, meter, counting, _ = _active(task, chip, x, rounds=3, max_reconfigurations=24 + 9)
    assert [r["reason"] for r in result.rounds] == ["completed", "budget"]
    assert meter.ledger.reconfigurations == 33
    _same_tally(meter, counting)
    with pytest.raises(ConfigError):
        train_active(
            task,
            result.calibration,
            meter,
            x,
            result.theta,
            make_estimator=Autograd,
            config=CONFIG,
            rounds=0,
        )


# ---------------------------------------------------------------------- online compositions
@pytest.fixture
def calibrated(chip, x):
    """A grey box calibrated on another meter (its cost is not part of the tests below)."""
    return calibrate(_grey(chip), MeteredDevice(chip), x, 24).surrogate


def _one_step(task, est, chip, meter):
    config = TrainConfig(max_steps=1, epochs=None, batch_size=BATCH, progress=False)
    return Trainer(task, est, chip.space, config, meter=meter).fit(chip.initial_controls(0))


def test_physics_aware_on_the_device_with_the_surrogate_backward(task, chip, calibrated):
    """Workflow (b): one reconfiguration and one batch of samples per step."""
    meter, counting = _metered(chip)
    run = _one_step(task, PhysicsAware(meter, calibrated, task), chip, meter)
    assert run.steps == 1 and np.isfinite(run.history[0]["loss"])
    assert meter.ledger.reconfigurations == 1 and meter.ledger.samples == BATCH
    assert meter.ledger.queries == 1 and run.ledger == meter.ledger
    _same_tally(meter, counting)
    assert not np.array_equal(run.theta, chip.initial_controls(0))


def test_surrogate_ascent_with_device_descent(task, chip, calibrated):
    """Workflow (d): the SAT ascent runs on the surrogate for free, the descent on the device;
    an ascent on the device instead costs a second reconfiguration."""
    meter, counting = _metered(chip)
    est = sat(
        descent=PhysicsAware(meter, calibrated, task),
        ascent=Autograd(calibrated, task, space=chip.space),
        rho=0.1,
    )
    run = _one_step(task, est, chip, meter)
    assert run.steps == 1
    assert meter.ledger.reconfigurations == 1 and meter.ledger.samples == BATCH
    _same_tally(meter, counting)
    meter2, counting2 = _metered(chip)
    _one_step(task, sat(descent=PhysicsAware(meter2, calibrated, task), rho=0.1), chip, meter2)
    assert meter2.ledger.reconfigurations == 2 and meter2.ledger.samples == 2 * BATCH
    _same_tally(meter2, counting2)


# ---------------------------------------------------------------------- trust region
def _trust(task, chip, x, rounds, **budget):
    meter, counting = _metered(chip, **budget)
    cal = calibrate(_grey(chip), meter, x, 24, seed=0)
    before = meter.ledger
    result = train_trust_region(
        task, cal, meter, x, chip.initial_controls(0), make_estimator=Autograd, config=CONFIG,
        rounds=rounds, radius=0.05, n_local=4, eval_samples=32, seed=0,
    )  # fmt: skip
    return result, meter, counting, before


def test_trust_region_moves_only_where_the_device_confirms_and_charges_every_check(task, chip, x):
    result, meter, counting, before = _trust(task, chip, x, rounds=4)
    rounds = result.rounds
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    # every round: the proposal read once, plus 4 local settings; the start read once
    assert result.spent.reconfigurations == 1 + 4 * (1 + 4)
    assert meter.ledger.reconfigurations - before.reconfigurations == result.spent.reconfigurations
    _same_tally(meter, counting)
    for prev, r in zip([None, *rounds], rounds, strict=False):
        if r["accepted"]:
            assert r["actual"] > 0 and r["ratio"] > 0.1
        r0 = 0.05 if prev is None else prev["radius"]
        grown = min(2 * r0, 0.5) if r["ratio"] > 0.75 else r0
        assert r["radius"] == pytest.approx(grown if r["accepted"] else r0 / 2)
    # the device loss never rises: only confirmed moves are kept
    losses = [r["device_loss"] for r in rounds]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(losses))
    assert chip.space.contains(result.theta) and any(r["accepted"] for r in rounds)


def test_trust_region_stops_cleanly_when_the_budget_ends(task, chip, x):
    result, meter, counting, _ = _trust(task, chip, x, rounds=10, max_reconfigurations=24 + 8)
    assert meter.ledger.reconfigurations <= 32
    assert len(result.rounds) < 10
    _same_tally(meter, counting)


@pytest.mark.parametrize("check", ["held_out", "train"])
def test_trust_region_checks_moves_on_inputs_the_surrogate_did_not_train_on(task, chip, x, check):
    seen = []

    def recording(model, t):
        seen.append(t)
        return Autograd(model, t)

    cal = calibrate(_grey(chip), chip, x, 24, seed=0)
    result = train_trust_region(
        task, cal, chip, x, chip.initial_controls(0), make_estimator=recording, config=CONFIG,
        rounds=2, n_local=4, eval_samples=20, check=check, seed=0,
    )  # fmt: skip
    assert len(result.check_index) == 20 and len(set(result.check_index.tolist())) == 20
    checked = task.data.x_train[result.check_index]
    for t in seen:
        x_fit = t.data.x_train
        overlap = (x_fit[:, None, :] == checked[None]).all(-1).any()
        if check == "held_out":
            assert t is not task and t.front is task.front  # digital layers shared
            assert len(x_fit) == len(task.data.x_train) - 20 and not overlap
        else:
            assert t is task and overlap


def test_trust_region_refuses_a_held_out_check_that_leaves_nothing_to_train_on(task, chip, x):
    cal = calibrate(_grey(chip), chip, x, 24, seed=0)
    with pytest.raises(ConfigError, match="eval_samples = 48"):
        train_trust_region(
            task, cal, chip, x, chip.initial_controls(0), make_estimator=Autograd, config=CONFIG,
            eval_samples=48,
        )  # fmt: skip
    with pytest.raises(ConfigError, match="check"):
        train_trust_region(
            task, cal, chip, x, chip.initial_controls(0), make_estimator=Autograd, config=CONFIG,
            check="test",
        )  # fmt: skip
