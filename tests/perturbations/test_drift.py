"""Drift between the ascent and the descent queries of a SAT step.

Documented behaviour: a SAT step does not try to detect or correct drift. Each half is evaluated
on whatever the device does at the moment its query goes out, and the number of queries,
reconfigurations and samples per step is fixed by the estimators and the perturbation model,
whatever the device does in between.
"""

import numpy as np
import pytest
import torch
from doubles import CountingDevice, DriftingDevice, LinearDevice
from fakes import PlainTask, batch

from blacksat.estimators import ZerothOrder
from blacksat.meter import MeteredDevice
from blacksat.objective import StepContext
from blacksat.perturbations import CommonMode, L2Ball
from blacksat.sat import sat

STEPS = 5


def run(rate, perturbation):
    counter = CountingDevice(DriftingDevice(LinearDevice(), rate=rate))
    meter = MeteredDevice(counter, policy="clip")
    est = sat(ZerothOrder(meter, PlainTask(), q=3, sigma=0.05), perturbation=perturbation)
    ctx = StepContext(np.random.default_rng(0))
    th = torch.linspace(-0.4, 0.4, 6, dtype=torch.float64)
    per_step, losses = [], []
    for _ in range(STEPS):
        before = meter.ledger
        e = est(th, batch(), ctx)
        after = meter.ledger
        per_step.append(
            (after.queries - before.queries, after.reconfigurations - before.reconfigurations)
        )
        assert e.cost.queries == per_step[-1][0]
        losses.append(e.loss)
        th = th - 0.1 * e.grad
    return per_step, losses, meter.ledger, counter


@pytest.mark.parametrize("perturbation", [L2Ball(0.05), CommonMode(0.05)])
def test_query_count_per_step_is_fixed_under_drift(perturbation):
    still, still_losses, still_ledger, _ = run(0.0, perturbation)
    assert still == [(2, 12)] * STEPS  # ascent: 2q settings; descent: 2q settings
    for rate in (0.05, 3.0):
        drifting, losses, ledger, counter = run(rate, perturbation)
        assert drifting == still and ledger == still_ledger
        assert (ledger.reconfigurations, ledger.samples) == (
            counter.reconfigurations,
            counter.samples,
        )
        # the ascent of step s is device call 2 s and its loss carries that call's offset
        # (PlainTask: sum over the 2 outputs, mean over the batch); a central difference
        # within one call cancels the offset, so the controls follow the same path
        offsets = np.array([2 * rate * 2 * s for s in range(STEPS)])
        np.testing.assert_allclose(losses, np.array(still_losses) + offsets, rtol=0, atol=1e-9)
