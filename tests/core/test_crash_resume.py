"""A run crashed at any point and resumed from its last checkpoint ends with bitwise-identical
controls to an uninterrupted run, and the queries spent before the crash stay charged.

The run: zeroth-order SAT (one ``query_many`` for the ascent, one for the descent of every
step) on a quiet 4-mode MZI mesh, Adam with a cosine schedule, checkpoints every 2 steps. Crashes:
the device raises at call ``k`` (mid-ascent: ``k`` even, mid-descent: ``k`` odd, just before and
just after a periodic checkpoint), and ``save_checkpoint`` raises (at a periodic checkpoint, and
in the trainer's own save after a device crash). A resume "in a new process" builds a fresh chip,
task, meter, counting double and trainer and reads the checkpoint file.
"""

import dataclasses
import functools

import pytest
import torch
from doubles import CountingDevice, RaisingDevice

import blacksat.trainer as trainer_mod
from blacksat import DeviceError
from blacksat.checkpoint import load_checkpoint
from blacksat.data import load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.estimators import ZerothOrder
from blacksat.meter import Ledger, MeteredDevice
from blacksat.objective import add_costs
from blacksat.sat import sat
from blacksat.trainer import TrainConfig, Trainer

CONFIG = TrainConfig(lr=0.05, epochs=2, batch_size=16, seed=0, progress=False, schedule="cosine")
CALLS = 28  # 14 steps x (ascent + descent)


class SaveFailure(OSError):
    pass


@functools.lru_cache(maxsize=1)
def data():
    return load_iris(seed=0)


def build(crash_at=None, path=None, noisy=False):
    """A fresh run: chip (quiet, or with its readout noise and drift), task, counting double,
    meter, trainer."""
    chip = MZIMesh(n_modes=4, seed=0, **({} if noisy else {"noise": 0.0, "drift": 0.0}))
    raising = RaisingDevice(chip, at=crash_at if crash_at is not None else ())
    counter = CountingDevice(raising)
    meter = MeteredDevice(counter)
    task = default_task(chip, data()).to(torch.float64)
    est = sat(ZerothOrder(meter, task, q=2, sigma=0.1), rho=0.05)
    config = CONFIG if path is None else dataclasses.replace(CONFIG, checkpoint_every=2)
    trainer = Trainer(task, est, chip.space, config, meter=meter, checkpoint_path=path)
    return trainer, meter, counter


@functools.lru_cache(maxsize=2)
def reference(noisy=False):
    trainer, meter, _ = build(noisy=noisy)
    res = trainer.fit(MZIMesh(n_modes=4).space.center)
    return res.state.theta.clone(), [h["loss"] for h in res.history], meter.ledger


def theta0():
    return MZIMesh(n_modes=4).space.center


def tally(*counters):
    return (sum(c.reconfigurations for c in counters), sum(c.samples for c in counters))


def check_resumed(res, ledger, counters, noisy=False):
    ref_theta, ref_losses, ref_ledger = reference(noisy)
    assert res.reason == "completed" and res.steps == 14
    assert torch.equal(res.state.theta, ref_theta)  # bitwise
    assert [h["loss"] for h in res.history] == ref_losses
    assert (ledger.reconfigurations, ledger.samples) == tally(*counters)
    assert ledger.queries == sum(c.calls for c in counters)
    for name in ("reconfigurations", "samples", "queries"):
        assert getattr(ledger, name) >= getattr(ref_ledger, name)


@pytest.mark.parametrize("k", [0, 1, 3, 4, 6, 13, CALLS - 1])
def test_device_crash_at_any_call_resumes_bitwise_in_a_new_process(tmp_path, k):
    path = tmp_path / "run.ckpt"
    trainer, meter, counter = build(crash_at=k, path=path)
    with pytest.raises(DeviceError):
        trainer.fit(theta0())
    saved = load_checkpoint(path)
    assert saved.step == k // 2  # the last good state, written when the step failed
    assert saved.ledger == meter.ledger and saved.ledger.failures == 1  # the crash is charged
    again, meter2, counter2 = build(path=path)
    res = again.resume(path)
    spent_after = Ledger(counter2.reconfigurations, counter2.samples, counter2.calls, 0)
    assert res.ledger == meter2.ledger == add_costs(saved.ledger, spent_after)
    check_resumed(res, res.ledger, [counter, counter2])
    assert res.ledger.failures == 1


@pytest.mark.parametrize("k", [1, 6, 13])
def test_a_noisy_simulator_resumes_bitwise_too(tmp_path, k):
    """With readout noise and drift on, the checkpoint holds the simulator's streams as they
    were before the failed step (its ascent, for odd k, had already drawn noise), so the fresh
    chip of the resumed run draws what the uninterrupted run drew."""
    path = tmp_path / "run.ckpt"
    trainer, _, counter = build(crash_at=k, path=path, noisy=True)
    with pytest.raises(DeviceError):
        trainer.fit(theta0())
    assert load_checkpoint(path).device_rng is not None
    again, _, counter2 = build(path=path, noisy=True)
    res = again.resume(path)
    check_resumed(res, res.ledger, [counter, counter2], noisy=True)
    assert not torch.equal(res.state.theta, reference(False)[0])  # the noise mattered


@pytest.fixture
def failing_save(monkeypatch):
    """``fail(n)``: the n-th call (1-based) of the trainer's save_checkpoint raises."""
    real = trainer_mod.save_checkpoint
    calls = []

    def fail(n):
        def save(state, path):
            calls.append(state.step)
            if len(calls) == n:
                raise SaveFailure("disk full")
            return real(state, path)

        monkeypatch.setattr(trainer_mod, "save_checkpoint", save)
        return calls

    return fail


def test_save_failure_at_a_periodic_checkpoint(tmp_path, failing_save):
    path = tmp_path / "run.ckpt"
    calls = failing_save(2)  # the checkpoint after step 4 fails
    trainer, meter, counter = build(path=path)
    with pytest.raises(SaveFailure):
        trainer.fit(theta0())
    assert calls == [2, 4] and load_checkpoint(path).step == 2  # the previous one is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]
    # the same process resumes with the same meter: nothing spent is forgotten
    res = trainer.resume(path)
    check_resumed(res, res.ledger, [counter])
    assert res.ledger == meter.ledger and res.ledger.queries == CALLS + 4  # steps 3, 4 redone


def test_save_failure_while_saving_after_a_device_crash(tmp_path, failing_save):
    path = tmp_path / "run.ckpt"
    calls = failing_save(4)  # periodic saves at steps 2, 4, 6; the crash-time save fails
    trainer, _, counter = build(crash_at=15, path=path)  # the descent of step 8
    with pytest.raises(DeviceError):
        trainer.fit(theta0())
    assert calls == [2, 4, 6, 7] and load_checkpoint(path).step == 6
    res = trainer.resume(path)
    check_resumed(res, res.ledger, [counter])
    assert res.ledger.failures == 1


def test_save_failure_then_a_new_process_keeps_the_result_bitwise(tmp_path, failing_save):
    path = tmp_path / "run.ckpt"
    failing_save(3)  # the checkpoint after step 6 fails
    trainer, _, counter = build(path=path)
    with pytest.raises(SaveFailure):
        trainer.fit(theta0())
    again, _, counter2 = build(path=path)
    res = again.resume(path)
    ref_theta, _, ref_ledger = reference()
    assert torch.equal(res.state.theta, ref_theta) and res.ledger == ref_ledger
    # steps 5 and 6 were paid twice, but the checkpoint that would have recorded the first
    # payment was never written: only the query log (written before each reading is used)
    # still holds those queries in a new process
    spent = tally(counter, counter2)
    assert spent[0] == res.ledger.reconfigurations + 16 and spent[1] > res.ledger.samples
