"""benchmarks/periodic.py: a white-box re-run replaces those rows in place and keeps the others,
and the section says so (synthetic rows, no training)."""

from bench_loader import load_bench

M = load_bench("periodic.py", "periodic")


def _row(setup, method, budget, arm, seed, acc, bound=0.0):
    return {
        "setup": setup, "method": method, "budget": budget, "arm": arm, "seed": seed,
        "accuracy": acc, "on_bound": bound, "wall_s": 1.0,
    }  # fmt: skip


def test_a_white_box_rerun_replaces_its_rows_in_place_and_the_section_names_it():
    rows = []
    for seed in (0, 1):
        for arm in ("wrap", "clip"):
            rows.append(_row("mzi", "zo-adam", 1000, arm, seed, 0.30 + 0.01 * seed))
            rows.append(_row("mzi", "white box", "-", arm, seed, 0.60))
            rows.append(_row("diffractive", "zo-adam", 1000, arm, seed, 0.12))
            rows.append(_row("diffractive", "white box", "-", arm, seed, 0.20, 0.1))
        rows.append(_row("diffractive", "start", "-", "-", seed, float("nan"), 0.01))
    saved = {"minutes": 58.6, "rows": rows, "machine": "the first machine"}
    fresh = [
        _row(setup, "white box", "-", arm, seed, 0.75 if arm == "wrap" else 0.67,
             0.0 if arm == "wrap" else 0.24)
        for seed in (0, 1) for arm in ("wrap", "clip") for setup in ("mzi", "diffractive")
    ]  # fmt: skip
    out = M.with_white_box(saved, fresh, 0.7, "the second machine")
    assert [(r["setup"], r["method"], r["arm"], r["seed"]) for r in out["rows"]] == [
        (r["setup"], r["method"], r["arm"], r["seed"]) for r in rows
    ]  # the same rows in the same order
    assert [r for r in out["rows"] if r["method"] != "white box"] == [
        r for r in rows if r["method"] != "white box"
    ]
    assert {r["accuracy"] for r in out["rows"] if r["method"] == "white box"} == {0.75, 0.67}
    assert saved["rows"] is rows and rows[1]["accuracy"] == 0.60  # the input is not mutated
    text = M.report(out)
    assert "Machine: the first machine; the white-box rows re-run by `--white-box` (0.7 min) on " \
        "the second machine." in text  # fmt: skip
    assert "| diffractive | white box | - | 75.0 ± 0.0 | 67.0 ± 0.0 | +8.0 |" in text
