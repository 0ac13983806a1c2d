"""Smoke test of benchmarks/diffractive_misalignment.py with tiny settings (a few steps)."""

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(
        "diffractive_misalignment", BENCH / "diffractive_misalignment.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through the module
    spec.loader.exec_module(mod)
    return mod


M = _load()


def test_conditions_cover_the_sweep_ends_and_the_grid():
    s = M.Settings()
    nominal, chips = M.sweep_conditions(s), M.sweep_conditions(s, "chips")
    assert nominal[0] == M.key() and set(chips) <= set(nominal)
    for cond in (M.key(rotation=2.0), M.key(shift_x=2.0), M.key(scale=1.1)):
        assert cond in nominal and cond in chips
    assert M.key(rotation=2.0, shift_x=2.0) in M.grid_conditions(s)
    assert M.chip_seeds(0, 5) == [1, 2, 3, 4, 5] and not set(M.chip_seeds(1, 5)) & {1, 2, 3, 4, 5}


def test_tiny_run_pools_writes_cells_and_section(tmp_path, monkeypatch):
    s = M.Settings(
        seeds=(0,),
        chips=1,
        steps=3,
        warmup=1,
        methods=("BP", "noise-aware", "structured SAT"),
        device={"n": 16},
        rotations=(0.0, 2.0),
        shifts=(0.0, 2.0),
        scales=(1.0, 1.1),
        grid_rotations=(0.0, 2.0),
        grid_shifts=(0.0, 2.0),
    )
    runs, wall = M.run_all(s)
    assert runs[0]["methods"] == list(s.methods) and set(runs[0]["acc"]) == {"nominal", "chip 1"}
    mean, std, n = M.pooled(runs, "BP", M.key(shift_x=2.0), "chips")
    assert 0 <= mean <= 100 and std == 0 and n == 1
    cells = M.cells(runs, s)
    assert [c["method"] for c in cells] == ["BP", "noise-aware", "structured SAT"]
    assert all(c["error"] == "misalignment" and c["n"] == 1 for c in cells)
    monkeypatch.setattr(M, "OUT", tmp_path)
    files = M.plots(runs, s)
    assert all((tmp_path / f).stat().st_size > 0 for f in files)
    text = M.section(runs, s, wall, files)
    assert text.startswith("## Diffractive network: misalignment") and "structured SAT" in text
    saved = tmp_path / "results.json"
    saved.write_text(
        M.json.dumps({"settings": M.asdict(s), "wall_s": wall, "runs": M.to_json(runs)})
    )
    back, s2, wall2 = M.from_json(saved)
    assert s2 == s and wall2 == wall
    assert M.pooled(back, "BP", M.key(shift_x=2.0), "chips") == (mean, std, n)
