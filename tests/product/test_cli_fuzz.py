"""CLI fuzzing: whatever arguments ``blacksat demo`` and ``blacksat compare`` get, the command
either runs (exit status 0) or ends with exit status 2 and a final one-line
``blacksat...: error: ...`` message on stderr, never a traceback. The commands' actual work
(``run_demo``, ``compare``) is replaced by stubs that only write the file the CLI prints, so
each example takes milliseconds."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blacksat.product.compare as compare_mod
import blacksat.product.demo as demo_mod
from blacksat.product.cli import main

#: path characters: ordinary ones, a space, a non-ASCII letter and the NUL byte (never "/")
PATH_CHARS = st.sampled_from(list("abc019-_. é\x00"))
paths = st.text(PATH_CHARS, max_size=8)
numbers = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["", " ", "1.5", "0x10", "nan", "-0", "1e3", "١"]),
)
lists = st.lists(numbers, max_size=4).map(",".join) | st.text(max_size=8)
junk = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6).filter(
    lambda s: s not in ("-h", "--help") and not s.startswith("--h")
)


def options(spec):
    """``spec``: {flag: strategy or None (a switch)} -> a list of argv fragments."""
    parts = [
        st.just([flag]) if strat is None else strat.map(lambda v, f=flag: [f, v])
        for flag, strat in spec.items()
    ]
    return st.lists(st.one_of(*parts, junk.map(lambda j: [j])), max_size=5).map(
        lambda chunks: [a for c in chunks for a in c]
    )


DEMO = {
    "--out": paths,
    "--quick": None,
    "--seed": numbers,
    "--device": st.sampled_from(["mzi", "mrr", "diffractive", "MZI", "", "nope"]),
    "--quiet": None,
}
COMPARE = {
    "--methods": st.sampled_from(["random-search", "zo-adam,random-search", "", ",", "nope"])
    | st.text(max_size=6),
    "--seeds": lists,
    "--budgets": lists,
    "--out": paths,
    "--workers": numbers,
    "--scheduler": st.text(max_size=6),
    "--list": None,
    "--quiet": None,
}


@pytest.fixture
def stubs(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # relative output paths land in the test's directory

    def run_demo(out, **kw):
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "report.md").write_text("# report\n")

    def compare(names, *, out_dir, **kw):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "summary.md").write_text("| method |\n")

    monkeypatch.setattr(demo_mod, "run_demo", run_demo)
    monkeypatch.setattr(compare_mod, "compare", compare)


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def check(argv):
    code, _, err = run(argv)
    assert "Traceback" not in err
    if code == 0:
        assert err == ""
        return
    assert code == 2, (argv, code, err)
    lines = err.rstrip("\n").split("\n")
    last = lines[-1]
    assert last.startswith("blacksat") and ": error: " in last, err
    if not err.startswith("usage:"):  # blacksat's own checks: exactly one line
        assert len(lines) == 1, err


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=options(DEMO))
def test_demo_arguments(stubs, argv):
    check(["demo", *argv])


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=options(COMPARE))
def test_compare_arguments(stubs, argv):
    check(["compare", *argv])


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(junk, max_size=4))
def test_any_command_line(stubs, argv):
    check(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--out", "a\x00b"],
        ["compare", "--out", "a\x00b", "--methods", "zo-adam"],
        ["demo", "--seed", str(10**30)],
        ["compare", "--workers", "-1"],
        ["compare", "--budgets", ","],
        ["compare", "--methods", ","],
    ],
)
def test_known_edge_cases(stubs, argv):
    check(argv)
    assert os.getcwd() != str(Path(__file__).parent)


@pytest.mark.parametrize(
    "argv", [["demo", "--seed", str(2**32)], ["compare", "--seeds", f"0,{2**32}"]]
)
def test_seeds_beyond_what_the_libraries_accept_are_refused(stubs, monkeypatch, argv):
    def refuse(*a, **kw):  # scikit-learn's split would raise a ValueError (a traceback)
        raise AssertionError("the CLI let a seed through that the libraries refuse")

    monkeypatch.setattr(demo_mod, "run_demo", refuse)
    monkeypatch.setattr(compare_mod, "compare", refuse)
    code, _, err = run(argv)
    assert code == 2 and "<= 4294967295" in err and len(err.strip().splitlines()) == 1
