"""Smoke test of benchmarks/mzi_hybrid.py: its random twin, readout re-fit and report pieces
(no training run)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("mzi_hybrid", BENCH / "mzi_hybrid.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mzi_hybrid"] = mod
    spec.loader.exec_module(mod)
    return mod


M = _load()


def test_readout_refit_spends_one_reconfiguration_and_scores():
    from blacksat.data import load_digits
    from blacksat.devices.tasks import default_task
    from blacksat.evaluation import accuracy

    chip = M.chip_of("mzi", 0)
    task = default_task(chip, load_digits(seed=0), seed=0).to(torch.float64)
    theta = chip.initial_controls(0)
    refit, cost = M.refit_readout(task, chip, theta)
    assert cost.reconfigurations == 1
    assert task.back is None and refit.back is not None  # the original task is untouched
    assert accuracy(refit, chip, theta) > accuracy(task, chip, theta)


def _fake_results():
    rows = []
    rng = np.random.default_rng(0)
    drift = {f"{dt:g}": 50.0 for dt in M.DTS}
    for m in M.OFFLINE_METHODS:
        for c in (0, 1):
            acc = float(rng.uniform(40, 90))
            rows.append(
                dict(method=m, seed=0, chip=c, kind="offline", nominal=90.0, acc=acc,
                     clean=90.0, coupler=acc, phase=acc, drift=drift, refit=88.0,
                     hessian_nominal=3.0, hessian_exact=4.0)
            )  # fmt: skip
    for m in M.ONCHIP_METHODS:
        for c in (0, 1):
            rows.append(
                dict(method=m, seed=0, chip=c, kind="on-chip", nominal=80.0, acc=86.0,
                     fresh=[60.0], clean=85.0, drift=drift, reconfigurations=40)
            )  # fmt: skip
    settings = {"offline": M.OFFLINE, "rho": M.RHO, "structured_r": 0.05, "onchip": M.ONCHIP}
    return {
        "device": "mzi",
        "controls": 240,
        "seeds": [0],
        "chips_per_seed": 2,
        "settings": {**settings, "zo": M.ZO},
        "rows": rows,
        "wall_seconds": 1.0,
    }


def test_summary_cells_and_section_render():
    from _report import ERROR_TYPES, METHODS

    res = _fake_results()
    summ = M.summarize(res)
    assert summ["online_sat"]["train_chip"][0] == 86.0
    assert summ["online_sat"]["fresh"] == (60.0, 0.0, 2)
    cells = M.cells(res, summ)
    assert {c["error"] for c in cells} <= set(ERROR_TYPES)
    assert {c["method"] for c in cells} <= set(METHODS)
    text = M.section({"mzi": res}, ["accuracy_mzi.png"])
    assert text.startswith("## MZI network at the paper's error level (0.15 / 0.15)")
    assert "online SAT on the training chip >= 85 % (`mzi`): 86.0 % -> **met**" in text
