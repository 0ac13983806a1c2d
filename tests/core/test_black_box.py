"""The black-box boundary: a trainer given a Device learns only through metered queries.

The device below is built from closures: it has a ``space``, ``query`` and ``query_many`` and
nothing else to reach. Zeroth-order SAT still trains it, and every query it answered is on the
meter's ledger (checked against the device's own tally).
"""

import numpy as np
import torch
from doubles import CountingDevice

from blacksat import Device, ParamSpace
from blacksat.data import load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.estimators import ZerothOrder
from blacksat.meter import MeteredDevice
from blacksat.objective import StepContext
from blacksat.sat import sat


def opaque(seed: int) -> Device:
    chip = MZIMesh(n_modes=4, s_bs=0.1, s_ps=0.1, seed=seed, noise=0.002, drift=0.0)

    class Opaque:
        __slots__ = ()
        space: ParamSpace = chip.space
        input_shape = chip.input_shape
        output_shape = chip.output_shape

        def query(self, theta, x):
            return chip.query(theta, x)

        def query_many(self, thetas, x):
            return chip.query_many(thetas, x)

    return Opaque()


def test_zeroth_order_sat_trains_an_opaque_device_through_metered_queries():
    dev = opaque(seed=3)
    assert not hasattr(dev, "__dict__") and not hasattr(dev, "exact_model")
    counter = CountingDevice(dev)
    meter = MeteredDevice(counter, max_reconfigurations=2000)
    task = default_task(MZIMesh(n_modes=4), load_iris(seed=0), seed=0).to(torch.float64)
    est = sat(ZerothOrder(meter, task, q=4, sigma=0.1), rho=0.05)
    rng = np.random.default_rng(0)
    ctx = StepContext(rng)
    theta = torch.as_tensor(dev.space.center)
    full = task.batch("train", np.arange(len(task.data.y_train)))
    before, _ = est.evaluate(theta[None], full, ctx)
    theta = theta.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=0.1)
    for _ in range(60):
        b = task.batch("train", rng.choice(len(task.data.y_train), 32, replace=False))
        e = est(theta.detach(), b, ctx)
        theta.grad = e.grad
        opt.step()
        with torch.no_grad():
            theta.clamp_(float(dev.space.lower[0]), float(dev.space.upper[0]))
    after, _ = est.evaluate(theta.detach()[None], full, ctx)
    assert float(after) < float(before) - 0.1
    assert meter.ledger.reconfigurations == counter.reconfigurations
    assert meter.ledger.samples == counter.samples
    assert meter.ledger.reconfigurations <= 2000
