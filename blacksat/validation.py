"""Argument checks shared by every module: integers, reals, choices, and seeds.

Each check returns the value in its canonical type (``int``, ``float``) or raises
:class:`~blacksat.errors.ConfigError` saying what was expected and what came, under the name the
caller passes (``"q"``, ``"estimator.args.q"``). ``bool`` is never accepted as a number (``True``
is an ``int`` in Python, never a count a user meant).

Naming rule: ``seed`` is what a user configures (an ``int``); ``rng`` is a
``numpy.random.Generator`` drawn from. :func:`as_generator` turns either into a generator, in the
spirit of scikit-learn's ``check_random_state``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np

from blacksat.errors import ConfigError

T = TypeVar("T")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(
    name: str,
    value: Any,
    *,
    low: int | None = None,
    high: int | None = None,
    none_ok: bool = False,
) -> Any:
    """``value`` as an ``int`` within ``[low, high]`` (``None`` passes when ``none_ok``)."""
    if value is None and none_ok:
        return None
    if (
        not _is_int(value)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        raise ConfigError(f"{name} must be {_int_range(low, high)}, got {value!r}")
    return int(value)


def _int_range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"an integer in [{low}, {high}]"
    if low is not None:
        return f"an integer >= {low}"
    if high is not None:
        return f"an integer <= {high}"
    return "an integer"


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    none_ok: bool = False,
) -> Any:
    """``value`` as a finite ``float`` within ``[low, high]`` (``(low, high]`` when
    ``low_open``; ``None`` passes when ``none_ok``)."""
    if value is None and none_ok:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    v = float(value) if ok else math.nan
    bad = not math.isfinite(v)
    bad = bad or (low is not None and (v <= low if low_open else v < low))
    bad = bad or (high is not None and v > high)
    if bad:
        parts = []
        if low is not None:
            parts.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            parts.append(f"<= {high:g}")
        bound = f" {' and '.join(parts)}" if parts else ""
        raise ConfigError(f"{name} must be a finite number{bound}, got {value!r}")
    return v


def check_choice(name: str, value: Any, choices: Iterable[T]) -> T:
    """``value`` if it is one of ``choices``."""
    allowed = list(choices)
    if not any(value == c and type(value) is type(c) for c in allowed):
        raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def as_generator(seed: Any, name: str = "rng") -> np.random.Generator:
    """A ``numpy.random.Generator``: ``seed`` itself when it is one (shared, not copied), else
    ``numpy.random.default_rng(seed)`` for an ``int`` seed (``>= 0``) or a sequence of them."""
    if isinstance(seed, np.random.Generator):
        return seed
    if _is_int(seed) and seed >= 0:
        return np.random.default_rng(int(seed))
    if isinstance(seed, (list, tuple)) and seed and all(_is_int(s) and s >= 0 for s in seed):
        return np.random.default_rng([int(s) for s in seed])
    raise ConfigError(
        f"{name} must be a numpy Generator or an int seed >= 0, got {type(seed).__name__} {seed!r}"
    )


__all__ = ["as_generator", "check_choice", "check_int", "check_real"]
