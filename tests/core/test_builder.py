"""The estimator builder: every registered estimator from the run-file vocabulary, SAT around
it, and the steps a budget allows from the estimator's own count."""

import numpy as np
import pytest
import torch

from blacksat import ConfigError
from blacksat.builder import EstimatorSpec, SatSpec, build_estimator
from blacksat.data import load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.estimators import ESTIMATORS
from blacksat.meter import MeteredDevice
from blacksat.perturbations import CommonMode
from blacksat.sat import SAT, FreeAscent


@pytest.fixture(scope="module")
def problem():
    chip = MZIMesh(n_modes=4, noise=0.0, drift=0.0, dtype="float64", seed=0)
    task = default_task(chip, load_iris(seed=0), seed=0).to(torch.float64)
    return chip, task


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_registered_estimator_builds_and_reports_its_cost(problem, name):
    chip, task = problem
    if name == "layered_response":  # a device with weight banks: tests/core/test_layered_response
        with pytest.raises(ConfigError, match="weight_banks"):
            build_estimator(EstimatorSpec(name, args={"sigma": 0.1}), task=task, device=chip)
        return
    meter = MeteredDevice(chip)
    built = build_estimator(EstimatorSpec(name), task=task, device=meter, chip=chip)
    assert isinstance(built.estimator, ESTIMATORS[name]) and built.base is built.estimator
    assert built.settings_per_step == {"autograd": 0, "physics_aware": 1, "zeroth_order": 16}[name]
    b = task.batch("train", np.arange(8))
    est = built.estimator(torch.as_tensor(chip.space.center), b, _ctx())
    assert est.cost.reconfigurations == built.settings_per_step


def _ctx():
    from blacksat.objective import StepContext

    return StepContext(np.random.default_rng(0))


def test_sat_from_specs_and_the_steps_a_budget_allows(problem):
    chip, task = problem
    meter = MeteredDevice(chip)
    grid = {"drift9": CommonMode(0.1, grid=9)}
    built = build_estimator(
        EstimatorSpec("zeroth_order", args={"q": 4}),
        SatSpec(perturbation="drift9"),
        task=task,
        device=meter,
        perturbations=grid,
    )
    assert isinstance(built.estimator, SAT) and built.settings_per_step == 17
    assert built.max_steps(1700) == 100 and built.max_steps(1700, spent=1683) == 1
    assert built.max_steps(None) is None
    free = build_estimator(
        EstimatorSpec("zeroth_order", args={"q": 4}),
        SatSpec(rho=0.1, ascent="free"),
        task=task,
        device=meter,
    )
    assert isinstance(free.estimator.ascent, FreeAscent) and free.settings_per_step == 8
    model = build_estimator(
        EstimatorSpec("zeroth_order", args={"q": 4}),
        SatSpec(rho=0.1, ascent="model"),
        task=task,
        device=meter,
        chip=chip,
    )
    assert model.estimator.ascent.name == "autograd" and model.settings_per_step == 8
    offline = build_estimator(EstimatorSpec("autograd"), SatSpec(rho=0.1), task=task, chip=chip)
    assert offline.settings_per_step == 0 and offline.max_steps(100) is None


@pytest.mark.parametrize(
    ("spec", "sat_spec", "match"),
    [
        (EstimatorSpec("zeroth_order", args={"q": 0}), None, "estimator.args"),
        (EstimatorSpec("zeroth_order"), SatSpec(perturbation="nope"), "no perturbation model"),
        (EstimatorSpec("zeroth_order"), SatSpec(perturbation="temperature"), "nuisance"),
        (EstimatorSpec("autograd", "runs/x.pt"), None, "surrogate file"),
    ],
)
def test_bad_specs_get_a_clear_error(problem, spec, sat_spec, match):
    chip, task = problem
    with pytest.raises(ConfigError, match=match):
        build_estimator(spec, sat_spec, task=task, device=MeteredDevice(chip), chip=chip)


@pytest.mark.parametrize(
    "kw",
    [{"draws": 0}, {"draws": True}, {"rho": -1.0}, {"rho": float("nan")}, {"ascent": "x"}],
)
def test_sat_spec_validates(kw):
    with pytest.raises(ConfigError):
        SatSpec(**kw)


def test_readout_noise_trains_autograd_through_a_noisy_model(problem):
    from blacksat.readout_noise import ReadoutNoise

    chip, task = problem
    b = task.batch("train", np.arange(16))
    theta = torch.as_tensor(chip.space.center)
    plain = build_estimator(EstimatorSpec("autograd", "exact"), task=task, chip=chip)
    noisy = build_estimator(
        EstimatorSpec("autograd", "exact", readout_noise=0.05), task=task, chip=chip
    )
    assert not isinstance(plain.model, ReadoutNoise)
    assert isinstance(noisy.model, ReadoutNoise) and float(noisy.model.std) == 0.05
    g0 = plain.estimator(theta, b, _ctx()).grad
    g1, g2 = (noisy.estimator(theta, b, _ctx()).grad for _ in range(2))
    assert not torch.equal(g1, g2) and not torch.equal(g0, g1)  # fresh noise at every step
    # the nuisance family draws from the same stream
    fam = noisy.estimator.family
    assert fam is not None
    y = fam()(theta, torch.as_tensor(np.ones((3, 4))))
    ref = chip.exact_model()(theta, torch.as_tensor(np.ones((3, 4))))
    assert y.shape == ref.shape and not torch.equal(y, ref)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"readout_noise": -0.1}, "readout_noise must be a finite number >= 0"),
        ({"readout_noise": float("nan")}, "readout_noise must be a finite number"),
        ({"readout_noise": True}, "readout_noise must be a finite number"),
        ({"name": "zeroth_order", "readout_noise": 0.01}, "reads the device's own noise"),
        ({"name": "physics_aware", "readout_noise": 0.01}, "reads the device's own noise"),
    ],
)
def test_bad_readout_noise_is_refused(kw, match):
    with pytest.raises(ConfigError, match=match):
        EstimatorSpec(**kw)


def test_readout_noise_from_a_run_file():
    from blacksat.product.run_config import RunConfig

    cfg = RunConfig.from_mapping(
        {
            "device": {"name": "mzi", "kwargs": {"n_modes": 4}},
            "estimator": {"name": "autograd", "readout_noise": 0.01},
        }
    )
    assert cfg.estimator.readout_noise == 0.01
    with pytest.raises(ConfigError, match=r"estimator\.readout_noise"):
        RunConfig.from_mapping({"device": {"name": "mzi"}, "estimator": {"readout_noise": "x"}})
