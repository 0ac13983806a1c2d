"""Keeping the best setting a run measured (``TrainConfig(keep="best")``): the moving average
that ranks settings, what the trainer returns, the digital layers kept with the setting, exact
resume, and the config's checks."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from test_trainer import THETA0, AutogradEst, autograd_trainer, cfg, cut_off_after, make_task

from blacksat import ConfigError, ParamSpace
from blacksat.checkpoint import TrainState, load_checkpoint
from blacksat.keep_best import KEEP_SMOOTHING, BestSetting, kept_step
from blacksat.trainer import TrainConfig, Trainer

SPACE = ParamSpace.box(12, -1.0, 1.0)


# ---------------------------------------------------------------------- the average
def test_the_average_ranks_settings_and_damps_a_single_low_reading():
    best = BestSetting(0.5)
    kept = []
    for step, loss in enumerate([4.0, 2.0, 0.0, 3.0, 3.0]):  # averages 4, 3, 1.5, 2.25, 2.625
        if best.improves(loss):
            best.keep(step, torch.full((2,), float(step)))
            kept.append(step)
    assert kept == [0, 1, 2]
    assert best.step == 2 and best.best == 1.5 and best.average == 2.625
    assert torch.equal(best.theta, torch.full((2,), 2.0, dtype=torch.float64))

    raw = BestSetting(0.0)  # no smoothing: the raw minimum
    for step, loss in enumerate([3.0, 1.0, 0.5, 2.0]):
        if raw.improves(loss):
            raw.keep(step, torch.zeros(1))
    assert raw.step == 2 and raw.best == 0.5


def test_a_lucky_reading_between_high_ones_is_not_kept_when_smoothed():
    best = BestSetting(0.8)
    steps = []
    for step, loss in enumerate([1.0, 1.0, 1.0, 0.1, 1.0, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]):
        if best.improves(loss):
            best.keep(step, torch.zeros(1))
            steps.append(step)
    assert best.step != 3  # the single 0.1 is out-averaged by the steady 0.6s
    assert best.step == 10


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_bad_smoothing_is_refused(bad):
    with pytest.raises(ConfigError, match="keep_smoothing"):
        BestSetting(bad)
    with pytest.raises(ConfigError, match="keep_smoothing"):
        TrainConfig(keep="best", keep_smoothing=bad)


def test_a_non_finite_loss_is_refused_and_the_config_checks_keep():
    with pytest.raises(ConfigError, match="finite"):
        BestSetting().improves(math.nan)
    with pytest.raises(ConfigError, match="keep must be 'last' or 'best'"):
        TrainConfig(keep="first")
    with pytest.raises(ConfigError, match="keep_smoothing"):
        TrainConfig(keep_smoothing=math.nan)
    assert TrainConfig().keep == "last" and TrainConfig().keep_smoothing == KEEP_SMOOTHING


def test_state_round_trips_and_a_malformed_one_is_refused():
    best = BestSetting(0.3)
    best.improves(2.0)
    best.keep(4, torch.arange(3.0), {"back": {"w": torch.ones(2)}})
    again = BestSetting()
    again.load_state_dict(best.state_dict())
    assert again.smoothing == 0.3 and again.step == 4 and again.best == best.best
    assert torch.equal(again.theta, best.theta)
    assert torch.equal(again.digital["back"]["w"], torch.ones(2))
    with pytest.raises(ConfigError, match="best setting is malformed"):
        again.load_state_dict({"smoothing": 0.5})


# ---------------------------------------------------------------------- the trainer
class TurnsUphill(AutogradEst):
    """Exact gradients for ``good`` steps, then their negatives: the loss climbs back."""

    def __init__(self, task, good):
        super().__init__(task, noise=0.0)
        self.good, self.losses = good, []

    def __call__(self, theta, batch, ctx):
        est = super().__call__(theta, batch, ctx)
        self.losses.append(est.loss)
        if len(self.seen) > self.good:
            est = type(est)(-est.grad, est.loss, est.cost, est.digital_grads, est.logits)
        return est


def uphill_run(keep, good=8, log_path=None, **kw):
    task = make_task()
    est = TurnsUphill(task, good)
    config = cfg(lr=0.05, epochs=None, max_steps=30, batch_size=None, keep=keep, **kw)
    return Trainer(task, est, SPACE, config, log_path=log_path).fit(THETA0), est, task


def test_keep_best_returns_the_setting_read_where_the_averaged_loss_was_lowest():
    res, est, _ = uphill_run("best", keep_smoothing=0.0)
    losses = np.array(est.losses)
    k = int(np.argmin(losses))
    assert 8 <= k <= 18  # the estimates turned at step 8 (Adam's momentum carries it on)
    assert res.best_step == k
    np.testing.assert_array_equal(res.theta, est.seen[k].numpy())
    assert not np.array_equal(res.theta, res.last_theta)
    assert losses[-1] > losses[k] + 0.05  # the last setting is clearly worse

    smoothed, est_s, _ = uphill_run("best")  # the average lags a rising loss by a few steps
    assert k <= smoothed.best_step <= k + 5 and est_s.losses[-1] > est_s.losses[k] + 0.05

    last, _, _ = uphill_run("last")
    assert last.best_step is None and last.state.best is None
    np.testing.assert_array_equal(last.theta, last.last_theta)
    np.testing.assert_array_equal(last.last_theta, res.last_theta)  # same trajectory


def test_a_run_still_descending_at_its_end_returns_its_last_setting(tmp_path):
    # the lowest average is the last reading's: the last move, which no estimate read, is taken
    res, est, _ = uphill_run("best", good=100, log_path=tmp_path / "log.jsonl")
    end = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()][-1]
    assert end["event"] == "end" and end["kept_step"] == res.best_step == 30
    assert res.state.best["step"] == 29 and res.best_step == res.steps == 30
    np.testing.assert_array_equal(res.theta, res.last_theta)
    assert not np.array_equal(res.theta, est.seen[-1].numpy())
    assert kept_step(None, 5) is None
    assert kept_step({"theta": torch.zeros(1), "step": 3}, 5) == 3
    assert kept_step({"theta": torch.zeros(1), "step": 4}, 5) == 5


def test_the_task_keeps_the_digital_layers_of_the_kept_setting():
    task = make_task()
    seen_back = []

    class Recording(TurnsUphill):
        def __call__(self, theta, batch, ctx):
            seen_back.append({k: v.clone() for k, v in task.back.state_dict().items()})
            return super().__call__(theta, batch, ctx)

    est = Recording(task, 8)
    config = cfg(epochs=None, max_steps=30, batch_size=None, keep="best", keep_smoothing=0.0)
    res = Trainer(task, est, SPACE, config).fit(THETA0)
    k = res.best_step
    for key, v in task.back.state_dict().items():
        assert torch.equal(v, seen_back[k][key]), key
    # the state keeps the last layers, which a resume continues from
    assert not torch.equal(res.state.digital["back"]["weight"], seen_back[k]["weight"])


def test_a_resumed_run_keeps_the_same_setting_as_an_uninterrupted_one(tmp_path):
    config = cfg(epochs=3, schedule="cosine", keep="best", lr=0.3)
    full = autograd_trainer(config)[0].fit(THETA0)
    assert full.best_step is not None

    path = tmp_path / "run.ckpt"
    trainer, _ = autograd_trainer(config, checkpoint_path=path)
    cut_off_after(trainer, 12)
    assert load_checkpoint(path).best is not None
    res = autograd_trainer(config, checkpoint_path=path)[0].resume(path)
    assert res.best_step == full.best_step
    np.testing.assert_array_equal(res.theta, full.theta)
    assert res.state.best["average"] == full.state.best["average"]


def test_a_checkpoint_without_a_best_setting_loads_and_keeps_from_the_resume(tmp_path):
    path = tmp_path / "old.ckpt"
    autograd_trainer(cfg(max_steps=3), checkpoint_path=path)[0].fit(THETA0)
    data = load_checkpoint(path).to_dict()
    del data["best"]  # as written before the field existed
    state = TrainState.from_dict(data)
    assert state.best is None
    res = autograd_trainer(cfg(max_steps=6, keep="best"))[0].resume(state)
    assert res.best_step is not None and res.best_step >= 3


# ---------------------------------------------------------------------- backtracking
def test_backtrack_returns_a_climbing_run_to_its_kept_setting_with_half_the_step(tmp_path):
    log = tmp_path / "log.jsonl"
    res, est, _ = uphill_run("best", keep_smoothing=0.0, backtrack=1.5, log_path=log)
    _, plain_est, _ = uphill_run("best", keep_smoothing=0.0)
    hist = res.state.history
    events = [h["step"] for h in hist if h.get("backtracked")]
    assert events, "the climbing run never backtracked"
    first = events[0]
    # the step that jumped read a loss above 1.5 x the best; the next one reads the kept setting
    k = int(np.argmin(est.losses[:first]))
    assert est.losses[first - 1] > 1.5 * min(est.losses[:first])
    np.testing.assert_array_equal(est.seen[first].numpy(), est.seen[k].numpy())
    # ... at half the step, for the rest of the run
    lr = {h["step"]: h["lr"] for h in hist}
    assert lr[first + 1] == pytest.approx(0.5 * lr[first])
    # it ends no worse than the run that kept climbing, and at a lower last loss
    assert min(est.losses) <= min(plain_est.losses) + 1e-12
    assert est.losses[-1] < plain_est.losses[-1]


def test_backtrack_needs_keep_best_and_a_factor_above_one():
    with pytest.raises(ConfigError, match="keep='best'"):
        TrainConfig(backtrack=2.0)
    for bad in (1.0, 0.5, math.nan):
        with pytest.raises(ConfigError, match="backtrack"):
            TrainConfig(keep="best", backtrack=bad)
    assert TrainConfig().backtrack is None


class UphillBelow(AutogradEst):
    """Exact gradients while the loss is above ``turn``, their negatives below it: a function of
    the setting alone, so a resumed run's estimator acts as the cut-off run's did."""

    def __init__(self, task, turn):
        super().__init__(task, noise=0.0)
        self.turn, self.losses = turn, []

    def __call__(self, theta, batch, ctx):
        est = super().__call__(theta, batch, ctx)
        self.losses.append(est.loss)
        if est.loss < self.turn:
            est = type(est)(-est.grad, est.loss, est.cost, est.digital_grads, est.logits)
        return est


def uphill_below_trainer(**kw):
    """A factory of fresh trainers (``**trainer_kw``: e.g. ``checkpoint_path``) of one 30-step
    run with :class:`UphillBelow`, keeping its best setting, with the config fields ``kw``."""
    config = cfg(epochs=None, max_steps=30, batch_size=None, keep="best", keep_smoothing=0.0, **kw)

    def trainer(**trainer_kw):
        task = make_task()
        return Trainer(task, UphillBelow(task, 0.835), SPACE, config, **trainer_kw)

    return trainer


def test_a_run_resumed_after_a_backtrack_is_bitwise_the_uninterrupted_one(tmp_path):
    trainer = uphill_below_trainer(lr=0.2, backtrack=1.2)
    full = trainer().fit(THETA0)
    events = [h["step"] for h in full.state.history if h.get("backtracked")]
    assert len(events) >= 3, events  # the run keeps turning back
    cut = (events[1] + events[2]) // 2  # after two backtracks (halved lr), before the third

    path = tmp_path / "run.ckpt"
    first = trainer(checkpoint_path=path)
    cut_off_after(first, cut)
    saved = load_checkpoint(path)
    assert sum(bool(h.get("backtracked")) for h in saved.history) == 2
    res = trainer(checkpoint_path=path).resume(path)
    assert [h["step"] for h in res.state.history if h.get("backtracked")] == events
    assert [h["lr"] for h in res.state.history] == [h["lr"] for h in full.state.history]
    np.testing.assert_array_equal(res.theta, full.theta)
    np.testing.assert_array_equal(res.last_theta, full.last_theta)
    assert res.best_step == full.best_step


# ---------------------------------------------------------------------- patience
def test_patience_ends_a_run_whose_kept_setting_is_that_many_steps_old():
    res, est, _ = uphill_run("best", keep_smoothing=0.0, patience=5)
    full, _, _ = uphill_run("best", keep_smoothing=0.0)
    assert res.reason == "plateau" and full.reason == "completed"
    kept = res.state.best["step"]  # the steps completed before the kept setting was read
    assert res.steps == kept + 1 + 5 < full.steps
    # no reading after the kept one set a new low, and the kept setting is the full run's
    assert min(est.losses[kept + 1 :]) > est.losses[kept]
    assert res.best_step == full.best_step
    np.testing.assert_array_equal(res.theta, full.theta)


def test_patience_never_stops_a_run_that_keeps_descending():
    res, _, _ = uphill_run("best", good=100, patience=3)
    assert res.reason == "completed" and res.steps == 30


def test_patience_needs_keep_best_and_a_positive_count():
    with pytest.raises(ConfigError, match="keep='best'"):
        TrainConfig(patience=5)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="patience"):
            TrainConfig(keep="best", patience=bad)
    assert TrainConfig().patience is None


def test_backtrack_patience_returns_a_stalled_run_to_its_kept_setting(tmp_path):
    # a factor no jump reaches: only the stall sends the run back
    res, est, _ = uphill_run("best", keep_smoothing=0.0, backtrack=100.0, backtrack_patience=4)
    hist = res.state.history
    events = [h["step"] for h in hist if h.get("backtracked")]
    assert events, "the stalled run never went back"
    first = events[0]
    k = int(np.argmin(est.losses[:first]))
    assert first - 1 - k == 4  # the kept reading is 4 steps old when the run goes back
    np.testing.assert_array_equal(est.seen[first].numpy(), est.seen[k].numpy())
    lr = {h["step"]: h["lr"] for h in hist}
    assert lr[first + 1] == pytest.approx(0.5 * lr[first])
    # the next one comes 4 steps after the last backtrack at the earliest
    assert all(b - a >= 4 for a, b in itertools.pairwise(events))
    plain, _, _ = uphill_run("best", keep_smoothing=0.0, backtrack=100.0)
    assert not any(h.get("backtracked") for h in plain.state.history)


def test_a_run_resumed_after_a_stall_backtrack_is_bitwise_the_uninterrupted_one(tmp_path):
    trainer = uphill_below_trainer(lr=0.05, backtrack=100.0, backtrack_patience=4)
    full = trainer().fit(THETA0)
    events = [h["step"] for h in full.state.history if h.get("backtracked")]
    assert len(events) >= 2, events
    path = tmp_path / "run.ckpt"
    cut_off_after(trainer(checkpoint_path=path), events[0] + 2)  # between two backtracks
    res = trainer(checkpoint_path=path).resume(path)
    assert [h["lr"] for h in res.state.history] == [h["lr"] for h in full.state.history]
    np.testing.assert_array_equal(res.theta, full.theta)


def test_backtrack_patience_needs_backtrack_and_a_positive_count():
    with pytest.raises(ConfigError, match="needs backtrack"):
        TrainConfig(keep="best", backtrack_patience=5)
    for bad in (0, -2, 1.5):
        with pytest.raises(ConfigError, match="backtrack_patience"):
            TrainConfig(keep="best", backtrack=2.0, backtrack_patience=bad)


# ---------------------------------------------------------------------- no progress
class ReadsNoise(AutogradEst):
    """A loss that is noise about a level (the dark start of a deep device: every estimate reads
    noise), drawn from ``ctx.rng`` so a resume replays it."""

    def __call__(self, theta, batch, ctx):
        est = super().__call__(theta, batch, ctx)
        loss = 2.3 + 0.01 * float(ctx.rng.standard_normal())
        return type(est)(est.grad, loss, est.cost, est.digital_grads, est.logits)


def noise_trainer(**kw):
    config = cfg(
        lr=0.05, epochs=None, max_steps=60, batch_size=None, keep="best",
        backtrack=2.0, backtrack_patience=4, **kw,
    )  # fmt: skip

    def trainer(**trainer_kw):
        task = make_task()
        return Trainer(task, ReadsNoise(task, 0.0), SPACE, config, **trainer_kw)

    return trainer


def test_a_run_that_stalls_twice_without_progress_ends_there(tmp_path):
    res = noise_trainer(no_progress_z=3.0)().fit(THETA0)
    hist = res.state.history
    events = [h["step"] for h in hist if h.get("backtracked")]
    assert res.reason == "no progress" and res.steps < 60
    # it went back once at its first stall, at half the step, and ended at its second
    assert len(events) == 1
    best = res.state.best
    assert res.steps - 1 - max(best["step"], events[0] - 1) == 4
    # without the test the same run backtracks at every stall and completes its steps
    plain = noise_trainer()().fit(THETA0)
    assert plain.reason == "completed" and plain.steps == 60
    assert sum(bool(h.get("backtracked")) for h in plain.state.history) >= 3
    assert [h["loss"] for h in plain.state.history[: res.steps]] == [h["loss"] for h in hist]
    # an interrupted run resumed ends at the same step
    path = tmp_path / "run.ckpt"
    trainer = noise_trainer(no_progress_z=3.0)
    cut_off_after(trainer(checkpoint_path=path), events[0] + 2)
    again = trainer(checkpoint_path=path).resume(path)
    assert again.reason == "no progress" and again.steps == res.steps
    np.testing.assert_array_equal(again.theta, res.theta)


def test_a_run_that_progressed_is_untouched_by_the_no_progress_test():
    with_test, _, _ = uphill_run(
        "best", keep_smoothing=0.0, backtrack=100.0, backtrack_patience=4, no_progress_z=3.0
    )
    plain, _, _ = uphill_run("best", keep_smoothing=0.0, backtrack=100.0, backtrack_patience=4)
    assert with_test.reason == plain.reason == "completed"
    assert sum(bool(h.get("backtracked")) for h in plain.state.history) >= 2
    assert with_test.state.history == plain.state.history
    np.testing.assert_array_equal(with_test.theta, plain.theta)


def test_no_progress_z_needs_a_stall_to_read_and_a_positive_z():
    with pytest.raises(ConfigError, match="needs backtrack_patience"):
        TrainConfig(keep="best", backtrack=2.0, no_progress_z=3.0)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="no_progress_z"):
            TrainConfig(keep="best", backtrack=2.0, backtrack_patience=4, no_progress_z=bad)
    assert TrainConfig().no_progress_z is None
