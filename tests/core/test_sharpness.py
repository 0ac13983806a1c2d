"""Sharpness: Hessian spectrum / trace of differentiable models, query-only sharpness."""

import json

import numpy as np
import pytest
import torch

from blacksat import BlacksatError, ConfigError, ParamSpace
from blacksat.data import load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.meter import MeteredDevice
from blacksat.objective import Batch
from blacksat.perturbations import L2Ball, Perturbation
from blacksat.sharpness import (
    _Hessian,
    hessian_top_eigenvalues,
    hutchinson_trace,
    query_sharpness,
)


# ---------------------------------------------------------------------------- doubles
class QuadTask:
    """``L = 0.5 * mean_b ||y_b||^2`` on identity encode/decode: quadratic in theta for a model
    linear in theta."""

    dtype = torch.float64

    def encode(self, features):
        return features

    def decode(self, outputs):
        return outputs

    def loss(self, logits, labels):
        return 0.5 * (logits**2).sum(-1).mean(-1)


class Rotated:
    """``y_b = x_b * (R theta)``: Hessian ``R^T diag(mean_b x_b^2) R``."""

    def __init__(self, r: np.ndarray) -> None:
        self.r = torch.as_tensor(r)

    def __call__(self, theta, x):
        return x * (theta @ self.r.T)


def _quadratic(d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 2.0, (32, d))
    r, _ = np.linalg.qr(rng.standard_normal((d, d)))
    h_diag = (x**2).mean(0)
    return x, r, h_diag


class SumTask(QuadTask):
    """``L = mean_b sum(y_b)``: linear in the readings."""

    def loss(self, logits, labels):
        return logits.sum(-1).mean(-1)


class Bowl:
    """Query-only device with ``y_b = ||theta - c||^2 * sum(x_b)``: strict minimum at ``c``;
    records every setting it receives."""

    def __init__(self, c, lower=-1.0, upper=1.0, constant=False):
        self.c = np.asarray(c, dtype=np.float64)
        self.space = ParamSpace.box(self.c.size, lower, upper)
        self.constant = constant
        self.sent = []

    def query_many(self, thetas, x):
        thetas = np.asarray(thetas)
        self.sent.append(thetas.copy())
        if not self.space.contains(thetas):
            raise AssertionError("out-of-bounds setting reached the device")
        q = np.zeros(len(thetas)) if self.constant else ((thetas - self.c) ** 2).sum(1)
        return (q[:, None] * np.asarray(x).sum(1)[None, :])[..., None] + 1.0

    def query(self, theta, x):
        return self.query_many(np.asarray(theta)[None], x)[0]


def _batch(b=5, f=3, seed=0):
    x = torch.as_tensor(np.random.default_rng(seed).uniform(0, 1, (b, f)))
    return Batch(x, torch.zeros(b, dtype=torch.int64), torch.arange(b))


# ---------------------------------------------------------------------------- MZI fixture
@pytest.fixture(scope="module")
def mzi():
    chip = MZIMesh(n_modes=3, noise=0.0, drift=0.0, dtype=torch.float64)
    data = load_iris()
    task = default_task(chip, data).to(torch.float64)
    model = chip.nominal_model(torch.float64)
    theta = torch.as_tensor(chip.space.sample(3))
    x = torch.as_tensor(data.x_train[:12])
    y = torch.as_tensor(data.y_train[:12])

    def loss(t):
        return task.loss(task.logits_model(model, t, x), y)

    hess = torch.autograd.functional.hessian(loss, theta).numpy()
    return task, model, theta, (x, y), hess


# ---------------------------------------------------------------------------- Hessian
def test_top_eigenvalues_match_the_analytic_quadratic():
    x, r, h_diag = _quadratic()
    data = (torch.as_tensor(x), torch.zeros(len(x), dtype=torch.int64))
    theta = np.linspace(-1, 1, 6)
    res = hessian_top_eigenvalues(QuadTask(), Rotated(r), theta, data, k=2, tol=1e-10)
    want = np.sort(h_diag)[::-1][:2]
    np.testing.assert_allclose(res.eigenvalues, want, rtol=1e-8)
    assert res.method == "lanczos" and res.hvps > 0
    # eigenvector j is R^T e_j for the j-th largest diagonal entry
    top = np.argmax(h_diag)
    assert abs(res.eigenvectors[0] @ r[top]) == pytest.approx(1.0, abs=1e-6)
    ref_loss = 0.5 * np.mean(((x * (r @ theta)) ** 2).sum(1))
    assert res.loss == pytest.approx(ref_loss, rel=1e-12)
    assert json.dumps(res.to_dict())


def test_top_eigenvalues_match_a_dense_hessian_on_an_mzi_mesh(mzi):
    task, model, theta, data, hess = mzi
    dense = np.linalg.eigvalsh(hess)[::-1]
    before = theta.clone()
    res = hessian_top_eigenvalues(task, model, theta, data, k=2, tol=1e-10)
    np.testing.assert_allclose(res.eigenvalues, dense[:2], rtol=1e-6)
    assert torch.equal(theta, before)
    vec = res.eigenvectors[0]
    np.testing.assert_allclose(hess @ vec, dense[0] * vec, atol=1e-6 * abs(dense[0]))
    dense_path = hessian_top_eigenvalues(task, model, theta, data, k=6)
    assert dense_path.method == "dense"
    np.testing.assert_allclose(dense_path.eigenvalues, dense, rtol=1e-9, atol=1e-12)


def test_batches_are_weighted_by_size(mzi):
    task, model, theta, (x, y), _ = mzi
    whole = hessian_top_eigenvalues(task, model, theta, (x, y), tol=1e-10)
    parts = [(x[:3], y[:3]), (x[3:], y[3:])]  # unequal sizes: a plain mean of batches differs
    split = hessian_top_eigenvalues(task, model, theta, parts, tol=1e-10)
    assert split.top == pytest.approx(whole.top, rel=1e-7)
    assert split.loss == pytest.approx(whole.loss, rel=1e-12)


def test_float32_task_and_model_are_left_untouched():
    chip = MZIMesh(n_modes=3, noise=0.0, drift=0.0)
    data = load_iris()
    task = default_task(chip, data)  # float32 digital front end
    model = chip.nominal_model()
    theta = chip.space.sample(1)
    ref_task = default_task(chip, data).to(torch.float64)
    full = (torch.as_tensor(data.x_train), torch.as_tensor(data.y_train))
    ref = hessian_top_eigenvalues(ref_task, chip.nominal_model(torch.float64), theta, full)
    res = hessian_top_eigenvalues(task, model, theta, None)  # full train split, float64 copies
    assert res.top == pytest.approx(ref.top, rel=1e-6)
    assert task.front.weight.dtype == torch.float32 and task.dtype == torch.float32
    assert task.front.weight.requires_grad
    assert all(b.dtype == torch.float32 for b in model.buffers() if b.is_floating_point())


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    x, _, h_diag = _quadratic(seed=1)
    data = (torch.as_tensor(x), torch.zeros(len(x), dtype=torch.int64))
    res = hutchinson_trace(QuadTask(), Rotated(np.eye(6)), np.zeros(6), data, n_probes=8, rng=0)
    assert res.mean == pytest.approx(h_diag.sum(), rel=1e-12)
    assert res.stderr < 1e-10


def test_hutchinson_within_three_standard_errors_of_the_dense_trace(mzi):
    task, model, theta, data, hess = mzi
    res = hutchinson_trace(task, model, theta, data, n_probes=64, rng=np.random.default_rng(5))
    assert res.stderr > 0
    assert abs(res.mean - np.trace(hess)) < 3 * res.stderr
    again = hutchinson_trace(task, model, theta, data, n_probes=64, rng=5)
    assert again.mean == res.mean  # seeded
    assert json.dumps(res.to_dict())


def test_hessian_argument_validation(mzi):
    task, model, theta, data, _ = mzi
    with pytest.raises(ConfigError):
        hessian_top_eigenvalues(task, model, theta, data, k=0)
    with pytest.raises(ConfigError):
        hessian_top_eigenvalues(task, model, theta, data, k=7)
    with pytest.raises(ConfigError):
        hessian_top_eigenvalues(task, model, theta, data, method="power")
    with pytest.raises(ConfigError):
        hutchinson_trace(task, model, theta, data, n_probes=1, rng=0)
    with pytest.raises(BlacksatError):  # the model rejects controls of the wrong width
        hutchinson_trace(task, model, theta[:3], data, rng=0)


# ---------------------------------------------------------------------------- query-only
def test_query_sharpness_is_zero_for_a_constant_loss():
    dev = Bowl(np.zeros(4), constant=True)
    res = query_sharpness(SumTask(), dev, np.zeros(4), _batch(), rho=0.3, n=8, rng=0)
    assert res.mean_increase == 0.0 and res.max_increase == 0.0
    assert len(res.increases) == 8


def test_query_sharpness_is_positive_at_a_strict_minimum():
    c = np.array([0.1, -0.2, 0.3, 0.0])
    b = _batch()
    res = query_sharpness(SumTask(), Bowl(c), c, b, rho=0.2, n=10, rng=1)
    # every draw lies on the sphere of radius rho: increase = rho^2 * mean_b sum(x_b)
    want = 0.04 * float(b.features.sum(1).mean())
    np.testing.assert_allclose(res.increases, want, rtol=1e-9)
    assert res.mean_increase > 0 and res.max_increase == pytest.approx(want)
    assert res.loss == pytest.approx(1.0)  # readings are 1 at the minimum


def test_query_sharpness_spends_one_query_many_call():
    dev = MeteredDevice(Bowl(np.zeros(4)))
    n = 12
    res = query_sharpness(SumTask(), dev, np.zeros(4), _batch(b=5), rho=0.5, n=n, rng=2)
    assert dev.ledger.queries == 1
    assert dev.ledger.reconfigurations == n + 1
    assert dev.ledger.samples == (n + 1) * 5
    assert res.cost == dev.ledger
    assert json.dumps(res.to_dict())


def test_query_sharpness_settings_stay_in_bounds_and_theta_first():
    inner = Bowl(np.zeros(5), lower=0.0, upper=1.0)
    theta = np.array([0.0, 1.0, 0.5, 1.0, 0.0])  # on the boundary: half the draws leave the box
    kept = theta.copy()
    query_sharpness(SumTask(), inner, theta, _batch(), rho=2.0, n=16, rng=3)
    (sent,) = inner.sent
    assert sent.shape == (17, 5)
    assert inner.space.contains(sent)
    np.testing.assert_array_equal(sent[0], theta)
    np.testing.assert_array_equal(theta, kept)


def test_query_sharpness_takes_a_perturbation_model():
    class Common:
        def sample(self, theta, rng):
            return Perturbation(torch.full_like(theta, 0.1))

        def scaled(self, f):
            return self

        def worst(self, theta, grad, probe, rng):
            return self.sample(theta, rng)

    c = np.zeros(4)
    res = query_sharpness(SumTask(), Bowl(c), c, _batch(), perturbation=Common(), n=3, rng=0)
    want = 4 * 0.01 * float(_batch().features.sum(1).mean())
    np.testing.assert_allclose(res.increases, want, rtol=1e-9)


def test_query_sharpness_validation():
    dev = Bowl(np.zeros(4))
    with pytest.raises(ConfigError):
        query_sharpness(SumTask(), dev, np.zeros(4), _batch(), n=4, rng=0)
    with pytest.raises(ConfigError):
        query_sharpness(
            SumTask(), dev, np.zeros(4), _batch(), rho=0.1, perturbation=L2Ball(0.1), rng=0
        )
    with pytest.raises(ConfigError):
        query_sharpness(SumTask(), dev, np.zeros(4), _batch(), rho=0.1, n=0, rng=0)

    class Nuisance:
        def sample(self, theta, rng):
            return Perturbation(None, {"temperature": 1.0})

    with pytest.raises(ConfigError, match="nuisance"):
        query_sharpness(SumTask(), dev, np.zeros(4), _batch(), perturbation=Nuisance(), rng=0)
    assert dev.sent == []


def test_batched_and_looped_products_agree(mzi):
    task, model, theta, data, hess = mzi
    vs = torch.as_tensor(np.random.default_rng(0).standard_normal((5, 6)))
    batched = _Hessian(task, model, theta, data, batch_size=64)
    looped = _Hessian(task, model, theta, [data], batch_size=64)
    looped._batched = False  # the fallback for graphs without batching rules
    want = vs.numpy() @ hess
    np.testing.assert_allclose(batched.matmat(vs).numpy(), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(looped.matmat(vs).numpy(), want, rtol=1e-10, atol=1e-12)
    assert batched.count == looped.count == 5
