"""benchmarks/mzi_hybrid.py: its readout re-fit, its runs saved through ``_study.Study`` as they
complete (resume, report from disk alone) and the one fresh-chip rule, on tiny settings."""

import json

import pytest
import torch
from bench_loader import load_bench

M = load_bench("mzi_hybrid.py", "mzi_hybrid")

# tiny: one seed, one training chip, two fresh chips, a few steps, no Hessians
TINY = {
    "offline": {"lr": 0.02, "steps": 2, "batch": 16},
    "onchip": {"lr": 0.01, "steps": 2, "batch": 16},
    "zo": {"budget": 16, "q": 2, "sigma": 0.05, "lr": 0.02, "batch": 16},
    "rho": M.RHO,
    "fresh": 2,
    "hessian": False,
}


def test_readout_refit_spends_one_reconfiguration_and_scores():
    from blacksat.data import load_digits
    from blacksat.devices.tasks import default_task
    from blacksat.evaluation import accuracy

    chip = M.chip_of("mzi", 0)
    task = default_task(chip, load_digits(seed=0), seed=0).to(torch.float64)
    theta = chip.initial_controls(0)
    refit, cost = M.refit_readout(task, chip, theta)
    assert cost.reconfigurations == 1
    assert task.back is None and refit.back is not None  # the original task is untouched
    assert accuracy(refit, chip, theta) > accuracy(task, chip, theta)


@pytest.fixture
def study(tmp_path, monkeypatch):
    """The study writing into ``tmp_path``; its section captured, not written to BENCHMARKS.md;
    its "where SAT helps" cells captured, not written under benchmarks/results."""
    st = M.Study(M.NAME, M.KEY)
    monkeypatch.setattr(st, "dir", tmp_path / M.NAME)
    monkeypatch.setattr(st, "path", tmp_path / M.NAME / "rows.jsonl")
    st.written, st.cells = [], []
    monkeypatch.setattr(st, "write", st.written.append)
    monkeypatch.setattr(M, "save_cells", lambda name, cells: st.cells.append((name, list(cells))))
    return st


@pytest.fixture
def counted(monkeypatch):
    """Calls of the two run functions, by (method, seed, chip)."""
    calls = []
    off, on = M.offline_run, M.onchip_run

    def offline_run(device, method, seed, n_chips, cfg):
        calls.append((method, seed, None))
        return off(device, method, seed, n_chips, cfg)

    def onchip_run(device, method, seed, c, start, cfg):
        calls.append((method, seed, c))
        return on(device, method, seed, c, start, cfg)

    monkeypatch.setattr(M, "offline_run", offline_run)
    monkeypatch.setattr(M, "onchip_run", onchip_run)
    return calls


def test_runs_persist_resume_and_use_the_fresh_chip_rule(study, counted, monkeypatch):
    n_runs = len(M.OFFLINE_METHODS) + len(M.ONCHIP_METHODS)
    # interrupted: the second on-chip run fails; the runs before it are on disk
    real, seen = M.onchip_run, []

    def crash_once(*a, **kw):
        seen.append(a[1])
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(M, "onchip_run", crash_once)
    with pytest.raises(KeyboardInterrupt):
        M.run_device(study, "mzi", (0,), 1, TINY)
    lines = study.path.read_text().splitlines()
    assert len(lines) == len(M.OFFLINE_METHODS) + 1
    monkeypatch.setattr(M, "onchip_run", real)

    # resumed: only the runs not on disk run, each once
    before = len(counted)
    rows = M.run_device(study, "mzi", (0,), 1, TINY)
    assert len(rows) == n_runs and len(study.rows()) == n_runs
    assert [c[0] for c in counted[before:]] == list(M.ONCHIP_METHODS[1:])
    # a third pass runs nothing
    before = len(counted)
    M.run_device(study, "mzi", (0,), 1, TINY)
    assert len(counted) == before and len(study.rows()) == n_runs

    # ids and the one fresh-chip rule: both families scored on fresh_chip_seeds(c, n)
    c = M.chip_seeds(0, 1)[0]
    fresh = M.fresh_chip_seeds(c, TINY["fresh"])
    assert fresh == [c + 1000 + i for i in range(TINY["fresh"])]
    for m in M.OFFLINE_METHODS:
        r = study.find(device="mzi", method=m, seed=0)
        assert r["kind"] == "offline" and [e["chip"] for e in r["chips"]] == [c]
        assert r["chips"][0]["fresh_chips"] == fresh and len(r["chips"][0]["fresh"]) == 2
    for m in M.ONCHIP_METHODS:
        r = study.find(device="mzi", method=m, seed=0, chip=c)
        assert r["kind"] == "on-chip" and r["fresh_chips"] == fresh
    assert all(json.loads(line) for line in study.path.read_text().splitlines())


def test_report_from_disk_alone(study, monkeypatch):
    M.run_device(study, "mzi", (0,), 1, TINY)
    rows = study.rows()
    # the pooling: one fresh-chip value per (seed, training chip), the mean over its fresh chips
    summ = M.summarize(rows)
    r = study.find(method="online_sat")
    assert summ["online_sat"]["fresh"][0] == pytest.approx(sum(r["fresh"]) / len(r["fresh"]))
    assert summ["online_sat"]["fresh"][2] == 1 and summ["bp"]["fresh_vs_bp"][0] == 0.0

    def no_run(*a, **kw):
        raise AssertionError("--report-only must not train")

    monkeypatch.setattr(M, "offline_run", no_run)
    monkeypatch.setattr(M, "onchip_run", no_run)
    monkeypatch.setattr(M, "Study", lambda *a, **kw: study)
    M.main(["--report-only"])
    (body,) = study.written
    assert body.startswith("## MZI network at the paper's error level (0.15 / 0.15)")
    assert "Command: `python benchmarks/mzi_hybrid.py`" in body
    assert f"fresh_chip_seeds(c, {TINY['fresh']})" in body
    assert "| offline BP | 1 |" in body and "| online SAT" in body
    for word in ("holds", "met", "missed", "loses", "Reading", "Why", "better", "upper bound"):
        assert f" {word} " not in body and f"**{word}**" not in body
    assert {p.name for p in study.dir.iterdir()} >= {"accuracy_mzi.png", "drift_mzi.png"}
    ((name, cells),) = study.cells
    from _report import ERROR_TYPES, METHODS

    assert name == M.NAME and cells
    assert {c["error"] for c in cells} <= set(ERROR_TYPES)
    assert {c["method"] for c in cells} <= set(METHODS)
