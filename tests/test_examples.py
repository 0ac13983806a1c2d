"""Smoke tests: every example runs (tiny settings) and reports sensible numbers."""

import importlib.util
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
