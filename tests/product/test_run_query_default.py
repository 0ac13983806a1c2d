"""`blacksat train` on a device without a model and without an [estimator] table: the
query-only default, planned on the device, sized from the budget, resumable."""

from __future__ import annotations

import json

import pytest

from blacksat.errors import ConfigError
from blacksat.product.run import build, train
from blacksat.product.run_config import RunConfig

#: a lab's driver: the crossbar seen through queries only (no nominal or exact model)
LAB = """
from blacksat.devices import Crossbar

HIDDEN = ("nominal_model", "exact_model", "model_family")


class Opaque:
    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        if name in HIDDEN:
            raise AttributeError(name)
        return getattr(self._inner, name)


def make(seed=0):
    return Opaque(Crossbar(seed=seed))


def dim_network(seed=0):
    # four MRR banks of 16: little light reaches the output at random settings
    from blacksat.devices import MRRWeightBank

    return Opaque(MRRWeightBank(layer_sizes=(64, 16, 16, 16, 10), seed=seed))
"""

CROSSBAR = """
[device]
factory = "opaque_lab:make"

[task]
dataset = "digits"

[train]
progress = false
"""


@pytest.fixture(autouse=True)
def _lab(tmp_path, monkeypatch):
    (tmp_path / "opaque_lab.py").write_text(LAB)
    monkeypatch.syspath_prepend(str(tmp_path))


def _load(tmp_path, extra: str) -> RunConfig:
    path = tmp_path / "run.toml"
    path.write_text(CROSSBAR + extra)
    return RunConfig.load(path)


def test_a_device_with_a_model_keeps_autograd_on_it():
    config = RunConfig.from_mapping(
        {"device": {"kwargs": {"n_modes": 4}}, "task": {"dataset": "iris"}}
    )
    assert config.estimator.name == "auto"
    setup = build(config)
    assert setup.query_plan is None and setup.estimator.name == "autograd"


def test_without_a_budget_the_default_says_what_to_set(tmp_path):
    with pytest.raises(ConfigError, match=r"\[budget\] reconfigurations"):
        build(_load(tmp_path, ""))


def test_auto_takes_no_args():
    with pytest.raises(ConfigError, match=r"takes no estimator\.args"):
        RunConfig.from_mapping({"estimator": {"name": "auto", "args": {"q": 2}}})


def test_the_query_default_trains_within_its_budget_and_resumes_its_plan(tmp_path):
    config = _load(tmp_path, "[budget]\nreconfigurations = 400\n")
    setup = build(config)
    assert setup.estimator is None and setup.query_plan["budget"] == 400
    out = tmp_path / "run"
    report = train(config, out, progress=False)
    plan = report["query_plan"]
    assert plan is not None and (out / "plan.json").is_file()
    assert report["ledger"]["reconfigurations"] <= 400
    assert report["ledger"]["reconfigurations"] > 400 - (1 + 2 * plan["q"])
    # the surrogate start trained on the crossbar (a linear response of local controls), and
    # the crossbar declares its wiring, so the layered response fine-tunes it: the run ends
    # near the white box (about 0.84), far above what 400 zeroth-order reconfigurations reach
    # (chance 0.1; the untrained centre reads ~0.1)
    assert plan["start"]["outcome"] == "trained" and plan["start_theta"] is not None
    assert plan["estimator"] == "layered_response"
    assert report["accuracy"]["chip"] > 0.75
    from blacksat.product.run import plan_markdown, result_markdown

    line = result_markdown(report, out).splitlines()[-1]  # what the CLI prints
    assert line.startswith("query-only plan: layered response")
    assert "(beta1 0.9, hold-cosine)" in line
    assert "keeping the best setting it measured" in line
    assert f"(the fit uses the probes of the last {plan['memory']} steps)" in line
    assert report["kept_step"] is not None and 0 <= report["kept_step"] <= report["steps"]
    assert plan["scheme"] == "forward"
    assert f"{plan['steps']} steps of {1 + plan['q']} settings (one-sided probes" in line
    pairs = plan_markdown({**plan, "scheme": "central"})  # and a plan that read pairs
    assert f"{plan['steps']} steps of {1 + 2 * plan['q']} settings (antithetic pairs)" in pairs
    old = plan_markdown({k: v for k, v in plan.items() if k != "scheme"})  # saved before it
    assert f"{1 + 2 * plan['q']} settings (antithetic pairs)" in old
    assert f"spent {plan['calibration_reconfigurations']} of 400 reconfigurations" in line
    assert "surrogate start trained: the device confirmed the surrogate" in line
    # resuming reloads the plan (no new calibration queries) instead of planning again
    spent = report["ledger"]["reconfigurations"]
    (out / "result.json").unlink()
    again = train(config, out, resume=True, progress=False)
    # (json: the layered plan has no loss-noise measurement, a NaN, unequal to itself)
    assert json.dumps(again["query_plan"], sort_keys=True) == json.dumps(plan, sort_keys=True)
    assert again["ledger"]["reconfigurations"] == spent
    (out / "result.json").unlink()
    (out / "plan.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a query plan"):
        train(config, out, resume=True, progress=False)


def test_a_budget_in_device_seconds(tmp_path):
    config = _load(
        tmp_path,
        "[budget]\nseconds = 0.5\nseconds_per_reconfiguration = 0.001\nseconds_per_sample = 1e-5\n",
    )
    setup = build(config)
    assert setup.query_plan["batch_size"] == 100  # balanced: 1 ms / 10 us
    assert setup.meter.budget.reconfigurations == 250  # 0.5 s / (1 ms + 100 x 10 us)


@pytest.mark.parametrize(
    "budget, msg",
    [
        ("seconds = 1.0\n", "needs a cost model"),
        ("seconds = 1.0\nseconds_per_sample = 1e-5\n", "go together"),
        ("seconds = -1.0\n", "budget.seconds must be"),
    ],
)
def test_bad_seconds_budgets_are_refused(tmp_path, budget, msg):
    with pytest.raises(ConfigError, match=msg):
        build(_load(tmp_path, "[budget]\n" + budget))


def test_the_plan_file_is_part_of_the_run(tmp_path):
    config = _load(tmp_path, "[budget]\nreconfigurations = 60\n")
    out = tmp_path / "run"
    train(config, out, progress=False)
    assert json.loads((out / "plan.json").read_text())["budget"] == 60
    with pytest.raises(ConfigError, match="already holds a run"):
        train(config, out, progress=False)


def test_the_readme_seconds_budget_snippet_builds(tmp_path):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    head = readme.index("### Training from queries alone")
    block = re.compile(r"```toml\n(.*?)```", re.S).search(readme, head).group(1)
    assert 'factory = "labdriver.bench:Bench"' in block
    text = block.replace("labdriver.bench:Bench", "opaque_lab:make")
    path = tmp_path / "run.toml"
    path.write_text(text + '\n[task]\ndataset = "digits"\n')
    setup = build(RunConfig.load(path))
    assert setup.query_plan["batch_size"] == 100  # 1 ms / 10 us
    assert setup.meter.budget.reconfigurations == 60_000  # 120 s / (1 ms + 100 x 10 us)


def test_an_interrupted_query_default_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    """The plan (its momentum included) and the optimizer state come back from disk: an
    interrupted run resumed ends where an uninterrupted one does, bit for bit."""
    from blacksat.product.cli import main
    from blacksat.trainer import Trainer

    _load(tmp_path, "[budget]\nreconfigurations = 200\n")
    cfg = str(tmp_path / "run.toml")
    assert main(["train", "--config", cfg, "--out", str(tmp_path / "whole"), "--quiet"]) == 0
    real, done = Trainer._one_step, [0]

    def step(self):
        if done[0] == 5:
            raise KeyboardInterrupt
        done[0] += 1
        return real(self)

    monkeypatch.setattr(Trainer, "_one_step", step)
    with pytest.raises(SystemExit):
        main(["train", "--config", cfg, "--out", str(tmp_path / "part"), "--quiet"])
    monkeypatch.setattr(Trainer, "_one_step", real)
    # the crossbar declares its wiring: the layered response, whose fitted model is estimator
    # state that the checkpoint carries
    saved = json.loads((tmp_path / "part" / "plan.json").read_text())
    assert saved["estimator"] == "layered_response" and saved["beta1"] == 0.9
    assert main(["train", "--out", str(tmp_path / "part"), "--resume", "--quiet"]) == 0
    a, b = (json.loads((tmp_path / r / "result.json").read_text()) for r in ("whole", "part"))
    assert json.dumps(a["query_plan"]) == json.dumps(b["query_plan"]) and a["steps"] == b["steps"]
    assert a["theta"] == b["theta"]


def test_a_run_keeps_what_the_plans_linear_check_read(tmp_path):
    """Four MRR banks of 16: the plan's own check passes on readings barely above their noise
    (a fit to noise leaves a residual within the noise); the plan records how far above, so a
    user can see how little the check said."""
    config = RunConfig.from_mapping(
        {
            "device": {"factory": "opaque_lab:dim_network"},
            "task": {"dataset": "digits"},
            "train": {"progress": False},
            "budget": {"reconfigurations": 60},
        }
    )
    report = train(config, tmp_path / "run", progress=False)
    plan = report["query_plan"]
    assert plan["estimator"] == "layered_response" and 0.0 < plan["check_spread"] < 20.0
    assert report["ledger"]["reconfigurations"] <= 60


def _short_stalls(monkeypatch):
    """The layered run's stall after 3 steps instead of LAYERED_BACKTRACK_PATIENCE (a short
    test run reaches two of them)."""
    import dataclasses

    import blacksat.product.run as run

    real = run._plan_parts

    def parts(setup, plan):
        estimator, cfg = real(setup, plan)
        if cfg.backtrack_patience is not None:
            cfg = dataclasses.replace(cfg, backtrack_patience=3)
        return estimator, cfg

    monkeypatch.setattr(run, "_plan_parts", parts)


def test_a_layered_run_that_never_progresses_hands_over_to_zeroth_order(tmp_path, monkeypatch):
    """Four MRR banks of 16 from the box centre: the layered run reads noise, stalls twice
    without progress and the zeroth-order plan continues with what is left, from where it
    started; an interrupted run resumed in either phase ends as the uninterrupted one."""
    from blacksat.product.cli import main
    from blacksat.trainer import Trainer

    _short_stalls(monkeypatch)
    (tmp_path / "dim.toml").write_text(
        '[device]\nfactory = "opaque_lab:dim_network"\n[task]\ndataset = "digits"\n'
        "[train]\nprogress = false\n[budget]\nreconfigurations = 400\n"
    )
    cfg = str(tmp_path / "dim.toml")
    real, calls = Trainer._one_step, [0]

    def counted(self):
        calls[0] += 1
        return real(self)

    monkeypatch.setattr(Trainer, "_one_step", counted)
    assert main(["train", "--config", cfg, "--out", str(tmp_path / "whole"), "--quiet"]) == 0
    whole = json.loads((tmp_path / "whole" / "result.json").read_text())
    layered, plan = whole["handed_over_from"], whole["query_plan"]
    assert layered["estimator"] == "layered_response" and layered["no_progress_z"] == 3.0
    assert plan["estimator"] == "zeroth_order" and plan["budget"] == 400
    assert plan["start"]["kind"] == "handover" and plan["start"]["outcome"] == "no progress"
    assert plan["start_theta"] is None  # from where the layered run started
    assert plan["calibration_reconfigurations"] > plan["start"]["reconfigurations"] > 0
    assert whole["reason"] == "completed" and whole["steps"] == plan["steps"] > 0
    assert whole["ledger"]["reconfigurations"] <= 400
    from blacksat.product.run import result_markdown

    line = result_markdown(whole, tmp_path / "whole")
    assert "continues a layered run that made no progress" in line and "stalled twice" in line
    assert "the layered run and the calibration spent" in line
    assert (tmp_path / "whole" / "handover.json").is_file()
    assert (tmp_path / "whole" / "handover.pt").is_file()
    total = calls[0]
    first = total - whole["steps"]  # the layered run's steps
    for cut, name in ((first - 2, "in-layered"), (total - 3, "in-zeroth-order")):
        done = [0]

        def step(self, done=done, cut=cut):
            if done[0] == cut:
                raise KeyboardInterrupt
            done[0] += 1
            return real(self)

        monkeypatch.setattr(Trainer, "_one_step", step)
        with pytest.raises(SystemExit):
            main(["train", "--config", cfg, "--out", str(tmp_path / name), "--quiet"])
        monkeypatch.setattr(Trainer, "_one_step", real)
        assert (tmp_path / name / "handover.json").is_file() == (name == "in-zeroth-order")
        assert main(["train", "--out", str(tmp_path / name), "--resume", "--quiet"]) == 0
        again = json.loads((tmp_path / name / "result.json").read_text())
        assert json.dumps(again["query_plan"]) == json.dumps(plan), name
        assert again["theta"] == whole["theta"] and again["steps"] == whole["steps"], name
        assert again["ledger"] == whole["ledger"], name
