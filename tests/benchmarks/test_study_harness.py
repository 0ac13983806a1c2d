"""benchmarks/_study.py: ``--redo`` discards exactly the saved runs it names, and they run again."""

import importlib
import sys

import pytest
from bench_loader import BENCH

if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
S = importlib.import_module("_study")  # the module the studies import, not a second copy


def test_redo_discards_only_the_matching_runs_and_they_run_again(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "RESULTS", tmp_path)
    calls = []

    def run(study, quick):
        for method in ("a", "b"):
            for budget in (100, 500):
                study.run(lambda m=method, b=budget: calls.append((m, b)) or {"acc": b},
                          method=method, budget=budget)  # fmt: skip

    written = []
    monkeypatch.setattr(S.Study, "write", lambda self, body: written.append(body))
    section = lambda study: str(len(study.rows()))  # noqa: E731
    S.main(None, "toy", run, section, [])
    assert len(calls) == 4 and written[-1] == "4"
    S.main(None, "toy", run, section, [])  # everything on disk: nothing runs
    assert len(calls) == 4
    S.main(None, "toy", run, section, ["--redo", "method=a", "--redo", "budget=500"])
    assert calls[4:] == [("a", 500)]  # both fields must match
    S.main(None, "toy", run, section, ["--redo", "method=a,b", "--redo", "budget=100"])
    assert sorted(calls[5:]) == [("a", 100), ("b", 100)]
    study = S.Study("toy", "toy")
    assert len(study.rows()) == 4  # the rest kept, nothing duplicated
    assert S.field_filter(["method=x,y", "budget=1"], "--redo") == {
        "method": {"x", "y"},
        "budget": {"1"},
    }
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        S.field_filter(["method"], "--redo")


def test_only_runs_the_named_values_and_keeps_the_others_on_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "RESULTS", tmp_path)
    monkeypatch.setattr(S.Study, "write", lambda self, body: None)
    ran = []

    def run(study, quick):
        for config in ("x", "y", "z"):
            if study.skips(config=config):
                continue
            study.run(lambda c=config: ran.append(c) or {"acc": 1.0}, config=config)

    section = lambda study: ""  # noqa: E731
    S.main(None, "toy", run, section, ["--only", "config=x,z"])
    assert ran == ["x", "z"]
    S.main(None, "toy", run, section, ["--only", "config=y"])  # the second process's share
    assert ran == ["x", "z", "y"]
    assert sorted(r["config"] for r in S.Study("toy", "toy").rows()) == ["x", "y", "z"]
    # a field the filter does not name never skips
    assert not S.Study("toy", "toy", only={"config": {"x"}}).skips(seed=3)
    assert S.Study("toy", "toy", only={"seed": {"1"}}).skips(seed=3)


def test_drop_keeps_the_other_lines_as_written_and_leaves_a_file_without_matches(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = ['{"method": "a", "budget": 1}', '{"budget": 2, "method": "b"}', '{"method": "a", "bu']
    path.write_text("\n".join(lines) + "\n")
    study = S.Study("x", "x", directory=tmp_path)
    before = path.stat().st_mtime_ns
    assert study.drop({"method": {"zzz"}}) == 0
    assert path.stat().st_mtime_ns == before and path.read_text() == "\n".join(lines) + "\n"
    assert study.drop({"method": {"a"}}) == 1  # the cut line is not a run: kept as it was
    assert path.read_text().splitlines() == lines[1:]
