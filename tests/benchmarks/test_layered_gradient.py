"""benchmarks/layered_gradient.py: the section bins the trajectory by steps and pools the chips,
and the plateau fits by their number of probes (synthetic rows); one plateau fit runs for real."""

import numpy as np
import pytest
import torch
from bench_loader import SavedRows, load_bench

M = load_bench("layered_gradient.py", "layered_gradient")


def test_the_section_bins_the_steps_and_pools_the_chips():
    traj = {
        "kind": "trajectory", "budget": 5000, "accuracy": 95.0, "train_loss": 0.2,
        "step": [1, 11, 21, 31, 101, 301], "cos": [0.1, 0.7, 0.9, 0.8, 0.2, 0.0],
        "g": [1.0] * 6, "est": [1.0] * 6, "loss": [2.0, 1.0, 0.5, 0.4, 0.2, 0.2],
        "exact": [2.0, 1.0, 0.5, 0.4, 0.2, 0.2], "r2": [0.9] * 6,
    }  # fmt: skip
    rows = [{**traj, "chip": 100}, {**traj, "chip": 101, "cos": [0.3, 0.7, 0.9, 0.8, 0.4, 0.2]}]
    rows += [
        {"kind": "plateau", "chip": 100, "probes": p, "seed": s, "cos": c, "r2": 0.8}
        for p, cs in ((15, (0.0, 0.2)), (45, (0.1, 0.3)))
        for s, c in enumerate(cs)
    ]
    rows += [
        {"kind": "oracle", "chip": c, "share": 0.0, "ceiling": x, "model": 0.1, "r2": 0.9}
        for c, x in ((100, 0.4), (101, 0.6))
    ]
    body = M.section(SavedRows(rows, "layered_gradient"))
    # steps 1-25: (0.1, 0.7, 0.9) and (0.3, 0.7, 0.9) -> mean 0.6
    assert "| 1-25 | 0.60 ± 0.33 |" in body
    assert "| 26-50 | 0.80 ± 0.00 |" in body
    assert "| 101-200 | 0.30 ± 0.14 |" in body and "| 201-end | 0.10 ± 0.14 |" in body
    assert "| 51-100 |" not in body  # no recorded step there
    assert "| 15 | 0.10 ± 0.14 | 0.80 ± 0.00 |" in body and "| 45 | 0.20 ± 0.14 |" in body
    assert "chips 100, 101" in body
    # (rows saved before the operating-point and extended models have no column for them)
    assert (
        "| uniform (the estimator's) | 0.50 ± 0.14 | 0.10 ± 0.00 | 0.90 ± 0.00 | — | — | — | — "
        "| — | — |" in body
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_plateau_fit_sets_the_estimate_against_the_exact_gradient():
    import query_efficiency as qe

    sc = qe.scenario("mrr")
    chip = sc.build_chip(100)
    task = sc.build_task(chip, 100)
    theta = torch.as_tensor(chip.space.center) + 0.1 * torch.as_tensor(chip.space.span)
    out = M.plateau_fit(task, chip, theta, probes=3, seed=0)
    assert -1.0 <= out["cos"] <= 1.0 and np.isfinite(out["r2"])
    oracle = M.oracle_fit(task, chip, theta, share=0.5, probes=3)
    assert set(oracle) == {
        "ceiling", "model", "r2", "op", "op_r2", "extended", "extended_r2", "model_few",
        "r2_few", "op_few", "op_r2_few",
    }  # fmt: skip
    cosines = ("ceiling", "model", "op", "extended", "model_few", "op_few")
    assert all(-1.0 <= oracle[k] <= 1.0 for k in cosines)
    assert oracle == M.oracle_fit(task, chip, theta, share=0.5, probes=3)  # seeded
    g, loss = M._exact_gradient(task, chip, theta)
    assert g.shape == (chip.space.dim,) and np.isfinite(loss) and float(g.norm()) > 0
