"""Checkpoint writes are atomic under a hard kill: a process killed (SIGKILL) in the middle of
``save_checkpoint`` leaves the previous checkpoint loadable and complete.

(Writes interrupted by an exception, with the temporary file cleaned up, are covered in
``test_checkpoint.py``; a SIGKILL cannot clean up, so its temporary file stays, hidden and
never mistaken for the checkpoint.)
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from blacksat.checkpoint import TrainState, load_checkpoint, save_checkpoint

WRITER = """
import sys
import torch
from blacksat.checkpoint import TrainState, save_checkpoint

i = 0
while True:
    i += 1
    theta = torch.full((2_000_000,), float(i), dtype=torch.float64)  # 16 MB: a slow write
    save_checkpoint(TrainState(theta=theta, step=i), sys.argv[1])
"""


def temp_files(directory, name):
    return [p for p in directory.iterdir() if p.name.startswith(f".{name}.")]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_write_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "run.ckpt"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=os.getcwd())
    try:
        deadline = time.monotonic() + 120
        while not path.exists():  # the first checkpoint is complete
            assert proc.poll() is None and time.monotonic() < deadline, "writer did not start"
            time.sleep(0.01)
        while not temp_files(tmp_path, path.name):  # the next write is in flight
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.001)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    state = load_checkpoint(path)
    assert state.step >= 1 and torch.all(state.theta == float(state.step))  # complete, not torn
    leftovers = temp_files(tmp_path, path.name)
    assert all(p.suffix == ".tmp" for p in leftovers)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["run.ckpt"]
    # the next run writes over it normally, and removes what the killed writer left behind
    save_checkpoint(TrainState(theta=torch.zeros(3, dtype=torch.float64), step=99), path)
    assert load_checkpoint(path).step == 99
    assert temp_files(tmp_path, path.name) == []


def test_a_save_removes_stale_temporary_files_of_its_own_target_only(tmp_path):
    path = tmp_path / "run.ckpt"
    stale = tmp_path / ".run.ckpt.abc123.tmp"
    other = tmp_path / ".other.ckpt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    other.write_bytes(b"someone else's")
    save_checkpoint(TrainState(theta=torch.zeros(2, dtype=torch.float64), step=1), path)
    assert not stale.exists() and other.exists()
    assert load_checkpoint(path).step == 1
