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
    from blacksat.product.run import result_markdown

    line = result_markdown(report, out).splitlines()[-1]  # what the CLI prints
    assert line.startswith("query-only plan: layered response")
    assert "(beta1 0.9, hold-cosine)" in line
    assert "keeping the best setting it measured" in line
    assert f"(the fit uses the probes of the last {plan['memory']} steps)" in line
    assert report["kept_step"] is not None and 0 <= report["kept_step"] <= report["steps"]
    assert f"{plan['steps']} steps of {1 + 2 * plan['q']} settings" in line
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
