import json

import pytest

from blacksat.cli import main


def test_devices_lists_every_device(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    for name in ("mzi", "mrr", "diffractive"):
        assert name in out
    assert main(["devices", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["mzi"]["controls"] == 240


def test_quick_demo_writes_report_and_results(tmp_path, capsys):
    assert main(["demo", "--quick", "--quiet", "--out", str(tmp_path), "--seed", "1"]) == 0
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["schema"] == "blacksat.demo/2" and r["seed"] == 1
    assert len(r["methods"]) == 2  # offline BP and offline SAT
    for acc in r["methods"].values():
        assert 0.0 <= acc["true_chip"] <= 1.0 and len(acc["fresh_chips"]) == 3
        assert acc["nominal_model"] > 0.5  # training on the nominal model works at all
        assert "temperature" in acc["perturbation_sweeps"]
    assert "# blacksat demo report" in (tmp_path / "report.md").read_text()
    assert "true chip" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["demo", "--seed", "-3", "--quick"], "--seed must be >= 0"),
        (["demo", "--device", "nope"], "invalid choice"),
        (["demo", "--seed", "x"], "invalid int value"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_misuse_gives_one_line_error(argv, msg, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--out", str(tmp_path)] if argv[:1] == ["demo"] else argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_compare_command_writes_the_table(tmp_path, capsys):
    argv = ["compare", "--methods", "random-search,zo-adam", "--seeds", "0", "--budgets", "32"]
    assert main([*argv, "--workers", "1", "--quiet", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "results.csv").exists() and (tmp_path / "summary.md").exists()
    out = capsys.readouterr().out
    assert "random-search" in out and "zo-adam" in out


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["compare", "--methods", "nope"], "unknown method"),
        (["compare", "--seeds", "a,b"], "comma-separated integers"),
        (["compare", "--budgets", "-5"], ">= 0"),
        (["compare", "--workers", "0"], "--workers"),
    ],
)
def test_compare_misuse(argv, msg, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
