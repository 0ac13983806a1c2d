"""The state and rules of a device server, independent of HTTP.

:class:`DeviceService` owns the device and decides every request: who is asking (a token of the
:class:`~blacksat.remote.auth.TokenStore`), whether they may (scope, rate, lease), whether the
settings are acceptable (the server's :class:`~blacksat.ParamSpace`, an optional slew limit,
size limits), whether the token can afford them (the token's own server-side
:class:`~blacksat.MeteredDevice`), and whether the request was answered before (its idempotency
key, looked up in memory and then in the :class:`~blacksat.querylog.QueryLog`). Every refusal is
a :class:`Refused` carrying the HTTP status, an error name and a message; the app
(:mod:`blacksat.remote.app`) only translates.

Shapes: settings ``thetas (K, d)``, inputs ``x (B, *in)``, readings ``(K, B, *out)``.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blacksat import __version__
from blacksat.device import check_inputs
from blacksat.errors import (
    BlacksatError,
    BudgetExhausted,
    ConfigError,
    DeviceError,
    DeviceTimeout,
    ValidationError,
)
from blacksat.meter import Budget, Ledger, MeteredDevice, Observer, QueryRecord
from blacksat.querylog import QueryLog
from blacksat.remote.auth import Token, TokenStore

API = 1
#: idempotency keys and lease ids: 8-128 URL-safe characters
KEY = re.compile(r"^[A-Za-z0-9_-]{8,128}$")


class Refused(Exception):
    """A request the server will not carry out; nothing was applied or charged."""

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.extra = status, error, message, extra


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server.

    Attributes:
        max_body_bytes: largest request body accepted (HTTP 413 beyond).
        max_elements: most elements of one array in a request (``thetas`` or ``x``).
        max_reading_elements: most elements of one answer, ``K * B * prod(out)``.
        rate: requests per second per token, sustained (token bucket; HTTP 429 beyond).
        burst: requests a token may send at once before the rate applies.
        lease_seconds: a writer's lease lasts this long after its last query.
        max_step: optional slew limit: the largest change of any control between consecutive
            settings, a number or one per control ``(d,)`` (``None``: no limit).
        replay_cache: answers kept in memory for retries (older ones are found in the log).
    """

    max_body_bytes: int = 16 * 2**20
    max_elements: int = 2**21
    max_reading_elements: int = 2**23
    rate: float = 200.0
    burst: int = 400
    lease_seconds: float = 30.0
    max_step: float | Sequence[float] | None = None
    replay_cache: int = 256

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_elements", "max_reading_elements", "burst"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("rate", "lease_seconds"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"{name} must be a finite number > 0, got {v!r}")
        if self.max_step is not None:
            step = np.asarray(self.max_step, dtype=np.float64)
            if step.ndim > 1 or not np.all(np.isfinite(step)) or np.any(step <= 0):
                raise ConfigError(f"max_step must be > 0 (a number or one per control), got {step}")


@dataclass
class _Lease:
    holder: str
    lease_id: str
    expires: float


@dataclass
class _Bucket:
    level: float
    stamp: float = field(default_factory=time.monotonic)


class DeviceService:
    """A device behind tokens, budgets, limits, a write lease and a query log.

    Args:
        device: any :class:`~blacksat.Device`.
        tokens: the :class:`~blacksat.remote.auth.TokenStore`.
        log: the server's :class:`~blacksat.querylog.QueryLog`; every answered query is written
            to it (with the token's name and the idempotency key) before the answer leaves, and
            each token's spend is resumed from it.
        name: the device identity written to the log.
        limits: :class:`Limits`.
        observers: further callables receiving each :class:`~blacksat.meter.QueryRecord` after it
            is logged (monitoring).
    """

    def __init__(
        self,
        device: Any,
        tokens: TokenStore,
        log: QueryLog,
        *,
        name: str = "device",
        limits: Limits | None = None,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.limits = Limits() if limits is None else limits
        probe = MeteredDevice(device)  # checks the Device protocol and reads the shapes
        self.space = probe.space
        self.input_shape, self.output_shape = probe.input_shape, probe.output_shape
        #: what the device declares beyond its space and shapes (``None`` where it does not):
        #: a client uses them as the device would be used locally (a generic task's encoding
        #: and readout, the layered response's wiring)
        self.declarations = {
            "input_range": _plain(probe.input_range),
            "output_kind": probe.output_kind,
            "weight_banks": _plain(probe.weight_banks),
        }
        if self.limits.max_step is not None:
            step = np.broadcast_to(np.asarray(self.limits.max_step, np.float64), self.space.shape)
            self._max_step: np.ndarray | None = step.copy()
        else:
            self._max_step = None
        self.device, self.tokens, self.log, self.name = device, tokens, log, name
        self._observers = list(observers)
        self._device_lock = threading.Lock()  # one query at a time reaches the device
        self._state_lock = threading.Lock()  # lease, buckets, cache
        self._meters: dict[str, MeteredDevice] = {}
        self._writer: str | None = None
        self._lease: _Lease | None = None
        self._last: np.ndarray | None = None  # the last setting commanded, for the slew limit
        self._pending: tuple[str, str] | None = None
        self._cache: OrderedDict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = (
            OrderedDict()
        )
        self._buckets: dict[str, _Bucket] = {}
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()

    def count(self, what: str) -> None:
        """Count one request outcome (``answered``, ``replayed``, ``refused_*``)."""
        with self._stats_lock:
            self.stats[what] += 1

    # ------------------------------------------------------------------ who is asking
    def authenticate(self, authorization: str | None, scope: str) -> Token:
        """The token of an ``Authorization: Bearer ...`` header, holding ``scope``.

        Raises:
            Refused: 401 (missing, unknown or revoked token), 403 (scope), 429 (rate).
        """
        secret = None
        if authorization is not None:
            kind, _, value = authorization.partition(" ")
            if kind.lower() == "bearer" and value.strip():
                secret = value.strip()
        tok = self.tokens.authenticate(secret)
        if tok is None:
            self._rate("(unauthenticated)")  # slows down guessing
            self.count("refused_auth")
            why = "no bearer token" if secret is None else "unknown or revoked token"
            raise Refused(401, "Unauthorized", f"{why}; send 'Authorization: Bearer <token>'")
        self._rate(tok.name)
        if scope not in tok.scopes:
            self.count("refused_scope")
            raise Refused(
                403,
                "Forbidden",
                f"token {tok.name!r} has scopes {list(tok.scopes)}; this needs {scope!r}",
            )
        return tok

    def _rate(self, who: str) -> None:
        lim, now = self.limits, time.monotonic()
        with self._state_lock:
            b = self._buckets.setdefault(who, _Bucket(float(lim.burst), now))
            b.level = min(float(lim.burst), b.level + (now - b.stamp) * lim.rate)
            b.stamp = now
            if b.level < 1.0:
                self.count("refused_rate")
                wait = (1.0 - b.level) / lim.rate
                raise Refused(
                    429,
                    "RateLimited",
                    f"more than {lim.rate:g} requests/s (burst {lim.burst}); retry in {wait:.3f} s",
                    retry_after=wait,
                )
            b.level -= 1.0

    # ------------------------------------------------------------------ describe
    def describe(self, tok: Token) -> dict[str, Any]:
        """Space, shapes, this token's budget and spend, lease, limits and server version (and,
        for an ``admin`` token, the server's counts of answered, replayed and refused requests)."""
        sp = self.space
        spent = self._spent(tok)
        budget = Budget(tok.max_reconfigurations, tok.max_samples)
        with self._state_lock:
            lease = self._live_lease()
            lease_info = {
                "held": lease is not None,
                "holder": None if lease is None else lease.holder,
                "expires_in": None if lease is None else lease.expires - time.monotonic(),
            }
        lim = self.limits
        with self._stats_lock:
            stats = {"stats": dict(self.stats)} if "admin" in tok.scopes else {}
        return {
            **stats,
            "server": "blacksat",
            "version": __version__,
            "api": API,
            "device": self.name,
            "space": sp.to_dict(),  # bounds, levels, names and which controls are periodic
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "output_shape": None if self.output_shape is None else list(self.output_shape),
            "declarations": dict(self.declarations),
            "token": {"name": tok.name, "scopes": list(tok.scopes)},
            "budget": {"reconfigurations": budget.reconfigurations, "samples": budget.samples},
            "spent": ledger_dict(spent),
            "remaining": {
                "reconfigurations": None
                if budget.reconfigurations is None
                else budget.reconfigurations - spent.reconfigurations,
                "samples": None if budget.samples is None else budget.samples - spent.samples,
            },
            "lease": lease_info,
            "limits": {
                "max_body_bytes": lim.max_body_bytes,
                "max_elements": lim.max_elements,
                "max_reading_elements": lim.max_reading_elements,
                "rate": lim.rate,
                "burst": lim.burst,
                "lease_seconds": lim.lease_seconds,
                "max_step": None if self._max_step is None else self._max_step.tolist(),
            },
        }

    def _spent(self, tok: Token) -> Ledger:
        with self._device_lock:
            meter = self._meters.get(tok.name)
            return meter.ledger if meter is not None else self._logged(tok.name)

    def _logged(self, name: str) -> Ledger:
        return self.log.spent(device=self.name, client=name)

    # ------------------------------------------------------------------ the lease
    def _live_lease(self) -> _Lease | None:
        if self._lease is not None and self._lease.expires <= time.monotonic():
            self._lease = None
        return self._lease

    def acquire(self, tok: Token, lease_id: str | None) -> dict[str, Any]:
        """Take (or renew) the write lease for ``(token, lease_id)``; 409 if someone else holds
        it."""
        lease_id = _check_key(lease_id, "lease id (header X-Blacksat-Lease)")
        with self._state_lock:
            lease = self._live_lease()
            if lease is not None and (lease.holder, lease.lease_id) != (tok.name, lease_id):
                self.count("refused_lease")
                left = lease.expires - time.monotonic()
                raise Refused(
                    409,
                    "LeaseHeld",
                    f"the device is leased to token {lease.holder!r} (another client) for "
                    f"{left:.1f} s more; one writer at a time",
                    holder=lease.holder,
                    expires_in=left,
                )
            self._lease = _Lease(tok.name, lease_id, time.monotonic() + self.limits.lease_seconds)
        return {"lease": lease_id, "holder": tok.name, "expires_in": self.limits.lease_seconds}

    def release(self, tok: Token, lease_id: str | None) -> dict[str, Any]:
        """Give the lease back (a no-op when this client does not hold it)."""
        lease_id = _check_key(lease_id, "lease id (header X-Blacksat-Lease)")
        with self._state_lock:
            lease = self._live_lease()
            held = lease is not None and (lease.holder, lease.lease_id) == (tok.name, lease_id)
            if held:
                self._lease = None
        return {"released": held}

    # ------------------------------------------------------------------ queries
    def query(
        self, tok: Token, lease_id: str | None, key: str | None, thetas: np.ndarray, x: np.ndarray
    ) -> tuple[np.ndarray, Ledger, bool]:
        """Validate, meter, apply, log and answer one query; or replay the answer to its key.

        ``thetas (K, d)`` and ``x (B, *in)`` as decoded from the wire (float64). Returns the
        readings ``(K, B, *out)``, the token's ledger, and whether the answer is a replay.
        """
        key = _check_key(key, "idempotency key (header Idempotency-Key)")
        try:
            t = self.space.validate_many(thetas, policy="raise")
            xs = check_inputs(x, self.input_shape)
        except ValidationError as exc:
            self.count("refused_invalid")
            raise Refused(422, type(exc).__name__, str(exc)) from None
        out = math.prod(self.output_shape) if self.output_shape is not None else 1
        if t.shape[0] * xs.shape[0] * out > self.limits.max_reading_elements:
            self.count("refused_size")
            raise Refused(
                413,
                "TooLarge",
                f"K * B * outputs = {t.shape[0] * xs.shape[0] * out} readings, more than this "
                f"server's {self.limits.max_reading_elements} per request",
            )
        self.acquire(tok, lease_id)
        with self._device_lock:
            replay = self._replay(tok.name, key, t, xs)
            if replay is not None:
                self.count("replayed")
                return replay, self._meter(tok).ledger, True
            self._check_slew(t)
            meter = self._meter(tok)
            self._pending = (tok.name, key)
            try:
                y = meter.query_many(t, xs)
            except BudgetExhausted as exc:
                self.count("refused_budget")
                raise Refused(
                    402,
                    "BudgetExhausted",
                    str(exc),
                    kind=exc.kind,
                    used=exc.used,
                    requested=exc.requested,
                    budget=exc.budget,
                ) from None
            except DeviceTimeout as exc:
                self._last = t[-1].copy()
                raise Refused(504, "DeviceTimeout", str(exc)) from None
            except DeviceError as exc:
                self._last = t[-1].copy()
                raise Refused(502, "DeviceError", str(exc)) from None
            except Exception as exc:  # the log could not be written: the answer is withheld
                self._last = t[-1].copy()
                kind = type(exc).__name__ if isinstance(exc, BlacksatError) else "ServerError"
                raise Refused(503, kind, f"the query was not recorded ({exc})") from None
            finally:
                self._pending = None
            self._last = t[-1].copy()
            with self._state_lock:
                self._cache[(tok.name, key)] = (t, xs, y)
                while len(self._cache) > self.limits.replay_cache:
                    self._cache.popitem(last=False)
            self.count("answered")
            return y, meter.ledger, False

    def _replay(self, name: str, key: str, t: np.ndarray, xs: np.ndarray) -> np.ndarray | None:
        with self._state_lock:
            hit = self._cache.get((name, key))
        if hit is None:
            logged = self.log.find(name, key)
            if logged is None:
                return None
            hit = (logged.thetas, logged.x, logged.y)
        ht, hx, hy = hit
        if (
            ht.shape != t.shape
            or hx.shape != xs.shape
            or not (np.array_equal(ht, t) and np.array_equal(hx, xs))
        ):
            self.count("refused_key_reuse")
            raise Refused(
                409,
                "KeyReused",
                f"idempotency key {key!r} was used before with different settings or inputs; "
                "send a fresh key per query",
            )
        return np.array(hy)

    def _check_slew(self, t: np.ndarray) -> None:
        if self._max_step is None:
            return
        path = t if self._last is None else np.concatenate([self._last[None], t])
        if path.shape[0] < 2:
            return
        jump = np.abs(np.diff(path, axis=0))
        over = jump > self._max_step
        if np.any(over):
            k, j = np.argwhere(over)[0]
            self.count("refused_slew")
            raise Refused(
                422,
                "SlewLimit",
                f"control {j} would move by {jump[k, j]:.6g} between consecutive settings "
                f"(setting {k - (self._last is not None)} of the request), more than this "
                f"server's max_step {self._max_step[j]:.6g}; nothing was sent",
            )

    def _meter(self, tok: Token) -> MeteredDevice:
        """The token's server-side meter (its budgets as the store says now). A writer who did
        not send the last query gets a fresh wrapper with its ledger: the setting the device
        holds was not its own, so its first setting is charged as a change."""
        meter = self._meters.get(tok.name)
        if meter is None or self._writer != tok.name:
            ledger = meter.ledger if meter is not None else self._logged(tok.name)
            meter = MeteredDevice(self.device, observers=[self._record, *self._observers])
            meter.restore(ledger)
            self._meters[tok.name] = meter
            self._writer = tok.name
        meter.budget = Budget(tok.max_reconfigurations, tok.max_samples)
        return meter

    def _record(self, rec: QueryRecord) -> None:
        assert self._pending is not None
        client, key = self._pending
        self.log.append(
            rec.thetas,
            rec.x,
            rec.y,
            reconfigurations=rec.cost.reconfigurations,
            samples=rec.cost.samples,
            device=self.name,
            client=client,
            request_key=key,
        )

    # ------------------------------------------------------------------ admin
    def revoke(self, name: str) -> Token:
        """Revoke a token; its lease (if any) ends at once."""
        tok = self.tokens.revoke(name)
        with self._state_lock:
            if self._lease is not None and self._lease.holder == name:
                self._lease = None
        return tok


def _check_key(value: str | None, what: str) -> str:
    if value is None or not KEY.match(value):
        shown = "nothing" if value is None else repr(value[:40])
        raise Refused(
            400, "BadRequest", f"{what} must be 8-128 characters [A-Za-z0-9_-], got {shown}"
        )
    return value


def ledger_dict(ledger: Ledger) -> dict[str, int]:
    """A ledger as JSON."""
    return {
        "reconfigurations": ledger.reconfigurations,
        "samples": ledger.samples,
        "queries": ledger.queries,
        "failures": ledger.failures,
    }


__all__ = ["API", "DeviceService", "Limits", "Refused", "ledger_dict"]


def _plain(value: Any) -> Any:
    """A device declaration as JSON: tuples (nested) as lists, numbers as floats or ints."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if hasattr(value, "rows") and hasattr(value, "cols"):  # a layered_response.Bank
        return [int(value.rows), int(value.cols), int(getattr(value, "blocks", 1))]
    return str(value)
