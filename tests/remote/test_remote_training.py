"""Training through RemoteDevice reaches the in-process result bitwise (a noise-free chip)."""

from __future__ import annotations

import numpy as np
import torch
from remote_lab import chip

from blacksat import MeteredDevice, TrainConfig, Trainer, ZerothOrder, sat
from blacksat.data import load_iris
from blacksat.devices.tasks import default_task
from blacksat.evaluation import accuracy
from blacksat.perturbations import L2Ball
from blacksat.remote import RemoteDevice


def _train(device, seed=0):
    meter = MeteredDevice(device, max_reconfigurations=200)
    task = default_task(chip(), load_iris(seed=0))
    est = sat(ZerothOrder(meter, task, q=2, sigma=0.05), perturbation=L2Ball(0.05))
    config = TrainConfig(max_steps=6, epochs=None, batch_size=16, seed=seed, lr=0.05)
    result = Trainer(task, est, meter.space, config).fit(meter.space.center)
    return np.asarray(result.theta), meter.ledger, task


def test_zeroth_order_sat_through_a_remote_device_matches_the_in_process_run(served):
    local_theta, local_ledger, task = _train(chip())
    remote = RemoteDevice(served.url, token=served.tokens["alice"])
    remote_theta, remote_ledger, _ = _train(remote)
    assert local_ledger.reconfigurations > 0
    np.testing.assert_array_equal(remote_theta, local_theta)  # bitwise
    assert remote_ledger == local_ledger
    server = remote.describe()["spent"]
    assert server["reconfigurations"] == local_ledger.reconfigurations
    assert server["samples"] == local_ledger.samples
    # the same accuracy, each evaluated on its own device (the full test split)
    assert accuracy(task, remote, torch.as_tensor(remote_theta)) == accuracy(
        task, chip(), torch.as_tensor(local_theta)
    )
