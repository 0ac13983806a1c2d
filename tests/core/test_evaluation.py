"""Robustness evaluation: full-split accuracy, nuisance and perturbation sweeps, transfer."""

import json
import math

import numpy as np
import pytest
import torch

from blacksat import ConfigError
from blacksat.data import load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.evaluation import (
    Table,
    accuracy,
    accuracy_many,
    nuisance_sweep,
    paired_difference,
    perturbation_sweep,
    standard_error,
    transfer,
)
from blacksat.meter import MeteredDevice
from blacksat.perturbations import L2Ball, Perturbation


class Drift:
    """Average-case temperature draws ``U(-r, r)`` as nuisance values (no control shift)."""

    def __init__(self, r: float) -> None:
        self.r = r

    def sample(self, theta, rng):
        return Perturbation(None, {"temperature": float(rng.uniform(-self.r, self.r))})

    def scaled(self, factor):
        return Drift(self.r * factor)

    def worst(self, theta, grad, probe, rng):
        return self.sample(theta, rng)


@pytest.fixture(scope="module")
def setup():
    """A small noise-free MZI mesh (4 modes, 12 phases) trained a little on iris (float64)."""
    chip = MZIMesh(n_modes=4, noise=0.0, drift=0.0)
    task = default_task(chip, load_iris()).to(torch.float64)
    model = chip.exact_model(torch.float64)
    theta = torch.as_tensor(chip.space.sample(0)).requires_grad_(True)
    lo, hi = (torch.as_tensor(b.copy()) for b in (chip.space.lower, chip.space.upper))
    opt = torch.optim.Adam([theta], lr=0.05)
    batch = next(task.minibatches("train", None))
    for _ in range(100):
        opt.zero_grad()
        task.loss(task.logits_model(model, theta, batch.features), batch.labels).backward()
        opt.step()
        with torch.no_grad():
            theta.clamp_(lo, hi)
    return chip, task, model, theta.detach().numpy()


def test_accuracy_is_the_full_split_task_accuracy(setup):
    chip, task, model, theta = setup
    acc = accuracy(task, chip, theta)
    assert acc == task.accuracy(chip, theta)
    assert acc > 0.8  # trained: far above chance (1/3)
    assert accuracy(task, chip, torch.as_tensor(theta), batch_size=7) == acc
    assert accuracy(task, model, theta) == task.accuracy(model, theta)
    n_test = len(task.data.y_test)
    assert (acc * n_test) == pytest.approx(round(acc * n_test))  # over all test samples
    with pytest.raises(ConfigError):
        accuracy(task, chip, theta, split="valid")


def test_accuracy_many_matches_one_setting_at_a_time(setup):
    chip, task, model, theta = setup
    rng = np.random.default_rng(0)
    thetas = chip.space.project(theta + 0.3 * rng.standard_normal((5, theta.size)))
    for target in (chip, model):
        many = accuracy_many(task, target, thetas, batch_size=20, chunk=2)
        one = [accuracy(task, target, t) for t in thetas]
        np.testing.assert_allclose(many, one, rtol=0, atol=1e-12)
    assert len(set(np.round(many, 6))) > 1  # the settings differ in accuracy


def test_nuisance_sweep_at_the_default_equals_plain_accuracy(setup):
    chip, task, _, theta = setup
    plain = accuracy(task, chip, theta)
    table = nuisance_sweep(task, chip.perturbed, theta, {"temperature": [0.0, 1.0, 10.0]})
    assert isinstance(table, Table) and len(table) == 3
    assert table.columns == ("sweep", "temperature", "accuracy")
    assert table.rows[0] == {"sweep": "temperature", "temperature": 0.0, "accuracy": plain}
    assert table.column("accuracy")[2] < plain  # 10 K (1 rad) hurts an unprotected network
    md = table.to_markdown()
    assert md.splitlines()[0] == "| sweep | temperature | accuracy |"
    assert json.dumps(table.to_dict())


def test_nuisance_sweep_one_at_a_time_and_product(setup):
    chip, task, _, theta = setup
    calls = []

    def family(temperature=0.0, gain=1.0):
        calls.append((temperature, gain))
        inner = chip.perturbed(temperature=temperature).exact_model()
        return lambda t, x: gain * inner(t, x)

    grid = {"temperature": [0.0, 1.5], "gain": [1.0, 2.0, 3.0]}
    table = nuisance_sweep(task, family, theta, grid, product=True)
    assert len(table) == 2 + 3 + 2 * 3
    assert calls[:5] == [(0.0, 1.0), (1.5, 1.0), (0.0, 1.0), (0.0, 2.0), (0.0, 3.0)]
    single = [r for r in table if r["sweep"] == "gain"]
    assert all(r["temperature"] is None for r in single)
    prod = [r for r in table if r["sweep"] == "product"]
    assert {(r["temperature"], r["gain"]) for r in prod} == {
        (t, g) for t in grid["temperature"] for g in grid["gain"]
    }
    assert "| product | 1.5 | 3 |" in table.to_markdown()
    with pytest.raises(ConfigError):
        nuisance_sweep(task, family, theta, {})
    with pytest.raises(ConfigError):
        nuisance_sweep(task, family, theta, {"gain": [float("nan")]})


def test_zero_factor_perturbation_sweep_equals_plain_accuracy(setup):
    chip, task, _, theta = setup
    plain = accuracy(task, chip, theta)
    table = perturbation_sweep(
        task, chip, theta, L2Ball(1.0), [0.0, 0.5, 2.0], draws=6, rng=np.random.default_rng(1)
    )
    zero, half, big = table.rows
    assert zero["mean"] == plain and zero["std"] == 0.0
    assert zero["min"] == zero["max"] == plain and zero["accuracies"] == [plain] * 6
    assert half["draws"] == 6 and len(half["accuracies"]) == 6
    assert half["std"] > 0 and half["min"] <= half["mean"] <= half["max"]
    assert big["mean"] < plain
    again = perturbation_sweep(task, chip, theta, L2Ball(1.0), [0.0, 0.5, 2.0], draws=6, rng=1)
    assert again.to_dict() == table.to_dict()  # seeded
    assert json.dumps(table.to_dict())


def test_perturbation_sweep_clips_into_the_device_bounds(setup):
    chip, task, _, _ = setup
    theta = np.full(chip.space.dim, 2 * np.pi)  # on the upper bound: draws point outside
    dev = MeteredDevice(chip)  # policy "raise": an out-of-bounds setting would raise
    table = perturbation_sweep(task, dev, theta, L2Ball(1.0), [1.0], draws=4, rng=0)
    assert len(table.rows[0]["accuracies"]) == 4
    assert dev.ledger.reconfigurations == 4  # the test split fits one batch: 4 settings


def test_perturbation_sweep_with_nuisance_draws_uses_the_family(setup):
    chip, task, _, theta = setup
    plain = accuracy(task, chip, theta)
    table = perturbation_sweep(
        task, chip, theta, Drift(2.0), [0.0, 1.0], draws=4, rng=2, family=chip.perturbed
    )
    assert table.rows[0]["accuracies"] == [plain] * 4  # U(-0, 0): the nominal chip
    assert table.rows[1]["min"] < plain
    with pytest.raises(ConfigError, match="family"):
        perturbation_sweep(task, chip, theta, Drift(2.0), [1.0], draws=2, rng=0)
    with pytest.raises(ConfigError):
        perturbation_sweep(task, chip, theta, Drift(2.0), [-1.0], rng=0, family=chip.perturbed)
    with pytest.raises(ConfigError):
        perturbation_sweep(task, chip, theta, Drift(2.0), [1.0], draws=0, rng=0)


def test_transfer_one_accuracy_per_chip(setup):
    chip, task, _, theta = setup
    chips = [chip.fresh_chip(s) for s in (0, 5, 9)]
    res = transfer(task, chips, theta)
    assert len(res.accuracies) == 3 and res.labels == (0, 5, 9)
    assert res.accuracies[0] == accuracy(task, chip, theta)  # same seed: the training chip
    assert res.mean == pytest.approx(np.mean(res.accuracies))
    assert res.std == pytest.approx(np.std(res.accuracies, ddof=1))
    assert [r["chip"] for r in res.table()] == [0, 5, 9]
    assert "mean" in res.to_markdown()
    assert json.dumps(res.to_dict())
    with pytest.raises(ConfigError):
        transfer(task, [], theta)


def test_the_old_argument_order_still_works_with_a_warning(setup):
    chip, task, _, theta = setup
    new = perturbation_sweep(task, chip, theta, L2Ball(1.0), [0.5], draws=3, rng=4)
    with pytest.warns(DeprecationWarning, match="old argument order"):
        old = perturbation_sweep(task, theta, chip, L2Ball(1.0), [0.5], draws=3, rng=4)
    assert old.rows == new.rows
    chips = [chip.fresh_chip(s) for s in (1, 2)]
    with pytest.warns(DeprecationWarning):
        assert transfer(task, theta, chips).accuracies == transfer(task, chips, theta).accuracies
    with pytest.warns(DeprecationWarning):
        a = nuisance_sweep(task, theta, chip.perturbed, {"temperature": [1.0]})
    assert a.rows == nuisance_sweep(task, chip.perturbed, theta, {"temperature": [1.0]}).rows


def test_fresh_chip_seeds_follow_one_rule_disjoint_from_training_and_tuning_chips():
    from blacksat.evaluation import FRESH_CHIP_OFFSET, fresh_chip_seeds

    assert fresh_chip_seeds(2, 3) == [1002, 1003, 1004] and FRESH_CHIP_OFFSET == 1000
    assert fresh_chip_seeds(0, 0) == []
    trained = set(range(0, 103))  # reported seeds and tuning chips 100-102
    assert not trained & {s for c in trained for s in fresh_chip_seeds(c, 5)}
    with pytest.raises(ConfigError):
        fresh_chip_seeds(-1, 2)
    with pytest.raises(ConfigError):
        fresh_chip_seeds(0, True)


def test_paired_difference_pairs_by_key_and_gives_the_standard_error():
    a = {(0, 0): 0.60, (1, 1): 0.50, (2, 2): 0.70, (3, 3): 0.9}
    b = {(0, 0): 0.50, (1, 1): 0.45, (2, 2): 0.55}  # (3, 3) has no pair
    mean, se, n = paired_difference(a, b)
    diffs = np.array([0.10, 0.05, 0.15])
    assert n == 3 and mean == pytest.approx(diffs.mean())
    assert se == pytest.approx(diffs.std(ddof=1) / np.sqrt(3))
    # one pair: no standard error; none: nothing at all
    assert math.isnan(paired_difference({0: 1.0}, {0: 0.5})[1])
    mean, se, n = paired_difference({0: 1.0}, {1: 0.5})
    assert n == 0 and math.isnan(mean) and math.isnan(se)
    assert standard_error([1.0, 2.0, 3.0]) == pytest.approx(1.0 / np.sqrt(3))
    assert math.isnan(standard_error([4.0]))
