"""Smoke test of benchmarks/saf.py: each method's cost per step and its fresh chips, and the
study's harness (runs saved as they complete, resumed, re-rendered from disk)."""

import dataclasses
import json

from bench_loader import load_bench

M = load_bench("saf.py", "saf_study")


def test_every_method_runs_within_its_budget_and_is_scored_on_the_fresh_chip_rule(monkeypatch):
    from blacksat.devices import MZIMesh

    fresh_seeds = []
    original = MZIMesh.fresh_chip

    def spy(self, seed, *a, **k):
        fresh_seeds.append(seed)
        return original(self, seed, *a, **k)

    monkeypatch.setattr(MZIMesh, "fresh_chip", spy)
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
        assert r["fresh_chips"] == [1005, 1006, 1007]  # fresh_chip_seeds(5, 3)
    assert set(fresh_seeds) == {1005, 1006, 1007}
    assert len(fresh_seeds) == 3 * len(M.METHODS)


def _fake(monkeypatch):
    """Replace training and scoring by counted stand-ins (the harness is what is tested)."""
    calls = {"train": 0, "offline": 0, "score": 0}

    def offline_start(chip, task, seed, steps):
        calls["offline"] += 1
        return [0.0]

    def scored(seed):
        return {
            "clean": 0.8 + 0.01 * seed,
            "drift": 0.5,
            "fresh": 0.7,
            "fresh_chips": M.fresh_chip_seeds(seed, M.FRESH),
            "query_sharpness": 0.1,
            "model_curvature": 0.2,
        }

    def score(fam, chip, task, theta, chip_seed):
        calls["score"] += 1
        return scored(chip_seed)

    def train(fam, seed, budget, method, start, saf):
        calls["train"] += 1
        bonus = 0.1 if saf == (1.0, 2) else 0.0  # the tuning's winner
        row = {"method": method, "seed": seed, "budget": budget, "settings_per_step": 8}
        return {**row, **scored(seed), "drift": 0.5 + bonus, "wall_s": 1.0}

    monkeypatch.setattr(M, "offline_start", offline_start)
    monkeypatch.setattr(M, "score", score)
    monkeypatch.setattr(M, "train", train)
    monkeypatch.setattr(M, "task_of", lambda chip: None)
    families = {  # two devices whose chips are never built
        k: dataclasses.replace(M.FAMILIES[k], make=lambda s: object()) for k in ("mzi", "crossbar")
    }
    monkeypatch.setattr(M, "FAMILIES", families)
    return calls


def test_runs_are_saved_as_they_complete_resumed_and_re_rendered(monkeypatch, tmp_path):
    import _study

    monkeypatch.setattr(_study, "RESULTS", tmp_path)
    written = []
    monkeypatch.setattr(M.Study, "write", lambda self, body: written.append(body))
    calls = _fake(monkeypatch)
    monkeypatch.setattr(M, "SEEDS", (0, 1))
    monkeypatch.setattr(M, "BUDGETS", (40, 80))

    M.main([])
    path = tmp_path / "saf" / "rows.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    tune_runs = 2 * len(M.SAF_GRID)
    reported = 2 * 2 * 2 * len(M.METHODS)
    assert calls["train"] == tune_runs + reported
    assert calls["offline"] == 2 + 2 * 2  # one per tuning device and per (device, seed)
    assert len(rows) == tune_runs + reported + 2 * 2  # the offline starts are runs too
    assert {tuple(r["fresh_chips"]) for r in rows if r["seed"] == 1} == {(1001, 1002, 1003)}
    assert M.chosen(rows) == (1.0, 2)

    # a second call (an interrupted study restarted) re-runs nothing
    before = dict(calls)
    M.main([])
    assert calls == before
    assert len(path.read_text().splitlines()) == len(rows)

    # a run lost in a crash is the only one re-run
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[:-1]))
    M.main([])
    assert calls["train"] == before["train"] + 1

    # --report-only renders from the rows alone: no run, the same section
    M.main(["--report-only"])
    assert calls["train"] == before["train"] + 1
    text = written[-1]
    assert text == written[-2]
    assert text.startswith("Command: `python benchmarks/saf.py`")
    assert "lam = 1.0, lag = 2 epochs" in text and "c + 1000 + i" in text
    assert "| 80 | ZO + SAF | 8 | 80.5 ± 0.7 | 60.0 ± 0.0 | 70.0 ± 0.0 |" in text
    for word in ("target", "met", "missed", "tie", "helps", "beats"):
        assert word not in text.lower().split()
