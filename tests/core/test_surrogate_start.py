"""The surrogate start of the query-only default: where the structure holds it trains offline and
the device confirms; where it does not, it stops early and says why; every query is charged."""

from __future__ import annotations

import numpy as np
import pytest

from blacksat import MeteredDevice
from blacksat.evaluation import accuracy
from blacksat.query_plan import FINE_TUNE_LR, QueryPlan, plan_query_only
from blacksat.surrogate_start import (
    BLOCK_READS,
    MAX_BLOCK_RATIO,
    MAX_SHARE,
    PROBE,
    REPEAT_READS,
    StartReport,
    block_ratio,
    design_size,
    probe_inputs,
    surrogate_start,
)


def _with_task(chip, seed: int):
    """``(chip, its default digits task with the digital layers frozen)``."""
    from blacksat.data import load_dataset
    from blacksat.devices.tasks import default_task

    task = default_task(chip, load_dataset("digits"), seed=seed)
    for p in task.digital_parameters():
        p.requires_grad_(False)
    return chip, task


def _crossbar(seed: int = 0):
    from blacksat.devices import Crossbar

    return _with_task(Crossbar(seed=seed), seed)


def _mesh(seed: int = 0):
    from blacksat.devices import MZIMesh

    return _with_task(MZIMesh(n_modes=10, seed=seed), seed)


def _mrr(layer_sizes: tuple[int, ...], seed: int = 0):
    from blacksat.devices import MRRWeightBank

    return _with_task(MRRWeightBank(layer_sizes=layer_sizes, seed=seed), seed)


def test_design_size_grows_with_log_d():
    assert design_size(320) == 93
    assert design_size(2368) == 125
    assert design_size(2) == 2 * PROBE  # never below two probes


def test_probe_inputs_span_the_declared_range_else_the_encoded_training_range():
    import torch

    chip, task = _crossbar()  # declares the inputs it accepts
    lo, hi = chip.input_range
    x = probe_inputs(task, chip, 300, np.random.default_rng(0))
    assert x.shape == (300, *chip.input_shape)
    assert x.min() >= lo and x.max() <= hi and x.max() - x.min() > 0.9 * (hi - lo)
    chip, task = _mesh()  # declares nothing: the range of what the task sends
    assert getattr(chip, "input_range", None) is None
    x = probe_inputs(task, chip, 300, np.random.default_rng(0))
    with torch.no_grad():
        enc = task.encode(torch.as_tensor(task.data.split("train")[0], dtype=task.dtype)).numpy()
    assert np.all(x >= enc.min(0) - 1e-6) and np.all(x <= enc.max(0) + 1e-6)


def test_on_a_crossbar_it_trains_and_the_device_confirms():
    chip, task = _crossbar()
    meter = MeteredDevice(chip, max_reconfigurations=1000)
    start = chip.space.center.copy()
    theta, rep = surrogate_start(task, meter, start, budget=1000, batch=256, seed=0)
    assert rep.outcome == "trained", rep
    assert rep.response == "linear" and rep.fit_r2 is not None and rep.fit_r2 > 0.9
    assert rep.loss_after < rep.loss_before
    # the design, then one reconfiguration per setting of the device check
    assert rep.reconfigurations == design_size(chip.space.dim) + BLOCK_READS + REPEAT_READS + 2
    assert meter.ledger.reconfigurations == rep.reconfigurations
    assert chip.space.contains(theta)
    assert accuracy(task, chip, theta) > accuracy(task, chip, start) + 0.5


def test_a_budget_too_small_for_the_design_spends_nothing():
    chip, task = _crossbar()
    meter = MeteredDevice(chip, max_reconfigurations=100)
    theta, rep = surrogate_start(task, meter, chip.space.center, budget=100, batch=256, seed=0)
    assert rep.outcome == "skipped" and f"{MAX_SHARE:.0%}" in rep.reason
    assert meter.ledger.reconfigurations == 0 and rep.reconfigurations == 0
    np.testing.assert_array_equal(theta, chip.space.center)


def test_too_few_inputs_per_setting_to_identify_a_response_spend_nothing():
    chip, task = _crossbar()
    meter = MeteredDevice(chip)
    _, rep = surrogate_start(task, meter, chip.space.center, budget=10_000, batch=12, seed=0)
    assert rep.outcome == "skipped" and "cannot identify" in rep.reason
    assert meter.ledger.reconfigurations == 0


def test_a_declared_network_of_banks_stops_before_any_query_unless_asked():
    chip, task = _mrr((64, 12, 10))
    meter = MeteredDevice(chip)
    theta, rep = surrogate_start(task, meter, chip.space.center, budget=10_000, batch=256, seed=0)
    assert rep.outcome == "skipped" and "network of 2 weight banks" in rep.reason
    assert meter.ledger.reconfigurations == 0 == rep.reconfigurations
    np.testing.assert_array_equal(theta, chip.space.center)
    # asked to probe it anyway, the locality test turns it away (its coefficients are products)
    _, rep = surrogate_start(
        task, meter, chip.space.center, budget=10_000, batch=256, seed=0, networks=True
    )
    assert rep.outcome == "skipped" and "every coefficient" in rep.reason
    assert rep.locality is not None and rep.locality >= MAX_BLOCK_RATIO
    assert meter.ledger.reconfigurations == PROBE + BLOCK_READS + REPEAT_READS
    # a single bank is not a network: the start goes on to its next stage
    chip1, task1 = _mrr((64, 10))
    _, rep1 = surrogate_start(task1, chip1, chip1.space.center, budget=100, batch=256, seed=0)
    assert rep1.outcome == "skipped" and f"{MAX_SHARE:.0%}" in rep1.reason  # the next stage


def test_an_interfering_mesh_stops_after_the_probe():
    chip, task = _mesh()
    meter = MeteredDevice(chip)
    start = chip.space.center.copy()
    theta, rep = surrogate_start(task, meter, start, budget=10_000, batch=256, seed=0)
    assert rep.outcome == "skipped" and rep.response == "intensity"
    # the intensity response holds, the locality test turns it away
    assert rep.locality is not None and rep.locality >= MAX_BLOCK_RATIO
    assert "every coefficient" in rep.reason
    n = PROBE + BLOCK_READS + REPEAT_READS
    assert rep.reconfigurations == n == meter.ledger.reconfigurations
    np.testing.assert_array_equal(theta, start)


def test_the_locality_test_passes_a_crossbar_and_a_noiseless_one():
    """A local device passes the locality test whether or not its readings are noisy (changes
    below 1 % of a coefficient's spread count as none)."""
    from blacksat.devices import Crossbar

    for noise in (None, 0.0):
        chip, task = _crossbar()
        if noise is not None:
            chip = Crossbar(seed=0, noise=noise, drift=0.0, program_noise=0.0)
        _, rep = surrogate_start(task, MeteredDevice(chip), chip.space.center, budget=1000,
                                 batch=256, seed=0)  # fmt: skip
        assert rep.locality is not None and rep.locality < MAX_BLOCK_RATIO, rep
        assert rep.outcome in ("trained", "kept")


def test_the_locality_test_redraws_a_block_inside_the_space_and_on_its_levels():
    from blacksat.space import ParamSpace
    from blacksat.surrogate_start import BLOCK, _locality_reads

    levels = np.linspace(0.0, 1.0, 5)
    space = ParamSpace.box(64, 0.0, 1.0, levels=levels)
    probe = np.random.default_rng(0).choice(levels, size=(PROBE, 64))
    reads = _locality_reads(space, probe, np.random.default_rng(1))
    assert reads.shape == (BLOCK_READS + REPEAT_READS, 64)
    assert np.all(np.isin(reads, levels)) and space.contains(reads)
    moved = (reads[:BLOCK_READS] != probe[:BLOCK_READS]).sum(axis=1)
    assert np.all(moved <= round(BLOCK * 64))  # only the block moves (a level may repeat)
    assert np.all(moved >= 1)
    np.testing.assert_array_equal(
        reads[BLOCK_READS:], probe[BLOCK_READS : BLOCK_READS + REPEAT_READS]
    )


def test_block_ratio_reads_a_redrawn_block_against_a_second_reading():
    """Synthetic coefficients: moves only in the redrawn reads give a large ratio; moves as large
    as a second reading's give one."""
    from blacksat.querydata import QueryData

    rng = np.random.default_rng(0)
    x = rng.random((40, 3))
    w = rng.normal(size=(PROBE, 2, 3))
    y = np.einsum("koi,bi->kbo", w, x)
    probe = QueryData.from_arrays(rng.random((PROBE, 5)), x, y)
    n = BLOCK_READS + REPEAT_READS
    w_test = w[:n].copy()
    w_test[:BLOCK_READS] += rng.normal(size=(BLOCK_READS, 2, 3))  # every coefficient moves
    test = QueryData.from_arrays(rng.random((n, 5)), x, np.einsum("koi,bi->kbo", w_test, x))
    assert block_ratio(probe, test, "linear") > 10
    w_test[:BLOCK_READS] = w[:BLOCK_READS]  # nothing moves: a local device's untouched median
    test = QueryData.from_arrays(rng.random((n, 5)), x, np.einsum("koi,bi->kbo", w_test, x))
    assert block_ratio(probe, test, "linear") == pytest.approx(1.0)


def test_a_meter_that_runs_out_during_the_design_stops_the_start_and_counts_it():
    """The run's budget says the design is affordable, the meter says otherwise: the start stops
    where the meter ran out, with no refit on partial data."""
    chip, task = _crossbar()
    meter = MeteredDevice(chip, max_reconfigurations=60)
    theta, rep = surrogate_start(task, meter, chip.space.center, budget=10_000, batch=256, seed=0)
    assert rep.outcome == "skipped" and "during the design" in rep.reason
    assert rep.reconfigurations == 60 == meter.ledger.reconfigurations and rep.fit_r2 is None
    np.testing.assert_array_equal(theta, chip.space.center)


def test_a_probe_whose_coefficients_never_vary_stops_the_start(monkeypatch):
    import blacksat.surrogate_start as ss

    chip, task = _crossbar()
    monkeypatch.setattr(ss, "block_ratio", lambda *a: float("nan"))
    meter = MeteredDevice(chip)
    _, rep = surrogate_start(task, meter, chip.space.center, budget=1000, batch=256, seed=0)
    assert rep.outcome == "skipped" and "no response coefficient varies" in rep.reason
    assert rep.reconfigurations == PROBE + BLOCK_READS + REPEAT_READS
    assert rep.locality is None  # never NaN in a report that goes into plan.json


def test_the_device_check_keeps_the_start_when_the_trained_setting_is_worse(monkeypatch):
    """The surrogate's setting is kept only when the device confirms it: here the offline
    training is made to return a setting far from anything good."""
    from blacksat import trainer as trainer_mod

    chip, task = _crossbar()
    bad = np.random.default_rng(1).uniform(chip.space.lower, chip.space.upper)  # loss ~2.6

    class _Result:
        theta = bad

    monkeypatch.setattr(trainer_mod.Trainer, "fit", lambda self, theta: _Result())
    meter = MeteredDevice(chip)
    start = chip.space.center.copy()
    theta, rep = surrogate_start(task, meter, start, budget=1000, batch=256, seed=0)
    assert rep.outcome == "kept" and rep.loss_after >= rep.loss_before
    np.testing.assert_array_equal(theta, start)


def test_the_plan_continues_from_the_start_and_charges_it():
    chip, task = _crossbar()
    meter = MeteredDevice(chip, max_reconfigurations=1000)
    # the zeroth-order plan after the start (the crossbar declares its wiring: the default
    # fine-tunes with the layered response, checked at the end)
    plan = plan_query_only(task, meter, chip.space.center, budget=1000, seed=0, layered=False)
    assert plan.start is not None and plan.start["outcome"] == "trained"
    assert plan.start_theta is not None
    assert meter.ledger.reconfigurations == plan.calibration_reconfigurations
    assert plan.calibration_reconfigurations > plan.start["reconfigurations"]
    assert plan.steps == (1000 - plan.calibration_reconfigurations) // (2 * plan.q)
    # fine-tuning a trained start: steps no larger than FINE_TUNE_LR of the span, whatever the
    # radius-based step would have been
    assert plan.lr <= FINE_TUNE_LR * plan.span + 1e-12
    capped = plan_query_only(
        task, MeteredDevice(chip, max_reconfigurations=1000), chip.space.center, budget=1000,
        seed=0, fine_tune_lr=0.001, layered=False,
    )  # fmt: skip
    assert capped.lr == pytest.approx(0.001 * capped.span)
    assert capped.sigma <= 3 * capped.lr + 1e-12  # the radius follows the step down
    np.testing.assert_array_equal(plan.initial(chip.space.center), plan.start_theta)
    again = QueryPlan.from_dict(plan.to_dict())
    assert again == plan
    # a plan saved before the start existed resumes without one
    old = {k: v for k, v in plan.to_dict().items() if k not in ("start", "start_theta")}
    legacy = QueryPlan.from_dict(old)
    assert legacy.start is None
    np.testing.assert_array_equal(legacy.initial(chip.space.center), chip.space.center)
    # the default fine-tunes the trained start with the layered response, at the same step cap
    chip, task = _crossbar()  # a fresh chip: the same start
    layered = plan_query_only(
        task, MeteredDevice(chip, max_reconfigurations=1000), chip.space.center, budget=1000,
        seed=0,
    )  # fmt: skip
    assert layered.estimator == "layered_response" and layered.start["linear"] is True
    assert layered.start_theta == plan.start_theta
    assert layered.calibration_reconfigurations == plan.start["reconfigurations"]
    assert layered.lr == pytest.approx(FINE_TUNE_LR * layered.span)
    # it reads the current setting on training samples; a layered plan saved before that was a
    # field resumes reading it on the probe inputs, as it ran
    assert layered.anchor == "batch"
    assert layered.estimator_spec().args["anchor"] == "batch"
    saved = {k: v for k, v in layered.to_dict().items() if k != "anchor"}
    assert QueryPlan.from_dict(saved).estimator_spec().args["anchor"] == "probes"


def test_report_round_trip_and_text():
    rep = StartReport(
        "skipped", "why", 30, design=93, additive=0.1, locality=2.2, response="intensity"
    )
    assert StartReport.from_dict(rep.to_dict()) == rep
    # a report saved before the locality test has no such field
    old = {k: v for k, v in rep.to_dict().items() if k != "locality"}
    assert StartReport.from_dict(old).locality is None
    assert "skipped" in str(rep) and "30" in str(rep)


@pytest.mark.parametrize("budget", [250, 1000])
def test_the_start_is_the_default_of_the_compare_method(budget):
    """The ``compare`` method ``blacksat`` (the query-only default) starts from the surrogate
    on a crossbar: far above where zeroth-order steps alone get at these budgets."""
    from blacksat.product.compare import Scenario, run_one

    row = run_one("blacksat", Scenario(device="crossbar"), 0, 0, budget)
    assert row["reconfigurations"] <= budget
    assert row["test_accuracy"] > 0.75
