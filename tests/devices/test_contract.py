"""One contract suite, run over every registered simulated device (small configurations)."""

import io
import json
import pickle

import numpy as np
import pytest
import torch

from blacksat import ConfigError, Device, NonFiniteError, OutOfBoundsError, ParamSpace, ShapeError
from blacksat.devices import DEVICES, SimulatedDevice
from blacksat.meter import MeteredDevice

SMALL = {
    "mzi": dict(n_modes=4),
    "mrr": dict(layer_sizes=(6, 4, 3)),
    "diffractive": dict(n=16, n_classes=4),
    "mzi-hybrid": dict(n_modes=4),
    "crossbar": dict(layer_sizes=(6, 4, 3)),
}


def test_every_registered_device_has_a_small_configuration():
    assert set(DEVICES) == set(SMALL)


@pytest.fixture(params=sorted(SMALL))
def make(request):
    cls = DEVICES[request.param]

    def build(**kw):
        return cls(**{**SMALL[request.param], **kw})

    build.cls = cls
    build.quiet = dict(cls.quiet_config)
    return build


def _inputs(dev, b=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (b, *dev.input_shape))


def _thetas(dev, k=3, seed=0):
    return dev.space.sample(np.random.default_rng(seed), k)


def test_spec(make):
    dev = make()
    assert isinstance(dev, Device) and isinstance(dev, SimulatedDevice)
    assert isinstance(dev.space, ParamSpace)
    assert dev.name in DEVICES and DEVICES[dev.name] is make.cls
    assert all(isinstance(s, int) for s in (*dev.input_shape, *dev.output_shape))
    json.dumps(dev.describe())  # JSON-friendly
    json.dumps(dev.config())
    for n in dev.nuisances:
        assert n.rated[0] <= n.default <= n.rated[1]
        assert dev.nuisance_values[n.name] == n.default
    assert repr(dev).startswith(type(dev).__name__)


def test_shapes_and_dtype(make):
    dev = make()
    x = _inputs(dev, b=5)
    y1 = dev.query(_thetas(dev, 1)[0], x)
    yk = dev.query_many(_thetas(dev, 3), x)
    assert y1.shape == (5, *dev.output_shape) and y1.dtype == np.float64
    assert yk.shape == (3, 5, *dev.output_shape)


def test_finite_outputs_at_extremes(make):
    dev = make(noise=0.05)
    s = dev.space
    thetas = np.stack([s.lower, s.upper, s.center, *_thetas(dev, 2)])
    for x in (_inputs(dev), np.zeros((2, *dev.input_shape)), 1e3 * _inputs(dev, 2)):
        assert np.all(np.isfinite(dev.query_many(thetas, x)))


def test_seeded_determinism(make):
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    x = _inputs(a)
    for _ in range(3):
        t = _thetas(a, 2, seed=_)
        np.testing.assert_array_equal(a.query_many(t, x), b.query_many(t, x))
    t = _thetas(a, 1)[0]
    xt = torch.as_tensor(x, dtype=torch.float64)
    tt = torch.as_tensor(t)
    assert not torch.allclose(
        a.exact_model(torch.float64)(tt, xt), c.exact_model(torch.float64)(tt, xt)
    )
    a.reset(), b.reset()
    np.testing.assert_array_equal(a.query(t, x), b.query(t, x))


def test_rebuild_from_config_is_the_same_chip(make):
    a = make(seed=5)
    b = type(a)(**a.config())
    x, t = _inputs(a), _thetas(a, 2)
    np.testing.assert_array_equal(a.query_many(t, x), b.query_many(t, x))


def test_vectorized_equals_looped(make):
    dev = make(dtype=torch.float64, **make.quiet)
    x, t = _inputs(dev), _thetas(dev, 4)
    looped = np.stack([dev.query(ti, x) for ti in t])
    np.testing.assert_allclose(dev.query_many(t, x), looped, rtol=1e-10, atol=1e-12)


def test_vectorized_equals_looped_with_noise_and_drift(make):
    dev = make(dtype=torch.float64, noise=0.02, drift=0.01, drift_time=20.0)
    x, t = _inputs(dev), _thetas(dev, 4)
    batched = dev.query_many(t, x)
    dev.reset()
    looped = np.stack([dev.query(ti, x) for ti in t])
    np.testing.assert_allclose(batched, looped, rtol=1e-10, atol=1e-12)


def test_chunked_evaluation_changes_no_reading(make):
    """query_many splits K settings into chunks within max_chunk_bytes; with noise and drift
    on, one setting per chunk reads exactly what one call for all K reads."""
    kw = dict(noise=0.02, drift=0.01, drift_time=20.0, seed=2)
    whole, chunked = make(**kw), make(**kw)
    chunked.max_chunk_bytes = 1  # one setting per chunk
    assert chunked._chunks(5, 4) == [(i, i + 1) for i in range(5)]
    assert whole._chunks(5, 4) == [(0, 5)]
    assert whole.bytes_per_setting(4) > 0
    x, t = _inputs(whole, b=4), _thetas(whole, 5)
    np.testing.assert_array_equal(whole.query_many(t, x), chunked.query_many(t, x))
    np.testing.assert_array_equal(whole.query_many(t[:2], x), chunked.query_many(t[:2], x))


def test_torch_device_is_part_of_the_configuration(make):
    dev = make(torch_device="cpu")
    assert dev.torch_device == torch.device("cpu") and dev.config()["torch_device"] == "cpu"
    assert dev.exact_model().torch_device == torch.device("cpu")
    assert dev.nominal_model().torch_device == torch.device("cpu")
    with pytest.raises(ConfigError, match="torch_device"):
        make(torch_device="abacus")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            make(torch_device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_chip_on_the_gpu_reads_what_it_reads_on_the_cpu(make):
    kw = dict(dtype=torch.float64, noise=0.02, drift=0.01, seed=3)
    cpu, gpu = make(**kw), make(**kw, torch_device="cuda")
    x, t = _inputs(cpu), _thetas(cpu, 3)
    np.testing.assert_allclose(gpu.query_many(t, x), cpu.query_many(t, x), rtol=1e-9, atol=1e-9)
    theta = torch.as_tensor(t[0]).requires_grad_(True)
    y = gpu.exact_model()(theta, torch.as_tensor(x))  # CPU tensors in, CPU tensors out
    assert y.device.type == "cpu"
    y.square().sum().backward()
    assert theta.grad is not None and torch.isfinite(theta.grad).all()


def test_noise_and_drift_are_seeded_and_present(make):
    dev = make(noise=0.02, drift=0.0)
    x, t = _inputs(dev), _thetas(dev, 1)[0]
    y1, y2 = dev.query(t, x), dev.query(t, x)
    assert not np.array_equal(y1, y2)  # fresh noise each read
    drifting = make(noise=0.0, drift=0.05, drift_time=10.0)
    z1 = drifting.query(t, x)
    for _ in range(20):
        drifting.query_many(_thetas(dev, 2, seed=_), x)
    assert not np.allclose(z1, drifting.query(t, x))


def test_pickling_preserves_state(make):
    dev = make(noise=0.02, drift=0.01)
    x, t = _inputs(dev), _thetas(dev, 2)
    dev.query_many(t, x)
    clone = pickle.loads(pickle.dumps(dev))
    np.testing.assert_array_equal(dev.query_many(t, x), clone.query_many(t, x))


def test_a_fresh_chip_given_the_random_state_reads_what_the_first_one_reads(make):
    """What a training checkpoint saves: a chip rebuilt from its configuration and given
    ``rng_state()`` continues the noise, drift and held state of the first, bit for bit; the
    state holds only tensors and plain values (a checkpoint loads it with weights_only)."""
    kw = dict(noise=0.02, drift=0.01, drift_time=20.0, seed=4)
    dev = make(**kw)
    x, t = _inputs(dev), _thetas(dev, 3)
    dev.query_many(t, x)
    dev.query(t[1], x)
    buf = io.BytesIO()
    torch.save(dev.rng_state(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = make(**kw)
    fresh.set_rng_state(state)
    np.testing.assert_array_equal(dev.query_many(t, x), fresh.query_many(t, x))
    np.testing.assert_array_equal(dev.query(t[2], x), fresh.query(t[2], x))
    with pytest.raises(ConfigError, match="random state"):
        fresh.set_rng_state({"noise": 1})


def test_exact_model_is_the_noise_free_truth(make):
    dev = make(dtype=torch.float64, **make.quiet)
    x, t = _inputs(dev), _thetas(dev, 3)
    model = dev.exact_model()
    y = model(torch.as_tensor(t), torch.as_tensor(x)).detach().numpy()
    np.testing.assert_allclose(y, dev.query_many(t, x), rtol=1e-10, atol=1e-12)
    nominal = dev.nominal_model()(torch.as_tensor(t), torch.as_tensor(x)).detach().numpy()
    assert np.max(np.abs(nominal - y)) > 1e-3 * (np.max(np.abs(y)) + 1e-12)


def test_noisy_model_reads_as_the_device_does(make):
    """``noisy_model()``: the truth plus the chip's per-query randomness; repeated readings of
    one setting scatter around the same mean with the same spread as the device's."""
    dev = make(dtype=torch.float64, drift=0.0)
    x, theta = _inputs(dev), _thetas(dev, 1)[0]
    k = 400
    reps = np.repeat(theta[None], k, axis=0)
    y_dev = dev.query_many(reps, x)
    model = dev.noisy_model(seed=3)
    y_mod = model(torch.as_tensor(reps), torch.as_tensor(x)).detach().numpy()
    assert y_mod.shape == y_dev.shape
    s_dev, s_mod = y_dev.std(axis=0, ddof=1), y_mod.std(axis=0, ddof=1)
    assert s_dev.mean() > 0 and 0.85 < s_mod.mean() / s_dev.mean() < 1.15
    err = np.abs(y_mod.mean(axis=0) - y_dev.mean(axis=0))
    assert np.all(err <= 6 * np.maximum(s_dev, s_mod) / np.sqrt(k) + 1e-12)
    # seeded, differentiable, and a copy
    again = dev.noisy_model(seed=3)(torch.as_tensor(reps), torch.as_tensor(x))
    np.testing.assert_array_equal(again.detach().numpy(), y_mod)
    th = torch.as_tensor(theta).requires_grad_(True)
    model(th, torch.as_tensor(x)).square().sum().backward()
    assert torch.isfinite(th.grad).all() and th.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in dev._truth.parameters())
    # a quiet chip's noisy model is its exact model
    quiet = make(dtype=torch.float64, **make.quiet)
    t = torch.as_tensor(_thetas(quiet, 2))
    np.testing.assert_array_equal(
        quiet.noisy_model()(t, torch.as_tensor(x)).detach().numpy(),
        quiet.exact_model()(t, torch.as_tensor(x)).detach().numpy(),
    )


def test_models_are_differentiable(make):
    dev = make(dtype=torch.float64)
    x = torch.as_tensor(_inputs(dev))
    for model in (dev.nominal_model(), dev.exact_model()):
        theta = torch.as_tensor(_thetas(dev, 1)[0]).requires_grad_(True)
        model(theta, x).square().sum().backward()
        assert torch.isfinite(theta.grad).all() and theta.grad.abs().sum() > 0
    # the models are copies: using them never changes the device
    assert all(not p.requires_grad for p in dev._truth.parameters())


def test_perturbations(make):
    dev = make(**make.quiet)
    x, t = _inputs(dev), _thetas(dev, 2)
    base = dev.query_many(t, x)
    assert dev.nuisances, "every device ships at least one post-deployment perturbation"
    for n in dev.nuisances:
        same = dev.perturbed(**{n.name: n.default})
        np.testing.assert_array_equal(same.query_many(t, x), base)
        moved = dev.perturbed(**{n.name: n.rated[1]})
        assert moved.nuisance_values[n.name] == n.rated[1]
        assert not np.allclose(moved.query_many(t, x), base)
    with pytest.raises(ConfigError, match="no nuisance"):
        dev.perturbed(not_a_knob=1.0)


def test_fresh_chip_differs_but_keeps_levels(make):
    dev = make(**make.quiet)
    other = dev.fresh_chip(99)
    assert other.seed == 99
    assert {k: v for k, v in other.config().items() if k != "seed"} == {
        k: v for k, v in dev.config().items() if k != "seed"
    }
    x, t = _inputs(dev), _thetas(dev, 2)
    assert not np.allclose(other.query_many(t, x), dev.query_many(t, x))


def test_bad_queries_are_rejected(make):
    dev = make()
    x, t = _inputs(dev), _thetas(dev, 1)[0]
    sp = dev.space
    if (~sp.periodic).any():  # a bounded control past its limit never reaches the device
        with pytest.raises(OutOfBoundsError):
            dev.query(np.where(sp.periodic, t, sp.upper + 1.0), x)
    if sp.periodic.any():  # a periodic one is the same phase: wrapped into range, then applied
        turned = np.where(sp.periodic, t + 3.0 * sp.period, t)
        sent = sp.validate(turned)
        assert sp.contains(sent) and np.allclose(sp.difference(sent, t), 0.0, atol=1e-9)
        assert np.all(np.isfinite(dev.query(turned, x)))
    bad = t.copy()
    bad[0] = np.nan
    with pytest.raises(NonFiniteError):
        dev.query(bad, x)
    with pytest.raises(ShapeError):
        dev.query(t[:-1], x)
    with pytest.raises(ShapeError):
        dev.query(t, np.ones((2, *dev.input_shape, 1)))
    with pytest.raises(NonFiniteError):
        dev.query(t, np.full((2, *dev.input_shape), np.inf))


@pytest.mark.parametrize(
    "kw", [dict(seed=-1), dict(seed=1.5), dict(noise=-0.1), dict(drift=np.nan), dict(drift_time=0)]
)
def test_constructor_rejects_bad_arguments(make, kw):
    with pytest.raises(ConfigError):
        make(**kw)


def test_initial_controls_are_seeded_and_in_bounds(make):
    dev = make()
    a, b = dev.initial_controls(3), dev.initial_controls(3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (dev.space.dim,) and dev.space.contains(a)


def test_works_behind_the_meter(make):
    dev = make()
    m = MeteredDevice(dev, max_reconfigurations=3)
    x = _inputs(dev)
    y = m.query_many(_thetas(dev, 3), x)
    assert y.shape == (3, 5, *dev.output_shape)
    assert m.ledger.reconfigurations == 3 and m.ledger.samples == 15
