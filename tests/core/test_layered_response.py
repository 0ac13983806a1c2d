"""The layered response: the wiring, the model it fits, the estimator and the query plan."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from blacksat import MeteredDevice, TrainConfig, Trainer
from blacksat.builder import EstimatorSpec, build_estimator
from blacksat.data import load_digits, load_iris
from blacksat.devices import Crossbar, MRRWeightBank, MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.errors import ConfigError, InvalidReading
from blacksat.estimators import LayeredResponse
from blacksat.layered_response import (
    MEMORY,
    Bank,
    BankJacobian,
    banks_of,
    derived_probes,
    parse_banks,
    probe_changes,
    probe_signs,
    settings_per_step,
)
from blacksat.objective import StepContext
from blacksat.query_plan import (
    FINE_TUNE_LR,
    KEEP,
    LAYERED_BACKTRACK,
    LAYERED_BACKTRACK_PATIENCE,
    LAYERED_PLATEAU,
    LAYERED_SCHEME,
    QueryPlan,
    plan_query_only,
)


# ---------------------------------------------------------------------- the wiring
def test_banks_parse_from_tuples_and_check_the_chain_and_the_size():
    assert parse_banks([(3, 4), (2, 3, 2)], 3 * 4 + 2 * 3 * 2) == (Bank(3, 4), Bank(2, 3, 2))
    with pytest.raises(ConfigError, match="do not chain"):
        parse_banks([(3, 4), (2, 5)], 22)
    with pytest.raises(ConfigError, match="hold 12 controls, the device has 13"):
        parse_banks([(3, 4)], 13)
    with pytest.raises(ConfigError, match="sequence of"):
        parse_banks([(3, "x")], 12)
    with pytest.raises(ConfigError, match="positive"):
        parse_banks([(0, 4)], 0)


def test_devices_declare_their_wiring():
    mrr = MRRWeightBank(layer_sizes=(6, 4, 3), seed=0)
    assert banks_of(mrr) == (Bank(4, 6), Bank(3, 4))
    xbar = Crossbar(layer_sizes=(5, 3), seed=0)
    assert banks_of(xbar) == (Bank(3, 5, 2),)  # a differential pair per weight
    assert banks_of(MZIMesh(n_modes=4, seed=0)) is None
    assert MeteredDevice(mrr).weight_banks == mrr.weight_banks


def test_probes_are_derived_from_the_wiring():
    # the MRR network (64 -> 32 -> 10): 2368 slopes, 10 x 32 left and 32 x 65 right context,
    # against 10 x 65 numbers a probe
    assert derived_probes([Bank(32, 64), Bank(10, 32)]) == math.ceil(2 * 4768 / 650)
    assert derived_probes([Bank(10, 16, 2)]) == math.ceil(2 * 320 / 170)
    # one-sided probes: one more a step, which the step's centring spends
    net = [Bank(32, 64), Bank(10, 32)]
    assert derived_probes(net, 3, scheme="forward") == derived_probes(net, 3) + 1
    assert derived_probes([Bank(1, 1)], scheme="forward") == 2
    assert settings_per_step(5, "forward") == 6 and settings_per_step(5, "central") == 11


# ---------------------------------------------------------------------- the model
def _chain(sizes, blocks, seed):
    """A linear chain of banks whose weights are smooth curves of their controls: the exact
    response matrix ``A(theta) (n_out, n_in + 1)`` (no bias) and its dimension."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(o, i) for i, o in itertools.pairwise(sizes)]
    scales = [torch.rand(b, o, i, generator=gen, dtype=torch.float64) + 0.5
              for (o, i), b in zip(shapes, blocks, strict=True)]  # fmt: skip
    signs = [torch.tensor([1.0, -1.0][:b], dtype=torch.float64) for b in blocks]

    def response(theta):
        a, start = None, 0
        for (o, i), b, sc, sg in zip(shapes, blocks, scales, signs, strict=True):
            part = theta[start : start + b * o * i].reshape(b, o, i)
            w = (sg[:, None, None] * sc * torch.sin(1.5 * part)).sum(0)
            a = w if a is None else w @ a
            start += b * o * i
        return torch.cat([a, torch.zeros(a.shape[0], 1, dtype=a.dtype)], 1)

    return response, sum(b * o * i for (o, i), b in zip(shapes, blocks, strict=True)), shapes


@pytest.mark.parametrize(
    ("sizes", "blocks"),
    [((5, 3), (2,)), ((6, 4, 3), (1, 1)), ((5, 4, 3, 2), (1, 1, 1))],
    ids=["one bank, pairs", "two banks", "three banks"],
)
def test_the_fit_recovers_the_gradient_of_a_chain_of_banks(sizes, blocks):
    response, d, shapes = _chain(sizes, blocks, seed=0)
    banks = [Bank(o, i, b) for (o, i), b in zip(shapes, blocks, strict=True)]
    theta = torch.rand(d, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 0.5
    jac = torch.func.jacrev(response)(theta)  # (n_out, n_in + 1, d)
    k = derived_probes(banks)
    r = torch.as_tensor(np.random.default_rng(0).choice([-1.0, 1.0], size=(k, d)))
    eps = 1e-3
    da = torch.stack([response(theta + eps * v) - response(theta - eps * v) for v in r])
    model = BankJacobian(banks, seed=0)
    r2 = model.fit(da, 2 * eps * r, sweeps=200)
    assert r2 > 0.999
    g_a = torch.randn(sizes[-1], sizes[0] + 1, generator=torch.Generator().manual_seed(2))
    g_a = g_a.to(torch.float64)
    exact = torch.einsum("oad,oa->d", jac, g_a)
    got = model.grad(g_a)
    cos = float(got @ exact / (got.norm() * exact.norm()))
    assert cos > 0.99, cos


@pytest.mark.parametrize(
    ("sizes", "blocks"), [((5, 3), (2,)), ((4, 3), (1,))], ids=["one bank, pairs", "one bank"]
)
def test_centred_one_sided_probes_cancel_the_controls_own_curvature(sizes, blocks):
    """Each weight a curve of its own control(s): one-sided probes at a radius where the curves
    bend (``sin(1.5 theta)`` at 0.15) read a second-order change that is the same for every
    random-sign probe; centred over the step it cancels, and the fit is as good as from
    antithetic pairs at twice the reconfigurations. Uncentred, the same probes leave it in the
    residual; with independent signs, controls whose signs all agree go unidentified."""
    response, d, shapes = _chain(sizes, blocks, seed=0)
    banks = [Bank(o, i, b) for (o, i), b in zip(shapes, blocks, strict=True)]
    theta = torch.rand(d, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 0.5
    jac = torch.func.jacrev(response)(theta)
    g_a = torch.randn(sizes[-1], sizes[0] + 1, generator=torch.Generator().manual_seed(2))
    exact = torch.einsum("oad,oa->d", jac, g_a.to(torch.float64))
    k = derived_probes(banks, scheme="forward")
    r = probe_signs(k, d, "forward", np.random.default_rng(0))
    eps = 0.15
    sent = theta + eps * r
    a = torch.stack([response(t) for t in sent])

    def fitted(da, delta):
        model = BankJacobian(banks, seed=0)
        r2 = model.fit(da, delta, sweeps=200)
        got = model.grad(g_a.to(torch.float64))
        return r2, float(got @ exact / (got.norm() * exact.norm()))

    r2, cos = fitted(*probe_changes(a, sent, theta, "forward"))
    assert r2 > 0.9999 and cos > 0.99, (r2, cos)
    raw_r2, _ = fitted(a - response(theta), sent - theta)  # one-sided, not centred
    assert raw_r2 < r2 - 1e-3, (raw_r2, r2)  # the curvature, left in, is not explained
    # independent signs: a control whose signs all agree in the step centres to no change
    same = torch.as_tensor(np.random.default_rng(3).choice([-1.0, 1.0], size=(k, d)))
    assert (same.abs().sum(0) == same.sum(0).abs()).any()  # such a control exists here
    sent_same = theta + eps * same
    a_same = torch.stack([response(t) for t in sent_same])
    assert fitted(*probe_changes(a_same, sent_same, theta, "forward"))[1] < cos - 0.02
    # antithetic pairs: the same directions, each pair's difference
    both = torch.cat([theta + eps * r, theta - eps * r])
    pairs = probe_changes(torch.stack([response(t) for t in both]), both, theta, "central")
    assert torch.allclose(pairs[1], 2 * eps * r)
    assert fitted(*pairs)[1] > 0.99


def _network(sizes, seed, centred=False, spread=False):
    """A network of banks with a softplus after every bank but the last, each weight a smooth
    curve of its control, read on 200 fixed inputs (uniform on [0, 1], or on [-1, 1] with
    ``centred``; input ``c`` scaled from 0.1 to 2 over the inputs with ``spread``, so their means
    differ): its response matrix ``A(theta) (n_out, n_in + 1)`` (the least-squares linear map of
    the readings), the dimension, the wiring and the inputs."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(o, i) for i, o in itertools.pairwise(sizes)]
    scales = [torch.rand(o, i, generator=gen, dtype=torch.float64) + 0.5 for o, i in shapes]
    x = torch.rand(200, sizes[0], generator=gen, dtype=torch.float64)
    x = 2 * x - 1 if centred else x
    x = x * torch.linspace(0.1, 2.0, sizes[0], dtype=x.dtype) if spread else x
    pinv = torch.linalg.pinv(torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1))

    def response(theta):
        h, start = x, 0
        for n, ((o, i), sc) in enumerate(zip(shapes, scales, strict=True)):
            h = h @ (sc * torch.sin(1.5 * theta[start : start + o * i].reshape(o, i))).T
            h = torch.nn.functional.softplus(2 * h) if n < len(shapes) - 1 else h
            start += o * i
        return (pinv @ h).T

    return response, sum(o * i for o, i in shapes), [Bank(o, i) for o, i in shapes], x


def _fit_network(sizes, operating_point, centred=False, spread=False, means=False):
    """The fit's R² and its gradient's cosine with the exact one, on ``_network`` (``means``:
    the model is given the inputs' mean)."""
    response, d, banks, x = _network(sizes, 0, centred, spread)
    theta = torch.rand(d, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 0.5
    jac = torch.func.jacrev(response)(theta)
    k = 3 * derived_probes(banks, operating_point=operating_point)
    r = torch.as_tensor(np.random.default_rng(0).choice([-1.0, 1.0], size=(k, d)))
    eps = 1e-4
    da = torch.stack([response(theta + eps * v) - response(theta - eps * v) for v in r])
    model = BankJacobian(banks, seed=0, operating_point=operating_point)
    model.input_mean = x.mean(0) if means else None
    r2 = model.fit(da, 2 * eps * r, sweeps=200)
    g_a = torch.randn(sizes[-1], sizes[0] + 1, generator=torch.Generator().manual_seed(2))
    exact = torch.einsum("oad,oa->d", jac, g_a.double())
    got = model.grad(g_a.double())
    return r2, float(got @ exact / (got.norm() * exact.norm()))


@pytest.mark.parametrize("sizes", [(8, 5, 3), (12, 6, 4)])
def test_the_operating_point_term_follows_a_nonlinear_network(sizes):
    # moving a first-bank weight moves its hidden unit's operating point, which the separable
    # form cannot follow: it explains 0.94-0.96 of the response changes, the term 0.998
    r2, cos = _fit_network(sizes, operating_point=False)
    assert r2 < 0.97
    r2_op, cos_op = _fit_network(sizes, operating_point=True)
    assert r2_op > 0.995 and cos_op > 0.995, (r2_op, cos_op)
    assert cos_op > cos
    # inputs centred on zero: the term vanishes to first order, and the fit loses nothing
    r2_c, _ = _fit_network(sizes, operating_point=False, centred=True)
    r2_c_op, cos_c_op = _fit_network(sizes, operating_point=True, centred=True)
    assert r2_c_op >= r2_c - 1e-3 and cos_c_op > 0.99


@pytest.mark.parametrize("sizes", [(8, 5, 3), (12, 6, 4)])
def test_given_the_inputs_means_the_term_follows_inputs_of_unequal_means(sizes):
    # with unequal input means a unit's operating point moves with its weights' changes each
    # weighed by its input's mean, not with their plain sum
    r2, cos = _fit_network(sizes, operating_point=True, spread=True)
    r2_m, cos_m = _fit_network(sizes, operating_point=True, spread=True, means=True)
    assert r2_m > 0.98 and cos_m > 0.985, (r2_m, cos_m)
    assert r2_m > r2 + 0.01 and cos_m > cos


def test_the_operating_point_term_counts_in_the_probes_of_a_network_only():
    net = [Bank(32, 64), Bank(10, 32)]
    assert derived_probes(net, operating_point=True) == math.ceil(2 * (4768 + 32 * 65) / 650)
    assert derived_probes(net, 3, operating_point=True) == math.ceil(22 / 3)
    one = [Bank(10, 16, 2)]  # a single bank has no hidden unit
    assert derived_probes(one, operating_point=True) == derived_probes(one)
    assert BankJacobian(one, operating_point=True).V == [None]


def test_the_model_state_round_trips_and_refuses_other_wiring():
    banks = [Bank(4, 6), Bank(3, 4)]
    model = BankJacobian(banks, seed=0)
    d = 6 * 4 + 4 * 3
    r = torch.as_tensor(np.random.default_rng(0).choice([-1.0, 1.0], size=(3, d)))
    model.fit(torch.randn(3, 3, 7, dtype=torch.float64), r, sweeps=3)
    back = BankJacobian(banks, seed=5)
    back.load_state_dict(model.state_dict())
    g_a = torch.randn(3, 7, dtype=torch.float64)
    assert torch.equal(back.grad(g_a), model.grad(g_a))
    with pytest.raises(ConfigError, match="banks"):
        BankJacobian([Bank(4, 6), Bank(2, 4)]).load_state_dict(model.state_dict())


def test_the_operating_point_state_round_trips_and_refuses_a_model_without_it():
    banks = [Bank(4, 6), Bank(3, 4)]
    model = BankJacobian(banks, seed=0, operating_point=True)
    r = torch.as_tensor(np.random.default_rng(0).choice([-1.0, 1.0], size=(6, 36)))
    model.fit(torch.randn(6, 3, 7, dtype=torch.float64), r, sweeps=3)
    assert model.V[0] is not None and model.V[0].abs().sum() > 0
    back = BankJacobian(banks, seed=5, operating_point=True)
    back.load_state_dict(model.state_dict())
    g_a = torch.randn(3, 7, dtype=torch.float64)
    assert torch.equal(back.grad(g_a), model.grad(g_a))
    with pytest.raises(ConfigError, match="operating-point"):
        BankJacobian(banks).load_state_dict(model.state_dict())
    with pytest.raises(ConfigError, match="operating-point"):  # a state saved before the term
        back.load_state_dict(BankJacobian(banks).state_dict())
    assert torch.equal(back.grad(g_a), model.grad(g_a))  # the refused load changed nothing


def test_the_fit_refuses_non_finite_changes_and_keeps_its_model():
    model = BankJacobian([Bank(3, 4)], seed=0)
    r = torch.as_tensor(np.random.default_rng(0).choice([-1.0, 1.0], size=(2, 12)))
    model.fit(torch.randn(2, 3, 5, dtype=torch.float64), r, sweeps=2)
    saved = model.state_dict()
    bad = torch.randn(2, 3, 5, dtype=torch.float64)
    bad[0, 0, 0] = math.inf
    with pytest.raises(ConfigError, match="finite"):
        model.fit(bad, r)
    assert all(torch.equal(a, b) for a, b in zip(model.S, saved["S"], strict=True))


# ---------------------------------------------------------------------- the estimator
def _mrr(sizes):
    chip = MRRWeightBank(layer_sizes=sizes, seed=0)
    return chip, default_task(chip, load_digits(seed=0), seed=0).to(torch.float64)


@pytest.fixture()
def small():
    """A two-bank MRR network on the digits (64 -> 8 -> 10) and its task."""
    return _mrr((64, 8, 10))


@pytest.mark.parametrize("k", [2, 3, 6, 7])
def test_one_sided_probes_move_every_control_both_ways_in_a_step(k):
    r = probe_signs(k, 500, "forward", np.random.default_rng(k)).numpy()
    assert r.shape == (k, 500) and set(np.unique(r)) == {-1.0, 1.0}
    plus = (r > 0).sum(0)
    assert set(np.unique(plus)) <= {k // 2, (k + 1) // 2}  # balanced, the odd one either way
    if k % 2:
        assert len(np.unique(plus)) == 2
    assert len({tuple(c) for c in r.T}) > 1  # arranged at random, control by control
    # antithetic pairs keep their independent signs (and the draws of runs made with them)
    rng, again = np.random.default_rng(0), np.random.default_rng(0)
    expected = again.choice(np.array([-1.0, 1.0]), size=(k, 50))
    assert np.array_equal(probe_signs(k, 50, "central", rng).numpy(), expected)


@pytest.mark.parametrize("scheme", ["forward", "central"])
@pytest.mark.parametrize("anchor", ["batch", "probes"])
def test_the_estimator_spends_1_plus_k_or_2k_settings_and_keeps_theta(small, anchor, scheme):
    chip, task = small
    meter = MeteredDevice(chip)
    est = LayeredResponse(meter, task, sigma=0.02, inputs=80, anchor=anchor, scheme=scheme)
    assert est.memory == MEMORY
    assert est.probes == derived_probes(banks_of(chip), MEMORY, scheme=scheme)
    assert est.settings_per_step() == 1 + (1 if scheme == "forward" else 2) * est.probes
    theta = torch.as_tensor(chip.initial_controls(0))
    before = theta.clone()
    e = est(theta, task.batch("train", np.arange(30)), StepContext(np.random.default_rng(0)))
    assert torch.equal(theta, before)
    # "probes": one call of every setting; "batch": theta in a call of its own
    assert e.cost.queries == (2 if anchor == "batch" else 1)
    assert e.cost.reconfigurations == est.settings_per_step()
    assert e.cost.samples == 80 * est.settings_per_step()  # 80 inputs a setting, whatever the batch
    assert e.grad.shape == (chip.space.dim,) and torch.isfinite(e.grad).all()
    assert e.logits.shape == (30, 10) and np.isfinite(e.loss)


def test_nan_readings_from_an_unmetered_device_raise_and_leave_the_model(small):
    chip, task = small

    class Broken:
        space, input_shape, output_shape = chip.space, chip.input_shape, chip.output_shape
        weight_banks = chip.weight_banks

        def query_many(self, thetas, x):
            y = chip.query_many(thetas, x)
            y[-1, 0, 0] = np.nan  # a probe's reading
            return y

        def query(self, theta, x):
            return self.query_many(np.asarray(theta)[None], x)[0]

    est = LayeredResponse(Broken(), task, sigma=0.02, inputs=80)
    with pytest.raises(InvalidReading, match="NaN"):
        est(
            torch.as_tensor(chip.space.center),
            task.batch("train", np.arange(30)),
            StepContext(np.random.default_rng(0)),
        )
    assert not est.model.fitted


def test_the_estimator_refuses_a_device_without_wiring_or_too_few_inputs(small):
    chip, task = small
    mzi = MZIMesh(n_modes=4, seed=0)
    mzi_task = default_task(mzi, load_iris(seed=0), seed=0)
    with pytest.raises(ConfigError, match="weight_banks"):
        LayeredResponse(mzi, mzi_task, sigma=0.1)
    with pytest.raises(ConfigError, match="hold 576 controls, the device has 592"):
        LayeredResponse(chip, task, sigma=0.1, banks=[(8, 64), (8, 8)])
    est = LayeredResponse(chip, task, sigma=0.1)
    with pytest.raises(ConfigError, match="cannot identify a linear response of 64 inputs"):
        est(
            torch.zeros(chip.space.dim),
            task.batch("train", np.arange(5)),
            StepContext(np.random.default_rng(0)),
        )


@pytest.mark.parametrize(
    ("sizes", "budget", "floor"),
    [((64, 10), 300, 0.85), ((64, 8, 10), 600, 0.6)],
    ids=["one bank", "two banks"],
)
def test_the_estimator_builds_by_name_and_trains_within_its_budget(sizes, budget, floor):
    # white boxes from the centre (exact model, 300 Adam steps): 93.8 % and 87.3 %; zeroth
    # order at the same budgets (q = 4, 96 samples a setting): 28 % and 27 %
    chip, task = _mrr(sizes)
    meter = MeteredDevice(chip, max_reconfigurations=budget)
    spec = EstimatorSpec("layered_response", args={"sigma": 0.02, "inputs": 96})
    built = build_estimator(spec, task=task, device=meter, chip=chip)
    assert isinstance(built.estimator, LayeredResponse)
    cfg = TrainConfig(
        lr=0.06, schedule="cosine", epochs=None, max_steps=built.max_steps(budget), seed=0,
        batch_size=None, progress=False, train_digital=False,
    )  # fmt: skip
    start = chip.space.center.copy()
    before = task.accuracy(chip, start)
    result = Trainer(task, built.estimator, chip.space, cfg, meter=meter).fit(start)
    assert meter.ledger.reconfigurations <= budget
    after = task.accuracy(chip, result.theta)
    assert before < 0.2 and after > floor, (before, after)


# ---------------------------------------------------------------------- the plan
def test_the_plan_picks_the_layered_response_on_a_wired_device(small):
    chip, task = small
    meter = MeteredDevice(chip, max_reconfigurations=300)
    plan = plan_query_only(task, meter, chip.space.center, budget=300, batch_size=96, seed=0)
    # fresh one-sided probes a step; the fit keeps 3 steps'
    k = derived_probes(banks_of(chip), MEMORY, scheme="forward")
    assert plan.estimator == "layered_response" and plan.q == k and plan.inputs == 96
    assert plan.memory == MEMORY and k < derived_probes(banks_of(chip))
    assert plan.batch_size is None  # the loss: the whole training split, offline
    assert plan.scheme == LAYERED_SCHEME == "forward"
    assert plan.steps == (300 - plan.calibration_reconfigurations) // (1 + k)
    spec = plan.estimator_spec()
    assert spec.name == "layered_response" and spec.args["probes"] == k
    assert spec.args["memory"] == MEMORY and spec.args["scheme"] == "forward"
    # a plan saved before the scheme was a field read antithetic pairs, and resumes so
    old = {f: v for f, v in plan.to_dict().items() if f != "scheme"}
    assert QueryPlan.from_dict(old).estimator_spec().args["scheme"] == "central"
    pairs = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, seed=0,
        layered_scheme="central",
    )  # fmt: skip
    assert pairs.q == derived_probes(banks_of(chip), MEMORY)
    assert pairs.steps == (300 - pairs.calibration_reconfigurations) // (1 + 2 * pairs.q)
    with pytest.raises(ConfigError, match="layered_scheme"):
        plan_query_only(
            task, MeteredDevice(chip), chip.space.center, budget=300, layered_scheme="x"
        )
    # a plan saved before the field fitted each step's probes alone, and resumes so
    old = {f: v for f, v in plan.to_dict().items() if f != "memory"}
    assert QueryPlan.from_dict(old).memory == 1
    assert QueryPlan.from_dict(old).estimator_spec().args["memory"] == 1
    single = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, seed=0,
        layered_memory=1,
    )  # fmt: skip
    assert single.memory == 1 and single.q == derived_probes(banks_of(chip), scheme="forward")
    with pytest.raises(ConfigError, match="layered_memory"):
        plan_query_only(task, MeteredDevice(chip), chip.space.center, budget=300, layered_memory=0)
    back = QueryPlan.from_dict(plan.to_dict())
    assert back == plan
    off = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, layered=False
    )
    assert off.estimator == "zeroth_order" and off.estimator_spec().name == "zeroth_order"


def test_the_layered_plan_holds_its_step_and_zeroth_order_decays(small):
    chip, task = small
    plan = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, seed=0
    )
    assert plan.estimator == "layered_response" and plan.schedule == "hold-cosine"
    cfg = plan.train_config(seed=0, progress=False)
    assert cfg.schedule == "hold-cosine" and cfg.lr == plan.lr and cfg.max_steps == plan.steps
    const = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, seed=0,
        layered_schedule="constant",
    )  # fmt: skip
    assert const.schedule == "constant" and const.train_config(seed=0).schedule is None
    cosine = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, seed=0,
        layered_schedule="cosine",
    )  # fmt: skip
    assert cosine.schedule == "cosine" and cosine.train_config(seed=0).schedule == "cosine"
    zo = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, layered=False
    )
    assert zo.schedule == "cosine" and zo.train_config(seed=0).schedule == "cosine"
    flat = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, layered=False,
        schedule="constant",
    )  # fmt: skip
    assert flat.schedule == "constant" and flat.train_config(seed=0).schedule is None
    # a plan saved before the field ran with cosine, and resumes with it
    old = {k: v for k, v in plan.to_dict().items() if k != "schedule"}
    assert QueryPlan.from_dict(old).schedule == "cosine"
    with pytest.raises(ConfigError, match="layered_schedule"):
        plan_query_only(
            task, MeteredDevice(chip), chip.space.center, budget=300, layered_schedule="linear"
        )
    with pytest.raises(ConfigError, match="schedule"):
        QueryPlan.from_dict({**plan.to_dict(), "schedule": "step"})


def test_the_layered_plan_keeps_its_best_setting_and_zeroth_order_its_last(small):
    chip, task = small
    args = dict(budget=300, batch_size=96, seed=0)
    plan = plan_query_only(task, MeteredDevice(chip), chip.space.center, **args)
    assert plan.estimator == "layered_response" and plan.keep == "best"
    assert plan.train_config(seed=0).keep == "best"
    # the plan owns what its run returns: a config's own choice is replaced
    assert plan.configure(TrainConfig(keep="last", max_steps=1)).keep == "best"
    last = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, **args, layered_keep="last"
    )
    assert last.keep == "last" and last.train_config(seed=0).keep == "last"
    zo = plan_query_only(task, MeteredDevice(chip), chip.space.center, **args, layered=False)
    assert zo.keep == "last" and zo.train_config(seed=0).keep == "last"
    zo_best = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, **args, layered=False, keep="best"
    )
    assert zo_best.keep == "best"
    # a plan saved before the field returned its last setting, and resumes doing so
    old = {k: v for k, v in plan.to_dict().items() if k != "keep"}
    assert QueryPlan.from_dict(old).keep == "last"
    with pytest.raises(ConfigError, match="layered_keep"):
        plan_query_only(task, MeteredDevice(chip), chip.space.center, budget=300, layered_keep="x")
    with pytest.raises(ConfigError, match="keep"):
        QueryPlan.from_dict({**plan.to_dict(), "keep": "first"})


def test_a_plan_saved_before_the_layered_response_loads_as_zeroth_order(small):
    chip, task = small
    plan = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, layered=False
    )
    old = {k: v for k, v in plan.to_dict().items() if k not in ("estimator", "inputs")}
    assert QueryPlan.from_dict(old).estimator == "zeroth_order"


def test_the_plan_keeps_zeroth_order_where_the_device_declares_no_wiring():
    chip = MZIMesh(n_modes=4, seed=0)
    task = default_task(chip, load_iris(seed=0), seed=0)
    plan = plan_query_only(task, MeteredDevice(chip), chip.space.center, budget=200, seed=0)
    assert plan.estimator == "zeroth_order"


class _UserBank:
    """A lab's own device, written without blacksat: 64 inputs -> 10 signed outputs through one
    bank whose weights are tuning curves of their heaters, ``w = sin(1.5 (theta - offset))``,
    plus readout noise. It declares its wiring, nothing else."""

    weight_banks = ((10, 64),)
    input_shape = (64,)
    output_shape = (10,)
    input_range = (0.0, 1.0)
    output_kind = "signed"

    def __init__(self, seed: int = 0) -> None:
        from blacksat.space import ParamSpace

        rng = np.random.default_rng(seed)
        self.space = ParamSpace.box(640, -1.0, 1.0)
        self._offset = rng.normal(0.0, 0.3, 640)
        self._rng = np.random.default_rng(seed + 1)

    def query_many(self, thetas, x):
        w = np.sin(1.5 * (np.asarray(thetas) - self._offset)).reshape(-1, 10, 64)
        y = np.einsum("koi,bi->kbo", w, np.asarray(x))
        return y + 0.05 * self._rng.standard_normal(y.shape)

    def query(self, theta, x):
        return self.query_many(np.asarray(theta)[None], x)[0]


def test_a_users_device_that_declares_its_wiring_gets_the_layered_response():
    chip = _UserBank(seed=0)
    task = default_task(chip, load_digits(seed=0), seed=0)
    meter = MeteredDevice(chip, max_reconfigurations=300)
    theta0 = chip.space.center.copy()
    plan = plan_query_only(task, meter, theta0, budget=300, batch_size=96, seed=0)
    assert plan.estimator == "layered_response"
    built = build_estimator(plan.estimator_spec(), task=task, device=meter, chip=chip)
    cfg = plan.train_config(
        seed=0, max_steps=built.max_steps(300, spent=plan.calibration_reconfigurations),
        progress=False, train_digital=False,
    )  # fmt: skip
    result = Trainer(task, built.estimator, chip.space, cfg, meter=meter).fit(plan.initial(theta0))
    assert meter.ledger.reconfigurations <= 300
    assert task.accuracy(chip, theta0) < 0.3 < 0.85 < task.accuracy(chip, result.theta)


class _ImageBank(_UserBank):
    """The same bank reading 8 x 8 images (inputs of shape ``(8, 8)``)."""

    input_shape = (8, 8)

    def query_many(self, thetas, x):
        x = np.asarray(x)
        assert x.shape[1:] == (8, 8)  # the probe inputs arrive in the device's own shape
        return super().query_many(thetas, x.reshape(len(x), 64))


def test_probe_inputs_take_the_devices_input_shape():
    chip = _ImageBank(seed=0)
    task = default_task(chip, load_digits(seed=0), seed=0)
    est = LayeredResponse(chip, task, sigma=0.02, probes=2, inputs=80)
    e = est(
        torch.as_tensor(chip.space.center),
        task.batch("train", np.arange(30)),
        StepContext(np.random.default_rng(0)),
    )
    assert e.grad.shape == (640,) and torch.isfinite(e.grad).all()


class _SaturatingBank(_UserBank):
    """The same bank behind a hard nonlinearity: not a linear map of its inputs."""

    def query_many(self, thetas, x):
        return np.tanh(3.0 * super().query_many(thetas, x))


@pytest.mark.parametrize(
    ("device", "expected"),
    [(_UserBank, "layered_response"), (_SaturatingBank, "zeroth_order")],
    ids=["linear", "saturating"],
)
def test_where_the_probe_cannot_run_the_plan_checks_the_linear_response_itself(device, expected):
    chip = device(seed=0)
    task = default_task(chip, load_digits(seed=0), seed=0)
    meter = MeteredDevice(chip)
    # 100 reconfigurations cannot afford the surrogate start's design: its probe never runs
    plan = plan_query_only(
        task, meter, chip.space.center, budget=100, batch_size=160, seed=0, layered_start=False
    )
    assert plan.start["outcome"] == "skipped" and plan.start.get("linear") is None
    assert plan.estimator == expected
    assert plan.start_theta is None
    if expected == "layered_response":
        assert plan.calibration_reconfigurations == 3  # the check: two settings, one twice
    else:  # the check's three reconfigurations are charged to the zeroth-order plan
        assert plan.calibration_reconfigurations == meter.ledger.reconfigurations > 3
        assert plan.keep == KEEP


class _DimBank(_UserBank):
    """The same bank passing almost no light: its readings are mostly the readout noise."""

    def query_many(self, thetas, x):
        y = super().query_many(thetas, x)  # the bank's readings, with their noise
        return 0.01 * y + 0.05 * self._rng.standard_normal(y.shape)


def test_the_linear_check_reports_how_far_the_readings_stand_above_their_noise():
    """A linear fit to readings that are mostly noise leaves a residual within the noise: the
    check passes on such a device too, and its spread, a few times the noise where the bank's
    own readings are far above it, is what tells; asked to, the plan refuses the layered
    response below ``WEAK_CHECK`` as it does a nonlinear device's (not by default)."""
    from blacksat.query_plan import WEAK_CHECK, linear_response_check

    spreads = {}
    for device in (_UserBank, _DimBank):
        chip = device(seed=0)
        task = default_task(chip, load_digits(seed=0), seed=0)
        meter = MeteredDevice(chip)
        c = linear_response_check(task, meter, 160, np.random.default_rng(0))
        assert c.holds and c.reconfigurations == meter.ledger.reconfigurations == 3
        assert 0.5 < c.residual < 2.0  # the residual is the readout noise
        spreads[device.__name__] = c.spread
    assert spreads["_DimBank"] < 2.0 < WEAK_CHECK < 500.0 < spreads["_UserBank"], spreads
    # (100 reconfigurations: no surrogate-start probe, the plan's own check)
    chip = _UserBank(seed=0)
    task = default_task(chip, load_digits(seed=0), seed=0)
    plan = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=100, batch_size=160, seed=0
    )
    assert plan.estimator == "layered_response" and plan.check_spread > WEAK_CHECK
    assert QueryPlan.from_dict(plan.to_dict()).check_spread == plan.check_spread
    chip = _DimBank(seed=0)
    task = default_task(chip, load_digits(seed=0), seed=0)
    meter = MeteredDevice(chip)
    plan = plan_query_only(
        task, meter, chip.space.center, budget=100, batch_size=160, seed=0,
        layered_weak_check=WEAK_CHECK,
    )  # fmt: skip
    assert plan.estimator == "zeroth_order"
    assert plan.start["kind"] == "layered"  # refused as a nonlinear device is: a start
    assert "above their noise's variance (below 20x)" in plan.start["reason"]
    assert plan.calibration_reconfigurations == meter.ledger.reconfigurations <= 100
    default = plan_query_only(  # the default refuses no weak check
        task, MeteredDevice(chip), chip.space.center, budget=100, batch_size=160, seed=0
    )
    assert default.estimator == "layered_response" and default.check_spread < WEAK_CHECK
    with pytest.raises(ConfigError, match="layered_weak_check"):
        plan_query_only(task, chip, chip.space.center, budget=100, layered_weak_check=-1.0)
    # a saturating bank is not linear, whatever its spread
    chip = _SaturatingBank(seed=0)
    task = default_task(chip, load_digits(seed=0), seed=0)
    assert not linear_response_check(task, chip, 160, np.random.default_rng(0)).holds


def test_a_start_progressed_only_where_its_gain_stands_above_its_own_noise():
    from blacksat.query_plan import PROGRESS_Z, start_progressed

    rng = np.random.default_rng(0)
    hist = lambda losses: [{"loss": float(v)} for v in losses]  # noqa: E731
    flat = 2.3 + 0.05 * rng.standard_normal(40)  # chance lows, no trend
    assert not start_progressed(hist(flat))
    falling = np.linspace(2.3, 1.5, 40) + 0.01 * rng.standard_normal(40)
    assert start_progressed(hist(falling))
    jumped = falling.copy()
    jumped[25] = 300.0  # a jump of the loss (a backtrack answers it) is not noise
    assert start_progressed(hist(jumped))
    # a gain of a few noise units: the threshold decides
    small = np.r_[2.3, 2.3 + 0.01 * rng.standard_normal(39) - 0.02]
    assert start_progressed(hist(small), z=0.5) and not start_progressed(hist(small), z=50.0)
    assert PROGRESS_Z == 3.0
    # non-finite losses are skipped; under three, any lower average counts
    assert start_progressed(hist([2.3, float("nan"), 2.2]))
    assert not start_progressed(hist([2.3])) and not start_progressed([])


def test_a_layered_start_that_finds_no_lower_loss_leaves_the_zeroth_order_plan_as_it_was(
    monkeypatch,
):
    """Where the start kept the setting it started from, the zeroth-order plan runs from there
    at its own step and returns its last setting, as without the start; its reconfigurations
    stay charged."""
    import blacksat.query_plan as qp
    from blacksat.trainer import Trainer as RealTrainer

    chip = _SaturatingBank(seed=0)
    task = default_task(chip, load_digits(seed=0), seed=0)
    plain = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=160, seed=0
    )
    assert plain.start["outcome"] == "trained" and plain.start_theta is not None

    class KeptFirst:  # the run's result, its kept setting the one it started from
        def __init__(self, result, start):
            self._result, self.theta, self.best_step = result, start, 0

        def __getattr__(self, name):
            return getattr(self._result, name)

    class Stuck(RealTrainer):
        def fit(self, theta0):
            return KeptFirst(super().fit(theta0), np.asarray(theta0, dtype=np.float64))

    monkeypatch.setattr("blacksat.trainer.Trainer", Stuck)
    meter = MeteredDevice(chip)
    plan = qp.plan_query_only(task, meter, chip.space.center, budget=300, batch_size=160, seed=0)
    assert plan.start["outcome"] == "no progress" and "found no setting" in plan.start["reason"]
    assert plan.start_theta is None and plan.keep == KEEP  # the plan as it was
    assert plan.calibration_reconfigurations == meter.ledger.reconfigurations
    assert plan.start["reconfigurations"] < meter.ledger.reconfigurations


def test_a_wired_device_the_check_turns_away_gets_a_layered_start():
    from blacksat.product.run import plan_markdown

    chip = _SaturatingBank(seed=0)
    task = default_task(chip, load_digits(seed=0), seed=0)
    meter = MeteredDevice(chip, max_reconfigurations=300)
    plan = plan_query_only(task, meter, chip.space.center, budget=300, batch_size=160, seed=0)
    start = plan.start
    assert start["kind"] == "layered" and start["outcome"] == "trained"
    # (the surrogate start's probe ran and found no linear response; where it cannot run, the
    # plan's own check finds none: the test above)
    assert "declares its weight banks but no linear or intensity response" in start["reason"]
    assert start["surrogate"]["linear"] is False  # the surrogate start's own report is kept
    assert start["stop"] in ("plateau", "completed", "budget") and start["steps"] >= 1
    # the zeroth-order run continues from the kept setting, at the fine-tuning step, and keeps
    # its own best; every reconfiguration so far (check, start, calibration) is in the plan
    assert plan.estimator == "zeroth_order" and plan.keep == "best"
    assert plan.start_theta is not None
    np.testing.assert_array_equal(plan.initial(chip.space.center), plan.start_theta)
    assert plan.lr <= FINE_TUNE_LR * plan.span + 1e-12
    assert plan.calibration_reconfigurations == meter.ledger.reconfigurations
    assert start["reconfigurations"] + 3 <= meter.ledger.reconfigurations <= 300
    # it trained the device: from chance at the centre to well above it
    center = task.accuracy(chip, chip.space.center)
    assert task.accuracy(chip, np.asarray(plan.start_theta)) > max(0.5, center + 0.2), center
    assert "layered start trained: the device declares its weight banks" in plan_markdown(
        plan.to_dict()
    )
    # a start that reaches its plateau (here after 2 steps without a new low) leaves the rest of
    # the budget to the zeroth-order run
    meter = MeteredDevice(chip, max_reconfigurations=300)
    early = plan_query_only(
        task, meter, chip.space.center, budget=300, batch_size=160, seed=0, layered_plateau=2
    )
    assert early.start["stop"] == "plateau" and "to its plateau (2 steps" in early.start["reason"]
    assert early.start["steps"] == early.start["kept_step"] + 1 + 2
    assert early.steps >= 1 and early.calibration_reconfigurations == meter.ledger.reconfigurations


def test_the_batch_anchor_reads_the_loss_where_the_task_drives_the_device(small):
    """The loss goes through the response at theta; read on the training samples it matches the
    device's own loss on them, read on the uniform probes it is the best linear map over the
    whole input range, which a saturating network reads optimistically."""
    chip, task = small
    theta = torch.as_tensor(chip.initial_controls(0))
    batch = task.batch("train", np.arange(200))
    with torch.no_grad():
        y = chip.exact_model(dtype=torch.float64)(theta, task.encode(batch.features))
        truth = float(task.loss(task.decode(y.to(task.dtype)), batch.labels))
    err = {}
    for anchor in ("batch", "probes"):
        # (every probe from this step, as when this was measured: the probe draws come first)
        est = LayeredResponse(chip, task, sigma=0.02, inputs=200, anchor=anchor, memory=1)
        err[anchor] = abs(est(theta, batch, StepContext(np.random.default_rng(0))).loss - truth)
    assert err["batch"] < 0.5 * err["probes"], err


def test_the_run_summary_says_what_the_current_setting_is_read_with():
    from blacksat.product.run import plan_markdown

    plan = {
        "estimator": "layered_response", "span": 1.0, "sigma": 0.01, "lr": 0.03, "beta1": 0.9,
        "steps": 10, "q": 15, "inputs": 256, "calibration_reconfigurations": 30, "budget": 341,
        "reason": "the device declares its weight banks", "start": None, "anchor": "batch",
    }  # fmt: skip
    assert "from training samples" in plan_markdown(plan)
    assert "31 settings" in plan_markdown(plan) and "256 probe inputs" in plan_markdown(plan)
    del plan["anchor"]  # a plan saved before the anchor was a field ran on its probe inputs
    assert "from its probe inputs" in plan_markdown(plan)
    # the schedule: the plan's own, else the cosine every plan ran before it was a field
    assert "(beta1 0.9, cosine)" in plan_markdown(plan)
    assert "(beta1 0.9, constant)" in plan_markdown({**plan, "schedule": "constant"})
    assert "operating points" not in plan_markdown(plan) and "of them" not in plan_markdown(plan)
    both = plan_markdown({**plan, "operating_point": "on", "train_share": 0.5})
    assert "operating points)" in both and "(50 % of them training samples)" in both
    assert "operating points" not in plan_markdown({**plan, "operating_point": "off"})
    late = plan_markdown({**plan, "operating_point": "late", "operating_point_from": 7})
    assert "operating points after step 7)" in late
    early = plan_markdown(
        {
            **plan,
            "operating_point": "late",
            "operating_point_from": 7,
            "operating_point_plateau": 25,
        }
    )
    assert "after step 7, or after 25 steps without a new low of the loss)" in early
    # backtracking: said where the plan keeps its best setting and backtracks (plans saved
    # before the field never did)
    kept = {**plan, "keep": "best"}
    assert "step losses)" in plan_markdown(kept) and "half the step" not in plan_markdown(kept)
    back = plan_markdown({**kept, "backtrack": 2.0})
    assert "going back to it at half the step when a step's loss exceeds 2x its average" in back
    assert "steps old" not in back
    stall = plan_markdown({**kept, "backtrack": 2.0, "backtrack_patience": 25})
    assert "exceeds 2x its average or the kept setting is 25 steps old" in stall
    zo = {
        **plan, "estimator": "zeroth_order", "batch_size": 256, "noise": 0.01, "q": 4,
        "beta1": 0.5, "reason": "first above the noise",
    }  # fmt: skip
    assert "(beta1 0.5, cosine), " in plan_markdown(zo) and "8 settings" in plan_markdown(zo)


# ---------------------------------------------------------------------- probe memory
def test_the_fit_uses_the_probes_of_the_last_memory_steps(small):
    chip, task = small
    est = LayeredResponse(chip, task, sigma=0.02, inputs=80, memory=3)
    seen = []
    real = est.model.fit

    def counting(dA, delta, sweeps=None):
        seen.append(len(dA))
        return real(dA, delta, sweeps)

    est.model.fit = counting
    theta = torch.as_tensor(chip.initial_controls(0))
    batch = task.batch("train", np.arange(30))
    ctx = StepContext(np.random.default_rng(0))
    for _ in range(5):
        est(theta, batch, ctx)
    k = est.probes
    assert seen == [k, 2 * k, 3 * k, 3 * k, 3 * k]
    assert len(est.recent) == 3 and all(d.shape[0] == k for d, _ in est.recent)
    with pytest.raises(ConfigError, match="memory"):
        LayeredResponse(chip, task, sigma=0.02, memory=0)


def test_the_recent_probes_are_part_of_the_state_and_resume_exactly(small):
    chip, task = small
    batch = task.batch("train", np.arange(30))
    theta = torch.as_tensor(chip.initial_controls(0))

    def run(est, ctx, n):
        return [est(theta, batch, ctx).grad for _ in range(n)]

    noise = chip.rng_state()  # the simulator's readout noise, the same for both runs
    full = LayeredResponse(chip, task, sigma=0.02, inputs=80)
    grads = run(full, StepContext(np.random.default_rng(1)), 4)
    chip.set_rng_state(noise)
    first = LayeredResponse(chip, task, sigma=0.02, inputs=80)
    ctx = StepContext(np.random.default_rng(1))
    run(first, ctx, 2)
    again = LayeredResponse(chip, task, sigma=0.02, inputs=80)
    again.load_state_dict(first.state_dict())
    assert len(again.recent) == 2
    for g, h in zip(run(again, ctx, 2), grads[2:], strict=True):
        assert torch.equal(g, h)
    # a state saved before the probes were kept: the model alone, no recent probes
    legacy = LayeredResponse(chip, task, sigma=0.02, inputs=80)
    legacy.load_state_dict({"model": first.state_dict()["model"]})
    assert legacy.recent == []
    with pytest.raises(ConfigError, match="probes are malformed"):
        legacy.load_state_dict({"model": first.state_dict()["model"], "recent": [{"dA": 1}]})


def test_training_probes_are_the_batchs_own_samples(small):
    chip, task = small
    sent = []

    class Recording(MeteredDevice):
        def query_many(self, thetas, x):
            sent.append(torch.as_tensor(np.asarray(x)).reshape(len(x), -1))
            return super().query_many(thetas, x)

    batch = task.batch("train", np.arange(30))
    enc = task.encode(batch.features).to(torch.float64).reshape(30, -1)
    theta = torch.as_tensor(chip.initial_controls(0))
    for share, expected in ((0.25, 20), (0.5, 30), (0.0, 0)):  # at most the batch's 30
        sent.clear()
        est = LayeredResponse(Recording(chip), task, sigma=0.02, inputs=80, train_share=share)
        est(theta, batch, StepContext(np.random.default_rng(0)))
        probes = sent[-1]  # the probes' call (the setting itself is read on the batch first)
        assert len(probes) == 80
        hits = (torch.cdist(probes, enc) < 1e-9).any(1)
        assert int(hits.sum()) == expected and bool(hits[:expected].all())
    with pytest.raises(ConfigError, match="train_share"):
        LayeredResponse(chip, task, sigma=0.02, train_share=1.5)
    with pytest.raises(ConfigError, match="operating_point"):
        LayeredResponse(chip, task, sigma=0.02, operating_point="yes")
    assert LayeredResponse(chip, task, sigma=0.02, operating_point=True).operating_point == "on"
    with pytest.raises(ConfigError, match="input_means"):
        LayeredResponse(chip, task, sigma=0.02, input_means=1)
    sent.clear()
    est = LayeredResponse(
        Recording(chip), task, sigma=0.02, inputs=80, operating_point="late", input_means=True
    )
    est(theta, batch, StepContext(np.random.default_rng(0)))
    mean = sent[-1].double().mean(0)  # the probes' inputs
    assert torch.allclose(est.op_model.input_mean, mean) and est.op_model.input_mean.shape == (64,)


def test_the_plan_carries_the_operating_point_and_the_training_probes(small):
    chip, task = small
    plan = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, seed=0,
        layered_operating_point="on", layered_train_share=0.5,
    )  # fmt: skip
    assert plan.operating_point == "on" and plan.train_share == 0.5
    assert plan.q == derived_probes(banks_of(chip), MEMORY, operating_point=True, scheme="forward")
    spec = plan.estimator_spec()
    assert spec.args["operating_point"] == "on" and spec.args["train_share"] == 0.5
    est = build_estimator(spec, task=task, device=MeteredDevice(chip), chip=chip)
    assert est.estimator.model.V[0] is not None and est.estimator.train_share == 0.5
    # a plan saved before the fields ran without either, and resumes so
    old = {
        f: v
        for f, v in plan.to_dict().items()
        if f not in ("operating_point", "operating_point_from", "train_share", "input_means")
    }
    back = QueryPlan.from_dict(old)
    assert back.operating_point == "off" and back.train_share == 0.0 and not back.input_means
    assert back.estimator_spec().args["operating_point"] == "off"
    # "late": the term from the start of the schedule's decay
    late = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, seed=0,
        layered_operating_point="late",
    )  # fmt: skip
    assert late.q == derived_probes(banks_of(chip), MEMORY, scheme="forward")
    assert late.operating_point_from == round(0.7 * late.steps) > 0
    assert late.estimator_spec().args["from_step"] == late.operating_point_from
    # ... or from the losses' plateau; plans saved before the field never switch early
    assert late.operating_point_plateau == LAYERED_PLATEAU > 0 == plan.operating_point_plateau
    assert late.estimator_spec().args["plateau"] == LAYERED_PLATEAU
    legacy = {k: v for k, v in late.to_dict().items() if k != "operating_point_plateau"}
    assert QueryPlan.from_dict(legacy).estimator_spec().args["plateau"] == 0
    # a backtracking run by default (the kept setting's); opted out, and in plans saved before
    # the field, never
    assert late.backtrack == LAYERED_BACKTRACK == late.train_config(seed=0).backtrack > 1
    # ... and after a stall of the plateau's count of steps
    assert late.backtrack_patience == LAYERED_BACKTRACK_PATIENCE == LAYERED_PLATEAU
    assert late.train_config(seed=0).backtrack_patience == LAYERED_BACKTRACK_PATIENCE
    jumps_only = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, seed=0,
        layered_backtrack_patience=None,
    )  # fmt: skip
    assert jumps_only.backtrack == LAYERED_BACKTRACK and jumps_only.backtrack_patience is None
    never = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, seed=0,
        layered_backtrack=None,
    )  # fmt: skip
    assert never.backtrack is None and never.train_config(seed=0).backtrack is None
    assert never.backtrack_patience is None  # a stall needs backtracking to act on
    older = {k: v for k, v in legacy.items() if k != "backtrack"}
    assert QueryPlan.from_dict(older).backtrack is None
    with pytest.raises(ConfigError, match="layered_backtrack"):
        plan_query_only(
            task, MeteredDevice(chip), chip.space.center, budget=300, layered_backtrack=1
        )
    with pytest.raises(ConfigError, match="layered_plateau"):
        plan_query_only(
            task, MeteredDevice(chip), chip.space.center, budget=300, layered_plateau=-1
        )
    means = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, seed=0,
        layered_input_means=True,
    )  # fmt: skip
    assert means.input_means and means.estimator_spec().args["input_means"] is True
    with pytest.raises(ConfigError, match="layered_train_share"):
        plan_query_only(
            task, MeteredDevice(chip), chip.space.center, budget=300, layered_train_share=-0.1
        )
    with pytest.raises(ConfigError, match="layered_operating_point"):
        plan_query_only(
            task, MeteredDevice(chip), chip.space.center, budget=300, layered_operating_point="x"
        )


def test_late_fits_both_models_and_takes_the_term_after_from_step(small):
    chip, task = small
    batch = task.batch("train", np.arange(30))
    theta = torch.as_tensor(chip.initial_controls(0))

    def make():
        return LayeredResponse(
            chip, task, sigma=0.02, inputs=80, operating_point="late", from_step=2
        )

    est = make()
    assert est.op_model is not None and est.model.V == [None, None]
    # the separable model's count
    assert est.probes == derived_probes(banks_of(chip), MEMORY, scheme="forward")
    noise = chip.rng_state()
    ctx = StepContext(np.random.default_rng(3))
    grads, used = [], []
    for _ in range(4):
        grads.append(est(theta, batch, ctx).grad)
        used.append(est.last_model)
    assert used == ["separable", "separable", "operating point", "operating point"]
    assert est.steps == 4 and est.op_model.fitted and est.op_model.V[0].abs().sum() > 0
    # its state carries both models and the step count: a resumed estimator goes on identically
    chip.set_rng_state(noise)
    first = make()
    ctx = StepContext(np.random.default_rng(3))
    for _ in range(2):
        first(theta, batch, ctx)
    again = make()
    again.load_state_dict(first.state_dict())
    assert again.steps == 2
    for g in grads[2:]:
        assert torch.equal(again(theta, batch, ctx).grad, g)
    assert again.last_model == "operating point"
    before = again.state_dict()
    with pytest.raises(ConfigError, match="step count is malformed"):
        again.load_state_dict({**make().state_dict(), "steps": -1})
    assert torch.equal(again.state_dict()["model"]["S"][0], before["model"]["S"][0])
    # a single bank has no hidden unit: nothing to switch to
    xbar = Crossbar(layer_sizes=(64, 10), seed=0)
    xtask = default_task(xbar, load_digits(seed=0), seed=0).to(torch.float64)
    assert LayeredResponse(xbar, xtask, sigma=0.02, operating_point="late").op_model is None


def test_late_switches_at_the_losses_plateau_for_good_and_resumes_so(small):
    chip, task = small

    def make(plateau: int = 3):
        return LayeredResponse(
            chip, task, sigma=0.02, inputs=80, operating_point="late", from_step=100,
            plateau=plateau,
        )  # fmt: skip

    est = make()
    # a falling loss sets new lows of its moving average: no switch
    for loss in (2.0, 1.5, 1.0, 0.8):
        est.steps += 1
        est._follow(loss)
    assert est.switched is None and est.since == 0
    # a loss that climbs back: three steps without a new low of the average, the switch
    est.steps += 1
    est._follow(5.0)
    assert est.since == 1 and est.switched is None
    for loss in (5.0, 5.0):
        est.steps += 1
        est._follow(loss)
    assert est.since == 3 and est.switched == 7
    for loss in (0.0,) * 6:  # the loss falls again: the term's phase goes on, for good
        est.steps += 1
        est._follow(loss)
    assert est.switched == 7 and est.since == 0
    # no plateau given, or one given to a single bank: never before from_step
    never = make(plateau=0)
    for loss in (1.0,) * 10:
        never.steps += 1
        never._follow(loss)
    assert never.switched is None
    with pytest.raises(ConfigError, match="plateau"):
        make(plateau=-1)
    # through real steps: the estimator switches at the plateau and its state resumes it
    batch = task.batch("train", np.arange(30))
    theta = torch.as_tensor(chip.initial_controls(0))
    ctx = StepContext(np.random.default_rng(3))
    live = make(plateau=1)  # the same setting every step: noise alone, no descent
    used = []
    while live.switched is None and live.steps < 20:
        live(theta, batch, ctx)
        used.append(live.last_model)
    assert live.switched == live.steps < 20 and used[-1] == "operating point"
    assert set(used[:-1]) == {"separable"}
    again = make(plateau=1)
    again.load_state_dict(live.state_dict())
    assert again.switched == live.switched and again.since == live.since
    assert again.average == live.average and again.lowest == live.lowest
    with pytest.raises(ConfigError, match="plateau record is malformed"):
        again.load_state_dict({**live.state_dict(), "plateau": ["x", 1.0, 0, None]})
    old = {k: v for k, v in live.state_dict().items() if k != "plateau"}
    fresh = make(plateau=1)
    fresh.load_state_dict(old)  # saved before the record: a fresh one
    assert fresh.switched is None and fresh.steps == live.steps


def test_the_layered_plan_hands_over_where_it_never_progresses_and_only_a_layered_plan(small):
    """Where the plan's linear check passed on readings barely above their noise (four MRR
    banks of 16), the plan's run ends at a second stall that comes before any progress
    (``no_progress_z``); :func:`plan_handover` then plans zeroth order over what is left, from
    where the layered run started. A bright network's plan, one opted out, and plans saved
    before the field, never."""
    from blacksat.query_plan import LAYERED_HANDOVER, PROGRESS_Z, WEAK_CHECK, plan_handover

    bright_chip, bright_task = small
    bright = plan_query_only(
        bright_task, MeteredDevice(bright_chip), bright_chip.space.center, budget=300,
        batch_size=96, seed=0,
    )  # fmt: skip
    assert bright.check_spread > WEAK_CHECK and bright.no_progress_z is None
    chip, task = _mrr((64, 16, 16, 16, 10))
    meter = MeteredDevice(chip)
    plan = plan_query_only(task, meter, chip.space.center, budget=300, batch_size=96, seed=0)
    assert plan.estimator == "layered_response" and plan.check_spread < WEAK_CHECK
    assert LAYERED_HANDOVER and plan.no_progress_z == PROGRESS_Z
    cfg = plan.train_config(seed=0)
    assert cfg.no_progress_z == PROGRESS_Z and cfg.backtrack_patience == LAYERED_PLATEAU
    off = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, seed=0,
        layered_handover=False,
    )  # fmt: skip
    assert off.no_progress_z is None and off.train_config(seed=0).no_progress_z is None
    skip = ("no_progress_z", "check_spread", "noise", "calibrated_sigma")  # nan, chip's noise
    same = [k for k in plan.to_dict() if k not in skip]
    assert [off.to_dict()[k] for k in same] == [plan.to_dict()[k] for k in same]
    stall_less = plan_query_only(
        task, MeteredDevice(chip), chip.space.center, budget=300, batch_size=96, seed=0,
        layered_backtrack_patience=None,
    )  # fmt: skip
    assert stall_less.no_progress_z is None  # the test is read at a stall
    legacy = {k: v for k, v in plan.to_dict().items() if k != "no_progress_z"}
    assert QueryPlan.from_dict(legacy).train_config(seed=0).no_progress_z is None

    spent = meter.ledger.reconfigurations + 120  # as if the layered run had spent 120
    zo = plan_handover(plan, task, meter, chip.space.center, spent=spent, seed=1, steps=9)
    assert zo.estimator == "zeroth_order" and zo.budget == plan.budget == 300
    assert zo.start["kind"] == "handover" and zo.start["outcome"] == "no progress"
    left = 300 - spent
    assert "9 steps" in zo.start["reason"] and f"{left} reconfigurations left" in zo.start["reason"]
    assert zo.start["reconfigurations"] == spent and zo.start_theta is None
    calibration = zo.calibration_reconfigurations - spent
    assert 0 < calibration <= left // 4  # its own calibration, charged, within its quarter
    assert zo.steps == (left - calibration) // (2 * zo.q) and zo.batch_size == 96
    np.testing.assert_array_equal(zo.initial(chip.space.center), chip.space.center)
    with pytest.raises(ConfigError, match="nothing is left"):
        plan_handover(plan, task, meter, chip.space.center, spent=300)
    with pytest.raises(ConfigError, match="only a layered plan hands over"):
        plan_handover(zo, task, meter, chip.space.center, spent=10)
