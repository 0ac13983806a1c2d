"""benchmarks/diffractive_misalignment.py with tiny settings: runs persisted into a tmp folder as
they complete, resumed without re-running, re-rendered from disk, on the library's fresh chips."""

import json

import pytest
from bench_loader import load_bench

M = load_bench("diffractive_misalignment.py", "diffractive_misalignment")

TINY = M.Settings(
    seeds=(0, 1),
    chips=2,
    steps=3,
    warmup=1,
    methods=("BP", "noise-aware", "structured SAT"),
    draws=1,
    device={"n": 16},
    rotations=(0.0, 2.0),
    shifts=(0.0, 2.0),
    scales=(1.0, 1.1),
    grid_rotations=(0.0, 2.0),
    grid_shifts=(0.0, 2.0),
)


def _study(tmp_path):
    study = M.Study(M.STUDY, M.KEY)
    study.dir = tmp_path / M.STUDY
    study.path = study.dir / "rows.jsonl"
    return study


def test_conditions_cover_the_sweep_ends_and_the_grid():
    s = M.Settings()
    nominal, chips = M.sweep_conditions(s), M.sweep_conditions(s, "chips")
    assert nominal[0] == M.key() and set(chips) <= set(nominal)
    for cond in (M.key(rotation=2.0), M.key(shift_x=2.0), M.key(scale=1.1)):
        assert cond in nominal and cond in chips
    assert M.key(rotation=2.0, shift_x=2.0) in M.grid_conditions(s)
    assert not hasattr(M, "chip_seeds")  # the one rule is the library's


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny study run once into a tmp folder, counting the runs that trained."""
    tmp = tmp_path_factory.mktemp("diffractive")
    study = _study(tmp)
    calls = []
    real = M.run_one
    mp = pytest.MonkeyPatch()
    mp.setattr(
        M, "run_one", lambda seed, method, s: calls.append((seed, method)) or real(seed, method, s)
    )
    try:
        runs = M.run_all(study, TINY)
    finally:
        mp.undo()
    return study, runs, calls


def test_each_run_is_saved_as_it_completes_on_the_fresh_chips(finished):
    study, runs, calls = finished
    assert calls == [(seed, m) for seed in TINY.seeds for m in TINY.methods]
    lines = study.path.read_text().splitlines()
    assert len(lines) == len(calls)  # one appended line per finished run
    saved = [json.loads(line) for line in lines]
    assert [(r["seed"], r["method"]) for r in saved] == calls
    for r in saved:
        chips = M.fresh_chip_seeds(r["seed"], TINY.chips)
        assert r["chips"] == chips == [r["seed"] + 1000 + i for i in range(TINY.chips)]
        assert set(r["acc"]) == {"nominal", *(f"chip {c}" for c in chips)}
        assert r["wall_s"] > 0 and r["train_s"] > 0
    mean, std, n = M.pooled(runs, "BP", M.key(shift_x=2.0), "chips")
    assert 0 <= mean <= 100 and n == len(TINY.seeds) * TINY.chips
    accs = [
        100 * r["table"][t][M.key(shift_x=2.0)]
        for r in runs
        if r["method"] == "BP"
        for t in r["table"]
        if t != "nominal"
    ]
    assert (mean, std, n) == M.summary(accs)  # sample std, ddof=1


def test_a_second_call_resumes_without_re_running(finished, monkeypatch):
    study, runs, _ = finished

    def boom(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(M, "run_one", boom)
    again = M.run_all(study, TINY)
    assert [(r["seed"], r["method"]) for r in again] == [(r["seed"], r["method"]) for r in runs]
    assert len(study.path.read_text().splitlines()) == len(runs)
    # an interrupted study runs only what is missing
    lines = study.path.read_text().splitlines()
    partial = _study(study.dir.parent / "partial")
    partial.dir.mkdir(parents=True)
    partial.path.write_text("\n".join(lines[:-1]) + "\n")
    calls = []
    monkeypatch.setattr(
        M,
        "run_one",
        lambda seed, method, s: (
            calls.append((seed, method))
            or {"train_s": 0.0, "chips": [], "acc": json.loads(lines[-1])["acc"]}
        ),
    )
    M.run_all(partial, TINY)
    assert calls == [(TINY.seeds[-1], TINY.methods[-1])]


def test_report_only_renders_section_plots_and_cells_from_disk(finished, monkeypatch):
    study, _, _ = finished
    (study.dir / "settings.json").write_text(json.dumps(TINY.to_json()))
    assert M.Settings.from_json(TINY.to_json()) == TINY
    monkeypatch.setattr(M, "run_one", lambda *a: pytest.fail("--report-only trained"))
    saved, written = {}, []
    monkeypatch.setattr(M, "save_cells", lambda name, cells: saved.update({name: cells}))
    monkeypatch.setattr(study, "write", written.append)
    M.main(["--report-only"], study=study)
    cells = saved[M.STUDY]
    assert [c["method"] for c in cells] == ["BP", "noise-aware", "structured SAT"]
    assert all(c["error"] == "misalignment" and c["n"] == len(TINY.seeds) for c in cells)
    for f in ("sweeps_nominal.png", "sweeps_chips.png", "grid_nominal.png"):
        assert (study.dir / f).stat().st_size > 0
    (text,) = written
    assert text.startswith("## Diffractive network: misalignment\n\nCommand: `python benchmarks")
    assert "s + 1000 + i" in text and "seed 1: 1001, 1002" in text
    assert "87 / 89 / 86 %" in text
    for word in ("reach", "miss", "beat", "best", "better", "worse", "findings", "likely"):
        assert word not in text.lower().replace("box centre", ""), word


def test_changed_settings_refuse_to_mix_with_saved_runs(finished, monkeypatch):
    study, _, _ = finished
    (study.dir / "settings.json").write_text(json.dumps(TINY.to_json()))
    with pytest.raises(SystemExit, match="--force"):
        M.main([], study=study)  # the default settings differ from the saved tiny ones


def test_paper_geometry_states_the_shift_as_the_papers_aperture_fraction():
    s = M.Settings.paper_geometry(64)
    assert s.n == 64 and s.device["n"] == 64
    # the paper's aperture (128 px at 2 um): 4 um at 64 px; 32 px keeps the default 8 um unstated
    assert s.device["pitch"] == pytest.approx(4e-6)
    assert M.Settings.paper_geometry(128).device["pitch"] == pytest.approx(2e-6)
    assert "pitch" not in M.Settings.paper_geometry(32).device
    assert s.shift_range == pytest.approx(1.0)  # 2 px of 128 = 1 px of 64
    assert s.shifts[0] == 0.0 and s.shifts[-1] == pytest.approx(1.0)
    assert s.grid_shifts[-1] == pytest.approx(1.0)
    assert s.rotations == M.Settings().rotations and s.scales == M.Settings().scales
    model = M.misalignment(s)
    assert model.ranges["shift_x"] == pytest.approx((-1.0, 1.0))
    assert model.ranges["shift_y"] == pytest.approx((-1.0, 1.0))
    assert model.ranges["rotation"] == (-2.0, 2.0)
    quick = M.Settings.paper_geometry(32, quick=True)
    assert quick.steps == M.Settings.quick().steps and quick.shifts[-1] == pytest.approx(0.5)
