"""Perturbation models: every worst case maximises the linearised loss over its set, draws lie in
the set with the right moments, radii scale, combinations sum, and the nuisance adversary finds
known worst cases through the probe alone."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from blacksat.errors import ConfigError, NonFiniteError, ShapeError
from blacksat.perturbations import (
    Adaptive,
    Combined,
    CommonMode,
    L2Ball,
    NuisanceModel,
    PerControl,
    Perturbation,
    PerturbationModel,
    Sampled,
    Subspace,
    is_zero,
    needs_gradient,
)

D = 7
GROUPS = [np.array([0, 1, 2]), np.array([3, 5]), np.array([6])]
SCALE = np.array([1.0, 0.5, 2.0, -1.0, 0.3, 1.5, 0.8])
BASIS = np.random.default_rng(3).standard_normal((D, 3))
TOL = 1e-12


def _point(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    theta = torch.as_tensor(rng.uniform(-1, 1, D))
    grad = torch.as_tensor(rng.standard_normal(D))
    return theta, grad


def _no_probe(perts):  # control-space models never probe
    raise AssertionError("control-space models must not probe")


def _proj(q: np.ndarray) -> np.ndarray:
    return q @ q.T


# each: (model, membership test(theta, delta) -> bool)
def _cases():
    q, _ = np.linalg.qr(BASIS)
    mask = np.array([1, 0, 1, 1, 0, 1, 1], dtype=bool)

    def in_common(groups, scale, r):
        def ok(theta, delta):
            # delta = sum_G s_G 1_G * scale with |s_G| <= r (disjoint groups)
            s = np.ones(D) if scale is None else scale
            for g in groups:
                ratios = delta[g] / s[g]
                if np.ptp(ratios) > 1e-9 or abs(ratios[0]) > r + 1e-12:
                    return False
            rest = np.setdiff1d(np.arange(D), np.concatenate(groups))
            return np.allclose(delta[rest], 0)

        return ok

    return {
        "l2": (L2Ball(0.3), lambda th, d: np.linalg.norm(d) <= 0.3 + TOL),
        "asam": (
            Adaptive(0.3, eta=0.05),
            lambda th, d: np.linalg.norm(d / (np.abs(th) + 0.05)) <= 0.3 + TOL,
        ),
        "box": (PerControl(0.2), lambda th, d: np.abs(d).max() <= 0.2 + TOL),
        "box_masked": (
            PerControl(0.2, mask=mask, scale=np.abs(SCALE)),
            lambda th, d: np.all(np.abs(d) <= 0.2 * np.abs(SCALE) * mask + TOL),
        ),
        "common": (CommonMode(0.16), in_common([np.arange(D)], None, 0.16)),
        "common_groups": (
            CommonMode(0.16, groups=GROUPS, scale=SCALE),
            in_common(GROUPS, SCALE, 0.16),
        ),
        "subspace": (
            Subspace(BASIS, 0.4),
            lambda th, d: np.linalg.norm(d) <= 0.4 + TOL and np.allclose(_proj(q) @ d, d),
        ),
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_worst_maximises_the_linearised_loss_and_lies_in_the_set(name):
    model, member = CASES[name]
    rng = np.random.default_rng(1)
    for seed in range(3):
        theta, grad = _point(seed)
        w = model.worst(theta, grad, _no_probe, rng).delta.numpy()
        assert member(theta.numpy(), w)
        best = float(grad.numpy() @ w)
        # random points of the set (draws on its boundary, and shrunk into its interior)
        pts = np.stack([model.sample(theta, rng).delta.numpy() for _ in range(400)])
        pts = pts * rng.uniform(0, 1, (len(pts), 1)) ** np.array([[0.0]] * 200 + [[1.0]] * 200)
        assert all(member(theta.numpy(), p) for p in pts[:20])
        assert (pts @ grad.numpy()).max() <= best + 1e-12
        assert best > 0


def test_box_and_common_mode_worst_equal_brute_force_over_vertices():
    theta, grad = _point(4)
    g = grad.numpy()
    corners = np.array(list(itertools.product((-0.2, 0.2), repeat=D)))
    w = PerControl(0.2).worst(theta, grad, _no_probe, None).delta.numpy()
    assert g @ w == pytest.approx((corners @ g).max(), abs=1e-14)
    model = CommonMode(0.16, groups=GROUPS, scale=SCALE)
    best = -np.inf
    for signs in itertools.product((-1.0, 1.0), repeat=len(GROUPS)):
        d = np.zeros(D)
        for s, grp in zip(signs, GROUPS, strict=True):
            d[grp] = 0.16 * s * SCALE[grp]
        best = max(best, g @ d)
    w = model.worst(theta, grad, _no_probe, None).delta.numpy()
    assert g @ w == pytest.approx(best, abs=1e-14)


def test_common_mode_worst_is_r_sign_of_the_summed_gradient_times_ones():
    theta, grad = _point(5)
    w = CommonMode(0.16).worst(theta, grad, _no_probe, None).delta
    expected = 0.16 * torch.sign(grad.sum()) * torch.ones(D, dtype=torch.float64)
    torch.testing.assert_close(w, expected, rtol=0, atol=0)


def test_asam_matches_a_hand_computation():
    # T = |theta| + eta = (1, 2); T g = (3, 4), ||T g|| = 5; T^2 g = (3, 8)
    theta = torch.tensor([-0.99, 1.99], dtype=torch.float64)
    grad = torch.tensor([3.0, 2.0], dtype=torch.float64)
    w = Adaptive(0.5, eta=0.01).worst(theta, grad, _no_probe, None).delta
    torch.testing.assert_close(w, torch.tensor([0.3, 0.8], dtype=torch.float64))
    # draws: rho * T * u / ||u||, so ||delta / T|| = rho
    d = Adaptive(0.5, eta=0.01).sample(theta, np.random.default_rng(0)).delta
    assert float(torch.linalg.vector_norm(d / torch.tensor([1.0, 2.0]))) == pytest.approx(0.5)


def test_subspace_worst_is_the_projected_sam_direction():
    theta, grad = _point(6)
    q, _ = np.linalg.qr(BASIS)
    pg = _proj(q) @ grad.numpy()
    w = Subspace(BASIS, 0.4).worst(theta, grad, _no_probe, None).delta.numpy()
    np.testing.assert_allclose(w, 0.4 * pg / np.linalg.norm(pg), rtol=1e-12, atol=1e-14)


def test_draws_have_the_right_moments():
    rng = np.random.default_rng(7)
    theta, _ = _point(7)
    n = 3000

    def draws(model):
        return np.stack([model.sample(theta, rng).delta.numpy() for _ in range(n)])

    box = draws(PerControl(0.2))
    assert np.abs(box).max() <= 0.2
    assert box.mean() == pytest.approx(0.0, abs=0.005)
    assert box.var() == pytest.approx(0.2**2 / 3, rel=0.05)
    gauss = draws(PerControl(0.2, kind="gaussian"))
    assert gauss.std() == pytest.approx(0.2, rel=0.03)
    common = draws(CommonMode(0.16))
    assert np.ptp(common, axis=1).max() == 0  # one shift for every control
    assert common[:, 0].var() == pytest.approx(0.16**2 / 3, rel=0.08)
    assert np.abs(common).max() <= 0.16
    cg = draws(CommonMode(0.1, groups=GROUPS, kind="gaussian"))
    assert cg[:, 0].std() == pytest.approx(0.1, rel=0.05)
    assert abs(np.corrcoef(cg[:, 0], cg[:, 3])[0, 1]) < 0.06  # groups independent
    assert np.all(cg[:, 4] == 0)  # control 4 is in no group
    ball = draws(L2Ball(0.3))
    np.testing.assert_allclose(np.linalg.norm(ball, axis=1), 0.3)
    np.testing.assert_allclose(ball.T @ ball / n, 0.09 / D * np.eye(D), atol=0.003)
    sub = draws(Subspace(BASIS, 0.4))
    q, _ = np.linalg.qr(BASIS)
    np.testing.assert_allclose(np.linalg.norm(sub, axis=1), 0.4)
    np.testing.assert_allclose(sub.T @ sub / n, 0.16 / 3 * _proj(q), atol=0.004)


@pytest.mark.parametrize("name", sorted(CASES))
def test_zero_radius_gives_exact_zeros_and_zero_gradient_stays_finite(name):
    model, member = CASES[name]
    theta, grad = _point(8)
    rng = np.random.default_rng(0)
    zero = model.scaled(0.0)
    assert is_zero(zero) and not is_zero(model)
    for p in (zero.worst(theta, grad, _no_probe, rng), zero.sample(theta, rng)):
        assert torch.equal(p.delta, torch.zeros(D, dtype=torch.float64))
    flat = model.worst(theta, torch.zeros(D, dtype=torch.float64), _no_probe, rng).delta
    assert torch.isfinite(flat).all() and member(theta.numpy(), flat.numpy())
    assert torch.equal(flat, torch.zeros(D, dtype=torch.float64))


@pytest.mark.parametrize("name", sorted(CASES))
def test_scaled_scales_the_radius(name):
    model, _ = CASES[name]
    theta, grad = _point(9)
    w = model.worst(theta, grad, _no_probe, None).delta
    torch.testing.assert_close(model.scaled(2.5).worst(theta, grad, _no_probe, None).delta, 2.5 * w)
    s = model.sample(theta, np.random.default_rng(3)).delta
    s2 = model.scaled(2.5).sample(theta, np.random.default_rng(3)).delta
    torch.testing.assert_close(s2, 2.5 * s)
    with pytest.raises(ConfigError):
        model.scaled(-1.0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_models_never_mutate_inputs_and_keep_theta_dtype(name):
    model, _ = CASES[name]
    assert isinstance(model, PerturbationModel)
    theta, grad = _point(10)
    theta.requires_grad_(True)
    t0, g0 = theta.detach().clone(), grad.clone()
    p = model.worst(theta, grad, _no_probe, np.random.default_rng(0))
    model.sample(theta, np.random.default_rng(0))
    assert torch.equal(theta.detach(), t0) and torch.equal(grad, g0)
    assert p.delta.dtype == torch.float64 and p.delta.shape == (D,) and not p.delta.requires_grad
    p32 = model.sample(theta.detach().float(), np.random.default_rng(0))
    assert p32.delta.dtype == torch.float32
    with pytest.raises(ShapeError):
        model.worst(theta, grad[:-1], _no_probe, None)
    with pytest.raises(NonFiniteError):
        model.worst(theta, torch.full((D,), float("nan"), dtype=torch.float64), _no_probe, None)


@given(
    arrays(np.float64, D, elements=st.floats(-1e3, 1e3)),
    st.sampled_from(sorted(CASES)),
)
def test_worst_beats_its_own_draws_for_any_gradient(g, name):
    model, member = CASES[name]
    theta, _ = _point(11)
    grad = torch.as_tensor(g)
    w = model.worst(theta, grad, _no_probe, None).delta.numpy()
    assert np.all(np.isfinite(w)) and member(theta.numpy(), w)
    rng = np.random.default_rng(0)
    draws = np.stack([model.sample(theta, rng).delta.numpy() for _ in range(30)])
    assert (draws @ g).max() <= g @ w + 1e-9 * (1 + np.abs(g).sum())


def test_combined_sums_its_members():
    theta, grad = _point(12)
    a, b = CommonMode(0.1), PerControl(0.05)
    nm = NuisanceModel({"temperature": (-2.0, 2.0)})
    both = Combined(a, b, nm)
    calls = []

    def probe(perts):
        calls.append(len(perts))
        return torch.tensor([p.nuisance["temperature"] ** 2 for p in perts])

    w = both.worst(theta, grad, probe, np.random.default_rng(0))
    ref = a.worst(theta, grad, None, None).delta + b.worst(theta, grad, None, None).delta
    torch.testing.assert_close(w.delta, ref)
    assert set(w.nuisance) == {"temperature"} and abs(w.nuisance["temperature"]) == 2.0
    assert calls == [2]
    s = both.sample(theta, np.random.default_rng(5))
    r = np.random.default_rng(5)
    sa, sb, sn = a.sample(theta, r), b.sample(theta, r), nm.sample(theta, r)
    torch.testing.assert_close(s.delta, sa.delta + sb.delta)
    assert s.nuisance == sn.nuisance
    half = both.scaled(0.5)
    torch.testing.assert_close(
        half.worst(theta, grad, probe, np.random.default_rng(0)).delta, 0.5 * ref
    )
    assert half.models[2].ranges == {"temperature": (-1.0, 1.0)}
    assert is_zero(both.scaled(0)) and not is_zero(both)
    with pytest.raises(ConfigError, match="twice"):
        Combined(nm, Combined(a, NuisanceModel({"temperature": (-1.0, 1.0)})))
    with pytest.raises(ConfigError):
        Combined()


def test_sampled_takes_a_draw_where_the_worst_case_is_asked():
    theta, grad = _point(13)
    spread = PerControl(0.05, "gaussian")
    model = Sampled(spread)
    w = model.worst(theta, grad, None, np.random.default_rng(4))
    torch.testing.assert_close(w.delta, spread.sample(theta, np.random.default_rng(4)).delta)
    assert not needs_gradient(model) and needs_gradient(spread)
    # worst drift, random spread: SAT needs no gradient ascent for it
    both = Combined(CommonMode(0.1, grid=5), model)
    assert not needs_gradient(both)
    assert is_zero(Sampled(spread.scaled(0))) and not is_zero(model)
    half = model.scaled(0.5).worst(theta, None, None, np.random.default_rng(4)).delta
    torch.testing.assert_close(half, 0.5 * w.delta)
    with pytest.raises(ConfigError, match="not a perturbation model"):
        Sampled(object())


def test_perturbation_addition_merges_deltas_and_nuisances():
    d = torch.ones(3, dtype=torch.float64)
    p = Perturbation(d, {"a": 1.0}) + Perturbation(None, {"b": 2.0})
    assert torch.equal(p.delta, d) and p.nuisance == {"a": 1.0, "b": 2.0}
    assert (Perturbation() + Perturbation()).delta is None


@pytest.mark.parametrize(
    "build",
    [
        lambda: L2Ball(-0.1),
        lambda: Adaptive(0.1, eta=-1),
        lambda: PerControl(float("nan")),
        lambda: PerControl(0.1, kind="uniform"),
        lambda: PerControl(0.1, mask=[0, 2, 1]),
        lambda: PerControl(0.1, mask=[1, 0], scale=[1.0, 2.0, 3.0]),
        lambda: CommonMode(0.1, groups=[]),
        lambda: CommonMode(0.1, groups=[[0, 0, 1]]),
        lambda: CommonMode(0.1, groups=[[0.5, 1.0]]),
        lambda: CommonMode(0.1, scale=[1.0, np.inf]),
        lambda: Subspace(np.ones((4, 2)), 0.1),
        lambda: Subspace(np.ones((2, 3)), 0.1),
        lambda: NuisanceModel({}),
        lambda: NuisanceModel({"t": (2.0, -2.0)}),
        lambda: NuisanceModel({"t": (-2.0, 2.0)}, center={"t": 3.0}),
        lambda: NuisanceModel({"t": (-2.0, 2.0)}, center={"u": 0.0}),
        lambda: NuisanceModel({"t": (-2.0, 2.0)}, steps=0),
        lambda: NuisanceModel({"t": (-2.0, 2.0)}, fd=0.9),
        lambda: NuisanceModel({"t": (-2.0, 2.0)}, step_size=0.0),
        lambda: NuisanceModel({"t": (-2.0, 2.0)}, method="grid"),
        lambda: NuisanceModel({k: (-1.0, 1.0) for k in "abcde"}, method="corners"),
    ],
)
def test_invalid_configurations_raise_config_error(build):
    with pytest.raises(ConfigError):
        build()


def test_shape_mismatches_raise():
    theta, grad = _point(13)
    with pytest.raises(ShapeError):
        PerControl(0.1, mask=[1, 0, 1]).worst(theta, grad, None, None)
    with pytest.raises(ShapeError):
        CommonMode(0.1, groups=[[0, 9]]).sample(theta, np.random.default_rng(0))
    with pytest.raises(ShapeError):
        Subspace(np.eye(4)[:, :2], 0.1).worst(theta, grad, None, None)
    with pytest.raises(ShapeError):
        L2Ball(0.1).sample(theta[None], np.random.default_rng(0))


# ---------------------------------------------------------------------- nuisance adversary
class CountingProbe:
    """A probe of a known loss of the nuisance values, recording every call and point."""

    def __init__(self, loss):
        self.loss, self.calls, self.points = loss, [], []

    def __call__(self, perts):
        assert all(p.delta is None for p in perts)
        self.calls.append(len(perts))
        self.points += [dict(p.nuisance) for p in perts]
        return torch.tensor([self.loss(**p.nuisance) for p in perts], dtype=torch.float64)


def test_nuisance_ascent_finds_the_worst_end_of_a_1d_loss():
    theta = torch.zeros(D, dtype=torch.float64)
    probe = CountingProbe(lambda t: (t - 0.5) ** 2)  # worst at t = -2
    model = NuisanceModel({"t": (-2.0, 2.0)}, steps=2)
    p = model.worst(theta, None, probe, np.random.default_rng(0))
    assert p.delta is None and p.nuisance == {"t": -2.0}
    assert probe.calls == [2, 2] and model.probe_evaluations == 4
    assert probe.points[0] == {"t": 0.0}  # starts at the center
    assert all(-2.0 <= q["t"] <= 2.0 for q in probe.points)


def test_nuisance_ascent_finds_the_worst_corner_of_a_2d_loss_and_stays_in_range():
    theta = torch.zeros(D, dtype=torch.float64)
    probe = CountingProbe(lambda a, b: (a - 0.5) ** 2 + (b + 0.3) ** 2)  # worst (-2, 1)
    model = NuisanceModel({"a": (-2.0, 2.0), "b": (-1.0, 1.0)}, steps=3)
    p = model.worst(theta, None, probe, np.random.default_rng(1))
    assert p.nuisance == {"a": -2.0, "b": 1.0}
    assert probe.calls == [3, 3, 3] and model.probe_evaluations == 9
    assert all(-2 <= q["a"] <= 2 and -1 <= q["b"] <= 1 for q in probe.points)
    # one-sided differences: each probe moves one parameter by u in (0, fd * width]
    base, moved = probe.points[0], probe.points[1]
    assert moved["b"] == base["b"] and 0 < moved["a"] - base["a"] <= 0.1 * 4.0


def test_nuisance_corners_probe_every_corner_in_one_call():
    theta = torch.zeros(D, dtype=torch.float64)
    probe = CountingProbe(lambda a, b, c: a - 2 * b + 0.1 * c * a)
    model = NuisanceModel({"a": (-1.0, 3.0), "b": (-1.0, 1.0), "c": (0.0, 0.0)}, method="corners")
    p = model.worst(theta, None, probe, np.random.default_rng(0))
    assert p.nuisance == {"a": 3.0, "b": -1.0, "c": 0.0}
    assert probe.calls == [4] and model.probe_evaluations == 4


def test_nuisance_sample_scaled_and_collapsed():
    theta = torch.zeros(D, dtype=torch.float64)
    model = NuisanceModel({"rotation": (-2.0, 2.0), "scale": (0.9, 1.1)})
    assert model.center == {"rotation": 0.0, "scale": 1.0}
    rng = np.random.default_rng(2)
    s = np.array([[v for v in model.sample(theta, rng).nuisance.values()] for _ in range(3000)])
    assert s[:, 0].min() >= -2 and s[:, 0].max() <= 2 and s[:, 1].min() >= 0.9
    assert s.mean(0) == pytest.approx([0.0, 1.0], abs=0.05)
    assert s[:, 0].var() == pytest.approx(16 / 12, rel=0.06)
    half = model.scaled(0.5)
    assert half.ranges == {"rotation": (-1.0, 1.0), "scale": (0.95, 1.05)}
    zero = model.scaled(0.0)
    assert is_zero(zero) and zero.probe_evaluations == 0
    probe = CountingProbe(lambda rotation, scale: rotation)
    assert zero.worst(theta, None, probe, rng).nuisance == model.center and probe.calls == []


def test_nuisance_ascent_survives_non_finite_losses():
    theta = torch.zeros(D, dtype=torch.float64)
    probe = CountingProbe(lambda t: float("nan") if t > 0 else -t)
    p = NuisanceModel({"t": (-2.0, 2.0)}, steps=2).worst(
        theta, None, probe, np.random.default_rng(0)
    )
    assert np.isfinite(p.nuisance["t"]) and -2 <= p.nuisance["t"] <= 2
    bad = NuisanceModel({"t": (-2.0, 2.0)})
    with pytest.raises(ShapeError):
        bad.worst(theta, None, lambda perts: torch.zeros(5), np.random.default_rng(0))


# ---------------------------------------------------------------------- probed common-mode grid
def _shift_probe(loss_of_shift, calls):
    """A probe whose loss depends only on the common shift (the mean of delta)."""

    def probe(perts):
        calls.append(len(perts))
        return torch.tensor([loss_of_shift(float(p.delta.mean())) for p in perts])

    return probe


def test_common_mode_grid_finds_an_interior_worst_shift_the_linearisation_misses():
    theta, _ = _point(21)
    calls: list[int] = []
    # the loss peaks at s = +0.04, inside the range; the gradient at 0 points to -r
    probe = _shift_probe(lambda s: -((s - 0.04) ** 2), calls)
    model = CommonMode(0.16, grid=9)
    delta = model.worst(theta, -torch.ones(D), probe, None).delta
    assert torch.allclose(delta, torch.full((D,), 0.04, dtype=torch.float64))
    assert calls == [9] and model.probe_evaluations == 9
    linear = CommonMode(0.16).worst(theta, -torch.ones(D), _no_probe, None).delta
    assert torch.allclose(linear, torch.full((D,), -0.16, dtype=torch.float64))
    assert CommonMode(0.16).probe_evaluations == 0


def test_common_mode_grid_covers_every_group_combination_with_scale():
    theta, _ = _point(22)
    groups = [np.array([0, 1]), np.array([2, 3, 4])]
    seen: list[tuple[float, float]] = []

    def probe(perts):
        seen.extend((float(p.delta[0]), float(p.delta[2])) for p in perts)
        # worst where group 0 sits at -r and group 1 at the centre
        return torch.tensor([-abs(a + 0.1) - abs(b) for a, b in seen[-len(perts) :]])

    model = CommonMode(0.1, groups=groups, grid=3, scale=np.ones(D))
    delta = model.worst(theta, None, probe, None).delta
    assert len(seen) == 9 == model.probe_evaluations
    assert sorted(set(seen)) == [(a, b) for a in (-0.1, 0.0, 0.1) for b in (-0.1, 0.0, 0.1)]
    assert delta.tolist() == pytest.approx([-0.1, -0.1, 0.0, 0.0, 0.0, 0.0, 0.0])


def test_common_mode_grid_skips_nan_losses_and_refuses_all_nan():
    theta, grad = _point(23)
    nan_at_end = _shift_probe(lambda s: float("nan") if abs(s) > 0.15 else s, [])
    delta = CommonMode(0.16, grid=5).worst(theta, grad, nan_at_end, None).delta
    assert torch.allclose(delta, torch.full((D,), 0.08, dtype=torch.float64))
    with pytest.raises(NonFiniteError):
        CommonMode(0.16, grid=5).worst(theta, grad, _shift_probe(lambda s: float("nan"), []), None)


def test_common_mode_grid_validation_scaling_and_zero_radius():
    for bad in (1, -2, 2.5, True):
        with pytest.raises(ConfigError, match="grid"):
            CommonMode(0.1, grid=bad)
    with pytest.raises(ConfigError, match="probe points"):
        CommonMode(0.1, groups=[[i] for i in range(5)], grid=9)
    scaled = CommonMode(0.1, grid=7).scaled(2.0)
    assert scaled.grid == 7 and scaled.radius == pytest.approx(0.2) and "grid=7" in repr(scaled)
    theta, grad = _point(24)
    zero = CommonMode(0.0, grid=5)
    assert zero.probe_evaluations == 0
    assert not zero.worst(theta, grad, _no_probe, None).delta.any()
