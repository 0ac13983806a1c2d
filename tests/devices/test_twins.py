"""Noise-aware twins: a fresh draw of the known errors per call; exact at zero; inputs checked."""

import pytest
import torch

from blacksat.devices import ErrorTwin, MZIHybrid, MZIMesh, mzi_error_twin
from blacksat.errors import ConfigError


@pytest.mark.parametrize("cls", [MZIMesh, MZIHybrid])
def test_mzi_twin_redraws_per_call_and_is_the_nominal_model_at_zero(cls):
    dev = cls(n_modes=4)
    nominal = dev.nominal_model(dtype=torch.float64)
    theta = torch.as_tensor(dev.initial_controls(0) + 0.3)
    x = torch.eye(4, dtype=torch.float64)
    twin = mzi_error_twin(nominal, 0.15, 0.15, seed=0)
    a, b = twin(theta, x), twin(theta, x)
    assert a.shape == nominal(theta, x).shape
    assert not torch.allclose(a, b)  # a new fabrication draw per call
    again = mzi_error_twin(nominal, 0.15, 0.15, seed=0)
    assert torch.equal(again(theta, x), a)  # seeded
    zero = mzi_error_twin(nominal, 0.0, 0.0, seed=0)
    assert torch.allclose(zero(theta, x), nominal(theta, x))
    # the model given is never mutated
    from blacksat.devices.mzi import MZIPhysics

    meshes = [m for m in nominal.modules() if isinstance(m, MZIPhysics)]
    assert meshes and all(torch.count_nonzero(m.bs_errors) == 0 for m in meshes)


def test_bounds_clip_every_draw_and_bad_arguments_are_clear():
    nominal = MZIMesh(n_modes=4).nominal_model(dtype=torch.float64)
    twin = ErrorTwin(nominal, {"bs_errors": 0.6}, bounds={"bs_errors": (-0.5, 0.5)}, seed=1)
    twin.redraw()
    errs = twin.inner.bs_errors
    assert errs.abs().max() == 0.5 and errs.abs().min() < 0.5
    with pytest.raises(ConfigError, match="no submodule"):
        ErrorTwin(nominal, {"not_a_tensor": 0.1})
    with pytest.raises(ConfigError, match="scales"):
        ErrorTwin(nominal, {"bs_errors": -0.1})
    with pytest.raises(ConfigError, match=r"torch\.nn\.Module"):
        ErrorTwin(lambda t, x: x, {"bs_errors": 0.1})
