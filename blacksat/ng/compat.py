"""Compatibility shim for nevergrad 1.0.12 with NumPy >= 2.4.

nevergrad's meta-model (used by ``NGOpt`` / ``MetaModel*`` optimizers, e.g. ``NGOpt`` picks
``MetaModelOnePlusOne`` at d ~ 240) calls ``float(model.predict(x))`` on a one-element 1-D array.
NumPy 2.4 turned that long-deprecated conversion into a ``TypeError``, so those optimizers crash
mid-run. :func:`install` gives the meta-model module a ``float`` that accepts one-element arrays
(exactly what older NumPy did); nothing else in nevergrad changes. Idempotent; applied on import
of :mod:`blacksat.ng.adapter`.
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np


def _scalar_float(value: Any = 0.0) -> float:
    if isinstance(value, np.ndarray) and value.size == 1:
        return builtins.float(value.reshape(()))
    return builtins.float(value)


def install() -> bool:
    """Patch ``nevergrad.optimization.metamodel`` if needed; returns whether it is patched."""
    try:
        from nevergrad.optimization import metamodel
    except ImportError:  # pragma: no cover - nevergrad is a dependency
        return False
    if getattr(metamodel, "float", None) is not _scalar_float:
        metamodel.float = _scalar_float  # type: ignore[attr-defined]
    return True


__all__ = ["install"]
