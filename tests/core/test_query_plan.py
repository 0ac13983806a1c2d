"""The query-only default: cost model, calibration, budget accounting, composition with SAT."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from blacksat import ConfigError, MeteredDevice
from blacksat.builder import SatSpec, build_estimator
from blacksat.query_plan import (
    FIRST_RUNG,
    CostModel,
    Q,
    QueryPlan,
    cost_model_of,
    level_step,
    plan_query_only,
)
from blacksat.space import ParamSpace

#: these tests cover the zeroth-order plan on the crossbar, which declares its wiring: the layered
#: response is turned off here (``tests/core/test_layered_response.py`` covers it)
plan_query_only = functools.partial(plan_query_only, layered=False)


def _setup(seed: int = 0, **kwargs):
    from blacksat.data import load_dataset
    from blacksat.devices import Crossbar
    from blacksat.devices.tasks import default_task

    chip = Crossbar(seed=seed, **kwargs)
    task = default_task(chip, load_dataset("digits"), seed=seed)
    for p in task.digital_parameters():
        p.requires_grad_(False)
    return chip, task


QUIET = {"program_noise": 0.0, "noise": 0.0, "drift_exponent": 0.0, "drift_exponent_spread": 0.0}


# ---------------------------------------------------------------------- cost model
def test_cost_model_arithmetic():
    cm = CostModel(1e-3, 1e-5)
    assert cm.seconds(10, 1000) == pytest.approx(0.02)
    assert cm.balanced_batch(1347) == 100  # as long reading as reconfiguring
    assert cm.balanced_batch(50) == 50  # never more than the split
    assert CostModel(1e-6, 1e-5).balanced_batch(1347) == 32  # floor
    assert CostModel(1e-3, 0.0).balanced_batch(1347) == 1347  # free samples: the whole split
    assert cm.reconfigurations_for(1.0, 100) == 500


@pytest.mark.parametrize(
    "args", [(-1.0, 1e-5), (0.0, 0.0), (float("nan"), 1e-5), (1e-3, float("inf"))]
)
def test_cost_model_rejects_bad_values(args):
    with pytest.raises(ConfigError):
        CostModel(*args)


def test_cost_model_declared_by_a_driver_is_found_through_the_meter():
    chip, _ = _setup()
    chip.cost_model = {"seconds_per_reconfiguration": 2e-3, "seconds_per_sample": 1e-6}
    assert cost_model_of(MeteredDevice(chip)) == CostModel(2e-3, 1e-6)
    chip.cost_model = {"per_write": 1.0}
    with pytest.raises(ConfigError, match="seconds_per_reconfiguration"):
        cost_model_of(MeteredDevice(chip))
    del chip.cost_model
    assert cost_model_of(MeteredDevice(chip)) is None


def test_level_step():
    assert level_step(ParamSpace.box(3, 0.0, 1.0)) == 0.0
    levels = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    space = ParamSpace(np.zeros(2), np.full(2, 2 * np.pi), levels=levels, period=2 * np.pi)
    assert level_step(space) == pytest.approx(2 * np.pi / 16)


# ---------------------------------------------------------------------- calibration
def test_calibration_is_charged_and_capped():
    chip, task = _setup()
    meter = MeteredDevice(chip, max_reconfigurations=1000)
    plan = plan_query_only(task, meter, chip.space.center, budget=1000, seed=0, start=False)
    assert plan.start is None and plan.start_theta is None
    assert meter.ledger.reconfigurations == plan.calibration_reconfigurations
    assert 0 < plan.calibration_reconfigurations <= 1000 // 4
    assert plan.steps == (1000 - plan.calibration_reconfigurations) // (2 * plan.q)
    assert plan.batch_size == 256
    walk = 8.0 * plan.span / np.sqrt(plan.steps * chip.space.dim)
    by_radius = max(3.0 * plan.calibrated_sigma, 0.02 * plan.span)
    assert plan.lr == pytest.approx(min(by_radius, walk))
    assert plan.sigma == pytest.approx(min(plan.calibrated_sigma, 3.0 * plan.lr))
    assert plan.ladder and all(r["needed"] == plan.ladder[0]["needed"] for r in plan.ladder)


def test_the_random_walk_bounds_the_step_and_the_step_bounds_the_radius():
    """Adam moves every control by about lr a step whatever the estimate's quality: the plan
    keeps lr * sqrt(steps * d) at `walk` spans, and the radius within sigma_per_lr steps."""
    chip, task = _setup()
    free = plan_query_only(task, MeteredDevice(chip), chip.space.center, budget=1000, seed=0,
                           walk=1e6, start=False)  # fmt: skip
    chip, task = _setup()  # a fresh chip: the same readings
    tight = plan_query_only(task, MeteredDevice(chip), chip.space.center, budget=1000, seed=0,
                            walk=0.05, start=False)  # fmt: skip
    assert tight.calibrated_sigma == free.calibrated_sigma  # the same calibration
    assert free.lr == pytest.approx(max(3.0 * free.calibrated_sigma, 0.02 * free.span))
    assert tight.lr == pytest.approx(0.05 * tight.span / np.sqrt(tight.steps * chip.space.dim))
    assert tight.lr < free.lr and tight.sigma == pytest.approx(3.0 * tight.lr)
    assert tight.sigma < tight.calibrated_sigma


def test_walk_floor_keeps_the_floor_and_caps_only_a_larger_step():
    """``walk_floor``: the walk bound never sets the step below that fraction of the span (here
    ``lr_floor``'s); a step the radius sets above it it still caps."""
    chip, task = _setup()
    below = plan_query_only(task, MeteredDevice(chip), chip.space.center, budget=1000, seed=0,
                            walk=0.05, start=False, walk_floor=0.02)  # fmt: skip
    assert below.lr == pytest.approx(0.02 * below.span)  # the bound alone would be far lower
    chip, task = _setup()
    above = plan_query_only(task, MeteredDevice(chip), chip.space.center, budget=1000, seed=0,
                            lr_floor=0.001, lr_per_sigma=1e3, start=False, walk=8.0,
                            walk_floor=0.02)  # fmt: skip
    bound = 8.0 * above.span / np.sqrt(above.steps * chip.space.dim)
    assert above.lr == pytest.approx(bound) and bound > 0.001 * above.span


def test_a_noise_free_device_gets_the_smallest_radius():
    chip, task = _setup(**QUIET)
    plan = plan_query_only(task, MeteredDevice(chip), chip.space.center, budget=1000, seed=0)
    assert plan.noise == 0.0
    assert plan.reason == "noise-free"
    assert plan.sigma <= FIRST_RUNG * plan.span + 1e-12


def test_more_noise_gives_a_larger_radius():
    sig = []
    for noise in (0.0, 0.3):
        chip, task = _setup(**{**QUIET, "program_noise": noise})
        plan = plan_query_only(task, MeteredDevice(chip), chip.space.center, budget=2000, seed=1)
        sig.append(plan.sigma)
    assert sig[1] >= 4 * sig[0]


def test_a_tiny_budget_skips_calibration_and_stays_within_it():
    chip, task = _setup()
    meter = MeteredDevice(chip, max_reconfigurations=20)
    plan = plan_query_only(task, meter, chip.space.center, budget=20, seed=0)
    assert meter.ledger.reconfigurations <= 5
    assert plan.steps == (20 - plan.calibration_reconfigurations) // (2 * Q)
    assert plan.sigma > 0


def test_a_budget_in_device_seconds():
    chip, task = _setup()
    cm = CostModel(1e-3, 1e-5)
    plan = plan_query_only(task, MeteredDevice(chip), chip.space.center, seconds=1.0,
                           cost_model=cm, seed=0)  # fmt: skip
    assert plan.batch_size == 100  # balanced by the cost model
    assert plan.budget == 500  # 1 s / (1 ms + 100 x 10 us)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "one of them"),
        ({"budget": 100, "seconds": 1.0}, "one of them"),
        ({"seconds": 1.0}, "cost model"),
        ({"budget": 0}, "budget"),
        ({"budget": 100, "q": 0}, "q"),
        ({"budget": 100, "beta1": 1.0}, "beta1"),
        ({"budget": 100, "beta1": -0.1}, "beta1"),
    ],
)
def test_plan_arguments_are_checked(kwargs, match):
    chip, task = _setup()
    with pytest.raises(ConfigError, match=match):
        plan_query_only(task, MeteredDevice(chip), chip.space.center, **kwargs)


def test_plan_round_trips_and_rejects_junk():
    chip, task = _setup()
    plan = plan_query_only(task, MeteredDevice(chip), chip.space.center, seconds=0.5,
                           cost_model=CostModel(1e-3, 1e-5), seed=0)  # fmt: skip
    again = QueryPlan.from_dict(plan.to_dict())
    assert again == plan
    with pytest.raises(ConfigError, match="not a query plan"):
        QueryPlan.from_dict({"q": 4})


def test_the_plan_sets_adams_momentum_and_old_plans_keep_theirs():
    chip, task = _setup()
    plan = plan_query_only(task, MeteredDevice(chip), chip.space.center, budget=300, seed=0)
    assert plan.beta1 == 0.5
    # the zeroth-order plan keeps its last setting, so it never backtracks (the layered one does)
    assert plan.keep == "last" and plan.backtrack is None
    cfg = plan.train_config(seed=0, progress=False, train_digital=False)
    assert tuple(cfg.optimizer_kwargs["betas"]) == (0.5, 0.999)
    other = plan_query_only(task, MeteredDevice(chip), chip.space.center, budget=300, seed=0,
                            beta1=0.9)  # fmt: skip
    assert tuple(other.train_config(seed=0).optimizer_kwargs["betas"]) == (0.9, 0.999)
    # a plan saved before beta1 was a field resumes with the momentum it ran with
    saved = plan.to_dict()
    del saved["beta1"]
    assert QueryPlan.from_dict(saved).beta1 == 0.9


def test_the_plan_is_reproducible():
    plans = []
    for _ in range(2):
        chip, task = _setup(seed=3)
        plans.append(plan_query_only(task, MeteredDevice(chip), chip.space.center,
                                     budget=600, seed=7))  # fmt: skip
    assert plans[0] == plans[1]


def test_the_plan_composes_with_sat():
    chip, task = _setup()
    meter = MeteredDevice(chip, max_reconfigurations=1000)
    plan = plan_query_only(task, meter, chip.space.center, budget=1000, seed=0)
    plain = build_estimator(plan.estimator_spec(), None, task=task, device=meter, chip=chip)
    with_sat = build_estimator(plan.estimator_spec(), SatSpec(rho=0.05), task=task,
                               device=meter, chip=chip)  # fmt: skip
    assert plain.settings_per_step == 2 * plan.q
    assert with_sat.settings_per_step == 4 * plan.q  # an ascent and a descent estimate
    cfg = plan.train_config(seed=0, progress=False, train_digital=False)
    assert cfg.lr == plan.lr and cfg.max_steps == plan.steps and cfg.schedule == "cosine"


def test_compare_method_blacksat_spends_its_budget_and_learns():
    from blacksat.product.compare import Scenario, run_one

    row = run_one("blacksat", Scenario(device="crossbar", ng_batch_size=256), 0, 0, 400)
    assert 400 - 8 < row["reconfigurations"] <= 400
    assert row["test_accuracy"] > 0.3  # chance is 0.1; the centre of the box reads ~0.1


def test_measure_cost_fits_reconfiguration_and_sample_times():
    chip, task = _setup()
    now = [0.0]

    class Slow:  # 20 ms to settle a setting, 1 ms per input, on a simulated clock
        space = chip.space
        input_shape, output_shape = chip.input_shape, chip.output_shape

        def query(self, theta, x):
            now[0] += 0.02 + 0.001 * len(x)
            return chip.query(theta, x)

        def query_many(self, thetas, x):
            return np.stack([self.query(t, x) for t in thetas])

    from blacksat.query_plan import measure_cost

    meter = MeteredDevice(Slow())
    x = task.encode(task.batch("train", np.arange(20)).features).numpy()
    cm = measure_cost(meter, chip.space.center, x, repeats=2, clock=lambda: now[0])
    assert meter.ledger.reconfigurations == 8  # every query was a reconfiguration, charged
    assert cm.seconds_per_reconfiguration == pytest.approx(0.02)
    assert cm.seconds_per_sample == pytest.approx(0.001)
    with pytest.raises(ConfigError, match="two inputs"):
        measure_cost(meter, chip.space.center, x[:1])


def test_compare_method_blacksat_hands_over_a_layered_run_that_never_progresses(monkeypatch):
    """Four MRR banks of 16 from the box centre: the layered run reads noise; at its second
    stall (shortened here to 3 steps) it hands over, and zeroth order spends the rest."""
    import dataclasses

    import blacksat.query_plan as qp
    from blacksat.product.compare import Scenario, run_one

    real_configure, real_handover, handed = qp.QueryPlan.configure, qp.plan_handover, []

    def configure(self, cfg, *, max_steps=None):
        out = real_configure(self, cfg, max_steps=max_steps)
        short = out.backtrack_patience is not None
        return dataclasses.replace(out, backtrack_patience=3) if short else out

    def handover(plan, *args, **kwargs):
        zo = real_handover(plan, *args, **kwargs)
        handed.append((plan, kwargs["spent"], zo))
        return zo

    monkeypatch.setattr(qp.QueryPlan, "configure", configure)
    monkeypatch.setattr(qp, "plan_handover", handover)
    sc = Scenario(device="mrr", device_kwargs={"layer_sizes": (64, 16, 16, 16, 10)})
    row = run_one("blacksat", sc, 0, 0, 600)
    assert len(handed) == 1
    layered, spent, zo = handed[0]
    assert layered.estimator == "layered_response" and zo.estimator == "zeroth_order"
    assert 0 < spent < 300 and zo.calibration_reconfigurations > spent
    assert 600 - 2 * zo.q < row["reconfigurations"] <= 600  # zeroth order spent the rest
    assert row["stop"] == "completed"
