"""One contract suite, run over every surrogate kind (STYLE.md, lesson 9).

Every kind is fitted on the same recorded queries of a tiny MZI chip (4 modes, ``d = 12``,
every hidden effect at its default strength): fitting returns ``self`` with a finite report,
the call convention and its batched form agree, gradients reach ``theta`` (so the surrogate
trains through :class:`~blacksat.estimators.Autograd`), fits are seeded, pickling keeps the
predictions, the fit beats the unfitted model on settings it never saw, and bad data or bad
hyperparameters fail with clear errors.

The queries come from a local box (radius 0.3 rad around the centre): a black box cannot learn
12 phases over their whole 2 pi range from 64 settings, and the contract is about the
machinery, not about which kind wins (``test_greybox.py`` and ``test_residual_ensemble.py``).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from blacksat.data import load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.errors import ConfigError, NonFiniteError, ShapeError
from blacksat.estimators import Autograd
from blacksat.objective import StepContext
from blacksat.querydata import QueryData
from blacksat.surrogates import (
    Ensemble,
    GreyBox,
    Residual,
    Surrogate,
    collect,
    local,
    quality,
)
from blacksat.surrogates.base import split_groups

N_SETTINGS, N_INPUTS, RADIUS = 64, 6, 0.3

Factory = Callable[..., Surrogate]


def _greybox(nominal: torch.nn.Module, **kw) -> Surrogate:
    return GreyBox(nominal, **{"steps": 40, "lr": 0.05, **kw})


def _residual_greybox(nominal: torch.nn.Module, **kw) -> Surrogate:
    base = GreyBox(nominal, steps=30, lr=0.05)
    return Residual(base, **{"hidden": (32,), "steps": 60, **kw})


def _residual_nominal(nominal: torch.nn.Module, **kw) -> Surrogate:
    return Residual(nominal, **{"hidden": (32,), "steps": 60, **kw})


def _ensemble(nominal: torch.nn.Module, **kw) -> Surrogate:
    return Ensemble(**{"members": 3, "hidden": (32, 32), "steps": 150, **kw})


#: every kind, small enough that a fit takes well under 2 s on a laptop core; keyword
#: arguments override the defaults (of the outer surrogate)
KINDS: dict[str, Factory] = {
    "greybox": _greybox,
    "residual_greybox": _residual_greybox,
    "residual_nominal": _residual_nominal,
    "ensemble": _ensemble,
}


def _inputs(n: int, n_modes: int, seed: int) -> np.ndarray:
    """``n`` real input fields of unit power, ``(n, n_modes)``."""
    x = np.random.default_rng(seed).standard_normal((n, n_modes))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def chip() -> MZIMesh:
    return MZIMesh(n_modes=4, s_bs=0.1, s_ps=0.1, seed=3)


@pytest.fixture(scope="module")
def nominal(chip):
    return chip.nominal_model(dtype=torch.float64)


@pytest.fixture(scope="module")
def x(chip) -> np.ndarray:
    return _inputs(N_INPUTS, chip.n_modes, seed=0)


@pytest.fixture(scope="module")
def data(chip, x) -> QueryData:
    thetas = local(chip.space, chip.space.center, RADIUS, N_SETTINGS, seed=0)
    return collect(chip, thetas, x).data


@pytest.fixture(scope="module")
def fresh(chip, x) -> QueryData:
    """Held-out queries: other settings of the same box, never seen by any fit."""
    thetas = local(chip.space, chip.space.center, RADIUS, 32, seed=1)
    return collect(chip, thetas, x).data


@pytest.fixture(scope="module")
def fitted(nominal, data) -> dict[str, Surrogate]:
    """Every kind, fitted once on ``data`` (a QueryData) with seed 0."""
    return {name: make(nominal, seed=0).fit(data) for name, make in KINDS.items()}


@pytest.fixture(params=sorted(KINDS))
def kind(request) -> str:
    return request.param


def _theta(chip, k: int | None = None, seed: int = 5) -> torch.Tensor:
    """Settings inside the data box: ``(d,)``, or ``(k, d)``."""
    n = 1 if k is None else k
    t = local(chip.space, chip.space.center, RADIUS, n, seed=seed, kind="sobol")
    return torch.as_tensor(t[0] if k is None else t)


# ---------------------------------------------------------------------- fitting and report
def test_fit_returns_self_with_a_finite_report(kind, nominal, data):
    sur = KINDS[kind](nominal, seed=0, steps=5)
    assert sur.report_ is None
    assert sur.fit(data) is sur
    rep = sur.report_
    assert rep.n_settings + rep.n_held_out == data.n_settings == N_SETTINGS
    assert rep.n_held_out == round(0.2 * N_SETTINGS)
    assert rep.steps == 5 and rep.seconds >= 0
    for value in (rep.train_rmse, rep.held_out_rmse, rep.held_out_r2, rep.relative_error):
        assert math.isfinite(value)
    assert rep.train_rmse >= 0 and rep.held_out_rmse >= 0
    assert f"{rep.n_settings} settings" in str(rep)


# ---------------------------------------------------------------------- call convention
def test_call_shapes_and_batched_equals_looped(kind, fitted, chip, x):
    sur = fitted[kind]
    xs = torch.as_tensor(x)
    one = sur(_theta(chip), xs)
    assert one.shape == (N_INPUTS, chip.n_modes)
    thetas = _theta(chip, k=5)
    many = sur(thetas, xs)
    assert many.shape == (5, N_INPUTS, chip.n_modes)
    looped = torch.stack([sur(t, xs) for t in thetas])
    torch.testing.assert_close(many, looped, rtol=1e-5, atol=1e-6)
    with pytest.raises(ShapeError):
        sur(thetas[None], xs)  # (1, K, d): neither (d,) nor (K, d)


def test_gradient_reaches_theta_through_autograd(kind, fitted, chip):
    sur = fitted[kind]
    theta = _theta(chip).clone().requires_grad_(True)
    x = torch.as_tensor(_inputs(3, chip.n_modes, seed=1))
    (g,) = torch.autograd.grad(sur(theta, x).square().sum(), theta)
    assert g.shape == theta.shape and torch.isfinite(g).all() and g.abs().sum() > 0
    # as a model inside the autograd estimator of a tiny task
    task = default_task(chip, load_iris(seed=0), seed=0).to(torch.float64)
    batch = task.batch("train", np.arange(12))
    est = Autograd(sur, task)(_theta(chip), batch, StepContext(rng=np.random.default_rng(0)))
    assert est.grad.shape == (chip.space.dim,) and est.grad.dtype == torch.float64
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
    assert math.isfinite(est.loss)


# ---------------------------------------------------------------------- reproducibility
def test_same_seed_same_predictions_and_groups_equal_querydata(
    kind, fitted, nominal, data, chip, x
):
    """A second fit with the same seed, on the same queries given as a plain list of
    ``(thetas, x, y)`` groups instead of a QueryData, predicts exactly the same."""
    again = KINDS[kind](nominal, seed=0).fit(list(data.groups))
    thetas, xs = _theta(chip, k=4), torch.as_tensor(x)
    with torch.no_grad():
        torch.testing.assert_close(again(thetas, xs), fitted[kind](thetas, xs), rtol=0, atol=0)
    assert again.report_.n_settings == fitted[kind].report_.n_settings


def test_pickle_round_trip_keeps_predictions(kind, fitted, chip, x):
    sur = fitted[kind]
    back = pickle.loads(pickle.dumps(sur))
    assert type(back) is type(sur) and back.report_ == sur.report_
    thetas, xs = _theta(chip, k=3), torch.as_tensor(x)
    with torch.no_grad():
        torch.testing.assert_close(back(thetas, xs), sur(thetas, xs), rtol=0, atol=0)


def test_file_round_trip_without_pickle_keeps_predictions(kind, fitted, nominal, chip, x, tmp_path):
    from blacksat.surrogates.files import load_surrogate, save_surrogate

    sur = fitted[kind]
    path = save_surrogate(sur, tmp_path / "s.pt", {"device": "mzi"})
    torch.load(path, weights_only=True)  # tensors and strings only: no pickle needed
    back, meta = load_surrogate(path, nominal)
    assert type(back) is type(sur) and back.report_ == sur.report_ and meta == {"device": "mzi"}
    thetas, xs = _theta(chip, k=3), torch.as_tensor(x)
    with torch.no_grad():
        torch.testing.assert_close(back(thetas, xs), sur(thetas, xs), rtol=0, atol=0)


def test_a_second_fit_starts_afresh_unless_warm_start(kind, nominal, data, chip, x):
    thetas, xs = _theta(chip, k=3), torch.as_tensor(x)
    once = KINDS[kind](nominal, seed=0, steps=5).fit(data)
    twice = KINDS[kind](nominal, seed=0, steps=5).fit(data).fit(data)
    warm = KINDS[kind](nominal, seed=0, steps=5, warm_start=True).fit(data).fit(data)
    with torch.no_grad():
        torch.testing.assert_close(twice(thetas, xs), once(thetas, xs), rtol=0, atol=0)
        assert not torch.equal(warm(thetas, xs), once(thetas, xs))


def test_the_models_given_are_never_modified(kind, nominal, data):
    base = GreyBox(nominal, steps=3)
    given = {"nominal": nominal, "base": base}
    before = {k: {n: v.clone() for n, v in m.state_dict().items()} for k, m in given.items()}
    KINDS[kind](nominal, seed=0, steps=3).fit(data)
    Residual(base, hidden=(8,), steps=3).fit(data)
    assert base.report_ is None
    for k, m in given.items():
        after = m.state_dict()
        assert after.keys() == before[k].keys()
        assert all(torch.equal(after[n], v) for n, v in before[k].items()), k


# ---------------------------------------------------------------------- quality
def test_fit_beats_the_unfitted_model_on_unseen_settings(kind, fitted, nominal, data, fresh):
    """Physics kinds against the nominal model they start from; the black box against the
    same ensemble with no training steps."""
    sur = fitted[kind]
    if kind == "ensemble":
        baseline = KINDS[kind](nominal, seed=0, steps=0).fit(data)
    else:
        baseline = nominal
    got, before = quality(sur, fresh), quality(baseline, fresh)
    # measured on chip seeds 0-3: RMSE ratios 0.6-0.7 (grey box), 0.4-0.55 (residuals),
    # 0.33 (ensemble); R^2 0.95-0.99 (physics kinds), 0.89-0.90 (ensemble)
    assert got["rmse"] < 0.85 * before["rmse"]
    assert got["r2"] > 0.8
    assert sur.score(fresh) == pytest.approx(got)


# ---------------------------------------------------------------------- bad data
def _bad_data(data: QueryData) -> dict[str, tuple[type[Exception], object]]:
    t, x, y = (np.array(a) for a in data.groups[0])
    y_nan = y.copy()
    y_nan[0, 0, 0] = np.nan
    x_inf = x.copy()
    x_inf[0, 0] = np.inf
    return {
        "nan in y": (NonFiniteError, [(t, x, y_nan)]),
        "inf in x": (NonFiniteError, [(t, x_inf, y)]),
        "y of another K": (ShapeError, [(t, x, y[:-1])]),
        "thetas not 2-D": (ShapeError, [(t[0], x, y[:1])]),
        "a group without settings": (ShapeError, [(t[:0], x, y[:0])]),
        "a group without inputs": (ShapeError, [(t, x[:0], y[:, :0])]),
        "groups of other d": (ShapeError, [(t, x, y), (t[:, :-1], x, y)]),
        "groups of other outputs": (ShapeError, [(t, x, y), (t, x, y[..., :-1])]),
        "empty list": (ConfigError, []),
        "empty QueryData": (ConfigError, QueryData()),
        "a numpy array": (ConfigError, y),
        "a tensor": (ConfigError, torch.as_tensor(y)),
        "not iterable": (ConfigError, 3.0),
        "not a triple of arrays": (ConfigError, [(t, x, "readings")]),
    }


def test_bad_data_is_a_clear_error(kind, nominal, data):
    for what, (error, bad) in _bad_data(data).items():
        sur = KINDS[kind](nominal, seed=0)
        with pytest.raises(error) as info:
            sur.fit(bad)
        assert str(info.value), what
        assert sur.report_ is None, what  # nothing was fitted


def test_nan_message_names_the_array(nominal, data):
    t, x, y = (np.array(a) for a in data.groups[0])
    y[1, 2, 0] = np.nan
    with pytest.raises(NonFiniteError, match=r"group 0: y .*NaN"):
        GreyBox(nominal).fit([(t, x, y)])
    with pytest.raises(ShapeError, match=r"thetas \(K, d\)"):
        GreyBox(nominal).fit([(t, x, y[:2])])


@given(n=st.integers(1, 40), held_out=st.floats(0.0, 0.999), seed=st.integers(0, 2**16))
def test_split_holds_out_settings_but_never_all(n, held_out, seed):
    t = np.arange(2.0 * n).reshape(n, 2)
    groups = [
        (t[: n // 2], np.ones((3, 1)), np.zeros((n // 2, 3, 1))),
        (t[n // 2 :], np.ones((2, 1)), np.zeros((n - n // 2, 2, 1))),
    ]
    groups = [g for g in groups if len(g[0])]
    train, test = split_groups(groups, held_out, seed)
    n_train, n_test = (sum(len(g[0]) for g in part) for part in (train, test))
    assert n_train + n_test == n and n_train >= 1
    if held_out > 0 and n >= 2:
        assert n_test >= 1
    kept = np.concatenate([g[0] for g in train + test])
    assert sorted(map(tuple, kept)) == sorted(map(tuple, t))  # every setting, once
    for thetas, x, y in train + test:
        assert y.shape[:2] == (len(thetas), len(x))


def test_a_large_held_out_fraction_leaves_one_setting_to_fit(kind, nominal, data):
    """``steps=0``: were every setting held out, the fit would fail here, not loop forever."""
    few = [(t[:5], x, y[:5]) for t, x, y in data.groups[:1]]
    sur = KINDS[kind](nominal, seed=0, held_out=0.99, steps=0).fit(few)
    assert (sur.report_.n_settings, sur.report_.n_held_out) == (1, 4)


# ---------------------------------------------------------------------- bad hyperparameters
BAD_COMMON = [
    {"steps": -1},
    {"steps": 2.5},
    {"steps": True},
    {"lr": 0},
    {"lr": -1e-3},
    {"lr": float("nan")},
    {"held_out": 1.0},
    {"held_out": -0.1},
    {"held_out": "0.2"},
    {"seed": -1},
    {"dtype": int},
    {"dtype": torch.int64},
    {"dtype": torch.float16},
    {"batch_samples": 0},
]


@pytest.mark.parametrize(
    "kw", BAD_COMMON, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items())
)
def test_bad_common_hyperparameters(kind, nominal, kw):
    with pytest.raises(ConfigError):
        KINDS[kind](nominal, **kw)


BAD_SPECIFIC: dict[str, Callable[[torch.nn.Module], object]] = {
    "greybox params naming no buffer": lambda m: GreyBox(m, params=["no_such_buffer"]),
    "greybox params in no submodule": lambda m: GreyBox(m, params=["sub.bs_errors"]),
    "greybox params a string": lambda m: GreyBox(m, params="bs_errors"),
    "greybox params empty": lambda m: GreyBox(m, params=[]),
    "greybox nothing calibratable": lambda m: GreyBox(torch.nn.Linear(2, 2)),
    "greybox params a parameter": lambda m: GreyBox(torch.nn.Linear(2, 2), params=["weight"]),
    "greybox model not a module": lambda m: GreyBox(lambda t, x: x, params=["a"]),
    "greybox prior < 0": lambda m: GreyBox(m, prior=-1.0),
    "greybox prior inf": lambda m: GreyBox(m, prior=float("inf")),
    "residual base not a module": lambda m: Residual("nominal"),
    "residual hidden 0": lambda m: Residual(m, hidden=(0,)),
    "residual weight_decay < 0": lambda m: Residual(m, weight_decay=-1.0),
    "ensemble members 0": lambda m: Ensemble(members=0),
    "ensemble members float": lambda m: Ensemble(members=2.0),
    "ensemble hidden < 0": lambda m: Ensemble(hidden=(16, -1)),
    "ensemble weight_decay nan": lambda m: Ensemble(weight_decay=float("nan")),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECIFIC))
def test_bad_kind_specific_hyperparameters(case, nominal):
    with pytest.raises(ConfigError):
        BAD_SPECIFIC[case](nominal)


def test_an_unfitted_ensemble_says_so(chip, x):
    with pytest.raises(ConfigError, match="not fitted"):
        Ensemble(members=2)(_theta(chip), torch.as_tensor(x))


class _Payload:
    """An object a pickle would construct while loading."""

    ran = False

    def __reduce__(self):
        return (_mark, ())


def _mark():
    _Payload.ran = True
    return None


def test_a_file_holding_objects_is_refused_without_running_them(tmp_path):
    from blacksat.surrogates.files import FORMAT, load_surrogate

    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "spec": "{}", "meta": "{}", "state": _Payload()}, path)
    with pytest.raises(ConfigError, match="cannot read surrogate"):
        load_surrogate(path)
    assert not _Payload.ran
