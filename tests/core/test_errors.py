import pickle

import pytest

from blacksat import errors


def test_hierarchy_matches_builtins():
    assert issubclass(errors.BudgetExhausted, RuntimeError)
    assert issubclass(errors.ValidationError, ValueError)
    assert issubclass(errors.DeviceTimeout, TimeoutError)
    assert issubclass(errors.InvalidReading, errors.DeviceError)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.BlacksatError)


def test_budget_exhausted_carries_state_and_pickles():
    e = errors.BudgetExhausted("samples", used=90, requested=20, budget=100)
    assert (e.used, e.requested, e.budget, e.kind) == (90, 20, 100, "samples")
    assert "90" in str(e) and "100" in str(e)
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.used, e2.budget) == (90, 100)
    with pytest.raises(RuntimeError):
        raise e
