"""The physics-free surrogate: it recovers a local device, picks the response the data shows,
says which assumption the data contradicts, and knows where its data is."""

import numpy as np
import pytest
import torch

from blacksat.errors import ConfigError, ShapeError
from blacksat.space import ParamSpace
from blacksat.surrogates import Coverage, LinearResponse, narrow_data_warning
from blacksat.surrogates.linear_response import _orthonormal, bspline, bspline_combine

N_IN, N_OUT = 5, 3
D = 2 * N_IN * N_OUT  # a differential pair of controls per weight, like a crossbar


def local_device(thetas, x, rng=None):
    """``W = tanh(3 (g+ - 0.5)) - tanh(3 (g- - 0.5))`` per weight; ``y = W x + 0.1``."""
    g = thetas.reshape(len(thetas), 2, N_OUT, N_IN)
    w = np.tanh(3 * (g[:, 0] - 0.5)) - np.tanh(3 * (g[:, 1] - 0.5))
    y = np.einsum("koi,bi->kbo", w, x) + 0.1
    return y if rng is None else y + 1e-3 * rng.standard_normal(y.shape)


def global_device(thetas, x):
    """Every weight depends on every control (a product of rotations, like a mesh)."""
    mix = np.cos(thetas @ np.random.default_rng(5).standard_normal((D, N_OUT * N_IN)))
    return np.einsum("koi,bi->kbo", mix.reshape(len(thetas), N_OUT, N_IN), x)


def intensity_device(thetas, x):
    t = thetas[:, : N_OUT * N_IN].reshape(len(thetas), N_OUT, N_IN)
    return np.einsum("koi,bi->kbo", np.cos(3 * t), x) ** 2


def data(device, n, seed=0, b=16):
    rng = np.random.default_rng(seed)
    thetas = rng.uniform(0, 1, (n, D))
    x = rng.uniform(-1, 1, (b, N_IN))
    return thetas, x, device(thetas, x)


def test_recovers_a_local_device_and_discovers_which_controls_drive_each_weight():
    sur = LinearResponse(seed=0).fit(
        [data(lambda t, x: local_device(t, x, np.random.default_rng(1)), 300)]
    )
    assert sur.response_ == "linear" and not sur.contradicted()
    fresh = data(local_device, 40, seed=9)
    assert sur.score([fresh])["r2"] > 0.995
    # weight (o, i) is coefficient i * N_OUT + o of the (p, n_out) response; its controls are
    # the pair (o, i) of G+ and of G-
    for o in range(N_OUT):
        for i in range(N_IN):
            j = i * N_OUT + o
            found = set(sur.controls_[j][sur.coef_[j].abs().sum(-1) > 0].tolist())
            assert found == {o * N_IN + i, N_OUT * N_IN + o * N_IN + i}
    bias = N_IN * N_OUT  # the constant term depends on no control
    assert all(sur.coef_[bias + o].abs().sum() == 0 for o in range(N_OUT))
    # a weight is the sum of its two cells' curves: first-order effects explain it all
    additive = {c.assumption: c for c in sur.checks_}["additive tuning curves"]
    assert additive.holds and additive.r2 > 0.9


def test_the_model_is_differentiable_in_the_controls():
    sur = LinearResponse(seed=0).fit([data(local_device, 200)])
    theta = torch.full((D,), 0.4, dtype=torch.float64, requires_grad=True)
    x = torch.ones(2, N_IN, dtype=torch.float64)
    y = sur(theta, x).sum()
    (g,) = torch.autograd.grad(y, theta)
    e = torch.zeros(D, dtype=torch.float64)
    e[0] = 1e-5
    with torch.no_grad():
        fd = (sur(theta + e, x).sum() - sur(theta - e, x).sum()) / 2e-5
    assert torch.isclose(g[0], fd, rtol=1e-4, atol=1e-8) and g[0] != 0


def test_a_global_device_contradicts_locality_and_the_report_says_so():
    sur = LinearResponse(seed=0).fit([data(global_device, 200)])
    bad = [c.assumption for c in sur.contradicted()]
    assert bad == ["locality + tuning curves"]
    assert "CONTRADICTED" in str(sur.contradicted()[0])
    # why: every weight is an interaction of all the controls, and the controls' own curves,
    # all of them summed, explain little of it (no number of controls per weight would do)
    additive = {c.assumption: c for c in sur.checks_}["additive tuning curves"]
    assert not additive.holds and additive.r2 < 0.6


def test_auto_picks_the_intensity_response_of_a_detected_field():
    sur = LinearResponse(seed=0).fit([data(intensity_device, 120, b=40)])
    assert sur.response_ == "intensity"
    checks = {c.assumption: c for c in sur.checks_}
    assert not checks["linear response"].holds and checks["intensity response"].holds
    linear = LinearResponse(seed=0).fit([data(local_device, 120, b=40)])
    assert linear.response_ == "linear"


def test_too_few_inputs_per_setting_and_bad_arguments_are_clear():
    with pytest.raises(ConfigError, match="at least 8 inputs"):
        LinearResponse().fit([data(local_device, 50, b=4)])
    for bad in ({"response": "cubic"}, {"max_controls": 0}, {"knots": 0}, {"min_gain": 2.0}):
        with pytest.raises(ConfigError):
            LinearResponse(**bad)
    sur = LinearResponse(seed=0).fit([data(local_device, 60)])
    with pytest.raises(ShapeError):
        sur(torch.zeros(D + 1), torch.zeros(2, N_IN))
    with pytest.raises(ShapeError):
        sur(torch.zeros(D), torch.zeros(2, N_IN + 1))
    with pytest.raises(ConfigError, match="not fitted"):
        LinearResponse()(torch.zeros(D), torch.zeros(2, N_IN))


def test_bspline_basis_is_a_partition_of_unity_inside_the_range_and_zero_far_outside():
    u = torch.linspace(0, 5, 51, dtype=torch.float64)
    b = bspline(u, 8)
    assert torch.allclose(b.sum(-1), torch.ones(51, dtype=torch.float64))
    assert torch.all(bspline(torch.tensor([-3.0, 9.0], dtype=torch.float64), 8) == 0)


def _dense_bspline(u: torch.Tensor, n: int) -> torch.Tensor:
    """The cubic B-spline basis written out over every basis function (the reference)."""
    t = (u[..., None] - torch.arange(n, dtype=u.dtype) + 1.0).abs()
    inner = 2.0 / 3.0 - t**2 + 0.5 * t**3
    return torch.where(t < 1.0, inner, (2.0 - t).clamp_min(0.0) ** 3 / 6.0)


@pytest.mark.parametrize("n_basis", [4, 9, 27])
def test_the_local_bspline_evaluations_match_the_dense_basis_in_value_and_gradient(n_basis):
    gen = torch.Generator().manual_seed(n_basis)
    # knots, the data range and far outside it on both sides
    u = torch.rand(5, 6, 3, generator=gen, dtype=torch.float64) * (n_basis + 10) - 7
    u[0, 0, :] = torch.tensor([0.0, 1.0, float(n_basis - 3)])
    u.requires_grad_()
    coef = torch.randn(6, 3, n_basis, generator=gen, dtype=torch.float64, requires_grad=True)
    ref = torch.einsum("kpmb,pmb->kpm", _dense_bspline(u, n_basis), coef)
    for got in (bspline_combine(u, coef), torch.einsum("kpmb,pmb->kpm", bspline(u, n_basis), coef)):
        assert torch.allclose(got, ref, atol=1e-14)
        g_ref = torch.autograd.grad(ref.sum(), (u, coef), retain_graph=True)
        g_got = torch.autograd.grad(got.sum(), (u, coef), retain_graph=True)
        for a, b in zip(g_got, g_ref, strict=True):
            assert torch.allclose(a, b, atol=1e-12)


def test_a_nan_point_gives_nan_not_an_indexing_error():
    coef = torch.ones(2, 6, dtype=torch.float64)
    u = torch.tensor([[0.5, float("nan")]], dtype=torch.float64)
    out = bspline_combine(u, coef)
    assert torch.isfinite(out[0, 0]) and torch.isnan(out[0, 1])
    assert torch.isnan(bspline(u, 6)[0, 1]).any()


def test_the_screening_basis_is_orthonormal_and_spans_each_controls_centred_curves():
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(7, 300, generator=gen, dtype=torch.float64) * 6  # d = 7 controls, N = 300
    basis = bspline(u, 9)  # (d, N, nb)
    q = torch.as_tensor(_orthonormal(basis))
    centred = basis - basis.mean(1, keepdim=True)
    for k in range(7):
        kept = q[k][:, q[k].norm(dim=0) > 0]
        # the centred splines sum to zero: one direction of nb is not spanned
        assert kept.shape[1] == 8
        assert torch.allclose(kept.T @ kept, torch.eye(8, dtype=torch.float64), atol=1e-10)
        proj = kept @ (kept.T @ centred[k])  # projecting the curves onto the basis keeps them
        assert torch.allclose(proj, centred[k], atol=1e-10)


def test_coverage_tells_a_design_from_a_trajectory_and_bounds_training():
    space = ParamSpace.box(D, 0.0, 1.0)
    rng = np.random.default_rng(0)
    design = Coverage.of([data(local_device, 200)])
    assert design.spread(space) > 0.8 and narrow_data_warning(design, space) is None
    assert design.region(space) is space  # the data spans the whole box
    path = 0.5 + np.cumsum(0.002 * rng.standard_normal((200, D)), axis=0)
    x = rng.uniform(-1, 1, (4, N_IN))
    log = Coverage.of([(path, x, local_device(path, x))])
    assert log.spread(space) < 0.25
    msg = narrow_data_warning(log, space)
    assert msg is not None and "one trajectory" in msg
    region = log.region(space, margin=0.05)
    assert np.all(region.lower >= 0) and np.all(region.upper <= 1)
    assert np.all(region.upper - region.lower < 0.5)
    assert log.inside(path).min() == 1.0 and log.inside(np.zeros(D))[0] < 1.0
    assert Coverage.from_dict(log.to_dict()) == log
    with pytest.raises(ConfigError):
        Coverage.from_dict({"theta_low": [0.0]})


def test_uncertainty_is_the_fit_error_inside_the_data_and_grows_outside_it():
    sur = LinearResponse(seed=0).fit([data(local_device, 200)])
    x = torch.ones(3, N_IN, dtype=torch.float64)
    inside = sur.uncertainty(torch.full((D,), 0.5, dtype=torch.float64), x)
    assert inside.shape == (3, N_OUT)
    assert torch.allclose(inside, torch.full_like(inside, sur.report_.held_out_rmse))
    far = sur.uncertainty(torch.full((2, D), 3.0, dtype=torch.float64), x)
    assert far.shape == (2, 3, N_OUT) and torch.all(far > 10 * inside[0, 0])
    with pytest.raises(ConfigError, match="not fitted"):
        LinearResponse().uncertainty(torch.zeros(D), x)


def test_inputs_outside_the_data_are_reported():
    from blacksat.surrogates import input_coverage_warning

    cov = Coverage.of([data(local_device, 30)])
    lo, hi = np.asarray(cov.x_low), np.asarray(cov.x_high)
    assert input_coverage_warning(cov, np.stack([lo, hi, (lo + hi) / 2])) is None
    edge = hi + 0.05 * (hi - lo)  # within the tolerance of 10 % of the range
    assert input_coverage_warning(cov, edge[None]) is None
    far = np.zeros((4, N_IN))
    far[:, 2] = 3.0
    msg = input_coverage_warning(cov, far)
    assert msg is not None and "1 of 5 input features" in msg and "feature 2" in msg
    assert input_coverage_warning(None, far) is None
