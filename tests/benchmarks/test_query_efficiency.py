"""benchmarks/query_efficiency.py: its budget groups, the reach interpolation, the device-seconds
arithmetic and the report from synthetic rows (no training)."""

import json
import math

import pytest
from bench_loader import load_bench

M = load_bench("query_efficiency.py", "query_efficiency")


def test_every_method_runs_every_budget_up_to_its_cap():
    groups = M.budget_groups(M.methods_for(240), M.BUDGETS)
    runs = {(m, b) for ms, bs in groups for m in ms for b in bs}
    for m in M.METHODS:
        cap = M.MAX_BUDGET.get(m, max(M.BUDGETS))
        assert {b for mm, b in runs if mm == m} == {b for b in M.BUDGETS if b <= cap}
    big = {m for ms, _ in M.budget_groups(M.methods_for(2368), M.BUDGETS) for m in ms}
    assert not big & set(M.FULL_COVARIANCE)


def test_reach_interpolates_in_log_budget():
    assert M.reach([100, 1000], [10.0, 50.0], 5.0) == 100.0  # reached at the first budget
    assert M.reach([100, 1000], [10.0, 50.0], 30.0) == pytest.approx(math.sqrt(100 * 1000))
    assert math.isinf(M.reach([100, 1000], [10.0, 20.0], 30.0))
    assert M.reach([100, 1000, 10_000], [10.0, float("nan"), 50.0], 30.0) == 10_000


def test_the_reach_ratio_says_when_it_is_a_bound():
    inf = float("inf")
    assert M.reach_ratio(inf, inf, 250, 80_000, 80_000) == ("—", None, "none")
    assert M.reach_ratio(30_000, 60_000, 250, 80_000, 80_000) == ("2.0x", 2.0, "exact")
    # the baseline reached nothing by its last budget: at least that over ours
    assert M.reach_ratio(20_000, inf, 250, 80_000, 80_000) == (">= 4.0x", 4.0, "at least")
    # ours reached it at the first budget: at least the baseline's over that budget
    assert M.reach_ratio(250, 1_000, 250, 80_000, 80_000) == (">= 4.0x", 4.0, "at least")
    # ours never reached it, the baseline did: below its reach over our last budget
    assert M.reach_ratio(inf, 40_000, 250, 80_000, 80_000) == ("< 0.5x", 0.5, "below")


def test_the_median_verdict_counts_bounds_and_leaves_no_ratio_open():
    at_least = {"a": (68.8, "at least"), "b": (4.6, "at least"), "c": (2.1, "at least")}
    none = {"d": (None, "none"), "e": (None, "none"), "f": (None, "none")}
    assert M.median_verdict({**at_least, "d": (3.0, "exact"), "e": (None, "none")}).startswith(
        "**met**: 4 of 5"
    )
    open_case = M.median_verdict({**at_least, **none})  # 3 of 6 above: the median is open
    assert open_case.startswith("**not met**") and "3 have no ratio" in open_case
    below = {"a": (1.5, "exact"), "b": (0.5, "below"), "c": (9.0, "exact"), "d": (None, "none")}
    assert M.median_verdict(below).startswith("**not met**: 2 of 4 configurations stand below")


def test_a_bound_leans_on_baselines_stopped_early_standing_below_the_longest_one():
    curve = {"cma": {250: 20.0, 5000: 40.0, 20000: 60.0}, "pepg": {250: 15.0, 5000: 25.0}}
    assert M.capped_below(curve, ["cma", "pepg"])
    curve["pepg"][5000] = 41.0  # above CMA where it stopped: it might have got there first
    assert not M.capped_below(curve, ["cma", "pepg"])
    assert M.capped_below(curve, [])


def test_device_seconds_buy_the_same_time_as_regime_one():
    for name in ("mzi-0.05", "crossbar"):
        _, _, cm, _, _ = M.CONFIGS[name]
        for r, p in M.regime_budgets(name).items():
            seconds = cm.seconds(r, r * M.SAMPLES)
            assert cm.seconds(p["blacksat"], p["blacksat"] * p["batch"]) <= seconds + 1e-9
            assert p["full"] <= p["blacksat"] or p["batch"] > M.SAMPLES


def test_the_report_renders_from_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(M, "OUT", tmp_path)
    monkeypatch.setattr(M, "ROOT", tmp_path)
    monkeypatch.setattr(M, "CONFIGS", {"crossbar": (*M.CONFIGS["crossbar"][:3], (100, 1000), "x")})
    written = {}
    monkeypatch.setattr(M, "write_section", lambda key, body: written.setdefault(key, body))
    d = tmp_path / "crossbar" / "equal-samples"
    d.mkdir(parents=True)
    acc = {"blacksat": (0.5, 0.9), "cma": (0.6, 0.8), "pepg": (0.2, 0.3)}
    slope = {"blacksat": 0.01, "cma": 0.02, "pepg": 0.01}  # paired differences vary by seed
    rows = [
        {"method": m, "budget": b, "seed": s, "test_accuracy": a[i] + slope[m] * s}
        for m, a in acc.items()
        for i, b in enumerate((100, 1000))
        for s in range(3)
    ]
    (d / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    wb = {str(s): {"acc": 0.95, "lr_fraction": 0.01, "train_loss": 0.1} for s in range(3)}
    (tmp_path / "crossbar" / "white_box.json").write_text(json.dumps(wb))
    M.publish()
    body = written["query_efficiency"]
    # seed by seed blacksat - cma: -10, -11, -12 at 100 and +10, +9, +8 at 1,000 (std 1, se 0.58)
    assert "| crossbar | 100 | 51.0 | cma 62.0 | -11.0 ± 0.6 | 95.0 |" in body
    assert "| crossbar | 1,000 | 91.0 | cma 82.0 | +9.0 ± 0.6 | 95.0 |" in body
    assert "blacksat >= the best baseline in 1 of 2" in body
    assert "beyond twice its standard error in 1 cells ahead and 1 behind" in body
    assert (tmp_path / "accuracy_vs_reconfigurations.png").is_file()


def test_redo_discards_only_the_matching_saved_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(M, "OUT", tmp_path)
    rows = [{"method": m, "budget": b, "seed": 0} for m in ("blacksat", "cma") for b in (250, 1000)]
    for sub in ("equal-samples", "seconds-blacksat"):
        (tmp_path / "crossbar" / sub).mkdir(parents=True)
        (tmp_path / "crossbar" / sub / "rows.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows)
        )
    M.redo({"method": {"blacksat"}, "budget": {"250"}}, ["crossbar"], ("equal",))
    kept = M.load_rows(tmp_path / "crossbar" / "equal-samples")
    assert [(r["method"], r["budget"]) for r in kept] == [
        ("blacksat", 1000),
        ("cma", 250),
        ("cma", 1000),
    ]
    # a regime not selected is left alone
    assert len(M.load_rows(tmp_path / "crossbar" / "seconds-blacksat")) == 4


def test_the_white_box_keeps_saved_candidates_and_picks_the_lowest_training_loss(monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("a saved candidate was trained again")

    monkeypatch.setattr(M, "scenario", no_training)
    cands = [
        {"model": m, "lr_fraction": f, "train_loss": 1.0 + f + (0.5 if m == "exact" else 0),
         "acc": 0.5 if m == "exact" else 0.8}
        for m in M.WHITE_BOX_MODELS
        for f in M.WHITE_BOX_LR
    ]  # fmt: skip
    best = M.white_box("crossbar", 0, saved={"candidates": cands, **cands[0]})
    assert (best["model"], best["lr_fraction"], best["acc"]) == ("noisy", 0.01, 0.8)
    assert len(best["candidates"]) == len(cands)
    # a white box computed before the noisy model stands for every exact learning rate
    monkeypatch.setattr(M, "WHITE_BOX_MODELS", ("exact",))
    legacy = {"lr_fraction": 0.1, "train_loss": 2.2, "acc": 0.25}
    out = M.white_box("crossbar", 0, saved=legacy)
    assert out["candidates"] == [{"model": "exact", **legacy}] and out["acc"] == 0.25


def test_the_report_says_which_model_each_white_box_trained_on():
    wb = {
        "0": {"model": "noisy", "candidates": []},
        "1": {"model": "noisy", "candidates": []},
        "2": {"model": "exact", "candidates": []},
    }
    text = M.white_box_models(wb)
    assert text == "; the exact model won on 1 of 3 chips, the noisy model on 2 of 3 chips"
    assert M.white_box_models({"0": {"acc": 0.9}}) == ""
