"""A lab's own device, defined only here (not in blacksat.devices, not registered), through every
tool from run files naming its factory: characterize, train (SAT against the measured model),
evaluate, calibrate and compare, with ledgers equal to the device's own count of program
operations; and the one-line errors of bad factories, shapes and tasks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blacksat import ParamSpace
from blacksat.data import load_iris
from blacksat.errors import ConfigError
from blacksat.generic_task import generic_task
from blacksat.product.cli import main
from blacksat.product.device_registry import check_task_fits

HERE = Path(__file__).parent
INSTANCES: list[AnalogArray] = []


class AnalogArray:
    """A 4 x 3 array of differential conductance pairs: 24 controls in [0, 1], signed currents
    ``y = x (G+ - G-)^T`` with programming noise at every write (it re-programs on every call)
    and read noise; it counts its own program operations."""

    reprograms_on_query = True
    input_range = (-1.0, 1.0)
    output_kind = "signed"

    def __init__(self, seed: int = 0, program_noise: float = 0.02, read_noise: float = 0.01):
        self.space = ParamSpace.box(24, 0.0, 1.0)
        self.input_shape, self.output_shape = (4,), (3,)
        self._gain = 1.0 + 0.1 * np.random.default_rng(seed).standard_normal(24)
        self._rng = np.random.default_rng(seed + 1)
        self.program_noise, self.read_noise = program_noise, read_noise
        self.programs = 0
        INSTANCES.append(self)

    def query(self, theta, x):
        return self.query_many(np.asarray(theta)[None], x)[0]

    def query_many(self, thetas, x):
        out = []
        for t in np.asarray(thetas, dtype=np.float64):
            self.programs += 1
            g = self._gain * (t + self.program_noise * self._rng.standard_normal(24))
            w = (g[:12] - g[12:]).reshape(3, 4)
            y = np.asarray(x) @ w.T
            out.append(y + self.read_noise * self._rng.standard_normal(y.shape))
        return np.stack(out)


def make_device(seed: int = 0, program_noise: float = 0.02) -> AnalogArray:
    return AnalogArray(seed=seed, program_noise=program_noise)


def raising_factory(**kwargs):
    raise RuntimeError("instrument not connected")


class Shapeless:
    def __init__(self, **kwargs):
        self.space = ParamSpace.box(2, 0.0, 1.0)

    def query(self, theta, x):
        return np.zeros((len(x), 1))

    def query_many(self, thetas, x):
        return np.zeros((len(thetas), len(x), 1))


FACTORY = "test_user_device:make_device"


def _runfile(path: Path, factory: str = FACTORY, extra: str = "") -> Path:
    path.write_text(
        f"""
[device]
factory = "{factory}"
seed = 3
kwargs = {{ program_noise = 0.02 }}

[task]
dataset = "iris"

[estimator]
name = "zeroth_order"
args = {{ q = 4, sigma = 0.05 }}

[train]
lr = 0.05
max_steps = 12
batch_size = 32
progress = false

[budget]
reconfigurations = 400
{extra}
"""
    )
    return path


def _cli(*args: str) -> None:
    assert main(list(args)) == 0


def test_a_test_file_device_goes_through_every_tool_with_exact_ledgers(tmp_path, monkeypatch):
    monkeypatch.chdir(HERE)  # the factory's module imports from the working directory
    INSTANCES.clear()
    char = tmp_path / "char"
    _cli("characterize", "--config", str(_runfile(tmp_path / "a.toml")), "--out", str(char),
         "--budget", "60", "--quiet")  # fmt: skip
    report = json.loads((char / "characterization.json").read_text())
    assert report["ledger"]["reconfigurations"] == INSTANCES[-1].programs <= 60
    assert (char / "model.json").is_file()
    # query-only SAT against the measured model
    sat = f'[sat]\nperturbation = "{char / "model.json"}"\nmode = "average"\n'
    run_file = _runfile(tmp_path / "train.toml", extra=sat)
    run = tmp_path / "run"
    _cli("train", "--config", str(run_file), "--out", str(run), "--quiet")
    result = json.loads((run / "result.json").read_text())
    chip = INSTANCES[-1]
    spent = result["ledger"]["reconfigurations"] + result["evaluation_ledger"]["reconfigurations"]
    assert spent == chip.programs and result["ledger"]["reconfigurations"] <= 400
    assert result["accuracy"]["model"] is None and result["task"]["readout"] == "signed"
    assert result["accuracy"]["chip"] > 0.5  # iris, 3 classes: well above chance
    n = len(INSTANCES)
    _cli("evaluate", str(run), "--fresh-chips", "2")
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["ledger"]["reconfigurations"] == INSTANCES[n].programs  # the run's chip, rebuilt
    assert len(ev["fresh_chips"]["accuracies"]) == 2 and ev["nominal_model"] is None
    sur = str(tmp_path / "s.pt")
    log = str(run / "queries.sqlite")
    _cli("calibrate", "--config", str(run_file), "--log", log, "--kind", "ensemble",
         "--steps", "20", "--out", sur, "--quiet")  # fmt: skip
    assert json.loads((tmp_path / "s.json").read_text())["device"]["factory"] == FACTORY
    out = tmp_path / "cmp"
    _cli("compare", "--config", str(run_file), "--methods", "zo-adam,one-plus-one", "--seeds",
         "0", "--budgets", "60", "--workers", "1", "--out", str(out), "--quiet")  # fmt: skip
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"zo-adam", "one-plus-one"}
    assert all(0 < r["reconfigurations"] <= 60 for r in rows)


def test_compare_ledger_equals_the_devices_count():
    from blacksat.product.compare import Scenario, run_one

    INSTANCES.clear()
    row = run_one("zo-adam", Scenario(device=make_device, dataset="iris"), 0, 0, 40)
    chip = INSTANCES[0]
    # the evaluation reads the bare chip twice (test split, training loss: one batch each)
    assert row["reconfigurations"] + 2 == chip.programs
    assert np.isfinite(row["fresh_chip_accuracy"])


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("no_such_module_xyz:make", "does not import"),
        ("test_user_device:nothing_here", "has no attribute"),
        ("test_user_device:raising_factory", "raised RuntimeError: instrument not connected"),
        ("test_user_device:Shapeless", "declares no valid input_shape"),
        ("not-a-path", "must be 'package.module:callable'"),
    ],
)
def test_bad_factories_are_one_line_errors_and_nothing_is_lost(
    tmp_path, monkeypatch, capsys, factory, message
):
    monkeypatch.chdir(HERE)
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("measured")
    with pytest.raises(SystemExit) as err:
        main(["train", "--config", str(_runfile(tmp_path / "bad.toml", factory)), "--out",
              str(run / "sub"), "--quiet"])  # fmt: skip
    assert err.value.code == 2
    line = capsys.readouterr().err.strip()
    assert message in line and "\n" not in line
    assert not (run / "sub").exists() and (run / "keep.txt").read_text() == "measured"


def test_python_api_takes_instances_and_factories_and_checks_the_task():
    dev = make_device(seed=1)
    assert make_device is not None and isinstance(dev, AnalogArray)
    from blacksat.product.device_registry import make_device as resolve

    assert resolve(dev) is dev
    assert isinstance(resolve(AnalogArray, seed=2), AnalogArray)
    assert isinstance(resolve("crossbar", kwargs={"layer_sizes": [4, 3]}), object)
    task = generic_task(dev, load_iris(seed=0))
    other = resolve("crossbar", kwargs={"layer_sizes": [5, 3]})
    with pytest.raises(ConfigError, match=r"encodes inputs of shape \(4,\).*expects \(5,\)"):
        check_task_fits(task, other)
    with pytest.raises(ConfigError, match="does not import"):
        resolve("nowhere_pkg.mod:f")
    with pytest.raises(ConfigError, match="unknown device 'nope'"):
        resolve("nope")
