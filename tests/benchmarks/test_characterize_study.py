"""Smoke test of benchmarks/characterize.py: a tiny run is scored on the fresh-chip rule, and the
study's harness saves runs as they complete, resumes and re-renders from disk."""

import json

from bench_loader import load_bench

M = load_bench("characterize.py", "characterize_study")


def test_a_run_is_scored_on_the_fresh_chips_of_its_training_chip(monkeypatch):
    from blacksat.devices import Crossbar

    seen = []
    original = Crossbar.fresh_chip

    def spy(self, seed, *a, **k):
        seen.append(seed)
        return original(self, seed, *a, **k)

    monkeypatch.setattr(Crossbar, "fresh_chip", spy)
    row = M.train_one("plain ZO", 7, 0, 40, 0.02)
    assert seen == [1007, 1008] == row["fresh_chips"]  # fresh_chip_seeds(7, 2)
    assert row["reconfigurations"] <= 40 and 0.0 <= row["fresh"] <= 1.0


def test_runs_are_saved_as_they_complete_resumed_and_re_rendered(monkeypatch, tmp_path):
    import _study

    monkeypatch.setattr(_study, "RESULTS", tmp_path)
    written = []
    monkeypatch.setattr(M.Study, "write", lambda self, body: written.append(body))
    calls = []
    best = {"plain ZO": 0.03, "SAT (measured, average)": 0.1, "SAT (measured, worst)": 0.01}

    def train_one(method, chip_seed, seed, budget, lr):
        calls.append((method, chip_seed, seed, lr))
        acc = 0.8 + (0.05 if lr == best[method] else 0.0) - 0.1 * METHODS_INDEX[method]
        return {
            "method": method, "chip": chip_seed, "seed": seed, "lr": lr,
            "radius": None if method == "plain ZO" else 0.02 + 0.001 * chip_seed,
            "reprogramming": acc + 0.01 * seed, "drift_1day": acc, "fresh": acc,
            "fresh_chips": M.fresh_chip_seeds(chip_seed, M.FRESH), "wall_s": 1.0,
        }  # fmt: skip

    METHODS_INDEX = {m: i for i, m in enumerate(M.METHODS)}
    monkeypatch.setattr(M, "train_one", train_one)
    M.main([])
    path = tmp_path / "characterize" / "rows.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    tuning = len(M.METHODS) * len(M.LRS) * len(M.TUNE_CHIPS)
    assert len(calls) == len(rows) == tuning + len(M.METHODS) * 9
    assert M.chosen(rows) == best
    reported = [r for r in rows if r["stage"] == "reported"]
    assert all(r["lr"] == best[r["method"]] for r in reported)

    M.main([])  # a restarted study re-runs nothing
    assert len(calls) == len(rows)
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[:-1]))
    M.main([])  # only the run lost in a crash
    assert len(calls) == len(rows) + 1

    M.main(["--report-only"])
    assert len(calls) == len(rows) + 1
    text = written[-1]
    assert text == written[-2]
    assert "Command: `python benchmarks/characterize.py`" in text and "c + 1000 + i" in text
    assert "| plain ZO | 0.03 | 86.0 ± 0.9 | 85.0 ± 0.0 | 85.0 ± 0.0 |" in text
    # paired by (chip, seed): the same -5 - 10 points for every pair
    assert "| SAT (measured, average) | -10.0 ± 0.0 | 0.0 | 9 |" in text
    for word in ("helps", "hurts", "reading:", "target", "met"):
        assert word not in text.lower().split()
