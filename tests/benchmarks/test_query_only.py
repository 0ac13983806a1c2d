"""Smoke test of benchmarks/query_only.py: its fixed front end, its drift probe, a tiny run."""

import numpy as np
import torch
from bench_loader import load_bench

M = load_bench("query_only.py", "query_only")


def test_dct_front_end_is_orthonormal_and_ignores_the_mean_brightness():
    w = M.dct_front()
    assert w.shape == (16, 64)
    np.testing.assert_allclose(w @ w.T, np.eye(16), atol=1e-12)
    np.testing.assert_allclose(w.sum(1), 0.0, atol=1e-12)


def test_the_end_probe_spends_two_settings_and_picks_the_worse_end():
    import dataclasses

    from blacksat import MeteredDevice, sat
    from blacksat.estimators import ZerothOrder
    from blacksat.objective import StepContext

    chip = M.chip_of(3)
    meter = MeteredDevice(chip, max_reconfigurations=10)
    task = M.build_task(chip, 0, front="dct", back=True)
    ends = dataclasses.replace(chip.perturbation_models()["phase_drift"], grid=2)
    zo = ZerothOrder(meter, task, q=2, sigma=0.05)
    theta = torch.as_tensor(chip.space.center)
    batch = task.batch("train", np.arange(16))
    est = sat(zo, perturbation=ends)(theta, batch, StepContext(rng=np.random.default_rng(0)))
    assert est.cost.reconfigurations == 2 + 4 and est.cost.samples == 6 * 16
    seen = []

    def probe(perts):
        losses, _ = zo.evaluate(torch.stack([theta + p.delta for p in perts]), batch, ctx)
        seen.append(losses)
        return losses

    ctx = StepContext(rng=np.random.default_rng(0))
    delta = ends.worst(theta, None, probe, ctx.rng).delta
    r = ends.radius
    worse = int(torch.argmax(seen[0]))  # the probe visits -r, then +r
    torch.testing.assert_close(delta, torch.full_like(theta, (-r, r)[worse]))


def test_a_tiny_zeroth_order_run_respects_the_budget_and_the_sample_limit():
    chip = M.chip_of(0)
    task = M.build_task(chip, 0, front="dct", back=True)
    theta0 = M.random_start(chip, 0)
    settings = {**M.SCRATCH, "q": 2}
    theta, meter, steps = M.train_zo(chip, task, theta0, 24, seed=0, ascent="probe", **settings)
    assert meter.ledger.reconfigurations <= 24 and steps == 4
    assert meter.ledger.samples <= M.MAX_SAMPLES * meter.ledger.reconfigurations
    assert np.all(theta >= chip.space.lower) and np.all(theta <= chip.space.upper)


def test_section_from_the_saved_rows_holds_the_targets_and_no_reading():
    import json

    saved = json.loads((M.OUT / "rows.json").read_text())
    tuning = json.loads((M.OUT / "tuning.json").read_text())
    rows, meta = saved["rows"], saved["meta"]
    body = M.render(rows, meta, tuning=tuning, figs=M.FIGS)
    gap = M.gaps(rows, "zo/average").mean()
    targets = body.split("### Targets")[1].split("### From scratch")[0]
    first = next(line for line in targets.splitlines() if line.startswith("| fine-tuning"))
    assert f"gap {gap:+.2f} pp" in first
    assert first.endswith(f"| {'**met**' if gap <= 1.5 else '**missed**'} |")
    assert sum(line.startswith("| ") for line in targets.splitlines()) == 2 + 3
    assert "Reading:" not in body  # the reading is written by people, in its own section
