"""The HTTP face of a :class:`~blacksat.remote.service.DeviceService` (FastAPI).

Endpoints (JSON bodies; arrays as :mod:`blacksat.remote.wire` objects):

====================================  =======  ================================================
``GET  /v1/health``                   none     ``{"status": "ok", "api": 1}``
``GET  /v1/describe``                 read     space, shapes, budget and spend, lease, version
``POST /v1/lease``                    query    take / renew the write lease
``DELETE /v1/lease``                  query    give it back
``POST /v1/query``                    query    ``{"thetas", "x"}`` -> ``{"y", "ledger", ...}``
                                               (or raw ``y`` bytes: ``Accept: application/
                                               octet-stream``)
``POST /v1/admin/tokens``             admin    create a token (its secret is returned once)
``POST /v1/admin/tokens/{name}/revoke``  admin revoke a token
``PUT  /v1/admin/tokens/{name}/budget``  admin change a token's budgets
====================================  =======  ================================================

Authentication: ``Authorization: Bearer <token>``. A query carries ``Idempotency-Key`` (fresh per
query, reused on retries) and ``X-Blacksat-Lease`` (the client's lease id). The token is checked
before the body is read; the body is read in chunks and refused (413) past the size limit, then
parsed and validated before anything reaches the device. Every refusal is
``{"error": NAME, "message": TEXT, ...}`` with a 4xx status (or 502 / 503 / 504 when the device
or the log failed); a server bug is a 500 that names no internals.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from blacksat.errors import ConfigError
from blacksat.remote.auth import SCOPES
from blacksat.remote.service import DeviceService, Refused, ledger_dict
from blacksat.remote.wire import WireError, decode_array, encode_array


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    text = json.dumps(body, allow_nan=False, separators=(",", ":"))
    return Response(text, status_code=status, media_type="application/json", headers=headers)


def _refusal(exc: Refused) -> Response:
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if "retry_after" in exc.extra:
        headers["Retry-After"] = str(max(1, math.ceil(exc.extra["retry_after"])))
    body = {"error": exc.error, "message": exc.message, **exc.extra}
    return _json(exc.status, body, headers)


async def _body(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object, read in chunks and refused past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Refused(413, "TooLarge", f"request bodies are limited to {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, "TooLarge", f"request bodies are limited to {limit} bytes")
        chunks.append(chunk)
    try:
        doc = json.loads(b"".join(chunks))
    except (ValueError, RecursionError) as exc:
        raise Refused(400, "BadRequest", f"the body is not JSON: {str(exc)[:80]}") from None
    if not isinstance(doc, dict):
        raise Refused(
            400, "BadRequest", f"the body must be a JSON object, got {type(doc).__name__}"
        )
    return doc


def _fields(doc: dict[str, Any], allowed: set[str], required: set[str]) -> None:
    extra, missing = set(doc) - allowed, required - set(doc)
    if extra or missing:
        raise Refused(
            400,
            "BadRequest",
            f"expected keys {sorted(allowed)} (required {sorted(required)}); "
            f"unknown {sorted(extra)[:5]}, missing {sorted(missing)}",
        )


def _budget_value(doc: dict[str, Any], key: str) -> int | None:
    v = doc.get(key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
        raise Refused(400, "BadRequest", f"{key} must be an integer >= 0 or null, got {v!r:.40}")
    return v


def create_app(service: DeviceService) -> FastAPI:
    """The FastAPI application serving ``service``."""
    app = FastAPI(
        title="blacksat device server",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # nothing about the server is shown before authentication
    )
    lim = service.limits

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> Response:
        return _refusal(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return _json(exc.status_code, {"error": "HTTPError", "message": str(exc.detail)})

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> Response:
        return _json(400, {"error": "BadRequest", "message": "malformed request"})

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> Response:  # a bug: say nothing inside
        return _json(500, {"error": "InternalError", "message": "internal server error"})

    def auth(request: Request, scope: str) -> Any:
        return service.authenticate(request.headers.get("authorization"), scope)

    @app.get("/v1/health")
    async def health() -> Response:
        return _json(200, {"status": "ok", "api": 1})

    @app.get("/v1/describe")
    async def describe(request: Request) -> Response:
        tok = auth(request, "read")
        return _json(200, await run_in_threadpool(service.describe, tok))

    @app.post("/v1/lease")
    async def acquire(request: Request) -> Response:
        tok = auth(request, "query")
        return _json(200, service.acquire(tok, request.headers.get("x-blacksat-lease")))

    @app.delete("/v1/lease")
    async def release(request: Request) -> Response:
        tok = auth(request, "query")
        return _json(200, service.release(tok, request.headers.get("x-blacksat-lease")))

    @app.post("/v1/query")
    async def query(request: Request) -> Response:
        tok = auth(request, "query")
        doc = await _body(request, lim.max_body_bytes)
        _fields(doc, {"thetas", "x"}, {"thetas", "x"})
        try:
            thetas = decode_array(doc["thetas"], "thetas", max_elements=lim.max_elements)
            x = decode_array(doc["x"], "x", max_elements=lim.max_elements)
        except WireError as exc:
            service.count("refused_invalid")
            raise Refused(422, "WireError", str(exc)) from None
        y, ledger, replayed = await run_in_threadpool(
            service.query,
            tok,
            request.headers.get("x-blacksat-lease"),
            request.headers.get("idempotency-key"),
            thetas,
            x,
        )
        if "application/octet-stream" in request.headers.get("accept", ""):
            arr = np.asarray(y, dtype="<f8")
            headers = {
                "X-Blacksat-Dtype": arr.dtype.str,
                "X-Blacksat-Shape": ",".join(str(s) for s in arr.shape),
                "X-Blacksat-Ledger": json.dumps(ledger_dict(ledger), separators=(",", ":")),
                "X-Blacksat-Replayed": "1" if replayed else "0",
            }
            return Response(arr.tobytes(), media_type="application/octet-stream", headers=headers)
        body = {
            "y": encode_array(np.asarray(y)),
            "ledger": ledger_dict(ledger),
            "replayed": replayed,
        }
        return _json(200, body)

    @app.post("/v1/admin/tokens")
    async def create_token(request: Request) -> Response:
        auth(request, "admin")
        doc = await _body(request, 4096)
        _fields(doc, {"name", "scopes", "max_reconfigurations", "max_samples"}, {"name", "scopes"})
        scopes = doc["scopes"]
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise Refused(400, "BadRequest", f"scopes must be a list of {list(SCOPES)}")
        if not isinstance(doc["name"], str):
            raise Refused(400, "BadRequest", "name must be a string")
        try:
            secret = service.tokens.create(
                doc["name"],
                tuple(scopes),
                max_reconfigurations=_budget_value(doc, "max_reconfigurations"),
                max_samples=_budget_value(doc, "max_samples"),
            )
        except ConfigError as exc:
            raise Refused(400, "BadRequest", str(exc)) from None
        return _json(200, {"name": doc["name"], "token": secret})

    @app.post("/v1/admin/tokens/{name}/revoke")
    async def revoke(name: str, request: Request) -> Response:
        auth(request, "admin")
        try:
            service.revoke(name)
        except ConfigError as exc:
            raise Refused(404, "NotFound", str(exc)) from None
        return _json(200, {"name": name, "revoked": True})

    @app.put("/v1/admin/tokens/{name}/budget")
    async def budget(name: str, request: Request) -> Response:
        auth(request, "admin")
        doc = await _body(request, 4096)
        _fields(doc, {"max_reconfigurations", "max_samples"}, set())
        try:
            tok = service.tokens.set_budget(
                name, _budget_value(doc, "max_reconfigurations"), _budget_value(doc, "max_samples")
            )
        except ConfigError as exc:
            raise Refused(404, "NotFound", str(exc)) from None
        return _json(
            200,
            {
                "name": name,
                "max_reconfigurations": tok.max_reconfigurations,
                "max_samples": tok.max_samples,
            },
        )

    return app


__all__ = ["create_app"]
