"""The cross-study table: cells gathered from the studies, margins as figures (no verdicts)."""

import json

import pytest
from bench_loader import load_bench

W = load_bench("where_sat_helps.py", "where_sat_helps")


def _cell(method, acc, std=1.0, n=15, error="common-mode drift", device="mrr"):
    return {
        "error": error, "method": method, "variant": f"{method} v", "condition": "2 K",
        "acc": acc, "acc_std": std, "n": n, "clean": 95.0, "device": device,
    }  # fmt: skip


def test_gathers_cells_per_study(tmp_path):
    for study, cells in {"a": [_cell("BP", 20.0)], "b": [_cell("BP", 50.0, device="mzi")]}.items():
        (tmp_path / study).mkdir()
        (tmp_path / study / "cells.json").write_text(json.dumps(cells))
    cells = W.load_cells(tmp_path)
    assert [(c["study"], c["acc"]) for c in cells] == [("a", 20.0), ("b", 50.0)]


def test_margins_are_figures_against_the_better_reference_and_carry_no_verdict():
    row = {
        "BP": _cell("BP", 20.0, std=2.0),
        "noise-aware": _cell("noise-aware", 60.0, std=3.0),
        "structured SAT": _cell("structured SAT", 90.0, std=1.0),
        "unstructured SAT": _cell("unstructured SAT", 58.0, std=2.0),
        "online SAT": _cell("online SAT", 40.0, std=4.0),
    }
    m = W.margins(row)
    assert m.startswith("vs noise-aware: ")
    assert "structured SAT +30.0 (spread 3.0)" in m
    assert "unstructured SAT -2.0 (spread 3.0)" in m
    assert "online SAT -20.0 (spread 4.0)" in m
    assert not any(w in m for w in ("helps", "matches", "best"))
    assert W.margins({"structured SAT": _cell("structured SAT", 90.0)}) == "-"
    text = W.section(list(row.values()))
    assert "helps (" not in text and "matches (" not in text


def test_section_rows_ordered_and_duplicates_keep_more_runs():
    cells = [
        _cell("BP", 30.0, error="fresh chip", device="mzi"),
        _cell("BP", 20.0, n=3),
        _cell("BP", 25.0, n=15),
        _cell("structured SAT", 88.0),
    ]
    text = W.section(cells)
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert rows[0].startswith("| error (device) | BP | structured SAT |")
    assert rows[1].startswith("| common-mode drift (mrr) | 25.0 ± 1.0 (95.0) | 88.0")
    assert rows[2].startswith("| fresh chip (mzi) | 30.0 ± 1.0 (95.0) | - |")


def test_empty_results_say_so():
    assert "No study has saved its cells yet" in W.section([])


def test_save_cells_rejects_unknown_names(tmp_path, monkeypatch):
    import _report

    with pytest.raises(ValueError, match="unknown error type"):
        _report.save_cells("x", [_cell("SAM", 1.0)])
