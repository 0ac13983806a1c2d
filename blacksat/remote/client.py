"""``RemoteDevice``: a :class:`~blacksat.Device` served by ``blacksat serve`` on another machine.

``RemoteDevice(url, token=...)`` has the device's ``space``, shapes and declarations (input range,
output kind, wiring; read once from the
server's ``describe``), and ``query`` / ``query_many`` send the whole batch in one request. Wrap
it like any device: ``MeteredDevice(RemoteDevice(url, token=...), max_reconfigurations=...)``;
the server enforces its own budgets for the token in any case.

Reliability: each query carries a fresh idempotency key, reused when the request is re-sent, so
a query retried after a dropped connection or a server restart is answered from the server's
record, never applied or charged twice. Time-outs raise :class:`~blacksat.DeviceTimeout`,
connection failures and 5xx answers :class:`~blacksat.DeviceError`; both are retried by the
client's :class:`~blacksat.retry.RetryPolicy` (same key). Refusals come back as the error the
server raised: :class:`~blacksat.BudgetExhausted`, a :class:`~blacksat.ValidationError`
(:class:`~blacksat.OutOfBoundsError`, :class:`~blacksat.ShapeError`, ...), or
:class:`RemoteRefused` (token, scope, lease), none of which is retried.

Pickling keeps the URL, the token, the options and the lease id and reconnects lazily, so a copy
sent to a Dask worker is the same client (it shares the lease). A pickled ``RemoteDevice``
carries its token: send it only to processes you trust, or leave ``token`` out and set
``BLACKSAT_TOKEN`` on each machine.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from blacksat.errors import (
    BlacksatError,
    BudgetExhausted,
    ConfigError,
    DeviceError,
    DeviceTimeout,
    NonFiniteError,
    OutOfBoundsError,
    ShapeError,
    ValidationError,
)
from blacksat.retry import RetryPolicy
from blacksat.space import ParamSpace

#: re-send a lost query up to 3 times, after 0.2, 0.4, 0.8 s (the same idempotency key)
DEFAULT_RETRY = RetryPolicy(max_retries=3, backoff=0.2)

_VALIDATION = {
    "ShapeError": ShapeError,
    "NonFiniteError": NonFiniteError,
    "OutOfBoundsError": OutOfBoundsError,
}


class RemoteRefused(BlacksatError, PermissionError):
    """The server refused the request (token, scope, lease, key reuse); nothing was applied.

    Attributes:
        status: the HTTP status; error: the server's error name.
    """

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"device server refused ({status} {error}): {message}")
        self.status, self.error = status, error

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status, self.error, str(self)))


class LeaseHeld(RemoteRefused):
    """Another client holds the device's write lease (HTTP 409)."""


class RemoteDevice:
    """A device on a ``blacksat serve`` server.

    Args:
        url: the server, e.g. ``"https://lab-pc:8765"``.
        token: a bearer token with scope ``query`` (``read`` suffices for :meth:`describe`);
            default: the ``BLACKSAT_TOKEN`` environment variable, read when needed.
        timeout: seconds to wait for an answer (connect, send, read).
        retry: how often to re-send a query that timed out, lost its connection or met a busy
            server (the same idempotency key each time); ``None``: never.
        verify: TLS verification: ``True`` (system CAs), a CA / self-signed certificate file,
            or ``False`` (tests only).
        lease: the lease id of this client (default: a fresh random one; pickled copies share
            it).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        verify: bool | str = True,
        lease: str | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"url must start with http:// or https://, got {url!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigError(f"retry must be a RetryPolicy or None, got {type(retry).__name__}")
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = float(timeout)
        self.retry = retry
        self.verify = verify
        self.lease = lease or secrets.token_urlsafe(16)
        self._client: Any = None
        self._info: dict[str, Any] | None = None
        self._space: ParamSpace | None = None
        self.last_ledger: dict[str, int] | None = None

    # ------------------------------------------------------------------ Device protocol
    @property
    def space(self) -> ParamSpace:
        """The server's control space (bounds, levels, names, periodic controls)."""
        if self._space is None:
            self._space = ParamSpace.from_dict(self.info["space"])
        return self._space

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Shape of one input (without the batch axis), as the server says."""
        s = self.info["input_shape"]
        return None if s is None else tuple(s)

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """Shape of one reading (without the batch axis), as the server says."""
        s = self.info["output_shape"]
        return None if s is None else tuple(s)

    @property
    def input_range(self) -> tuple[float, float] | None:
        """The served device's declared input range (``None``: none, or an older server)."""
        r = self._declared("input_range")
        return None if r is None else (float(r[0]), float(r[1]))

    @property
    def output_kind(self) -> str | None:
        """The served device's declared output kind (``"power"`` / ``"signed"``)."""
        return self._declared("output_kind")

    @property
    def weight_banks(self) -> tuple[tuple[int, ...], ...] | None:
        """The served device's declared wiring (:mod:`blacksat.layered_response`)."""
        banks = self._declared("weight_banks")
        return None if banks is None else tuple(tuple(int(v) for v in b) for b in banks)

    def _declared(self, name: str) -> Any:
        return (self.info.get("declarations") or {}).get(name)

    def query(self, theta: ArrayLike, x: ArrayLike) -> np.ndarray:
        """``theta (d,)``, ``x (B, *in)`` -> ``(B, *out)``: one request."""
        t = _numeric(theta, "theta")
        if t.ndim != 1:
            raise ShapeError(f"theta must have shape (d,), got {t.shape}")
        return self.query_many(t[None], x)[0]

    def query_many(self, thetas: ArrayLike, x: ArrayLike) -> np.ndarray:
        """``thetas (K, d)``, ``x (B, *in)`` -> ``(K, B, *out)``: the whole batch in one request
        (re-sent with the same idempotency key when the retry policy says so)."""
        from blacksat.remote.wire import WireError, decode_array, encode_array

        t, xs = _numeric(thetas, "thetas"), _numeric(x, "x")
        body = json.dumps({"thetas": encode_array(t), "x": encode_array(xs)}).encode()
        headers = {
            "Idempotency-Key": secrets.token_urlsafe(16),
            "X-Blacksat-Lease": self.lease,
            "Accept": "application/octet-stream",
        }

        def attempt() -> np.ndarray:
            answer = self._request("POST", "/v1/query", content=body, headers=headers)
            if isinstance(answer, dict):  # a server that answers JSON only
                try:
                    y = decode_array(answer.get("y"), "y", max_elements=2**31)
                except WireError as exc:
                    raise DeviceError(
                        f"{self.url}: the server's answer is malformed: {exc}"
                    ) from None
                self.last_ledger = answer.get("ledger")
                return y
            return answer

        return attempt() if self.retry is None else self.retry.call(attempt)

    # ------------------------------------------------------------------ server calls
    @property
    def info(self) -> dict[str, Any]:
        """The server's ``describe`` as first read (space and shapes do not change)."""
        if self._info is None:
            self._info = self.describe()
        return self._info

    def describe(self) -> dict[str, Any]:
        """A fresh ``describe``: space, shapes, this token's budget, spend and remaining
        budget, the lease, the server's limits and version."""
        return self._request("GET", "/v1/describe")

    def acquire(self) -> dict[str, Any]:
        """Take the write lease now (a query takes it too); :class:`LeaseHeld` if taken."""
        return self._request("POST", "/v1/lease", headers={"X-Blacksat-Lease": self.lease})

    def release(self) -> dict[str, Any]:
        """Give the write lease back."""
        return self._request("DELETE", "/v1/lease", headers={"X-Blacksat-Lease": self.lease})

    def close(self) -> None:
        """Close the connection pool (the lease, if held, expires on the server)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> RemoteDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._client is not None:
                self.release()
        except BlacksatError:
            pass
        finally:
            self.close()

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            verify: Any = self.verify
            if isinstance(verify, str):  # a CA bundle or a server's self-signed certificate
                verify = ssl.create_default_context(cafile=verify)
            self._client = httpx.Client(base_url=self.url, timeout=self.timeout, verify=verify)
        return self._client

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        token = self._token if self._token is not None else os.environ.get("BLACKSAT_TOKEN")
        if not token:
            raise ConfigError("no token: pass RemoteDevice(url, token=...) or set BLACKSAT_TOKEN")
        headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
        try:
            r = self._http().request(method, path, headers=headers, **kw)
        except httpx.TimeoutException as exc:
            raise DeviceTimeout(
                f"{self.url}{path}: no answer in {self.timeout:g} s ({exc})"
            ) from exc
        except httpx.TransportError as exc:
            raise DeviceError(f"{self.url}{path}: {type(exc).__name__}: {exc}") from exc
        if r.status_code == 200 and r.headers.get("content-type") == "application/octet-stream":
            return self._reading(r)
        try:
            doc = r.json()
        except ValueError:
            doc = {"error": "BadResponse", "message": r.text[:200]}
        if not isinstance(doc, dict):
            doc = {"error": "BadResponse", "message": str(doc)[:200]}
        if r.status_code == 200:
            return doc
        raise _error(r.status_code, doc)

    def _reading(self, r: Any) -> np.ndarray:
        """A raw octet-stream answer -> ``(K, B, *out)`` (dtype and shape checked)."""
        from blacksat.remote.wire import WireError, decode_bytes, parse_shape

        try:
            y = decode_bytes(
                r.content,
                r.headers.get("x-blacksat-dtype"),
                parse_shape(r.headers.get("x-blacksat-shape")),
                "y",
                max_elements=2**31,
            )
            ledger = json.loads(r.headers.get("x-blacksat-ledger", "null"))
        except (WireError, ValueError) as exc:
            raise DeviceError(f"{self.url}: the server's answer is malformed: {exc}") from None
        self.last_ledger = ledger if isinstance(ledger, dict) else None
        return y

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "token": self._token,
            "timeout": self.timeout,
            "retry": self.retry,
            "verify": self.verify,
            "lease": self.lease,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["url"],
            token=state["token"],
            timeout=state["timeout"],
            retry=state["retry"],
            verify=state["verify"],
            lease=state["lease"],
        )

    def __repr__(self) -> str:
        return f"RemoteDevice({self.url!r})"


def _numeric(a: ArrayLike, what: str) -> np.ndarray:
    try:
        arr = np.asarray(a)
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError(arr.dtype)
        if np.iscomplexobj(arr):
            raise TypeError(arr.dtype)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{what} must be a real numeric array, got {type(a).__name__}") from exc
    return arr


def _error(status: int, doc: dict[str, Any]) -> Exception:
    """The exception a refusal stands for."""
    name, msg = str(doc.get("error", "Error")), str(doc.get("message", ""))
    if status == 402 and name == "BudgetExhausted":
        try:
            return BudgetExhausted(doc["kind"], doc["used"], doc["requested"], doc["budget"])
        except KeyError:
            pass
    if status in (400, 413, 422):
        return _VALIDATION.get(name, ValidationError)(f"device server: {msg}")
    if status == 409 and name == "LeaseHeld":
        return LeaseHeld(status, name, msg)
    if status == 504:
        return DeviceTimeout(f"device server ({name}): {msg}")
    if status == 429 or status >= 500:
        return DeviceError(f"device server ({status} {name}): {msg}")
    return RemoteRefused(status, name, msg)


__all__ = ["LeaseHeld", "RemoteDevice", "RemoteRefused"]
