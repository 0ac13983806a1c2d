"""``blacksat serve`` and ``blacksat token``: the command-line side of the device server.

::

    blacksat token add alice --scopes read,query --max-reconfigurations 5000 --state lab
    blacksat serve --device mzi --device-args '{"n_modes": 16}' --state lab
    blacksat serve --config run.toml --host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem

``--state DIR`` holds the server's ``tokens.json`` (digests only) and ``queries.sqlite`` (every
query, with its token's name; budgets resume from it). Nothing here imports FastAPI until a
server starts, so the CLI works without the ``remote`` extra.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from blacksat.errors import ConfigError


def resolve_device(
    name: str | None, kwargs: dict[str, Any], seed: int | None, config: str | None
) -> tuple[Any, str]:
    """The device ``blacksat serve`` exposes and its identity in the log.

    The one place that maps a device name (or a run file's ``[device]`` table) to a device:
    point it at the device registry when there is one. A run file's ``[device]`` is built as
    ``blacksat train`` builds it (:meth:`~blacksat.product.run_config.DeviceSpec.build`).
    """
    from blacksat.product.run_config import DeviceSpec, RunConfig

    if config is not None:
        spec = RunConfig.load(config).device
        own = spec.factory or spec.name
        if name is not None and name != own:
            raise ConfigError(f"--device {name!r} contradicts the config's {own!r}")
        if kwargs or seed is not None:
            spec = dataclasses.replace(
                spec,
                seed=spec.seed if seed is None else seed,
                kwargs={**spec.kwargs, **kwargs},
            )
    else:
        name = name or "mzi"
        factory = name if ":" in name else ""  # a 'package.module:callable' driver factory
        spec = DeviceSpec(
            name="" if factory else name,
            seed=0 if seed is None else seed,
            kwargs=kwargs,
            factory=factory,
        )
    return spec.build(), f"{spec.name}:{spec.seed}"


def add_parsers(sub: Any, path_type: Any) -> None:
    """Add ``serve`` and ``token`` to the CLI's subparsers."""
    srv = sub.add_parser(
        "serve",
        help="serve a device over HTTP (tokens, budgets, limits, lease, query log)",
        description="Expose a device to RemoteDevice clients. Loopback only unless TLS is given; "
        "every query is validated, metered per token and logged before it is answered.",
    )
    srv.add_argument(
        "--device",
        default=None,
        help="a registered device name or a 'package.module:callable' factory (default mzi)",
    )
    srv.add_argument("--device-args", default=None, help="constructor arguments as JSON")
    srv.add_argument("--seed", type=int, default=None, help="the device's seed")
    srv.add_argument("--config", type=path_type, default=None, help="a run file ([device] used)")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    srv.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    srv.add_argument("--tls-cert", type=path_type, default=None, help="TLS certificate (PEM)")
    srv.add_argument("--tls-key", type=path_type, default=None, help="TLS private key (PEM)")
    srv.add_argument("--state", type=path_type, default="serve-state", help="tokens and log")
    srv.add_argument("--max-step", type=float, default=None, help="slew limit per control")
    srv.add_argument("--rate", type=float, default=200.0, help="requests/s per token")
    srv.add_argument("--burst", type=int, default=400, help="burst of requests per token")
    srv.add_argument("--max-body", type=int, default=16 * 2**20, help="request size limit (bytes)")
    srv.add_argument("--lease-seconds", type=float, default=30.0, help="write lease duration")
    tok = sub.add_parser("token", help="create, revoke and list the tokens of a device server")
    tok.add_argument("action", choices=["add", "revoke", "list"])
    tok.add_argument("name", nargs="?", default=None, help="token name (add, revoke)")
    tok.add_argument("--scopes", default="read,query", help="comma-separated: read,query,admin")
    tok.add_argument("--max-reconfigurations", type=int, default=None)
    tok.add_argument("--max-samples", type=int, default=None)
    tok.add_argument("--state", type=path_type, default="serve-state", help="the server's state")


def serve_command(args: argparse.Namespace) -> None:
    """``blacksat serve``."""
    from blacksat.querylog import QueryLog
    from blacksat.remote.auth import TokenStore
    from blacksat.remote.server import check_bind

    check_bind(args.host, args.tls_cert, args.tls_key)  # before anything is built
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in [0, 65535], got {args.port}")
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError(
            "blacksat serve needs the remote extra: pip install 'blacksat[remote]'"
        ) from None
    from blacksat.remote.server import serve
    from blacksat.remote.service import DeviceService, Limits

    kwargs = _json_object(args.device_args, "--device-args")
    device, identity = resolve_device(args.device, kwargs, args.seed, args.config)
    state = Path(args.state)
    tokens = TokenStore(state / "tokens.json")
    if len(tokens) == 0:
        secret = tokens.create("owner", ("read", "query", "admin"))
        print(
            f"no tokens in {state / 'tokens.json'}: created token 'owner' (read, query, admin); "
            f"it is shown once:\n{secret}",
            file=sys.stderr,
        )
    limits = Limits(
        max_body_bytes=args.max_body,
        rate=args.rate,
        burst=args.burst,
        lease_seconds=args.lease_seconds,
        max_step=args.max_step,
    )
    log = QueryLog(state / "queries.sqlite", device=identity)
    service = DeviceService(device, tokens, log, name=identity, limits=limits)
    scheme = "https" if args.tls_cert else "http"
    print(f"serving {identity} on {scheme}://{args.host}:{args.port}", file=sys.stderr)
    try:
        serve(service, args.host, args.port, tls_cert=args.tls_cert, tls_key=args.tls_key)
    finally:
        log.close()


def token_command(args: argparse.Namespace) -> None:
    """``blacksat token add|revoke|list``."""
    from blacksat.remote.auth import TokenStore, parse_scopes

    store = TokenStore(Path(args.state) / "tokens.json")
    if args.action == "list":
        for name in store.names():
            t = store.get(name)
            assert t is not None
            state = "revoked" if t.revoked else "live"
            print(
                f"{name:16s} {','.join(t.scopes):18s} reconfigurations {t.max_reconfigurations} "
                f"samples {t.max_samples} {state}"
            )
        return
    if args.name is None:
        raise ConfigError(f"token {args.action} needs a NAME")
    if args.action == "revoke":
        store.revoke(args.name)
        print(f"revoked {args.name!r}")
        return
    secret = store.create(
        args.name,
        parse_scopes(args.scopes),
        max_reconfigurations=args.max_reconfigurations,
        max_samples=args.max_samples,
    )
    print(secret)


def _json_object(text: str | None, what: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a JSON object, got {text!r}")
    return value


__all__ = ["add_parsers", "resolve_device", "serve_command", "token_command"]
