"""Smoke test of benchmarks/saf.py: each method's cost per step, a tiny run of every method,
and the verdict's tie rule."""

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("saf_study", BENCH / "saf.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["saf_study"] = mod  # dataclasses look their module up while it executes
    spec.loader.exec_module(mod)
    return mod


M = _load()


def test_every_method_runs_within_its_budget_and_saf_costs_nothing_extra():
    fam = M.FAMILIES["mzi"]
    chip = fam.make(5)
    task = M.task_of(chip)
    theta0 = M.offline_start(chip, task, 5, steps=5)
    rows = {m: M.train(fam, 5, 80, m, (task, theta0), (1.0, 1)) for m in M.METHODS}
    assert {m: r["settings_per_step"] for m, r in rows.items()} == {
        "ZO": 8,
        "ZO + SAF": 8,
        "ZO-SAT average": 8,
        "ZO-SAT cheapest worst": 10,
    }
    for r in rows.values():
        assert r["reconfigurations"] <= 80 and 0.0 <= r["clean"] <= 1.0
        assert {"drift", "fresh", "query_sharpness", "model_curvature"} <= set(r)


def _rows(device, budget, method, drifts):
    return [
        {"device": device, "budget": budget, "method": method, "drift": d, "clean": 0.9}
        for d in drifts
    ]


def test_a_win_inside_the_seed_spread_is_called_a_tie():
    rows = (
        _rows("mzi", 1000, "ZO", [0.80, 0.82, 0.84])
        + _rows("mzi", 1000, "ZO + SAF", [0.81, 0.83, 0.85])
        + _rows("mzi", 1000, "ZO-SAT average", [0.80, 0.82, 0.84])
    )
    (line,) = M.verdicts(rows, (1000,))
    assert "target met" in line and "a tie, not a result" in line
    rows = (
        _rows("mzi", 1000, "ZO", [0.50, 0.52, 0.54])
        + _rows("mzi", 1000, "ZO + SAF", [0.50, 0.52, 0.54])
        + _rows("mzi", 1000, "ZO-SAT average", [0.90, 0.91, 0.92])
    )
    (line,) = M.verdicts(rows, (1000,))
    assert "target missed" in line and "tie" not in line
