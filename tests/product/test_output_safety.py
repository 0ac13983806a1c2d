"""No command loses results: every output location is checked before any work, nothing is
overwritten without --force, and the misuses of calibrate are refused before a fit."""

import json

import numpy as np
import pytest
from test_cli import TINY_RUN, fails, write

from blacksat.meter import MeteredDevice
from blacksat.product.cli import main
from blacksat.querylog import QueryLog


@pytest.fixture
def log_of_mzi1(tmp_path):
    """A query log of a 4-mode mesh of seed 1, recorded under its identity ``mzi-1``."""
    from blacksat.devices import MZIMesh

    chip = MZIMesh(n_modes=4, seed=1)
    path = tmp_path / "q.sqlite"
    with QueryLog(path, device="mzi-1") as log:
        meter = MeteredDevice(chip, observers=[log])
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 1, (8, *chip.input_shape))
        for _ in range(12):
            meter.query(chip.space.sample(rng), x)
    return path


@pytest.fixture
def never_fit(monkeypatch):
    from blacksat.surrogates.base import Surrogate

    def fit(self, data):
        raise AssertionError("fitted before the misuse was refused")

    monkeypatch.setattr(Surrogate, "fit", fit)


def test_calibrate_checks_out_steps_and_device_before_fitting(
    tmp_path, capsys, log_of_mzi1, never_fit
):
    base = ["calibrate", "--log", str(log_of_mzi1), "--kind", "greybox"]
    dev = ["--device", "mzi", "--device-args", '{"n_modes": 4, "seed": 1}']
    fails([*base, *dev, "--out", "/proc/blacksat-x/c.pt"], capsys, "cannot be written")
    fails([*base, *dev, "--out", str(tmp_path)], capsys, "is a directory")
    fails([*base, *dev, "--out", str(tmp_path / "s.pt"), "--steps", "0"], capsys, ">= 1")
    other = ["--device", "mzi", "--device-args", '{"n_modes": 4, "seed": 7}']
    fails([*base, *other, "--out", str(tmp_path / "s.pt")], capsys, "'mzi-1'", "seed 7")
    cfg = write(tmp_path / "run.toml", TINY_RUN.replace("[task]", "seed = 7\n\n[task]"))
    fails([*base, "--config", cfg, "--out", str(tmp_path / "s.pt")], capsys, "'mzi-7'")
    (tmp_path / "s.pt").write_text("an earlier fit")
    fails([*base, *dev, "--out", str(tmp_path / "s.pt")], capsys, "already exists", "--force")
    assert (tmp_path / "s.pt").read_text() == "an earlier fit"


def test_calibrate_force_quiet_and_progress(tmp_path, capsys, log_of_mzi1):
    out = tmp_path / "s.pt"
    out.write_text("an earlier fit")
    argv = ["calibrate", "--log", str(log_of_mzi1), "--kind", "greybox", "--out", str(out)]
    argv += ["--device", "mzi", "--device-args", '{"n_modes": 4, "seed": 1}', "--steps", "3"]
    assert main([*argv, "--force", "--quiet"]) == 0
    assert capsys.readouterr().err == ""  # --quiet: no progress
    assert main([*argv, "--force"]) == 0
    assert "fit GreyBox" in capsys.readouterr().err  # a bar over the fit's steps
    assert json.loads((tmp_path / "s.json").read_text())["kind"] == "greybox"


def test_evaluate_keeps_an_earlier_evaluation_and_honours_quiet(tmp_path, capsys):
    cfg = write(tmp_path / "run.toml", TINY_RUN.replace("max_steps = 4", "max_steps = 1"))
    run = str(tmp_path / "run")
    assert main(["train", "--config", cfg, "--out", run, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", run, "--fresh-chips", "1", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    before = (tmp_path / "run" / "evaluation.json").read_text()
    fails(["evaluate", run, "--fresh-chips", "2"], capsys, "already exists", "--force")
    assert (tmp_path / "run" / "evaluation.json").read_text() == before
    assert main(["evaluate", run, "--fresh-chips", "2", "--force"]) == 0
    assert "evaluate" in capsys.readouterr().err  # the progress bar
    ev = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert len(ev["fresh_chips"]["accuracies"]) == 2


def test_demo_checks_out_before_work_and_never_overwrites(tmp_path, capsys, monkeypatch):
    import blacksat.product.demo as demo

    def never(*args, **kwargs):
        raise AssertionError("the demo ran before its output was checked")

    monkeypatch.setattr(demo, "_run", never)
    afile = tmp_path / "file"
    afile.write_text("x")
    fails(["demo", "--quick", "--out", str(afile)], capsys, "existing file")
    fails(["demo", "--quick", "--out", "/proc/blacksat-x"], capsys, "cannot be written")
    done = tmp_path / "done"
    done.mkdir()
    (done / "results.json").write_text("{}")
    fails(["demo", "--quick", "--out", str(done)], capsys, "already holds results", "--force")
    assert (done / "results.json").read_text() == "{}"


def test_compare_cli_refuses_to_overwrite(tmp_path, capsys, monkeypatch):
    import blacksat.product.compare as cmp

    def never(*args, **kwargs):
        raise AssertionError("a run started before the output was checked")

    monkeypatch.setattr(cmp, "run_one", never)
    (tmp_path / "summary.md").write_text("keep")
    argv = ["compare", "--methods", "zo-adam", "--seeds", "0", "--budgets", "8", "--workers", "1"]
    fails([*argv, "--out", str(tmp_path)], capsys, "already holds results", "--resume")
    fails([*argv, "--out", str(tmp_path / "summary.md")], capsys, "existing file")
    assert (tmp_path / "summary.md").read_text() == "keep"
