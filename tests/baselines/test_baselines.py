"""The in-situ and noisy-CMA baselines: reference implementations as oracles, convergence on a
quadratic, validation, reproducibility, and equal-budget runs on a metered device."""

from __future__ import annotations

import cmaes
import nevergrad as ng
import numpy as np
import pytest
import torch

import blacksat.baselines as B
from blacksat.baselines.pepg import centered_ranks, default_popsize
from blacksat.errors import ConfigError

D = 10
TARGET = np.linspace(-1.0, 1.0, D)


def quad(x: np.ndarray) -> float:
    return float(np.sum((np.asarray(x) - TARGET) ** 2))


#: settings that keep every baseline stable on the quadratic (FLOPS' published lr is for a
#: cross-entropy loss in radians and overshoots a unit-curvature quadratic)
STABLE = {"FLOPS": {"lr": 0.05}}


def build(name: str, seed: int = 0, d: int = D, **kwargs):
    kwargs = {**STABLE.get(name, {}), **kwargs}
    param = ng.p.Array(init=np.zeros(d))
    param.random_state = np.random.RandomState(seed)
    cls = B.BASELINES[name]
    return cls(param, budget=1000, num_workers=1, **kwargs)


def run(opt, f, evals: int) -> np.ndarray:
    for _ in range(evals):
        c = opt.ask()
        opt.tell(c, f(c.value))
    return np.asarray(opt.provide_recommendation().value)


def one_generation(opt, f) -> tuple[np.ndarray, np.ndarray]:
    n = opt.generation_left()
    cands = [opt.ask() for _ in range(n)]
    x = np.stack([c.value for c in cands])
    losses = np.array([f(v) for v in x])
    for c, loss in zip(cands, losses, strict=True):
        opt.tell(c, float(loss))
    return x, losses


def test_registered_in_nevergrad():
    for name, cls in B.BASELINES.items():
        assert ng.optimizers.registry[name] is cls


# ---------------------------------------------------------------------- reference oracles
def test_flops_step_matches_plain_formula():
    opt = build("FLOPS", n_sample=3, sigma=0.2, lr=0.1)
    x, losses = one_generation(opt, quad)
    assert x.shape == (4, D) and np.array_equal(x[0], np.zeros(D))
    u = (x[1:] - x[0]) / 0.2  # the directions, recovered from the settings
    g = sum((losses[i + 1] - losses[0]) / 0.2 * u[i] for i in range(3)) / 3
    np.testing.assert_allclose(opt.center, -0.1 * g, rtol=1e-12, atol=1e-12)


def test_pepg_generation_matches_plain_estool_update():
    opt = build("PEPG", popsize=6, sigma=0.3, lr=0.05, sigma_alpha=0.2)
    x, losses = one_generation(opt, quad)
    eps = x[:3]  # mu = 0: the first half are mu + eps
    np.testing.assert_allclose(x[3:], -eps)
    r = centered_ranks(-losses)
    change_mu = (r[:3] - r[3:]) @ eps
    # Adam, first step from zero moments: -lr * g / (|g| + eps) with g = -change_mu
    mu = 0.05 * change_mu / (np.abs(change_mu) + 1e-8)
    np.testing.assert_allclose(opt.center, mu, rtol=1e-6)
    sigma = np.full(D, 0.3)
    s = (eps**2 - sigma**2) / sigma
    change = 0.2 * (((r[:3] + r[3:]) / 2 - r.mean()) @ s) / 6
    want = (sigma + np.clip(change, -0.2 * sigma, 0.2 * sigma)) * 0.999
    np.testing.assert_allclose(opt.sigma, want, rtol=1e-12)


@pytest.mark.parametrize("name,cls", [("LRACMA", "CMA"), ("SepCMA", "SepCMA")])
def test_cmaes_wrappers_match_cmaes_directly(name, cls):
    opt = build(name, sigma=0.5)
    seed = int(np.random.RandomState(0).randint(2**31 - 1))
    kwargs = {"lr_adapt": True} if cls == "CMA" else {}
    ref = getattr(cmaes, cls)(mean=np.zeros(D), sigma=0.5, seed=seed, **kwargs)
    for _ in range(3):
        x, losses = one_generation(opt, quad)
        want = np.stack([ref.ask() for _ in range(ref.population_size)])
        np.testing.assert_allclose(x, want, rtol=1e-12)
        ref.tell(list(zip(want, losses, strict=True)))
    np.testing.assert_allclose(opt.center, ref.mean, rtol=1e-12)


def test_mixedtrain_greedy_rule_and_frozen_mask():
    opt = build("MixedTrain", param_sparsity=0.5, grad_sparsity=0.0, lr=0.05)
    frozen = ~opt.mask
    assert opt.mask.sum() == D // 2
    x = run(opt, quad, 2000)
    np.testing.assert_array_equal(x[frozen], 0.0)  # never touched
    # a greedy coordinate rule with step lr ends within one step of the optimum
    assert np.all(np.abs(x[opt.mask] - TARGET[opt.mask]) <= 0.05 + 1e-9)


def test_mixedtrain_accepts_minus_unconditionally():
    opt = build("MixedTrain", param_sparsity=0.0, grad_sparsity=0.0, lr=0.1, d=1)
    f = lambda v: float(v[0] ** 2)  # noqa: E731
    one_generation(opt, f)  # the step's center
    x, _ = one_generation(opt, lambda v: 5.0)  # + is no better
    assert x[0, 0] == pytest.approx(0.1)
    x, _ = one_generation(opt, lambda v: 9.0)  # - is worse still, and kept anyway
    assert x[0, 0] == pytest.approx(-0.1) and opt.center[0] == pytest.approx(-0.1)


# ---------------------------------------------------------------------- convergence
@pytest.mark.parametrize(
    "name,kwargs,evals,tol",
    [
        ("FLOPS", {"lr": 0.05, "n_sample": 4, "sigma": 0.05}, 3000, 0.05),
        ("PEPG", {"lr": 0.05}, 3000, 0.05),
        ("LRACMA", {}, 2000, 1e-3),
        ("SepCMA", {}, 2000, 1e-3),
        ("UHCMA", {}, 2000, 1e-3),
    ],
)
def test_converges_on_a_quadratic(name, kwargs, evals, tol):
    x = run(build(name, **kwargs), quad, evals)
    assert quad(x) < tol * quad(np.zeros(D))


def test_uhcma_on_a_noisy_quadratic_keeps_the_global_rng():
    rng = np.random.default_rng(5)
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    opt = build("UHCMA", max_evaluations=5)
    x = run(opt, lambda v: quad(v) + 0.05 * rng.standard_normal(), 3000)
    assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    assert quad(x) < 0.05 * quad(np.zeros(D))


@pytest.mark.parametrize("name", sorted(B.BASELINES))
def test_reproducible_from_the_parametrization_seed(name):
    a = run(build(name, seed=3), quad, 200)
    b = run(build(name, seed=3), quad, 200)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(B.BASELINES))
def test_failed_evaluations_never_break_a_run(name):
    calls = iter(range(10**6))

    def flaky(v):
        return float("nan") if next(calls) % 3 == 0 else quad(v)

    opt = build(name)
    for _ in range(300):
        c = opt.ask()
        loss = flaky(c.value)
        if np.isfinite(loss):
            opt.tell(c, loss)
        else:
            opt.drop(c)
    assert np.isfinite(opt.provide_recommendation().value).all()


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("FLOPS", {"n_sample": 0}),
        ("FLOPS", {"sigma": float("nan")}),
        ("FLOPS", {"gamma": 1.5}),
        ("MixedTrain", {"param_sparsity": 1.0}),
        ("MixedTrain", {"grad_sparsity": -0.1}),
        ("MixedTrain", {"lr": True}),
        ("PEPG", {"popsize": 5}),
        ("PEPG", {"sigma": 0.0}),
        ("LRACMA", {"population_size": 1}),
        ("SepCMA", {"sigma": -1.0}),
        ("UHCMA", {"max_evaluations": 0}),
    ],
)
def test_bad_hyperparameters_are_refused(name, kwargs):
    with pytest.raises(ConfigError):
        build(name, **kwargs)


def test_default_popsize_is_even_and_grows_with_dimension():
    assert default_popsize(10) % 2 == 0 and default_popsize(240) > default_popsize(10)


def test_torch_global_rng_untouched():
    state = torch.get_rng_state().clone()
    run(build("PEPG"), quad, 100)
    assert torch.equal(state, torch.get_rng_state())


# ---------------------------------------------------------------------- on a metered device
@pytest.fixture(scope="module")
def problem():
    from blacksat.data import load_digits
    from blacksat.devices import MZIMesh
    from blacksat.devices.tasks import default_task

    chip = MZIMesh(n_modes=16, seed=1)
    return chip, default_task(chip, load_digits())


@pytest.mark.parametrize("name", sorted(B.BASELINES))
def test_equal_budget_run_on_a_device_spends_exactly_the_budget(problem, name):
    from blacksat.meter import MeteredDevice
    from blacksat.ng.adapter import DeviceObjective, minimize

    chip, task = problem
    device = MeteredDevice(chip, max_reconfigurations=10_000)
    obj = DeviceObjective(task, device, batch_size=32, seed=0)
    kwargs = {"popsize": 8} if name == "UHCMA" else {}
    res = minimize(obj, name, budget=60, num_workers=16, seed=0, optimizer_kwargs=kwargs)
    assert res.stop == "budget" and res.ledger.reconfigurations == 60
    assert np.all(chip.space.lower <= res.theta) and np.all(res.theta <= chip.space.upper)
    if name in ("LRACMA", "SepCMA", "PEPG"):  # batches never straddle a generation
        pop = 4 + int(np.floor(3 * np.log(chip.space.dim)))  # 20 (even) at d = 240
        cuts = set(np.cumsum([t["told"] + t["skipped"] for t in res.trace]).tolist())
        assert {pop, 2 * pop} <= cuts


class _Repeater(ng.optimization.base.Optimizer):
    """Proposes every setting twice in a row (as OnePlusOne now and then re-proposes a point):
    the second costs no reconfiguration."""

    def _internal_ask_candidate(self):
        if self.num_ask % 2 == 0:
            self._last = self.parametrization.sample().value
        return self.parametrization.spawn_child(new_value=self._last)


def test_repeated_settings_do_not_end_a_run_early(problem):
    from blacksat.meter import MeteredDevice
    from blacksat.ng.adapter import ASK_LIMIT, DeviceObjective, minimize

    ng.optimizers.registry.register_name("TestRepeater", _Repeater)
    try:
        chip, task = problem
        device = MeteredDevice(chip, max_reconfigurations=10_000)
        obj = DeviceObjective(task, device, batch_size=32, seed=0)
        res = minimize(obj, "TestRepeater", budget=60, num_workers=1, seed=0)
        assert res.ledger.reconfigurations == 60 and res.stop == "budget"
        assert res.repeats == res.told + res.skipped_nonfinite - 60 and res.repeats >= 55

        # an optimizer that only repeats stops at the ask limit, reconfigurations unspent
        class _Stuck(ng.optimization.base.Optimizer):
            def _internal_ask_candidate(self):
                return self.parametrization.spawn_child()

        ng.optimizers.registry.register_name("TestStuck", _Stuck)
        res = minimize(obj, "TestStuck", budget=20, num_workers=4, seed=0)
        assert res.stop == "completed" and res.told == ASK_LIMIT * 20
        assert res.ledger.reconfigurations <= 1
    finally:
        for name in ("TestRepeater", "TestStuck"):
            if name in ng.optimizers.registry:
                ng.optimizers.registry.unregister(name)
