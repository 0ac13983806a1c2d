import json

import numpy as np
import pytest

from blacksat.product.cli import main
from blacksat.product.config_io import load_toml
from blacksat.querylog import QueryLog

TINY_RUN = """
[device]
name = "mzi"
kwargs = { n_modes = 4, s_bs = 0.1, s_ps = 0.1 }

[task]
dataset = "iris"

[estimator]
name = "zeroth_order"
args = { q = 2, sigma = 0.05 }

[sat]
perturbation = "phase_drift"
mode = "average"

[train]
lr = 0.05
max_steps = 4
batch_size = 32

[budget]
reconfigurations = 40
"""


def write(path, text):
    path.write_text(text)
    return str(path)


def fails(argv, capsys, *needles):
    """The command exits with status 2 and one line on stderr holding every needle."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("blacksat: error: "), err
    assert len(err.strip().splitlines()) == 1, err  # one line, no usage block
    assert "Errno" not in err, err
    for n in needles:
        assert n in err, err


# ---------------------------------------------------------------------- help and devices
@pytest.mark.parametrize(
    "argv", [[], ["demo"], ["train"], ["evaluate"], ["calibrate"], ["compare"], ["devices"]]
)
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: blacksat") and "--help" in out


def test_version_and_help_with_defaults(capsys):
    from blacksat import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"blacksat {__version__}"
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: mzi)" in out and "(default: demo-out)" in out and "micro-ring" in out
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert "(default: 1000,5000,20000)" in " ".join(capsys.readouterr().out.split())


def test_help_does_not_import_torch():
    """``blacksat --help`` stays light: nothing it needs imports torch (timed in the report,
    not here)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from blacksat.product.cli import main\n"
        "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_os_errors_are_words_not_errno(capsys, monkeypatch):
    import blacksat.product.cli as cli

    def boom(args):
        raise FileExistsError(17, "File exists", "runs/x")

    monkeypatch.setitem(cli.COMMANDS, "devices", boom)
    fails(["devices"], capsys, "'runs/x': it already exists")


def test_devices_lists_every_device(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    for name in ("mzi", "mrr", "diffractive"):
        assert name in out
    assert main(["devices", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["mzi"]["controls"] == 240


# ---------------------------------------------------------------------- demo
TINY_DEMO = """
offline_steps = 3
budget = 48
zo_q = 2
fresh_chips = 3
drift_points = 3
checkpoints = 3
landscape_points = 5
"""


def test_demo_writes_report_results_and_plots(tmp_path, capsys):
    cfg = write(tmp_path / "demo.toml", TINY_DEMO + "seeds = 2\n")
    out = tmp_path / "out"
    argv = ["demo", "--quick", "--quiet", "--out", str(out), "--seed", "1", "--config", cfg]
    assert main(argv) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["schema"] == "blacksat.demo/4" and r["seeds"] == [1, 2] and r["quick"]
    assert r["config"]["budget"] == 48 and r["config"]["offline_steps"] == 3
    assert r["offline"]["lr"] == 0.02 and r["chance"] == pytest.approx(0.1)
    assert r["offline"]["perturbation"]["model"] == "phase_drift"  # not an L2 ball
    assert sorted(p.name for p in (out / "seeds").iterdir()) == [
        "demo.json",  # what the demo was started with: a --resume must match it
        "seed-1.json",
        "seed-2.json",
    ]
    for run in r["runs"]:
        assert list(run["methods"]) == ["offline_bp", "offline_sat", "zo_sat", "nevergrad"]
        for key, m in run["methods"].items():
            assert 0.0 <= m["chip"] <= 1.0 and 0.0 <= m["exact_model"] <= 1.0
            assert m["fresh_chips"]["labels"] == [run["seed"] + 1000 + i for i in range(3)]
            drift = m["drift"]["temperature"]
            assert drift["values"] == [-2.0, 0.0, 2.0] and len(drift["accuracies"]) == 3
            spent = m["training_ledger"]["reconfigurations"]
            assert spent == 0 if key.startswith("offline") else 0 < spent <= 48
        for rows in run["budget_curve"].values():
            assert [row["reconfigurations"] for row in rows] == [0, 12, 24, 48]
            start = run["methods"]["offline_sat"]["exact_model"]
            assert rows[0]["accuracy"] == pytest.approx(start)
    chip = r["summary"]["methods"]["zo_sat"]["metrics"]["chip"]
    vals = [run["methods"]["zo_sat"]["chip"] for run in r["runs"]]
    assert chip["values"] == vals and chip["mean"] == pytest.approx(np.mean(vals))
    assert chip["std"] == pytest.approx(np.std(vals, ddof=1))
    land = r["landscape"]
    assert land["radius"] == pytest.approx(2 * land["rated_common_mode"])  # tied to the drift
    assert len(land["alphas"]) == 5
    for plot in r["plots"]:
        assert (out / plot).stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "## Findings" in report and "higher on" in report and "Chance: 10 %" in report
    assert "temperature -2 K" in report and "± " in report
    assert "the chip" in capsys.readouterr().out


def test_demo_progress_bars_name_their_phase(tmp_path, capsys):
    cfg = write(tmp_path / "demo.toml", TINY_DEMO + "seeds = 1\n")
    argv = ["demo", "--quick", "--out", str(tmp_path / "o"), "--config", cfg, "--device", "mrr"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    for phase in ("offline BP", "offline SAT", "query-only SAT", "nevergrad DiagonalCMA"):
        assert phase in err, phase
    assert "train:" not in err


@pytest.mark.parametrize(
    "text,msg",
    [
        ("budget = 0\n", "budget must be an integer >= 1"),
        ("nope = 1\n", "unknown key demo.nope"),
        ('zo_lr = "fast"\n', "demo.zo_lr must be a number"),
        ("budget = [\n", "is not valid TOML"),
        ('ng_optimizer = "Nope"\n', "not in nevergrad's registry"),
    ],
)
def test_demo_config_errors(text, msg, tmp_path, capsys):
    cfg = write(tmp_path / "demo.toml", text)
    fails(["demo", "--quick", "--out", str(tmp_path / "o"), "--config", cfg], capsys, msg)


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["demo", "--seed", "-3", "--quick"], "--seed must be >= 0"),
        (["demo", "--device", "nope"], "invalid choice"),
        (["demo", "--seed", "x"], "invalid int value"),
        (["demo", "--config", "missing.toml"], "config file not found"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
        (["compare", "--workers", "x"], "invalid int value"),
        (["evaluate"], "the following arguments are required: DIR"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (["calibrate", "--log", "q", "--kind", "greybox", "--out", "s", "--steps", "0"], ">= 1"),
    ],
)
def test_misuse_gives_one_line_error(argv, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fails([*argv, "--out", str(tmp_path)] if argv[:1] == ["demo"] else argv, capsys, msg)


# ---------------------------------------------------------------------- train / evaluate / ...
def test_train_evaluate_calibrate_round_trip(tmp_path, capsys):
    cfg = write(tmp_path / "run.toml", TINY_RUN)
    run = tmp_path / "run"
    assert main(["train", "--config", cfg, "--out", str(run), "--quiet"]) == 0
    assert "completed after 4 steps" in capsys.readouterr().out
    for f in ("config.toml", "checkpoint.pt", "log.jsonl", "queries.sqlite", "task.pt"):
        assert (run / f).exists(), f
    res = json.loads((run / "result.json").read_text())
    assert res["schema"] == "blacksat.run/1" and res["steps"] == 4
    assert len(res["theta"]) == 12 and 0.0 <= res["accuracy"]["chip"] <= 1.0
    # 4 SAT steps x (2 q antithetic settings) = 16 reconfigurations, all in the log
    assert res["ledger"]["reconfigurations"] == 16
    with QueryLog(run / "queries.sqlite", readonly=True) as log:
        assert log.spent(device="mzi-0").reconfigurations == 16
        assert log.devices() == ["mzi-0", "mzi-0/evaluation"]
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [x["event"] for x in lines] == ["start", "step", "step", "step", "step", "end"]
    saved = load_toml(run / "config.toml")
    assert saved["estimator"]["args"] == {"q": 2, "sigma": 0.05} and "epochs" not in saved["train"]

    assert main(["evaluate", str(run), "--fresh-chips", "2", "--sweep"]) == 0
    out = capsys.readouterr().out
    assert "fresh chip 1000" in out and "temperature" in out and "phase_drift" in out
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["schema"] == "blacksat.evaluation/1" and len(ev["fresh_chips"]["accuracies"]) == 2
    assert [r["temperature"] for r in ev["nuisance_sweeps"]["rows"]] == [-2, -1, 0, 1, 2]

    sur = tmp_path / "sur.pt"
    argv = ["calibrate", "--log", str(run / "queries.sqlite"), "--config", str(run / "config.toml")]
    assert main([*argv, "--kind", "greybox", "--out", str(sur), "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "greybox surrogate of mzi: fit on" in out
    # 16 settings around one start: the log of one short run, and calibrate says so
    assert "WARNING: the surrogate's data covers a narrow region" in out
    report = json.loads((tmp_path / "sur.json").read_text())
    assert report["kind"] == "greybox" and report["fit"]["n_settings"] > 0
    assert report["coverage"]["spread"] < 0.25 and len(report["warnings"]) == 1
    from blacksat.product.calibrate_cmd import load_surrogate

    surrogate, fitted_for = load_surrogate(sur)
    assert type(surrogate).__name__ == "GreyBox" and fitted_for["kwargs"]["n_modes"] == 4
    assert fitted_for["space"].periodic.all()  # the MZI phases, declared periodic, kept

    # train offline on the calibrated surrogate (autograd + SAT), deployed on the chip
    offline = TINY_RUN.replace('name = "zeroth_order"', 'name = "autograd"\nmodel = "SUR"')
    offline = offline.replace("args = { q = 2, sigma = 0.05 }", "")
    cfg2 = write(tmp_path / "offline.toml", offline.replace("SUR", str(sur)))
    assert main(["train", "--config", cfg2, "--out", str(tmp_path / "offline"), "--quiet"]) == 0
    res2 = json.loads((tmp_path / "offline" / "result.json").read_text())
    assert res2["ledger"]["reconfigurations"] == 0 and 0.0 <= res2["accuracy"]["chip"] <= 1.0
    # told before training, and kept inside the range the surrogate's data covers
    assert any("narrow region" in w for w in res2["warnings"])
    assert any("stays inside the range" in w for w in res2["warnings"])
    region = surrogate.coverage_.region(fitted_for["space"])
    theta = np.asarray(res2["theta"])
    assert np.all(theta >= region.lower - 1e-9) and np.all(theta <= region.upper + 1e-9)
    assert np.any(region.upper - region.lower < fitted_for["space"].span)
    anywhere = offline.replace('model = "SUR"', 'model = "SUR"\nregion = "all"')
    cfg3 = write(tmp_path / "anywhere.toml", anywhere.replace("SUR", str(sur)))
    assert main(["train", "--config", cfg3, "--out", str(tmp_path / "anywhere"), "--quiet"]) == 0
    res3 = json.loads((tmp_path / "anywhere" / "result.json").read_text())
    assert not any("stays inside" in w for w in res3["warnings"])
    assert any("narrow region" in w for w in res3["warnings"])
    bad = write(tmp_path / "bad.toml", offline.replace("SUR", str(tmp_path / "missing.pt")))
    fails(["train", "--config", bad, "--out", str(tmp_path / "x")], capsys, "no surrogate file")


def interrupt_after(monkeypatch, steps):
    """Make the next training run stop with Ctrl-C after ``steps`` steps (it saves a
    checkpoint and writes no result.json, like a real interruption)."""
    from blacksat.trainer import Trainer

    real = Trainer._one_step
    done = [0]

    def step(self):
        if done[0] == steps:
            raise KeyboardInterrupt
        done[0] += 1
        return real(self)

    monkeypatch.setattr(Trainer, "_one_step", step)
    return lambda: monkeypatch.setattr(Trainer, "_one_step", real)


def test_resume_continues_and_keeps_the_budget(tmp_path, capsys, monkeypatch):
    longer = TINY_RUN.replace("max_steps = 4", "max_steps = 100")
    cfg = write(tmp_path / "run.toml", longer)
    run = tmp_path / "run"
    restore = interrupt_after(monkeypatch, 4)
    with pytest.raises(SystemExit) as info:
        main(["train", "--config", cfg, "--out", str(run), "--quiet"])
    assert info.value.code == 130 and not (run / "result.json").exists()
    restore()
    # queries sent after the last checkpoint (lost in a crash) are still in the log: re-log
    # one with 8 reconfigurations; the resumed run must count them against its budget
    with QueryLog(run / "queries.sqlite", device="mzi-0") as log:
        q = next(log.records(device="mzi-0"))
        log.append(q.thetas, q.x, q.y, reconfigurations=8)
    assert main(["train", "--config", cfg, "--out", str(run), "--resume", "--quiet"]) == 0
    assert "budget after" in capsys.readouterr().out
    res = json.loads((run / "result.json").read_text())
    # 16 + 8 spent before; 4 reconfigurations per step leave room for 4 more steps of 40
    assert res["reason"] == "budget" and res["steps"] == 8
    assert res["ledger"]["reconfigurations"] == 40
    starts = [x for x in (run / "log.jsonl").read_text().splitlines() if '"start"' in x]
    assert len(starts) == 2 and json.loads(starts[1])["resumed"] is True


def test_resume_equals_an_uninterrupted_run(tmp_path, capsys, monkeypatch):
    text = TINY_RUN.replace('name = "zeroth_order"\nargs = { q = 2, sigma = 0.05 }', "")
    text = text.replace('perturbation = "phase_drift"\nmode = "average"', "rho = 0.1")
    whole, part = tmp_path / "whole", tmp_path / "part"
    cfg = write(tmp_path / "a.toml", text)
    assert main(["train", "--config", cfg, "--out", str(whole)]) == 0
    restore = interrupt_after(monkeypatch, 2)
    with pytest.raises(SystemExit):
        main(["train", "--config", cfg, "--out", str(part), "--quiet"])
    restore()
    # --resume without --config takes the run's saved config
    assert main(["train", "--out", str(part), "--resume", "--quiet"]) == 0
    assert "completed after 4 steps" in capsys.readouterr().out.splitlines()[-1]
    a = json.loads((whole / "result.json").read_text())
    b = json.loads((part / "result.json").read_text())
    assert a["steps"] == b["steps"] == 4 and a["ledger"]["reconfigurations"] == 0
    np.testing.assert_array_equal(a["theta"], b["theta"])


def test_a_finished_run_is_immutable(tmp_path, capsys):
    cfg = write(tmp_path / "run.toml", TINY_RUN.replace("max_steps = 4", "max_steps = 1"))
    run = tmp_path / "run"
    assert main(["train", "--config", cfg, "--out", str(run), "--quiet"]) == 0
    before = {f: (run / f).read_bytes() for f in ("result.json", "config.toml", "checkpoint.pt")}
    fails(["train", "--out", str(run), "--resume"], capsys, "finished run", "kept as they are")
    longer = write(tmp_path / "longer.toml", TINY_RUN)
    fails(["train", "--config", longer, "--out", str(run), "--resume"], capsys, "finished run")
    assert {f: (run / f).read_bytes() for f in before} == before


def test_resume_with_another_config_is_refused(tmp_path, capsys, monkeypatch):
    cfg = write(tmp_path / "run.toml", TINY_RUN)
    run = tmp_path / "run"
    restore = interrupt_after(monkeypatch, 1)
    with pytest.raises(SystemExit):
        main(["train", "--config", cfg, "--out", str(run), "--quiet"])
    restore()
    capsys.readouterr()
    saved = (run / "config.toml").read_text()
    other = write(tmp_path / "other.toml", TINY_RUN.replace("lr = 0.05", "lr = 0.5"))
    fails(["train", "--config", other, "--out", str(run), "--resume"], capsys, "train.lr")
    assert (run / "config.toml").read_text() == saved
    assert main(["train", "--config", cfg, "--out", str(run), "--resume", "--quiet"]) == 0


def test_train_force_replaces_a_run_only_once_the_new_one_builds(tmp_path, capsys):
    cfg = write(tmp_path / "run.toml", TINY_RUN.replace("max_steps = 4", "max_steps = 1"))
    run = tmp_path / "run"
    assert main(["train", "--config", cfg, "--out", str(run), "--quiet"]) == 0
    bad = write(tmp_path / "bad.toml", TINY_RUN.replace('"phase_drift"', '"nope"'))
    fails(["train", "--config", bad, "--out", str(run), "--force"], capsys, "nope")
    assert (run / "result.json").exists()  # a refused replacement loses nothing
    two = write(tmp_path / "two.toml", TINY_RUN.replace("max_steps = 4", "max_steps = 2"))
    assert main(["train", "--config", two, "--out", str(run), "--force", "--quiet"]) == 0
    assert json.loads((run / "result.json").read_text())["steps"] == 2


def test_train_checks_out_before_work_and_runs_on_one_thread(tmp_path, capsys, monkeypatch):
    cfg = write(tmp_path / "run.toml", TINY_RUN)
    afile = tmp_path / "file"
    afile.write_text("x")
    fails(["train", "--config", cfg, "--out", str(afile)], capsys, "existing file")
    fails(["train", "--config", cfg, "--out", str(afile / "sub")], capsys, "cannot be written")
    fails(["train", "--config", cfg, "--out", "/proc/blacksat-x"], capsys, "cannot be written")
    import torch

    from blacksat.trainer import Trainer

    seen = []
    real = Trainer.fit

    def fit(self, theta0):
        seen.append(torch.get_num_threads())
        return real(self, theta0)

    monkeypatch.setattr(Trainer, "fit", fit)
    torch.set_num_threads(2)
    try:
        assert main(["train", "--config", cfg, "--out", str(tmp_path / "r"), "--quiet"]) == 0
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_run_files_share_one_permission(tmp_path, capsys):
    import os
    import stat

    cfg = write(tmp_path / "run.toml", TINY_RUN.replace("max_steps = 4", "max_steps = 1"))
    run = tmp_path / "run"
    assert main(["train", "--config", cfg, "--out", str(run), "--quiet"]) == 0
    modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in run.iterdir() if p.is_file()}
    assert len(set(modes.values())) == 1, modes
    assert {"checkpoint.pt", "result.json", "log.jsonl", "queries.sqlite"} <= set(modes)


def test_a_run_file_without_a_device_is_refused(tmp_path, capsys):
    text = TINY_RUN[TINY_RUN.index("[task]") :].replace('"iris"', '"digits"')
    cfg = write(tmp_path / "nodev.toml", text)
    fails(["train", "--config", cfg, "--out", str(tmp_path / "o")], capsys, "no [device] table")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "toml,msg",
    [
        ("[train]\nlr = [\n", "is not valid TOML"),
        ("[train]\nbogus = 1\n", "unknown key train.bogus"),
        ('[train]\nlr = "fast"\n', "train.lr must be a number"),
        ('[device]\nname = "nope"\n', "unknown device 'nope'"),
        ("[device]\nkwargs = { n_mode = 4 }\n", "unknown key device.kwargs.n_mode"),
        (
            TINY_RUN.replace("kwargs = { n_modes", 'kwargs = { torch_device = "abacus", n_modes'),
            "torch_device must name a torch device",
        ),
        ("[estimator]\nargs = { q = 2 }\n", "unknown key estimator.args.q"),
        (TINY_RUN.replace('"phase_drift"', '"nope"'), "no perturbation model 'nope'"),
        (TINY_RUN.replace('"iris"', '"digits"'), "4 outputs, fewer than 10 classes"),
        ("[whatever]\n", "unknown section 'whatever'"),
    ],
)
def test_train_config_errors(toml, msg, tmp_path, capsys):
    cfg = write(tmp_path / "bad.toml", toml)
    fails(["train", "--config", cfg, "--out", str(tmp_path / "o")], capsys, msg)
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


def test_train_and_evaluate_misuse(tmp_path, capsys):
    out = str(tmp_path / "o")
    fails(["train", "--config", str(tmp_path / "none.toml"), "--out", out], capsys, "not found")
    fails(["train", "--out", out], capsys, "needs --config")
    fails(["train", "--out", out, "--resume"], capsys, "no config.toml")
    cfg = write(tmp_path / "run.toml", TINY_RUN)
    fails(["train", "--config", cfg, "--out", out, "--resume"], capsys, "no checkpoint.pt")
    fails(["evaluate", str(tmp_path)], capsys, "is not a finished blacksat train run")
    fails(["evaluate", str(tmp_path / "missing")], capsys, "is not a directory")
    fails(["evaluate", str(tmp_path), "--fresh-chips", "-1"], capsys, "integer >= 0")


def test_a_second_train_into_a_run_is_refused(tmp_path, capsys):
    cfg = write(tmp_path / "run.toml", TINY_RUN.replace("max_steps = 4", "max_steps = 1"))
    run = str(tmp_path / "run")
    assert main(["train", "--config", cfg, "--out", run, "--quiet"]) == 0
    fails(["train", "--config", cfg, "--out", run], capsys, "already holds a run", "--resume")


def test_calibrate_misuse(tmp_path, capsys):
    base = ["calibrate", "--kind", "greybox", "--out", str(tmp_path / "s.pt")]
    fails([*base, "--log", str(tmp_path / "q.sqlite"), "--device", "mzi"], capsys, "not found")
    log = tmp_path / "q.sqlite"
    QueryLog(log).close()  # an empty log
    fails([*base, "--log", str(log)], capsys, "needs --device NAME or --config")
    fails([*base, "--log", str(log), "--device", "mzi"], capsys, "holds no queries")
    fails([*base, "--log", str(log), "--device", "nope"], capsys, "unknown device")
    bad_json = [*base, "--log", str(log), "--device", "mzi", "--device-args", "{n_modes"]
    fails(bad_json, capsys, "not valid JSON")
    fails([*base, "--log", str(log), "--device", "mzi", "--device-args", "[4]"], capsys, "object")
    fails(["calibrate", "--log", str(log), "--device", "mzi", "--kind", "nope"], capsys, "choice")


# ---------------------------------------------------------------------- compare
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
        (["compare", "--budgets", "-5"], "integers >= 1, got '-5'"),
        (["compare", "--budgets", "0"], "integers >= 1, got '0'"),
        (["compare", "--workers", "0"], "--workers"),
    ],
)
def test_compare_misuse(argv, msg, capsys):
    fails(argv, capsys, msg)


def test_an_interrupted_demo_resumes_with_the_seeds_it_finished(tmp_path, capsys, monkeypatch):
    import blacksat.product.demo as demo

    cfg = write(tmp_path / "demo.toml", TINY_DEMO + "seeds = 2\n")
    out = tmp_path / "out"
    argv = ["demo", "--quick", "--quiet", "--out", str(out), "--config", cfg]
    real, calls = demo._run_seed, []

    def interrupted(s, *args, **kw):
        calls.append(s)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second seed
        return real(s, *args, **kw)

    monkeypatch.setattr(demo, "_run_seed", interrupted)
    with pytest.raises(SystemExit):
        main(argv)
    assert capsys.readouterr().err.strip() == "blacksat: interrupted"
    assert (out / "seeds" / "seed-0.json").is_file() and not (out / "results.json").exists()
    fails(argv, capsys, "--force", "--resume")  # the finished seed is not overwritten silently
    fails([*argv, "--resume", "--seed", "5"], capsys, "another device, preset, seed")
    calls.clear()
    monkeypatch.setattr(
        demo, "_run_seed", lambda s, *a, **k: (calls.append(s), real(s, *a, **k))[1]
    )
    assert main([*argv, "--resume"]) == 0
    assert calls == [1]  # only the seed that had not finished
    r = json.loads((out / "results.json").read_text())
    assert r["seeds"] == [0, 1] and len(r["runs"]) == 2


CROSSBAR_RUN = """
[device]
name = "crossbar"
kwargs = { layer_sizes = [4, 3] }

[task]
dataset = "iris"

[estimator]
name = "zeroth_order"
args = { q = 4, sigma = 0.1 }

[train]
lr = 0.05
max_steps = 6
batch_size = 32

[budget]
reconfigurations = 100
"""


def test_calibrate_a_physics_free_surrogate_from_a_log(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = write(tmp_path / "run.toml", CROSSBAR_RUN)
    assert main(["train", "--config", cfg, "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    sur = tmp_path / "lr.pt"
    argv = ["calibrate", "--log", str(run / "queries.sqlite"), "--config", str(run / "config.toml")]
    assert main([*argv, "--kind", "linear_response", "--out", str(sur), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "linear_response surrogate of crossbar: fit on" in out
    assert "linear response: holds" in out  # 32 inputs per setting identify a 4 -> 3 array
    report = json.loads((tmp_path / "lr.json").read_text())
    assert {c["assumption"] for c in report["checks"]} >= {"linear response"}
    from blacksat.product.calibrate_cmd import load_surrogate

    surrogate, _ = load_surrogate(sur)  # no physics model needed to load it
    assert type(surrogate).__name__ == "LinearResponse" and surrogate.coverage_ is not None
    fails([*argv, "--kind", "linear_response", "--out", str(tmp_path / "x.pt"), "--steps", "5"],
          capsys, "closed form")  # fmt: skip
