"""Honest costs: every estimator says how many settings a step sends, SAT included, and the
meter agrees; SAT spends no ascent on a perturbation model that probes the loss only."""

import numpy as np
import pytest
import torch
from fakes import LinearReadout, PlainTask, batch

from blacksat.estimators import Autograd, PhysicsAware, ZerothOrder
from blacksat.meter import MeteredDevice
from blacksat.nonfinite import NonFinitePolicy
from blacksat.objective import StepContext
from blacksat.perturbations import CommonMode, L2Ball, PerControl, needs_gradient
from blacksat.perturbations.nuisance import NuisanceModel
from blacksat.sat import FreeAscent, sat

D = 5


def setup():
    dev = LinearReadout(np.linspace(-1.0, 1.0, D))
    return MeteredDevice(dev), PlainTask(), dev


def spent(est, meter, momentum=None):
    before = meter.ledger
    theta = torch.linspace(-0.3, 0.4, D, dtype=torch.float64)
    ctx = StepContext(np.random.default_rng(0), momentum=momentum)
    e = est(theta, batch(f=3), ctx)
    assert e.cost == meter.ledger - before
    return (meter.ledger - before).reconfigurations


def test_zeroth_order_with_a_common_mode_grid_spends_17_settings_not_25():
    meter, task, _ = setup()
    est = sat(ZerothOrder(meter, task, q=4), perturbation=CommonMode(0.1, grid=9))
    assert est.settings_per_step() == 8 + 9 == 17
    assert spent(est, meter) == 17


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda m, t, d: ZerothOrder(m, t, q=4), 8),
        (lambda m, t, d: ZerothOrder(m, t, q=4, scheme="forward"), 5),
        (lambda m, t, d: PhysicsAware(m, d, t), 1),
        (lambda m, t, d: Autograd(d, t), 0),
        (lambda m, t, d: sat(ZerothOrder(m, t, q=4), rho=0.0), 8),
        (lambda m, t, d: sat(ZerothOrder(m, t, q=4), rho=0.1), 16),
        (lambda m, t, d: sat(ZerothOrder(m, t, q=4), perturbation=CommonMode(0.1)), 16),
        (lambda m, t, d: sat(ZerothOrder(m, t, q=3), perturbation=CommonMode(0.1, grid=2)), 8),
        (
            lambda m, t, d: sat(
                ZerothOrder(m, t, q=3), perturbation=PerControl(0.1), mode="average", draws=3
            ),
            18,
        ),
        (lambda m, t, d: sat(ZerothOrder(m, t, q=4), Autograd(d, t), rho=0.1), 8),
        (lambda m, t, d: sat(PhysicsAware(m, d, t), rho=0.1), 2),
        (lambda m, t, d: NonFinitePolicy(sat(ZerothOrder(m, t, q=2), rho=0.1)), 8),
        (
            lambda m, t, d: sat(
                NonFinitePolicy(ZerothOrder(m, t, q=2)), perturbation=CommonMode(0.1, grid=3)
            ),
            7,
        ),
    ],
)
def test_settings_per_step_is_what_the_meter_counts(build, expected):
    meter, task, dev = setup()
    est = build(meter, task, dev)
    assert est.settings_per_step() == expected
    assert spent(est, meter) == expected


def test_free_ascent_costs_nothing_once_there_is_momentum():
    meter, task, _ = setup()
    est = sat(ZerothOrder(meter, task, q=4), FreeAscent(), rho=0.1)
    assert est.settings_per_step() == 8
    assert spent(est, meter, momentum=torch.ones(D, dtype=torch.float64)) == 8
    assert spent(est, meter) == 16  # the first step (no momentum yet) spends a descent ascent


class Spy:
    """An ascent estimator that records whether it was called."""

    name = "spy"
    settings_per_evaluation = 1

    def __init__(self, inner):
        self.inner, self.task, self.calls = inner, inner.task, 0

    def __call__(self, theta, b, ctx):
        self.calls += 1
        return self.inner(theta, b, ctx)

    def evaluate(self, thetas, b, ctx):
        return self.inner.evaluate(thetas, b, ctx)

    def settings_per_step(self):
        return self.inner.settings_per_step()


@pytest.mark.parametrize(
    ("model", "used"),
    [(CommonMode(0.1, grid=5), False), (CommonMode(0.1), True), (L2Ball(0.1), True)],
)
def test_the_ascent_runs_only_when_the_model_reads_the_gradient(model, used):
    meter, task, _ = setup()
    spy = Spy(ZerothOrder(meter, task, q=2))
    est = sat(ZerothOrder(meter, task, q=2), spy, perturbation=model)
    spent(est, meter)
    assert spy.calls == int(used) and est.uses_ascent is used


def test_nuisance_models_and_grids_do_not_need_the_gradient():
    nm = NuisanceModel({"temperature": (-1.0, 1.0), "shift": (0.0, 0.5)}, steps=2)
    assert not needs_gradient(nm) and not needs_gradient(CommonMode(0.1, grid=3))
    assert needs_gradient(CommonMode(0.1)) and needs_gradient(PerControl(0.1))
    assert needs_gradient(object())  # a model that does not say is assumed to
    meter, task, _ = setup()
    est = sat(ZerothOrder(meter, task, q=4), perturbation=nm)
    assert est.settings_per_step() == nm.probe_evaluations + 8 == 6 + 8
