"""Smoke tests: every example runs (tiny settings) and reports sensible numbers."""

import importlib.util
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("device", ["mzi", "mrr", "diffractive"])
@pytest.mark.parametrize("path", ["autograd", "physics_aware", "zeroth_order"])
def test_sat_paths_example_runs(device, path, capsys):
    out = load("sat_paths").main(
        ["--device", device, "--path", path, "--steps", "2", "--budget", "400", "--quiet"]
    )
    assert all(0.0 <= v <= 1.0 for v in out.values())
    assert f"{device} / {path}" in capsys.readouterr().out


def test_surrogate_offline_example_runs(tmp_path, capsys):
    run_dir = tmp_path / "run"
    out = load("surrogate_offline").main(["--quick", "--run-dir", str(run_dir)])
    assert 0.0 <= out["surrogate"] <= 1.0 and 0.0 <= out["nominal"] <= 1.0
    assert math.isfinite(out["r2"]) and math.isfinite(out["replayed_r2"])
    assert (run_dir / "queries.sqlite").is_file()
    printed = capsys.readouterr().out
    assert "calibration (completed, 24 settings)" in printed
    assert "refit on 26 logged settings" in printed  # the calibration and the 2 deployments
    assert "device cost: 26 reconfigurations" in printed
