"""Smoke test of benchmarks/remote.py: a tiny load test against `blacksat serve`, and the report
(the fuzzing of every endpoint runs in tests/remote/test_remote_fuzz.py)."""

import pytest
from bench_loader import load_bench

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")


M = load_bench("remote.py", "remote_bench")


def test_a_tiny_load_run_loses_nothing_and_charges_once(tmp_path):
    ld = M.load(tmp_path, clients=2, queries=3, rate=1000.0, burst=100)
    assert ld["readings_lost"] == 0 and ld["double_charges"] == 0
    assert ld["log_rows_beyond_one_per_query"] == 0
    assert ld["server_spent"]["queries"] == 6 and ld["rival_refused"] >= 1
    fz = {
        "per_endpoint": 1,
        "total": 1,
        "counts": {"POST /v1/query": {"4xx": 1}},
        "server_errors": 0,
        "settings_applied": 0,
    }
    ov = {
        "K=64, B=256": {k: (1.0, 0.1) for k in ("local_ms", "logged_ms", "remote_ms", "added_ms")}
        | {"ratio": (2.0, 0.1), "ratio_logged": (1.1, 0.1), "reps": 2, "calls": 1}
    }
    text = M.report({"overhead": ov, "load": ld, "fuzz": fz, "load_average": 1.0})
    assert "| K=64, B=256 | 1.00 ± 0.10" in text and "readings lost" in text
    assert "| `POST /v1/query` | 0 | 1 | 0 |" in text
