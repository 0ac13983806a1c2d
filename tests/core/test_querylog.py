import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from doubles import FaultyDevice, LinearDevice

from blacksat import (
    ConfigError,
    DeviceError,
    InvalidReading,
    MeteredDevice,
    NonFiniteError,
    QueryData,
    QueryLog,
    ShapeError,
)
from blacksat.querylog import log_queries

REPO = Path(__file__).resolve().parents[2]


def _count(path, table):
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def _run_queries(meter, n, seed=0):
    """``n`` queries of 3 settings, alternating between two minibatches; returns what was sent."""
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(4, 3)), rng.normal(size=(4, 3))]
    sent = []
    for i in range(n):
        t = rng.uniform(-1, 1, (3, 6))
        t[1] = t[0]  # a repeated setting costs no reconfiguration
        y = meter.query_many(t, xs[i % 2])
        sent.append((t, xs[i % 2], y))
    return sent


def test_round_trip_through_a_metered_device(tmp_path):
    path = tmp_path / "queries.sqlite"
    meter = MeteredDevice(LinearDevice())
    with log_queries(meter, path, device="chip-1") as log:
        sent = _run_queries(meter, 7)
        assert len(log) == 7
        records = list(log.records())
    assert [q.index for q in records] == list(range(7))
    for q, (t, x, y) in zip(records, sent, strict=True):
        assert q.device == "chip-1"
        assert q.thetas.tobytes() == t.tobytes() and q.x.tobytes() == x.tobytes()
        assert q.y.tobytes() == y.tobytes()  # bitwise equal
        assert (q.reconfigurations, q.samples) == (2, 12)
    assert records[0].x is records[2].x  # a shared input batch is decoded once
    assert _count(path, "inputs") == 2  # two distinct minibatches, stored once each
    assert _count(path, "queries") == 7
    with QueryLog(path, readonly=True) as ro:
        spent = ro.spent()
    led = meter.ledger
    assert (spent.reconfigurations, spent.samples, spent.queries) == (
        led.reconfigurations,
        led.samples,
        led.queries,
    )
    assert all(q.time > 1e9 for q in records)


def test_single_query_and_data(tmp_path):
    meter = MeteredDevice(LinearDevice())
    log = QueryLog(tmp_path / "q.sqlite")
    meter.add_observer(log)
    x = np.ones((2, 3))
    y = meter.query(np.full(6, 0.5), x)
    data = log.data()
    assert isinstance(data, QueryData) and data.n_groups == 1
    t_, _, y_ = data.groups[0]
    np.testing.assert_array_equal(t_, np.full((1, 6), 0.5))
    np.testing.assert_array_equal(y_[0], y)
    assert "queries=1" in repr(log)
    log.close()
    assert log.closed and "closed" in repr(log)
    log.close()  # idempotent
    with pytest.raises(ConfigError, match="closed"):
        len(log)


def test_reopen_appends_across_runs_and_filters_devices(tmp_path):
    path = tmp_path / "q.sqlite"
    for run, device in enumerate(["chip-a", "chip-b", "chip-a"]):
        meter = MeteredDevice(LinearDevice())
        with log_queries(meter, path, device=device):
            _run_queries(meter, 3, seed=run)
    with QueryLog(path, readonly=True) as log:
        assert len(log) == 9
        assert log.devices() == ["chip-a", "chip-b"]
        a = list(log.records(device="chip-a"))
        assert [q.index for q in a] == [0, 1, 2, 6, 7, 8]
        assert log.data(device="chip-b").n_groups == 3
        assert log.spent(device="chip-b").queries == 3
        assert list(log.records(device="nobody")) == []
    assert _count(path, "inputs") == 6  # two minibatches per run, each run seeded differently


def test_append_defaults_and_explicit_fields(tmp_path):
    with QueryLog(tmp_path / "q.sqlite", device="dflt") as log:
        t = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
        i0 = log.append(t, np.ones((2, 1)), np.zeros((3, 2, 1)))
        i1 = log.append(
            t, np.ones((2, 1)), np.zeros((3, 2, 1)), reconfigurations=0, samples=6,
            device="other", time=123.5,
        )  # fmt: skip
        q0, q1 = log.records()
    assert (i0, i1) == (0, 1)
    assert (q0.device, q0.reconfigurations, q0.samples) == ("dflt", 2, 6)
    assert (q1.device, q1.time, q1.reconfigurations) == ("other", 123.5, 0)


def test_readonly_refuses_writes(tmp_path):
    path = tmp_path / "q.sqlite"
    with QueryLog(path) as log:
        log.append(np.zeros((1, 2)), np.ones((1, 1)), np.zeros((1, 1, 1)))
    with QueryLog(path, readonly=True) as ro:
        with pytest.raises(ConfigError, match="read-only"):
            ro.append(np.zeros((1, 2)), np.ones((1, 1)), np.zeros((1, 1, 1)))
        assert len(ro) == 1
    with pytest.raises(ConfigError, match="no query log"):
        QueryLog(tmp_path / "missing.sqlite", readonly=True)


@pytest.mark.parametrize("fault", ["raise", "nan"])
def test_failed_queries_are_not_logged(tmp_path, fault):
    meter = MeteredDevice(FaultyDevice(fault, at=1))
    log = log_queries(meter, tmp_path / "q.sqlite")
    x = np.ones((2, 3))
    meter.query(np.zeros(6), x)
    with pytest.raises(InvalidReading if fault == "nan" else DeviceError):
        meter.query(np.full(6, 0.1), x)
    meter.query(np.full(6, 0.2), x)
    assert meter.ledger.queries == 3 and meter.ledger.failures == 1
    assert len(log) == 2
    np.testing.assert_array_equal(log.data().settings(), [np.zeros(6), np.full(6, 0.2)])
    assert log.spent().samples == 4  # the failed query was charged by the meter, not logged
    log.close()


def test_bad_appends_raise_and_write_nothing(tmp_path):
    with QueryLog(tmp_path / "q.sqlite") as log:
        x = np.ones((2, 3))
        with pytest.raises(ShapeError, match="readings y must have shape"):
            log.append(np.zeros((2, 4)), x, np.zeros((3, 2, 1)))
        with pytest.raises(ShapeError, match="thetas must have shape"):
            log.append(np.zeros(4), x, np.zeros((1, 2, 1)))
        y = np.zeros((1, 2, 1))
        y[0, 0, 0] = np.nan
        with pytest.raises(NonFiniteError, match="non-finite"):
            log.append(np.zeros((1, 4)), x, y)
        with pytest.raises(ConfigError, match="samples"):
            log.append(np.zeros((1, 4)), x, np.zeros((1, 2, 1)), samples=-1)
        log.append(np.zeros((1, 4)), x, np.zeros((1, 2, 1)))
        with pytest.raises(ShapeError, match="was logged with d = 4"):
            log.append(np.zeros((1, 5)), x, np.zeros((1, 2, 1)))
        log.append(np.zeros((1, 5)), x, np.zeros((1, 2, 1)), device="wider")  # another device
        assert len(log) == 2
        with pytest.raises(ShapeError, match="pass device="):
            log.data()
        assert log.data(device="wider").dim == 5
    with pytest.raises(ConfigError, match="non-empty string"):
        QueryLog(tmp_path / "q.sqlite", device="")


def test_text_file_is_not_a_log(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are my lab notes, not a database\n" * 20)
    with pytest.raises(ConfigError, match="not a blacksat query log"):
        QueryLog(path)
    assert path.read_text().startswith("these are my lab notes")  # untouched


def test_foreign_sqlite_file_is_not_a_log(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE results (a INTEGER)")
    with pytest.raises(ConfigError, match=r"no 'meta' table"):
        QueryLog(path)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('format', 'someone.else')")
    with pytest.raises(ConfigError, match=r"format is 'someone\.else'"):
        QueryLog(path)


def test_wrong_version_is_refused(tmp_path):
    path = tmp_path / "q.sqlite"
    QueryLog(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    with pytest.raises(ConfigError, match="version 99; this blacksat reads version 1"):
        QueryLog(path)


def test_pickle_reopens_by_path(tmp_path):
    with QueryLog(tmp_path / "q.sqlite", device="p") as log:
        log.append(np.zeros((1, 2)), np.ones((1, 1)), np.zeros((1, 1, 1)))
        with pickle.loads(pickle.dumps(log)) as again:
            assert again.device == "p" and len(again) == 1
            again.append(np.ones((1, 2)), np.ones((1, 1)), np.zeros((1, 1, 1)))
        assert len(log) == 2


def test_concurrent_appends_from_threads(tmp_path):
    with QueryLog(tmp_path / "q.sqlite") as log:

        def work(seed):
            rng = np.random.default_rng(seed)
            for _ in range(10):
                log.append(rng.normal(size=(2, 3)), rng.normal(size=(1, 2)), np.zeros((2, 1, 1)))

        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert [q.index for q in log.records()] == list(range(40))


_CHILD = """
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
import numpy as np
from doubles import LinearDevice
from blacksat import MeteredDevice, QueryLog
log = QueryLog({path!r}, device="crash")
meter = MeteredDevice(LinearDevice(n_in=8, n_out=8), observers=[log])
rng = np.random.default_rng(0)
x = rng.normal(size=(32, 8))
i = 0
while True:
    meter.query_many(rng.uniform(-1, 1, (8, 64)), x if i % 3 else x + i)
    print(i, flush=True)  # the observer has returned: query i is complete
    i += 1
"""


def test_a_killed_writer_loses_no_completed_query(tmp_path):
    path = tmp_path / "crash.sqlite"
    code = _CHILD.format(repo=str(REPO), tests=str(REPO / "tests"), path=str(path))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    guard = threading.Timer(60.0, proc.kill)  # never hang the suite
    guard.start()
    printed = []
    try:
        for line in proc.stdout:
            printed.append(int(line))
            if len(printed) >= 20:
                os.kill(proc.pid, signal.SIGKILL)  # mid-loop, possibly mid-write
                break
        printed += [int(line) for line in proc.stdout if line.strip().isdigit()]
        proc.wait(timeout=30)
    finally:
        guard.cancel()
        proc.kill()
    assert len(printed) >= 20, proc.stderr.read()
    assert proc.returncode == -signal.SIGKILL
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with QueryLog(path) as log:  # reopening recovers the write-ahead log
        logged = [q.index for q in log.records()]
        assert set(printed) <= set(logged)
        assert logged == list(range(len(logged)))
        for q in log.records():
            np.testing.assert_allclose(
                q.y, np.einsum("bi,kio->kbo", q.x, q.thetas.reshape(-1, 8, 8))
            )
        log.append(np.zeros((1, 64)), np.ones((1, 8)), np.zeros((1, 1, 8)))  # still appendable
        assert len(log) == len(logged) + 1


def test_a_new_log_creates_its_run_directory(tmp_path):
    path = tmp_path / "run" / "nested" / "queries.sqlite"
    with QueryLog(path, device="d") as log:
        log.append(np.zeros((1, 2)), np.zeros((1, 3)), np.zeros((1, 1, 4)))
    with QueryLog(path, readonly=True) as again:
        assert len(again) == 1
