"""The trainer: transactional steps, budget stop, projection, determinism, exact resume, digital
layers, schedules, JSONL logs, SAF integration, config validation.

The estimators here are small ones written for the tests (the protocol of
``blacksat.objective``): an autograd one over a linear model with a little gradient noise drawn
from ``ctx.rng`` (so a wrongly restored generator shows), and a zeroth-order one that queries a
metered device twice per step (so a budget can run out in the middle of a step).
"""

import functools
import json

import numpy as np
import pytest
import torch
from doubles import LinearDevice
from torch import nn

from blacksat import ConfigError, NonFiniteError, OutOfBoundsError, ParamSpace, ShapeError
from blacksat.checkpoint import load_checkpoint
from blacksat.data import load_iris
from blacksat.meter import Budget, Ledger, MeteredDevice
from blacksat.objective import Estimate, objective
from blacksat.saf import TrajectoryLoss
from blacksat.task import Task
from blacksat.trainer import TrainConfig, Trainer

D = 12  # a 4 x 3 linear "device": iris features -> 3 class scores
SPACE = ParamSpace.box(D, -1.0, 1.0)


@functools.lru_cache(maxsize=1)
def iris():
    return load_iris(seed=0)


def linear_layer(n_in, n_out, seed):
    layer = nn.Linear(n_in, n_out).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(
            torch.empty(n_out, n_in, dtype=torch.float64).uniform_(-0.5, 0.5, generator=gen)
        )
        layer.bias.copy_(torch.empty(n_out, dtype=torch.float64).uniform_(-0.5, 0.5, generator=gen))
    return layer


def make_task(back=True):
    task = Task(iris(), input_shape=(4,), back=linear_layer(3, 3, 7) if back else None)
    return task.to(torch.float64)


def linear_model(theta, x):
    """``x (B, 4)``, ``theta (d,)|(K, d)`` -> ``(B, 3)|(K, B, 3)``."""
    return x @ theta.reshape(*theta.shape[:-1], 4, 3)


class AutogradEst:
    """Exact gradients through ``linear_model`` plus ``noise * N(0, 1)`` drawn from ``ctx.rng``."""

    name = "test_autograd"

    def __init__(self, task, noise=1e-3):
        self.task, self.noise = task, noise
        self.seen, self.momenta = [], []

    def __call__(self, theta, batch, ctx):
        self.seen.append(theta.clone())
        self.momenta.append(ctx.momentum)
        th = theta.detach().clone().requires_grad_(True)
        params = [p for p in self.task.digital_parameters() if p.requires_grad]
        logits = self.task.logits_model(linear_model, th, batch.features)
        loss = objective(self.task, logits, batch, ctx)
        gs = torch.autograd.grad(loss, [th, *params])
        noise = torch.as_tensor(ctx.rng.standard_normal(th.numel()))
        return Estimate(
            gs[0] + self.noise * noise,
            float(loss.detach()),
            Ledger(),
            list(gs[1:]) if params else None,
            logits.detach(),
        )


class QueryEst:
    """Central differences along ``q`` Gaussian directions; one ``query`` at theta (logits),
    then one ``query_many`` of the ``2q`` perturbed settings: ``1 + 2q`` reconfigurations."""

    name = "test_queries"

    def __init__(self, task, device, q=2, sigma=0.05):
        self.task, self.device, self.q, self.sigma = task, device, q, sigma

    def __call__(self, theta, batch, ctx):
        th = theta.detach().numpy()
        x = batch.features.numpy()
        logits = torch.as_tensor(self.device.query(th, x))
        u = ctx.rng.standard_normal((self.q, th.size))
        ys = self.device.query_many(np.concatenate([th + self.sigma * u, th - self.sigma * u]), x)
        losses = objective(self.task, torch.as_tensor(ys), batch, ctx).numpy()
        coef = (losses[: self.q] - losses[self.q :]) / (2 * self.sigma)
        grad = torch.as_tensor((coef[:, None] * u).mean(0))
        loss = float(objective(self.task, logits, batch, ctx))
        return Estimate(grad, loss, Ledger(), None, logits)


def cfg(**kw):
    base = dict(lr=0.05, epochs=2, batch_size=16, seed=3, progress=False)
    base.update(kw)
    return TrainConfig(**base)


THETA0 = np.linspace(-0.5, 0.5, D)


def autograd_trainer(config, *, saf=None, **kw):
    task = make_task()
    return Trainer(task, AutogradEst(task), SPACE, config, saf=saf, **kw), task


def query_trainer(config, *, budget=None, saf=None, meter=None):
    task = make_task(back=False)
    if meter is None:
        meter = MeteredDevice(LinearDevice(4, 3), max_reconfigurations=budget, policy="clip")
    return Trainer(task, QueryEst(task, meter), SPACE, config, meter=meter, saf=saf), meter


def digital_state(task):
    return {k: v.clone() for k, v in task.back.state_dict().items()}


def assert_same_run(a, b):
    assert torch.equal(a.state.theta, b.state.theta)
    assert a.state.rng == b.state.rng
    assert a.state.step == b.state.step and a.state.epoch == b.state.epoch
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    sa, sb = a.state.optimizer["state"], b.state.optimizer["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa[k][name], sb[k][name]), (k, name)
    for name, sd in a.state.digital.items():
        for key, v in sd.items():
            assert torch.equal(v, b.state.digital[name][key])


# ---------------------------------------------------------------------- budget
def test_budget_stop_returns_the_last_good_state_and_resumes_exactly():
    k, per_step = 5, 5  # 1 + 2q reconfigurations per step with q = 2
    stopped, meter = query_trainer(cfg(epochs=3), budget=per_step * k + 3)
    res = stopped.fit(THETA0)
    assert res.reason == "budget" and res.steps == k
    assert res.error is not None and res.error.kind == "reconfigurations"
    # everything charged: k full steps + the refused step's first query
    assert res.ledger == meter.ledger
    assert res.ledger.reconfigurations == per_step * k + 1
    assert res.ledger.queries == 2 * k + 1

    plain, _ = query_trainer(cfg(epochs=3, max_steps=k))
    ref = plain.fit(THETA0)
    assert torch.equal(res.state.theta, ref.state.theta)
    assert res.state.rng == ref.state.rng  # the refused step's draws were rolled back
    assert res.state.offset == ref.state.offset

    # raise the budget on the same meter: the run continues as if never stopped
    meter.budget = Budget()
    more = Trainer(
        stopped.task, stopped.estimator, SPACE, cfg(epochs=3, max_steps=k + 4), meter=meter
    )
    cont = more.resume(res.state)
    full, full_meter = query_trainer(cfg(epochs=3, max_steps=k + 4))
    ref2 = full.fit(THETA0)
    assert cont.reason == "completed"
    assert torch.equal(cont.state.theta, ref2.state.theta)
    # the same meter is not double-counted: only the refused step's first query comes on top
    # (and its setting is still held, so redoing the step costs no extra reconfiguration)
    ref_ledger = full_meter.ledger
    assert cont.ledger == Ledger(
        ref_ledger.reconfigurations, ref_ledger.samples + 16, ref_ledger.queries + 1, 0
    )


def test_resume_with_a_fresh_meter_restores_the_ledger(tmp_path):
    path = tmp_path / "run.ckpt"
    trainer, meter = query_trainer(cfg(max_steps=3))
    trainer.checkpoint_path = path
    trainer.fit(THETA0)
    saved = meter.ledger
    fresh = MeteredDevice(LinearDevice(4, 3), policy="clip")
    again, _ = query_trainer(cfg(max_steps=5), meter=fresh)
    res = again.resume(path)
    assert res.ledger == fresh.ledger
    assert fresh.ledger.queries == saved.queries + 2 * 2
    assert fresh.ledger.reconfigurations == saved.reconfigurations + 2 * 5


def test_meter_restore_validates():
    meter = MeteredDevice(LinearDevice(4, 3))
    meter.restore(Ledger(3, 30, 2, 0))
    assert meter.ledger == Ledger(3, 30, 2, 0)
    with pytest.raises(ConfigError):
        meter.restore(Ledger(-1, 0, 0, 0))
    with pytest.raises(ConfigError):
        meter.restore({"reconfigurations": 1})


# ---------------------------------------------------------------------- projection, checks
def test_projection_keeps_theta_in_bounds_with_a_huge_lr():
    trainer, _ = autograd_trainer(cfg(optimizer="sgd", lr=1e6, epochs=1))
    res = trainer.fit(THETA0)
    seen = torch.stack([*trainer.estimator.seen[1:], res.state.theta])
    assert torch.all(seen >= -1.0) and torch.all(seen <= 1.0)
    assert torch.any(seen.abs() == 1.0)  # it did hit the bounds (no level snapping otherwise)


def test_projection_keeps_the_continuous_relaxation():
    space = ParamSpace.box(D, -1.0, 1.0, levels=np.linspace(-1, 1, 5))
    task = make_task()
    res = Trainer(task, AutogradEst(task), space, cfg(max_steps=3)).fit(THETA0)
    assert not np.all(np.isin(res.theta, space.levels))


def test_theta0_is_validated_and_not_mutated():
    trainer, _ = autograd_trainer(cfg(max_steps=1))
    with pytest.raises(OutOfBoundsError):
        trainer.fit(np.full(D, 2.0))
    with pytest.raises(ShapeError):
        trainer.fit(np.zeros(D + 1))
    theta0 = torch.tensor(THETA0)
    trainer.fit(theta0)
    assert torch.equal(theta0, torch.tensor(THETA0))


def test_non_finite_gradient_raises_before_any_update(tmp_path):
    path = tmp_path / "c.ckpt"
    trainer, _ = autograd_trainer(cfg(max_steps=6), checkpoint_path=path)
    inner = trainer.estimator

    def poisoned(theta, batch, ctx):
        est = inner(theta, batch, ctx)
        if len(inner.seen) == 4:
            est.grad = est.grad * np.nan
        return est

    poisoned.task = trainer.task
    trainer.estimator = poisoned
    with pytest.raises(NonFiniteError):
        trainer.fit(THETA0)
    state = trainer.snapshot()
    assert state.step == 3 and torch.equal(state.theta, inner.seen[3])
    assert load_checkpoint(path).step == 3


# ---------------------------------------------------------------------- determinism, RNG
def test_same_seed_is_bitwise_identical_and_seed_matters():
    a = autograd_trainer(cfg())[0].fit(THETA0)
    b = autograd_trainer(cfg())[0].fit(THETA0)
    assert_same_run(a, b)
    c = autograd_trainer(cfg(seed=4))[0].fit(THETA0)
    assert not torch.equal(a.state.theta, c.state.theta)


def test_fit_leaves_the_global_rngs_untouched():
    trainer, _ = autograd_trainer(cfg(progress=True, schedule="cosine"), saf=TrajectoryLoss(lag=1))
    q, _ = query_trainer(cfg(max_steps=4))
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()  # noqa: NPY002
    trainer.fit(THETA0)
    q.fit(THETA0)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]


# ---------------------------------------------------------------------- resume
class Interrupt(Exception):
    pass


def cut_off_after(trainer, calls):
    """Run ``trainer.fit(THETA0)`` until its estimator is called for the ``calls``-th time, which
    draws from ``ctx.rng`` and then raises :class:`Interrupt` (the run is cut off mid-step)."""
    inner = trainer.estimator

    def interrupted(theta, batch, ctx):
        est = inner(theta, batch, ctx)
        if len(inner.seen) == calls:
            raise Interrupt
        return est

    interrupted.task = trainer.task
    trainer.estimator = interrupted
    with pytest.raises(Interrupt):
        trainer.fit(THETA0)


@pytest.mark.parametrize("k", [3, 7])  # mid-epoch; at the epoch boundary (7 steps per epoch)
def test_resume_from_checkpoint_is_bitwise_identical(tmp_path, k):
    config = cfg(epochs=3, schedule="cosine")
    full = autograd_trainer(config, saf=TrajectoryLoss(lag=1))[0].fit(THETA0)

    path = tmp_path / "run.ckpt"
    trainer, _ = autograd_trainer(config, saf=TrajectoryLoss(lag=1), checkpoint_path=path)
    cut_off_after(trainer, k + 1)
    saved = load_checkpoint(path)
    assert saved.step == k
    assert (saved.order is None) == (k == 7) and saved.offset == (0 if k == 7 else 16 * k)

    again, _ = autograd_trainer(config, saf=TrajectoryLoss(lag=1), checkpoint_path=path)
    res = again.resume(path)
    assert res.reason == "completed" and res.steps == 21
    assert_same_run(res, full)
    assert res.state.scheduler == full.state.scheduler
    memory, ref = res.state.saf["memory"], full.state.saf["memory"]
    assert memory.keys() == ref.keys()
    for e in memory:
        assert torch.equal(memory[e]["table"], ref[e]["table"])


def test_checkpoints_every_n_steps_and_at_the_end(tmp_path, monkeypatch):
    import blacksat.trainer as trainer_mod

    steps = []
    real = trainer_mod.save_checkpoint
    monkeypatch.setattr(
        trainer_mod, "save_checkpoint", lambda s, p: (steps.append(s.step), real(s, p))[1]
    )
    trainer, _ = autograd_trainer(
        cfg(max_steps=10, checkpoint_every=3), checkpoint_path=tmp_path / "c.ckpt"
    )
    trainer.fit(THETA0)
    assert steps == [3, 6, 9, 10]
    assert load_checkpoint(tmp_path / "c.ckpt").step == 10


def test_resume_rejects_a_checkpoint_of_another_run(tmp_path):
    path = tmp_path / "c.ckpt"
    autograd_trainer(cfg(max_steps=2), checkpoint_path=path)[0].fit(THETA0)
    with pytest.raises(ConfigError, match="batch_size"):
        autograd_trainer(cfg(max_steps=4, batch_size=8))[0].resume(path)


# ---------------------------------------------------------------------- digital layers
def test_digital_layers_are_trained_jointly():
    trainer, task = autograd_trainer(cfg(epochs=1))
    before = digital_state(task)
    res = trainer.fit(THETA0)
    after = digital_state(task)
    assert not torch.equal(before["weight"], after["weight"])
    assert torch.equal(after["weight"], res.state.digital["back"]["weight"])
    assert trainer._opt.param_groups[1]["params"][0] is task.back.weight


def test_train_digital_false_and_frozen_parameters():
    trainer, task = autograd_trainer(cfg(epochs=1, train_digital=False))
    before = digital_state(task)
    res = trainer.fit(THETA0)
    assert all(torch.equal(before[k], v) for k, v in digital_state(task).items())
    assert not np.array_equal(res.theta, THETA0)
    # a frozen bias: the estimator returns grads for the trainable weight only
    task = make_task()
    task.back.bias.requires_grad_(False)
    trainer = Trainer(task, AutogradEst(task), SPACE, cfg(epochs=1))
    before = digital_state(task)
    trainer.fit(THETA0)
    after = digital_state(task)
    assert torch.equal(before["bias"], after["bias"])
    assert not torch.equal(before["weight"], after["weight"])


def test_momentum_is_passed_to_the_estimator():
    trainer, _ = autograd_trainer(cfg(max_steps=3))
    trainer.fit(THETA0)
    m = trainer.estimator.momenta
    assert m[0] is None and m[1] is not None and m[1].shape == (D,)
    assert m[1].dtype == torch.float64
    trainer, _ = autograd_trainer(cfg(max_steps=3, optimizer="sgd"))
    trainer.fit(THETA0)
    assert all(v is None for v in trainer.estimator.momenta)


# ---------------------------------------------------------------------- schedules, logs
def test_schedules():
    lrs = lambda r: [h["lr"] for h in r.history]  # noqa: E731
    cos = autograd_trainer(cfg(schedule="cosine", epochs=2))[0].fit(THETA0)
    assert lrs(cos)[0] == 0.05 and 0 < lrs(cos)[-1] < 0.005
    step = autograd_trainer(cfg(schedule="step", schedule_kwargs={"gamma": 0.5}))[0].fit(THETA0)
    assert lrs(step) == [0.05] * 7 + [0.025] * 7
    hold = autograd_trainer(cfg(schedule="hold-cosine", max_steps=10))[0].fit(THETA0)
    assert lrs(hold)[:8] == [0.05] * 8  # held for the first 70 % of the steps
    assert lrs(hold)[8:] == pytest.approx([0.05 * 0.75, 0.05 * 0.25])  # then a cosine to 0
    quarter = autograd_trainer(
        cfg(schedule="hold-cosine", schedule_kwargs={"decay": 1.0}, max_steps=4)
    )[0].fit(THETA0)  # decay over every step: a plain cosine
    assert lrs(quarter) == pytest.approx([0.05 * f for f in (1.0, 0.8535534, 0.5, 0.1464466)])
    with pytest.raises(ConfigError, match="hold-cosine"):
        cfg(schedule="hold-cosine", schedule_kwargs={"decay": 1.5})
    with pytest.raises(ConfigError, match="hold-cosine"):
        cfg(schedule="hold-cosine", schedule_kwargs={"T_max": 3})
    factory = lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, 0.5)  # noqa: E731
    exp = autograd_trainer(cfg(schedule=factory, max_steps=3))[0].fit(THETA0)
    assert lrs(exp) == [0.05, 0.025, 0.0125]


def test_jsonl_log_has_one_line_per_log_step(tmp_path):
    path = tmp_path / "logs" / "train.jsonl"
    trainer, _ = query_trainer(cfg(max_steps=7, log_every=2))
    trainer.log_path = path
    res = trainer.fit(THETA0)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    steps = [r for r in lines if r["event"] == "step"]
    assert [r["step"] for r in steps] == [2, 4, 6]
    for r in steps:
        assert {"epoch", "loss", "lr", "grad_norm", "ledger", "wall_time"} <= r.keys()
        assert r["loss"] == res.history[r["step"] - 1]["loss"]
    assert steps[-1]["ledger"]["reconfigurations"] == 6 * 5
    assert lines[0]["event"] == "start" and lines[-1] == {
        **lines[-1],
        "event": "end",
        "reason": "completed",
    }


# ---------------------------------------------------------------------- SAF
def test_saf_reuses_paid_readings_and_changes_the_loss():
    plain, m_plain = query_trainer(cfg(epochs=3))
    a = plain.fit(THETA0)
    with_saf, m_saf = query_trainer(cfg(epochs=3), saf=TrajectoryLoss(lam=0.8, lag=1))
    b = with_saf.fit(THETA0)
    assert m_plain.ledger == m_saf.ledger  # no extra reconfigurations, no extra samples
    first_epoch = [h["loss"] for h in a.history if h["epoch"] == 0]
    assert first_epoch == [h["loss"] for h in b.history if h["epoch"] == 0]
    assert not torch.equal(a.state.theta, b.state.theta)
    assert with_saf.saf.epochs() == [1, 2]


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kw",
    [
        {"optimizer": "nope"},
        {"optimizer": "lbfgs"},
        {"lr": 0},
        {"lr": float("nan")},
        {"digital_lr": -1.0},
        {"epochs": 0},
        {"epochs": None, "max_steps": None},
        {"max_steps": 2.5},
        {"batch_size": 0},
        {"optimizer_kwargs": {"lr": 1.0}},
        {"optimizer_kwargs": {"bogus": 1}},
        {"optimizer_kwargs": {"betas": (2.0, 0.9)}},
        {"schedule": "linear"},
        {"schedule": 3},
        {"schedule": "step", "schedule_kwargs": {"bogus": 1}},
        {"log_every": 0},
        {"checkpoint_every": 0},
        {"seed": -1},
        {"progress": "yes"},
        {"train_digital": 1},
    ],
)
def test_invalid_configs_raise_config_error(kw):
    with pytest.raises(ConfigError):
        cfg(**kw)


def test_invalid_trainer_arguments_raise_config_error():
    task = make_task()
    est = AutogradEst(task)
    with pytest.raises(ConfigError):
        Trainer(task, est, SPACE, {"lr": 0.1})
    with pytest.raises(ConfigError):
        Trainer(task, est, (-1, 1), cfg())
    with pytest.raises(ConfigError):
        Trainer(make_task(), est, SPACE, cfg())  # the estimator's task is another object
    with pytest.raises(ConfigError):
        Trainer(task, est, SPACE, cfg(checkpoint_every=2))  # no checkpoint path
    with pytest.raises(ConfigError):
        Trainer(task, est, SPACE, cfg(), saf=object())
    narrow = MeteredDevice(LinearDevice(4, 3, bound=0.5))
    with pytest.raises(ConfigError, match="within the device"):
        Trainer(task, est, SPACE, cfg(), meter=narrow)
    Trainer(task, est, ParamSpace.box(D, -0.4, 0.5), cfg(), meter=narrow)  # tighter is fine
    with pytest.raises(ConfigError):
        Trainer(task, est, SPACE, cfg()).snapshot()  # nothing to snapshot yet
    kwargs = {"betas": (0.8, 0.9)}
    config = TrainConfig(optimizer_kwargs=kwargs, progress=False)
    assert config.optimizer_kwargs == kwargs and config.optimizer_kwargs is not kwargs
    json.dumps(config.describe())


def test_factory_must_return_a_scheduler():
    trainer, _ = autograd_trainer(cfg(schedule=lambda opt: None))
    with pytest.raises(ConfigError):
        trainer.fit(THETA0)
