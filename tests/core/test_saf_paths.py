"""SAF on every gradient path: a plain reference of the paper's training loop as the oracle, the
term acting on autograd, physics-aware, zeroth-order and SAT-composed estimators at no extra
reconfiguration, and a zeroth-order SAF run resumed bitwise from a checkpoint."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from blacksat import MeteredDevice, PhysicsAware, TrainConfig, Trainer, ZerothOrder, sat
from blacksat.data import load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.estimators import Autograd
from blacksat.saf import TrajectoryLoss

LAM, TAU, LAG = 1.0, 5.0, 1


@pytest.fixture(scope="module")
def problem():
    chip = MZIMesh(n_modes=4, seed=0)
    return chip, load_iris()


def fresh(problem):
    chip, data = problem
    task = default_task(chip, data).to(torch.float64)
    return chip, task, chip.nominal_model(dtype=torch.float64)


def config(**kw):
    base = dict(lr=0.05, epochs=None, max_steps=24, batch_size=16, seed=7, progress=False)
    base.update(kw)
    return TrainConfig(train_digital=False, **base)


class Spy:
    """Delegates to an estimator and records each step's batch indices."""

    def __init__(self, inner):
        self.inner, self.task, self.indices = inner, inner.task, []

    def __call__(self, theta, batch, ctx):
        self.indices.append(np.asarray(batch.index).copy())
        return self.inner(theta, batch, ctx)

    def settings_per_step(self):
        return self.inner.settings_per_step()


def test_autograd_saf_matches_a_plain_reference_loop(problem):
    """The paper's loop written out: CE + lam tau^2 KL(softmax(z_old / tau) || softmax(z / tau))
    against the logits recorded LAG epochs earlier for the same samples, Adam, projection."""
    chip, task, model = fresh(problem)
    theta0 = chip.space.center.copy()
    spy = Spy(Autograd(model, task, space=chip.space))
    res = Trainer(task, spy, chip.space, config(), saf=TrajectoryLoss(LAM, TAU, LAG)).fit(theta0)

    n = len(task.data.split("train")[1])
    theta = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.05)
    memory: dict[int, dict[int, torch.Tensor]] = {}
    seen = 0
    for idx in spy.indices:
        epoch = seen // n
        seen += len(idx)
        b = task.batch("train", idx)
        z = task.logits_model(model, theta, b.features)
        loss = F.cross_entropy(z, b.labels)
        old = memory.get(epoch - LAG, {})
        if epoch >= LAG and old:
            kl = torch.stack(
                [
                    (F.softmax(old[i] / TAU, -1) * (
                        F.log_softmax(old[i] / TAU, -1) - F.log_softmax(z[j] / TAU, -1)
                    )).sum()
                    if i in old
                    else z.new_zeros(())
                    for j, i in enumerate(idx.tolist())
                ]
            )  # fmt: skip
            loss = loss + LAM * TAU**2 * kl.mean()
        opt.zero_grad()
        loss.backward()
        memory.setdefault(epoch, {}).update(
            {i: z[j].detach().clone() for j, i in enumerate(idx.tolist())}
        )
        opt.step()
        with torch.no_grad():
            theta.copy_(torch.as_tensor(chip.space.project(theta.detach().numpy())))
    assert len(spy.indices) == 24 and seen > 2 * n  # the term was active for a while
    np.testing.assert_allclose(res.theta, theta.detach().numpy(), rtol=0, atol=1e-9)


def _estimators(chip, task, model, meter):
    drift = chip.perturbation_models()["phase_drift"]
    return {
        "autograd": Autograd(model, task, space=chip.space),
        "physics_aware": PhysicsAware(meter, model, task),
        "zeroth_order": ZerothOrder(meter, task, q=2, sigma=0.05),
        "zo-sat average": sat(
            ZerothOrder(meter, task, q=2, sigma=0.05), perturbation=drift, mode="average"
        ),
        "zo-sat ends": sat(
            ZerothOrder(meter, task, q=2, sigma=0.05),
            perturbation=dataclasses.replace(drift, grid=2),
        ),
    }


@pytest.mark.parametrize(
    "path", ["autograd", "physics_aware", "zeroth_order", "zo-sat average", "zo-sat ends"]
)
def test_the_term_acts_on_every_path_at_no_extra_reconfiguration(problem, path):
    runs = {}
    for use_saf in (False, True):
        chip, task, model = fresh(problem)
        meter = MeteredDevice(chip)
        est = _estimators(chip, task, model, meter)[path]
        saf = TrajectoryLoss(LAM, TAU, LAG) if use_saf else None
        res = Trainer(task, est, chip.space, config(), saf=saf).fit(chip.space.center)
        runs[use_saf] = (res.theta, meter.ledger.reconfigurations, saf)
    (plain, cost_plain, _), (with_saf, cost_saf, saf) = runs[False], runs[True]
    assert saf is not None and saf.epochs()  # readings were recorded
    assert not np.array_equal(plain, with_saf)  # and the term changed the trajectory
    assert cost_saf == cost_plain  # at no extra reconfiguration


def test_zeroth_order_saf_resumes_bitwise(problem, tmp_path):
    """On a device without readout noise or drift (a noisy chip's noise stream restarts with the
    process, as a lab instrument's would), the resumed run equals the uninterrupted one."""

    def trainer(path=None):
        chip = MZIMesh(n_modes=4, seed=0, **MZIMesh.quiet_config)
        task = default_task(chip, problem[1]).to(torch.float64)
        meter = MeteredDevice(chip)
        est = ZerothOrder(meter, task, q=2, sigma=0.05)
        saf = TrajectoryLoss(LAM, TAU, LAG)
        return Trainer(task, est, chip.space, config(), saf=saf, checkpoint_path=path), chip

    full = trainer()[0].fit(MZIMesh(n_modes=4, seed=0).space.center)
    path = tmp_path / "ckpt.pt"
    first, chip = trainer(path)
    first.config = dataclasses.replace(first.config, max_steps=11)
    first.fit(chip.space.center)
    again, _ = trainer(path)
    res = again.resume(path)
    np.testing.assert_array_equal(res.theta, full.theta)
    for e, m in full.state.saf["memory"].items():
        assert torch.equal(res.state.saf["memory"][e]["table"], m["table"])
