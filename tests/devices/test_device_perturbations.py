"""The devices' physics perturbation models, nominal models at nuisance values, and model
families: the shipped models cover the rated ranges, and on the nominal physics a common-mode
control shift *is* the temperature drift."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blacksat.devices import DEVICES, DiffractiveNetwork, MRRWeightBank, MZIMesh
from blacksat.devices.perturbations import physics_perturbations, rated_extent, rated_nuisances
from blacksat.errors import ConfigError
from blacksat.perturbations import CommonMode, NuisanceModel, PerturbationModel

F64 = torch.float64
QUIET = dict(noise=0.0, drift=0.0, dtype="float64")
SMALL = {
    "mzi": dict(n_modes=4),
    "mrr": dict(layer_sizes=(6, 4, 3)),
    "diffractive": dict(n=16, n_classes=4),
    "crossbar": dict(layer_sizes=(6, 4, 3), program_noise=0.0),
}
DIFF_OFF = dict(
    n=16, n_classes=4, s_align=0.0, s_lut=0.0, crosstalk=0.0, phase_amplitude=0.0,
    illumination=0.0, saturation=0.0, gain_spread=0.0, **QUIET,
)  # fmt: skip


def _batch(dev, k=3, b=4, seed=0):
    rng = np.random.default_rng(seed)
    thetas = torch.as_tensor(dev.space.sample(rng, k), dtype=F64)
    x = torch.as_tensor(rng.uniform(0.0, 1.0, (b, *dev.input_shape)), dtype=F64)
    return thetas, x


def _thermal_delta(model: CommonMode, shift: float, d: int) -> torch.Tensor:
    """The common-mode worst case of ``model`` scaled to a shift of exactly ``shift``."""
    grad = torch.full((d,), np.sign(shift) or 1.0, dtype=F64)
    sub = model.scaled(abs(shift) / model.radius)
    return sub.worst(torch.zeros(d, dtype=F64), grad, None, None).delta


# ---------------------------------------------------------------------- nominal + nuisance
@pytest.mark.parametrize("dT", [-2.0, -0.7, 1.5])
def test_mrr_thermal_common_mode_equals_nominal_temperature_exactly(dT):
    dev = MRRWeightBank(layer_sizes=(6, 4, 3), **QUIET)
    thetas, x = _batch(dev)
    hot = dev.nominal_model(temperature=dT)(thetas, x)
    # the shipped "thermal" model, at a shift of 0.08 dT, applied to the controls
    delta = _thermal_delta(dev.perturbation_models()["thermal"], 0.08 * dT, dev.space.dim)
    assert torch.equal(delta, torch.full_like(delta, 0.08 * dT))
    shifted = dev.nominal_model()(thetas + delta, x)
    assert torch.equal(hot, shifted)  # bitwise, in float64
    assert not torch.allclose(hot, dev.nominal_model()(thetas, x), atol=1e-3)


@pytest.mark.parametrize("dT", [-2.0, 1.0])
def test_mzi_phase_drift_common_mode_equals_nominal_temperature(dT):
    dev = MZIMesh(n_modes=4, thermal_coeff=0.3, **QUIET)
    thetas, x = _batch(dev)
    hot = dev.nominal_model(temperature=dT)(thetas, x)
    delta = _thermal_delta(dev.perturbation_models()["phase_drift"], 0.3 * dT, dev.space.dim)
    torch.testing.assert_close(hot, dev.nominal_model()(thetas + delta, x), rtol=0, atol=1e-12)
    assert not torch.allclose(hot, dev.nominal_model()(thetas, x), atol=1e-3)


def test_diffractive_nominal_misalignment_uses_the_truths_resampling():
    dev = DiffractiveNetwork(**DIFF_OFF)
    thetas, x = _batch(dev, k=2, b=3)
    plain = dev.nominal_model()(thetas, x)
    zero = dev.nominal_model(rotation=0.0, shift_x=0.0, shift_y=0.0, scale=1.0)(thetas, x)
    assert torch.equal(zero, plain)
    moved = dict(rotation=1.5, shift_x=-1.0, scale=1.05)
    nominal = dev.nominal_model(**moved)(thetas, x)
    truth = dev.perturbed(**moved).exact_model()(thetas, x)  # an error-free chip
    torch.testing.assert_close(nominal, truth, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(nominal, plain, atol=1e-4)
    with pytest.raises(ConfigError):
        dev.nominal_model(scale=0.0)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_nominal_model_rejects_unknown_nuisances_and_defaults_to_nominal(name):
    dev = DEVICES[name](**SMALL[name], **QUIET)
    thetas, x = _batch(dev, k=2, b=2)
    defaults = {n.name: n.default for n in dev.nuisances}
    torch.testing.assert_close(
        dev.nominal_model(**defaults)(thetas, x), dev.nominal_model()(thetas, x), rtol=0, atol=0
    )
    with pytest.raises(ConfigError, match="no nuisance"):
        dev.nominal_model(humidity=0.5)
    with pytest.raises(ConfigError):
        dev.nominal_model(**{dev.nuisances[0].name: float("nan")})
    # a device deployed at other nuisance values keeps a nominal model at nominal values
    hot = dev.perturbed(**{dev.nuisances[0].name: dev.nuisances[0].rated[1]})
    torch.testing.assert_close(
        hot.nominal_model()(thetas, x), dev.nominal_model()(thetas, x), rtol=0, atol=0
    )


# ---------------------------------------------------------------------- model families
def test_model_family_is_cached_per_nuisance_tuple_with_lru_eviction():
    dev = MRRWeightBank(layer_sizes=(6, 4, 3), **QUIET)
    thetas, x = _batch(dev)
    fam = dev.model_family(cache_size=2)
    a = fam(temperature=1.0)
    assert fam(temperature=1.0) is a
    torch.testing.assert_close(a(thetas, x), dev.nominal_model(temperature=1.0)(thetas, x))
    assert fam() is fam(temperature=0.0)  # defaults resolved before the cache
    fam(temperature=-1.0)  # evicts temperature=1.0 (least recently used)
    assert fam(temperature=1.0) is not a
    with pytest.raises(ConfigError, match="no nuisance"):
        fam(rotation=1.0)
    with pytest.raises(ConfigError):
        dev.model_family("surrogate")
    with pytest.raises(ConfigError):
        dev.model_family(cache_size=0)


def test_exact_model_family_is_the_perturbed_truth():
    dev = MRRWeightBank(layer_sizes=(6, 4, 3), seed=4, **QUIET)
    thetas, x = _batch(dev)
    fam = dev.model_family("exact")
    torch.testing.assert_close(fam()(thetas, x), dev.exact_model()(thetas, x), rtol=0, atol=0)
    hot = fam(temperature=1.2)(thetas, x)
    torch.testing.assert_close(hot, dev.perturbed(temperature=1.2).exact_model()(thetas, x))
    # the truth's drift is not a pure control shift (heater law, crosstalk), but close to one
    assert not torch.allclose(hot, fam()(thetas, x), atol=1e-3)


# ---------------------------------------------------------------------- shipped models
def test_mrr_models_cover_the_rated_drift():
    dev = MRRWeightBank(layer_sizes=(6, 4, 3), offset=0.05, **QUIET)
    models = dev.perturbation_models()
    assert set(models) == {"thermal", "temperature", "fabrication"}
    assert models["thermal"].radius == pytest.approx(0.16) and models["thermal"].groups is None
    assert models["temperature"].ranges == {"temperature": (-2.0, 2.0)}
    assert models["fabrication"].radius == 0.05 and models["fabrication"].kind == "gaussian"
    assert rated_extent(dev, "temperature") == 2.0
    # every rated temperature is a common-mode shift inside the thermal set
    draws = np.stack(
        [models["thermal"].sample(torch.zeros(8, dtype=F64), np.random.default_rng(s)).delta
         for s in range(200)]
    )  # fmt: skip
    assert np.abs(draws).max() <= 0.16 and np.abs(draws).max() > 0.15


def test_mzi_and_diffractive_models_match_their_rated_ranges():
    mzi = MZIMesh(n_modes=4, thermal_coeff=-0.3, s_ps=0.1, **QUIET).perturbation_models()
    assert set(mzi) == {"phase_drift", "temperature", "phase_error"}
    assert mzi["phase_drift"].radius == pytest.approx(0.6)
    assert mzi["temperature"].ranges == {"temperature": (-2.0, 2.0)}
    assert mzi["phase_error"].radius == 0.1
    dev = DiffractiveNetwork(**SMALL["diffractive"], **QUIET)
    diff = dev.perturbation_models()
    mis = diff["misalignment"]
    assert mis.ranges == {n.name: n.rated for n in dev.nuisances}
    assert mis.center == {"rotation": 0.0, "shift_x": 0.0, "shift_y": 0.0, "scale": 1.0}
    assert diff["shift"].names == ("shift_x", "shift_y")
    assert diff["scale"].scaled(0.5).ranges == {"scale": (0.95, 1.05)}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_device_ships_valid_models_and_the_functional_form_agrees(name):
    dev = DEVICES[name](**SMALL[name], **QUIET)
    models = dev.perturbation_models()
    assert models and all(isinstance(m, PerturbationModel) for m in models.values())
    assert set(physics_perturbations(dev)) == set(models)
    theta = torch.as_tensor(dev.space.sample(np.random.default_rng(0), 1)[0])
    names = {n.name for n in dev.nuisances}
    for m in models.values():
        p = m.sample(theta, np.random.default_rng(1))
        assert set(p.nuisance) <= names
        assert p.delta is None or p.delta.shape == theta.shape
        if isinstance(m, NuisanceModel):  # sampled values build a valid perturbed device
            dev.perturbed(**p.nuisance)
    with pytest.raises(ConfigError):
        rated_nuisances(dev, "humidity")


def test_nuisance_adversary_runs_offline_on_the_nominal_family():
    dev = MRRWeightBank(layer_sizes=(6, 4, 3), **QUIET)
    thetas, x = _batch(dev, k=1, b=8)
    target = torch.zeros(8, 3, dtype=F64)
    fam = dev.model_family()

    def loss(nuisance):
        return float(((fam(**nuisance)(thetas[0], x) - target) ** 2).mean())

    calls = []

    def probe(perts):
        calls.append(len(perts))
        return torch.tensor([loss(p.nuisance) for p in perts])

    model = dev.perturbation_models()["temperature"].scaled(1.0)
    corners = NuisanceModel(model.ranges, method="corners")
    worst = corners.worst(thetas[0], None, probe, np.random.default_rng(0))
    assert calls == [2]
    grid = {t: loss({"temperature": t}) for t in np.linspace(-2, 2, 9)}
    assert loss(worst.nuisance) == max(grid[-2.0], grid[2.0])
    p = model.worst(thetas[0], None, probe, np.random.default_rng(0))
    assert calls == [2, 2] and -2.0 <= p.nuisance["temperature"] <= 2.0


def test_sat_with_a_device_nuisance_model_descends_at_the_worst_temperature():
    from blacksat.data import load_iris
    from blacksat.devices.tasks import default_task
    from blacksat.estimators import Autograd
    from blacksat.objective import StepContext
    from blacksat.sat import sat

    chip = MZIMesh(n_modes=4, **QUIET)
    task = default_task(chip, load_iris(seed=0), seed=0).to(F64)
    b = task.batch("train", np.arange(32))
    theta = torch.as_tensor(chip.space.sample(np.random.default_rng(1)))
    fam = chip.model_family()
    est = Autograd(chip.nominal_model(), task, family=fam)
    model = NuisanceModel({"temperature": (-2.0, 2.0)}, method="corners")
    g = sat(est, perturbation=model)(theta, b, StepContext(np.random.default_rng(0))).grad
    losses = {t: est.evaluate(theta[None], b, StepContext(np.random.default_rng(0),
                                                          nuisance={"temperature": t}))[0]
              for t in (-2.0, 2.0)}  # fmt: skip
    assert abs(float(losses[2.0] - losses[-2.0])) > 1e-6
    worst = max(losses, key=lambda t: float(losses[t]))
    ref = Autograd(chip.nominal_model(temperature=worst), task)(
        theta, b, StepContext(np.random.default_rng(0))
    ).grad
    torch.testing.assert_close(g, ref, rtol=1e-12, atol=1e-14)
    plain = est(theta, b, StepContext(np.random.default_rng(0))).grad
    assert not torch.allclose(g, plain, atol=1e-6)
