"""Checkpoints: a TrainState survives the round trip exactly, loads with weights_only=True, and a
write that fails half-way leaves the previous checkpoint intact and no temporary file behind."""

import os

import numpy as np
import pytest
import torch

from blacksat import ConfigError
from blacksat.checkpoint import TrainState, load_checkpoint, save_checkpoint
from blacksat.meter import Ledger
from blacksat.objective import Batch
from blacksat.saf import TrajectoryLoss


def make_state(step: int = 4) -> TrainState:
    rng = np.random.default_rng(11)
    rng.standard_normal(5)
    theta = torch.nn.Parameter(torch.linspace(-1, 1, 6, dtype=torch.float64))
    opt = torch.optim.Adam([theta], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    theta.grad = torch.ones(6, dtype=torch.float64)
    opt.step()
    sched.step()
    saf = TrajectoryLoss(lag=1)
    b = Batch(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64), torch.tensor([4, 1]))
    saf.record(b, torch.randn(2, 3, generator=torch.Generator().manual_seed(0)), 0)
    return TrainState(
        theta=theta.detach().clone(),
        step=step,
        epoch=1,
        order=torch.as_tensor(rng.permutation(9)),
        offset=3,
        rng=rng.bit_generator.state,
        optimizer=opt.state_dict(),
        scheduler=sched.state_dict(),
        digital={"back": {"weight": torch.eye(2, dtype=torch.float64), "bias": torch.ones(2)}},
        ledger=Ledger(5, 50, 3, 1),
        history=[{"step": 1, "epoch": 0, "loss": 0.5, "lr": 0.1, "grad_norm": 2.0}],
        saf=saf.state_dict(),
        elapsed=1.5,
        meta={"d": 6},
    )


def assert_states_equal(a: TrainState, b: TrainState) -> None:
    assert torch.equal(a.theta, b.theta)
    assert (a.step, a.epoch, a.offset, a.elapsed, a.meta) == (
        b.step,
        b.epoch,
        b.offset,
        b.elapsed,
        b.meta,
    )
    assert torch.equal(a.order, b.order)
    assert a.rng == b.rng and a.ledger == b.ledger and a.history == b.history
    assert a.scheduler == b.scheduler
    assert a.optimizer["param_groups"] == b.optimizer["param_groups"]
    for k in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(a.optimizer["state"][0][k], b.optimizer["state"][0][k])
    for k, v in a.digital["back"].items():
        assert torch.equal(v, b.digital["back"][k])
    assert torch.equal(a.saf["memory"][0]["table"], b.saf["memory"][0]["table"])


def test_round_trip_is_exact(tmp_path):
    state = make_state()
    path = save_checkpoint(state, tmp_path / "sub" / "run.ckpt")
    assert path.is_file()
    loaded = load_checkpoint(path)
    assert_states_equal(state, loaded)
    # only tensors and plain values: the safe loader reads it
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "blacksat.TrainState" and raw["ledger"]["failures"] == 1


def test_restored_generator_continues_the_stream_and_is_not_shared():
    state = make_state()
    ref = np.random.Generator(np.random.PCG64())
    ref.bit_generator.state = state.rng
    first = state.make_rng()
    first.standard_normal(10)  # advancing one restored generator does not move the state
    assert np.array_equal(state.make_rng().standard_normal(4), ref.standard_normal(4))


def test_copy_is_deep():
    state = make_state()
    twin, theta = state.copy(), state.theta.clone()
    twin.theta.add_(1.0)
    twin.history[0]["loss"] = 9.0
    twin.rng["state"]["state"] += 1
    assert torch.equal(state.theta, theta) and state.history[0]["loss"] == 0.5
    assert state.rng != twin.rng


@pytest.mark.parametrize("where", ["replace", "save"])
def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, where):
    path = tmp_path / "run.ckpt"
    save_checkpoint(make_state(step=4), path)
    before = path.read_bytes()

    if where == "replace":

        def boom(src, dst):
            raise OSError("disk vanished")

        monkeypatch.setattr(os, "replace", boom)
    else:
        real_save = torch.save

        def boom(obj, f, *a, **kw):
            real_save({"partial": True}, f)  # some bytes reach the temp file first
            raise KeyboardInterrupt

        monkeypatch.setattr(torch, "save", boom)

    with pytest.raises((OSError, KeyboardInterrupt)):
        save_checkpoint(make_state(step=8), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path).step == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]


def test_unreadable_or_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(ConfigError, match="damaged"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ConfigError, match="not a blacksat"):
        load_checkpoint(foreign)
    future = tmp_path / "future.ckpt"
    torch.save({**make_state().to_dict(), "version": 99}, future)
    with pytest.raises(ConfigError, match="version"):
        load_checkpoint(future)


@pytest.mark.parametrize("damage", ["empty", "truncated", "pickle", "directory-like"])
def test_damaged_checkpoints_give_one_clear_error(tmp_path, damage):
    """Empty, truncated or foreign files: one short ConfigError naming the file, never
    torch's advice to load with weights_only=False, an errno or a bare EOFError."""
    path = tmp_path / "run.ckpt"
    save_checkpoint(make_state(), path)
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "pickle":
        import argparse

        torch.save({"format": "blacksat.TrainState", "x": argparse.Namespace()}, path)
    else:
        path.write_bytes(b"PK\x03\x04" + b"\x00" * 40)  # a zip header and nothing else
    with pytest.raises(ConfigError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert str(path) in text and len(text.splitlines()) == 1 and len(text) < 300
    assert "weights_only=False" not in text and "Errno" not in text
    assert ("empty" if damage == "empty" else "damaged") in text or "objects other" in text


def test_unknown_bit_generator_is_rejected():
    state = make_state()
    state.rng = {"bit_generator": "NotAGenerator"}
    with pytest.raises(ConfigError):
        state.make_rng()
