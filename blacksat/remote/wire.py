"""Arrays on the wire: raw little-endian bytes with their dtype and shape, never pickle.

In a request, an array travels inside a JSON body as ``{"dtype": "<f8", "shape": [K, d], "data":
BASE64}``: ``data`` is the C-order bytes of the array, base64-encoded. Decoding checks everything
before the bytes are used: the object's keys, a dtype from a short allow-list (little-endian
floats and integers only: no objects, no strings, no byte-order surprises), a shape of at most
:data:`MAX_NDIM` non-negative integers whose element count is within the caller's limit, strict
base64, and a byte count equal to ``prod(shape) * itemsize``. Nothing is executed, whatever a
peer sends: ``numpy.frombuffer`` of a validated length is the only interpretation.

Answers (readings, the largest array of a query) travel the same way in JSON, or, when the
client asks for ``application/octet-stream``, as the raw bytes themselves with the dtype and
shape in the ``X-Blacksat-Dtype`` and ``X-Blacksat-Shape`` headers (:func:`decode_bytes`, the
same checks): no base64 and no JSON on the hot path.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np

from blacksat.errors import ValidationError

#: dtypes accepted on the wire (little-endian; ``|b1`` booleans are one byte)
DTYPES = ("<f8", "<f4", "<i8", "<i4", "|b1")
#: most array dimensions accepted
MAX_NDIM = 8


class WireError(ValidationError):
    """A peer sent an array (or body) that is not a valid wire encoding; nothing was used."""


def encode_array(a: np.ndarray) -> dict[str, Any]:
    """``a`` (any shape; floats sent as ``<f8``) -> ``{"dtype", "shape", "data"}``."""
    arr = np.asarray(a)
    kind = "|b1" if arr.dtype.kind == "b" else "<i8" if arr.dtype.kind in "iu" else "<f8"
    arr = np.asarray(arr, dtype=kind)
    return {
        "dtype": arr.dtype.str,
        "shape": [int(s) for s in arr.shape],
        "data": base64.b64encode(arr.tobytes(order="C")).decode("ascii"),
    }


def decode_array(obj: Any, what: str, *, max_elements: int) -> np.ndarray:
    """Validate a wire object and return its array as float64 (a fresh, writable copy).

    Raises:
        WireError: not an object with exactly ``dtype``, ``shape`` and ``data``; a dtype outside
            :data:`DTYPES`; a bad shape; more than ``max_elements`` elements; invalid base64;
            or a byte count that does not match the shape.
    """
    if not isinstance(obj, dict) or set(obj) != {"dtype", "shape", "data"}:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise WireError(f"{what} must be an object with keys dtype, shape, data; got {keys}")
    dtype, shape, data = obj["dtype"], obj["shape"], obj["data"]
    count, item = _check_header(dtype, shape, what, max_elements)
    if not isinstance(data, str):
        raise WireError(f"{what}.data must be a base64 string, got {type(data).__name__}")
    if len(data) > 4 * math.ceil(count * item / 3):  # refuse before decoding anything large
        raise WireError(f"{what}.data is longer than shape {shape} x {dtype} needs")
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise WireError(f"{what}.data is not valid base64: {exc}") from None
    return decode_bytes(raw, dtype, shape, what, max_elements=max_elements)


def decode_bytes(raw: bytes, dtype: Any, shape: Any, what: str, *, max_elements: int) -> np.ndarray:
    """Raw C-order bytes of ``dtype`` and ``shape`` -> a float64 array (validated as in
    :func:`decode_array`; used for octet-stream answers, whose dtype and shape come in headers).
    """
    count, item = _check_header(dtype, shape, what, max_elements)
    if len(raw) != count * item:
        raise WireError(
            f"{what}.data holds {len(raw)} bytes; shape {shape} of {dtype} needs {count * item}"
        )
    return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(tuple(shape)).astype(np.float64)


def parse_shape(text: str | None) -> list[int]:
    """``"64,256,16"`` (an ``X-Blacksat-Shape`` header) -> ``[64, 256, 16]``; ``""`` -> ``[]``."""
    if text is None:
        raise WireError("the answer has no X-Blacksat-Shape header")
    try:
        return [int(s) for s in text.split(",")] if text else []
    except ValueError:
        raise WireError(
            f"X-Blacksat-Shape must be comma-separated integers, got {text!r:.40}"
        ) from None


def _check_header(dtype: Any, shape: Any, what: str, max_elements: int) -> tuple[int, int]:
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise WireError(f"{what}.dtype must be one of {list(DTYPES)}, got {dtype!r:.40}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
    ):
        raise WireError(
            f"{what}.shape must be a list of at most {MAX_NDIM} non-negative integers, "
            f"got {shape!r:.80}"
        )
    count = math.prod(shape)
    if count > max_elements:
        raise WireError(f"{what} has {count} elements, more than the limit of {max_elements}")
    return count, np.dtype(dtype).itemsize


__all__ = [
    "DTYPES",
    "MAX_NDIM",
    "WireError",
    "decode_array",
    "decode_bytes",
    "encode_array",
    "parse_shape",
]
