"""A server killed mid-query and restarted: the client's retry loses no reading and pays once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from remote_lab import chip

from blacksat.querylog import QueryLog
from blacksat.remote import RemoteDevice
from blacksat.remote.auth import TokenStore
from blacksat.retry import RetryPolicy

SCRIPT = Path(__file__).resolve().parent / "serve_proc.py"
X = np.random.default_rng(1).random((3, 4))


def _start(state: Path, port: int, mode: str, n: int) -> tuple[subprocess.Popen, int]:
    (state / "port").unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(state), str(port), mode, str(n)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not (state / "port").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    return proc, int((state / "port").read_text())


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the server never stalled"
        time.sleep(0.02)


@pytest.mark.parametrize("where", ["device", "logged"])
def test_killed_mid_query_restarted_and_retried_exactly_once(tmp_path, where):
    state = tmp_path / "state"
    state.mkdir()
    secret = TokenStore(state / "tokens.json").create("alice", ("read", "query"))
    settings = [chip().space.sample(s, 2) for s in range(3)]  # 6 distinct settings
    proc, port = _start(state, 0, where, 3)  # the third query stalls
    restarted = None
    try:
        retry = RetryPolicy(max_retries=400, backoff=0.1, factor=1.5, max_backoff=0.5)
        dev = RemoteDevice(f"http://127.0.0.1:{port}", token=secret, retry=retry, timeout=60)
        readings = [dev.query_many(settings[0], X), dev.query_many(settings[1], X)]
        answer: dict[str, object] = {}
        client = threading.Thread(
            target=lambda: answer.setdefault("y", dev.query_many(settings[2], X)), daemon=True
        )
        client.start()
        _wait_for(state / "stalled", proc)
        os.kill(proc.pid, signal.SIGKILL)  # between applying and answering
        proc.wait(10)
        (state / "stalled").unlink()
        restarted, _ = _start(state, port, "none", 0)
        client.join(180)
        assert "y" in answer, "the retried query never came back"
        readings.append(answer["y"])
        for s, y in zip(settings, readings, strict=True):
            np.testing.assert_array_equal(y, chip().query_many(s, X))  # no reading lost
        with QueryLog(state / "queries.sqlite", readonly=True) as log:
            assert len(log) == 3  # logged once, whether the crash came before or after the log
            assert log.spent(client="alice").reconfigurations == 6
        spent = dev.describe()["spent"]
        assert (spent["reconfigurations"], spent["samples"], spent["queries"]) == (6, 18, 3)
        assert dev.last_ledger["queries"] == 3
    finally:
        for p in (proc, restarted):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
