import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blacksat.errors import ConfigError
from blacksat.product.config_io import dump_toml, load_toml, tomllib, typed_fields
from blacksat.product.demo_config import DemoConfig
from blacksat.product.run import build
from blacksat.product.run_config import (
    BudgetSpec,
    DeviceSpec,
    EstimatorSpec,
    RunConfig,
    SatSpec,
    TaskSpec,
)
from blacksat.train_config import TrainConfig

FULL = {
    "device": {"name": "mzi", "seed": 3, "kwargs": {"n_modes": 4, "s_bs": 0.1}},
    "task": {"dataset": "iris", "seed": 2, "test_size": 0.25, "init": "center"},
    "estimator": {"name": "zeroth_order", "args": {"q": 2, "sigma": 0.05}},
    "sat": {"perturbation": "phase_drift", "mode": "average", "draws": 2},
    "train": {
        "lr": 0.05,
        "optimizer": "SGD",
        "optimizer_kwargs": {"momentum": 0.9},
        "schedule": "cosine",
        "schedule_kwargs": {"eta_min": 0.001},
        "max_steps": 7,
        "batch_size": "full",
        "checkpoint_every": 2,
        "progress": False,
        "keep": "best",
        "keep_smoothing": 0.5,
    },
    "budget": {"reconfigurations": 100, "samples": 10_000},
    "log": {"queries": False, "device_id": "chip-7"},
}


def test_defaults_and_their_round_trip():
    c = RunConfig()
    assert c.device.name == "mzi" and c.estimator.name == "autograd" and not c.sat.enabled
    assert c.log.device_id == "mzi-0" and c.train == TrainConfig()
    assert RunConfig.from_mapping(tomllib.loads(c.to_toml())) == c


def test_a_full_config_is_read_and_written_back_identically(tmp_path):
    c = RunConfig.from_mapping(FULL)
    assert c.train.optimizer == "sgd" and c.train.batch_size is None and c.train.epochs is None
    assert c.sat.enabled and c.sat.draws == 2 and c.budget.samples == 10_000
    assert c.task.test_size == 0.25 and c.log.device_id == "chip-7"
    assert c.train.keep == "best" and c.train.keep_smoothing == 0.5
    path = tmp_path / "run.toml"
    path.write_text(c.to_toml())
    assert RunConfig.load(path) == c
    assert 'batch_size = "full"' in path.read_text()


def test_integers_are_accepted_for_numbers_and_run_length_keys_imply_none():
    c = RunConfig.from_mapping({"train": {"lr": 1, "epochs": 3}})
    assert c.train.lr == 1.0 and isinstance(c.train.lr, float)
    assert c.train.epochs == 3 and c.train.max_steps is None
    c = RunConfig.from_mapping({"train": {"max_steps": 5}})
    assert c.train.epochs is None and c.train.max_steps == 5
    c = RunConfig.from_mapping({"train": {"max_steps": 5, "epochs": 2}})
    assert (c.train.epochs, c.train.max_steps) == (2, 5)


@pytest.mark.parametrize(
    "data,msg",
    [
        ({"nope": {}}, "unknown section 'nope'"),
        ({"device": "mzi"}, "device must be a table"),
        ({"device": {"name": 3}}, "device.name must be a string, got int 3"),
        ({"device": {"name": "nope"}}, "unknown device 'nope'"),
        ({"device": {"seed": -1}}, "device.seed must be an integer >= 0"),
        ({"device": {"kwargs": {"bogus": 1}}}, "unknown key device.kwargs.bogus"),
        ({"device": {"kwargs": {"seed": 1}}}, "device.seed"),
        ({"task": {"dataset": "nowhere"}}, "task.dataset must be one of"),
        ({"task": {"test_size": 1.5}}, "task.test_size must lie in (0, 1)"),
        ({"task": {"init": "random"}}, "task.init must be one of 'device', 'center'"),
        ({"estimator": {"name": "magic"}}, "estimator.name must be one of"),
        ({"estimator": {"model": "twin"}}, "estimator.model must be 'nominal', 'exact' or"),
        ({"estimator": {"args": {"q": 2}}}, "unknown key estimator.args.q for autograd"),
        ({"sat": {"rho": 0.1, "perturbation": "x"}}, "rho or perturbation, not both"),
        ({"sat": {"rho": -1.0}}, "sat.rho must be a finite number >= 0"),
        ({"sat": {"rho": math.nan}}, "sat.rho must be a finite number >= 0"),
        ({"sat": {"draws": 0}}, "sat.draws must be an integer >= 1"),
        ({"sat": {"draws": 1.5}}, "sat.draws must be an integer, got float"),
        ({"train": {"lr": "fast"}}, "train.lr must be a number, got str 'fast'"),
        ({"train": {"lr": True}}, "train.lr must be a number, got bool"),
        ({"train": {"epochs": 2.0}}, "train.epochs must be an integer"),
        ({"train": {"lr": -1.0}}, "train: lr must be a finite number > 0"),
        ({"train": {"bogus": 1}}, "unknown key train.bogus"),
        ({"train": {"schedule": "linear"}}, "train.schedule must be one of 'cosine', 'hold"),
        ({"train": {"optimizer": "nope"}}, "train: unknown optimizer 'nope'"),
        ({"train": {"optimizer_kwargs": {"foo": 1}}}, "invalid optimizer_kwargs"),
        ({"train": []}, "train must be a table"),
        ({"budget": {"reconfigurations": -1}}, "budget.reconfigurations must be an integer >= 1"),
        ({"budget": {"samples": "many"}}, "budget.samples must be an integer, got str"),
        ({"log": {"queries": "yes"}}, "log.queries must be true or false, got str"),
    ],
)
def test_bad_values_name_the_key(data, msg):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_mapping(data)
    assert msg in str(info.value)


def test_sections_validate_when_built_in_python_too():
    with pytest.raises(ConfigError, match=r"RunConfig\.train must be a TrainConfig"):
        RunConfig(train={"lr": 1})  # type: ignore[arg-type]
    assert BudgetSpec(reconfigurations=1).reconfigurations == 1
    assert DeviceSpec(kwargs={"temperature": 1.0}).kwargs == {"temperature": 1.0}  # a nuisance
    with pytest.raises(ConfigError, match=r"device\.kwargs"):
        DeviceSpec(kwargs={"n_modes": 1}).build()  # the device's own check, key named
    assert TaskSpec(dataset="iris").load().n_classes == 3
    assert SatSpec(rho=0.0).enabled and not SatSpec().enabled
    assert EstimatorSpec(name="zeroth_order").queries_device


def test_load_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_toml(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_toml(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(binary)


def test_dump_toml_escapes_and_special_floats():
    data = {
        "a": {
            "text": 'quote " and \\ and\nnewline',
            "key with space": 1,
            "inf": math.inf,
            "neg": -math.inf,
            "list": [1, 2.5, "x"],
            "nested": {"b": True, "c": {"d": 1e-5}},
            "skipped": None,
        }
    }
    back = tomllib.loads(dump_toml(data))
    expected = {k: v for k, v in data["a"].items() if v is not None}
    assert back == {"a": expected}
    assert math.isnan(tomllib.loads(dump_toml({"t": {"x": math.nan}}))["t"]["x"])
    with pytest.raises(ConfigError, match=r"t\.x: object values cannot be written"):
        dump_toml({"t": {"x": object()}})


scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.dictionaries(st.text(), values)))
def test_dump_toml_round_trips_through_tomllib(data):
    assert tomllib.loads(dump_toml(data)) == data


def test_typed_fields_checks_any_dataclass():
    assert typed_fields(DemoConfig, {"budget": 10, "zo_lr": 1}, "demo") == {
        "budget": 10,
        "zo_lr": 1.0,
    }
    with pytest.raises(ConfigError, match=r"unknown key demo\.nope"):
        typed_fields(DemoConfig, {"nope": 1}, "demo")


def test_demo_config_presets_and_overrides():
    full, quick = DemoConfig.preset(False), DemoConfig.preset(True)
    assert quick.offline_steps < full.offline_steps and quick.budget < full.budget
    assert quick.fresh_chips >= 3 and full.fresh_chips >= 3
    c = DemoConfig.from_mapping({"budget": 64}, quick=True)
    assert c.budget == 64 and c.offline_steps == quick.offline_steps
    for bad, msg in [
        ({"budget": 0}, "budget must be an integer >= 1"),
        ({"zo_sigma": 0.0}, "zo_sigma must be a finite number > 0"),
        ({"landscape_points": 2}, "landscape_points must be an integer >= 3"),
        ({"ng_optimizer": ""}, "ng_optimizer must be a name"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            DemoConfig.from_mapping(bad)


def _config(**sections):
    base = {
        "device": {"kwargs": {"n_modes": 4}},
        "task": {"dataset": "iris"},
        "train": {"max_steps": 1},
    }
    return RunConfig.from_mapping({**base, **sections})


def test_build_wires_estimator_sat_and_budget():
    s = build(
        _config(
            estimator={"name": "zeroth_order", "args": {"q": 3}},
            sat={"perturbation": "phase_drift", "mode": "average"},
            budget={"reconfigurations": 12},
        )
    )
    assert s.estimator.name == "sat" and s.estimator.descent.q == 3
    assert s.meter.budget.reconfigurations == 12 and s.meter.ledger.reconfigurations == 0
    assert s.theta0.shape == (s.chip.space.dim,)
    assert build(_config(task={"dataset": "iris", "init": "center"})).theta0[0] == pytest.approx(
        s.chip.space.center[0]
    )


@pytest.mark.parametrize(
    "sections,msg",
    [
        ({"sat": {"perturbation": "nope"}}, "no perturbation model 'nope'"),
        (
            {"estimator": {"name": "zeroth_order"}, "sat": {"perturbation": "temperature"}},
            "sets nuisance parameters",
        ),
        ({"estimator": {"name": "zeroth_order", "args": {"q": 0}}}, "estimator.args: q must be"),
    ],
)
def test_build_refuses_what_the_device_cannot_do(sections, msg):
    with pytest.raises(ConfigError, match=msg):
        build(_config(**sections))


def test_autograd_may_use_a_nuisance_model():
    s = build(_config(sat={"perturbation": "temperature"}))
    assert s.estimator.name == "sat" and s.estimator.descent.family is not None


def test_the_shipped_example_configs_load_and_build():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[2] / "examples" / "configs").glob("*.toml"))
    assert configs, "examples/configs holds the run files the README points to"
    for path in configs:
        c = RunConfig.load(path)
        assert c.sat.enabled and c.budget.reconfigurations is not None and c.log.queries


@pytest.mark.parametrize("key", ["reconfigurations", "samples"])
def test_a_budget_of_zero_is_refused(key):
    with pytest.raises(ConfigError, match=f"budget.{key} must be an integer >= 1"):
        RunConfig.from_mapping({"budget": {key: 0}})


def test_the_saf_table_is_read_validated_and_trains(tmp_path):
    from blacksat.product.run import train
    from blacksat.product.run_config import RunConfig, SafSpec

    assert RunConfig().saf == SafSpec() and SafSpec().build() is None  # off by default
    text = """
[device]
name = "mzi"
kwargs = { n_modes = 4 }

[task]
dataset = "iris"

[estimator]
name = "zeroth_order"
args = { q = 2, sigma = 0.05 }

[saf]
lam = 0.5
lag = 1

[train]
lr = 0.05
max_steps = 12
batch_size = 32
"""
    path = tmp_path / "run.toml"
    path.write_text(text)
    config = RunConfig.load(path)
    assert config.saf == SafSpec(lam=0.5, tau=5.0, lag=1, warmup=0)
    assert RunConfig.from_mapping(tomllib.loads(config.to_toml())) == config  # round trip
    train(config, tmp_path / "run", progress=False)
    import torch

    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    saf = state["saf"] if isinstance(state, dict) else state.saf
    assert saf is not None and saf["memory"]  # readings of past epochs were kept
    for bad, msg in (({"lam": -1.0}, "lam"), ({"lag": 0}, "lag"), ({"tau": 0.0}, "tau")):
        with pytest.raises(ConfigError, match=msg):
            RunConfig.from_mapping({"saf": bad})


@pytest.mark.parametrize(
    ("train", "msg"),
    [({"keep": "first"}, "keep must be 'last' or 'best'"), ({"keep_smoothing": 1.0}, "[0, 1)")],
)
def test_a_bad_kept_setting_is_refused_with_the_tables_name(train, msg):
    with pytest.raises(ConfigError, match="train: .*" + re.escape(msg)):
        RunConfig.from_mapping({"train": train})
