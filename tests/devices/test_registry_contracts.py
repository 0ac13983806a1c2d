"""Registry-driven contracts: every registered estimator (plain and inside SAT) and every
registered surrogate kind, on every registered device (its small configuration from
``test_contract.SMALL``), through the same checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_contract import SMALL

from blacksat.builder import EstimatorSpec, SatSpec, build_estimator
from blacksat.data import load_digits, load_iris
from blacksat.devices import DEVICES
from blacksat.devices.tasks import default_task
from blacksat.errors import ConfigError
from blacksat.estimators import ESTIMATORS, estimator_state
from blacksat.meter import MeteredDevice
from blacksat.objective import StepContext
from blacksat.surrogates import SURROGATES, collect, local
from blacksat.surrogates.files import load_surrogate, save_surrogate

#: small arguments per estimator (a zeroth-order step on a device of d controls stays cheap)
ESTIMATOR_ARGS = {
    "autograd": {},
    "physics_aware": {},
    "zeroth_order": {"q": 2},
    "layered_response": {"sigma": 0.02, "probes": 2},
}
#: a fit of a few steps per surrogate kind (the contract is the machinery, not the quality)
SURROGATE_ARGS = {
    "greybox": {"steps": 3},
    "residual": {"steps": 3, "hidden": (8,)},
    "ensemble": {"steps": 3, "members": 2, "hidden": (8,)},
    "linear_response": {"knots": 4, "response": "linear"},
}


def test_every_registered_estimator_and_surrogate_has_arguments_here():
    assert set(ESTIMATOR_ARGS) == set(ESTIMATORS)
    assert set(SURROGATE_ARGS) == set(SURROGATES)


@pytest.fixture(scope="module", params=sorted(SMALL))
def problem(request):
    name = request.param
    # a diffractive network reads images: the digits, one detector region per class
    images = name == "diffractive"
    kwargs = {**SMALL[name], **DEVICES[name].quiet_config, **({"n_classes": 10} if images else {})}
    chip = DEVICES[name](**kwargs, seed=0)
    data = load_digits(seed=0) if images else load_iris(seed=0)
    task = default_task(chip, data, seed=0).to(torch.float64)
    return chip, task


@pytest.mark.parametrize("name", sorted(ESTIMATOR_ARGS))
@pytest.mark.parametrize("with_sat", [False, True], ids=["plain", "sat"])
def test_estimator_contract(problem, name, with_sat):
    chip, task = problem
    meter = MeteredDevice(chip)
    sat_spec = SatSpec(rho=0.05) if with_sat else None
    args = dict(ESTIMATOR_ARGS[name])
    if name == "layered_response":
        if getattr(chip, "weight_banks", None) is None:  # it needs the device's wiring
            with pytest.raises(ConfigError, match="weight_banks"):
                build_estimator(EstimatorSpec(name, args=args), task=task, device=meter, chip=chip)
            return
        args["inputs"] = int(np.prod(chip.input_shape)) + 8  # enough to identify a response
    built = build_estimator(
        EstimatorSpec(name, args=args),
        sat_spec,
        task=task,
        device=meter,
        chip=chip,
        dtype=torch.float64,
    )
    est = built.estimator
    theta = torch.as_tensor(chip.initial_controls(0), dtype=torch.float64)
    before = theta.clone()
    batch = task.batch("train", np.arange(8))
    e = est(theta, batch, StepContext(np.random.default_rng(0)))
    assert torch.equal(theta, before)  # never mutated
    assert e.grad.shape == (chip.space.dim,) and e.grad.dtype == torch.float64
    assert torch.isfinite(e.grad).all() and np.isfinite(e.loss)
    assert e.cost == meter.ledger  # everything it spent, as the meter counted it
    assert e.cost.reconfigurations <= built.settings_per_step  # the held setting may be reused
    assert e.cost.queries > 0 or built.settings_per_step == 0
    losses, cost = est.evaluate(
        torch.stack([theta, theta]), batch, StepContext(np.random.default_rng(0))
    )
    assert losses.shape == (2,) and torch.isfinite(losses).all()
    assert cost.reconfigurations <= 2 * est.settings_per_evaluation
    state = estimator_state(est)
    assert state is None or isinstance(state, dict)


@pytest.mark.parametrize("kind", sorted(SURROGATE_ARGS))
def test_surrogate_contract(problem, kind, tmp_path):
    chip, _ = problem
    rng = np.random.default_rng(0)
    # a response surrogate identifies each setting's response from its inputs: enough of them
    n_in = int(np.prod(chip.input_shape))
    n_x = (n_in + 1) * 5 // 4 + 4 if kind == "linear_response" else 4
    x = rng.uniform(0.0, 1.0, (n_x, *chip.input_shape))
    centre = chip.initial_controls(0)
    data = collect(chip, local(chip.space, centre, 0.2, 12, seed=0), x).data
    nominal = chip.nominal_model(dtype=torch.float64)
    args = {**SURROGATE_ARGS[kind], "seed": 0}
    cls = SURROGATES[kind]
    sur = cls(nominal, **args) if cls.needs_physics else cls(**args)
    assert sur.fit(data) is sur and sur.report_ is not None
    thetas = torch.as_tensor(local(chip.space, centre, 0.2, 3, seed=1))
    xs = torch.as_tensor(x)
    with torch.no_grad():
        y = sur(thetas, xs)
        assert y.shape == (3, n_x, *chip.output_shape) and torch.isfinite(y).all()
    assert sur.coverage_ is not None and sur.coverage_.n_settings == 12
    back, meta = load_surrogate(save_surrogate(sur, tmp_path / "s.pt", {"d": 1}), nominal)
    assert meta == {"d": 1}
    with torch.no_grad():
        torch.testing.assert_close(back(thetas, xs), y, rtol=0, atol=0)
    assert back.coverage_ == sur.coverage_
