"""Running a device server: the bind rules, uvicorn, and a server in a background thread.

Why FastAPI + uvicorn (server) and httpx (client): all three are widely used, actively
maintained, typed, and small; FastAPI is a thin layer over Starlette's ASGI routing, uvicorn is
the reference ASGI server (HTTP/1.1 via h11, TLS through the standard library's ``ssl``), and
httpx is a synchronous client with connection pooling, explicit time-outs and TLS verification
against a given CA file. None of them pickles anything; the wire format is JSON with raw array
bytes (:mod:`blacksat.remote.wire`). A hand-written ``http.server`` would have to re-implement
request parsing, keep-alive, chunked bodies and TLS: exactly the code an instrument server
should not carry.

Bind rules (:func:`check_bind`): the server listens on loopback (``127.0.0.1``) by default. Any
other address (a LAN interface, ``0.0.0.0``) is refused unless a TLS certificate and key are
given, so a token never crosses a network in the clear.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from pathlib import Path
from typing import Any

from blacksat.errors import ConfigError
from blacksat.remote.service import DeviceService


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(
    host: str,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
) -> None:
    """Refuse a bind that would expose tokens and readings in the clear.

    Raises:
        ConfigError: only one of the certificate and key given, a file missing, or a
            non-loopback ``host`` without TLS.
    """
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
    for what, f in (("certificate", tls_cert), ("key", tls_key)):
        if f is not None and not Path(f).is_file():
            raise ConfigError(f"TLS {what} file {str(f)!r} does not exist")
    if tls_cert is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host!r} without TLS: tokens and readings would cross the "
            "network in the clear. Pass --tls-cert and --tls-key, or bind to 127.0.0.1 "
            "(the default) and tunnel (ssh -L)"
        )


def uvicorn_config(
    service: DeviceService,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
    log_level: str = "warning",
) -> Any:
    """A checked ``uvicorn.Config`` serving ``service`` (see :func:`check_bind`)."""
    import uvicorn

    from blacksat.remote.app import create_app

    check_bind(host, tls_cert, tls_key)
    return uvicorn.Config(
        create_app(service),
        host=host,
        port=port,
        ssl_certfile=None if tls_cert is None else str(tls_cert),
        ssl_keyfile=None if tls_key is None else str(tls_key),
        log_level=log_level,
        access_log=False,
        server_header=False,
        timeout_keep_alive=30,
        lifespan="off",
    )


def serve(service: DeviceService, host: str = "127.0.0.1", port: int = 8765, **kw: Any) -> None:
    """Serve until interrupted (Ctrl-C); blocking."""
    import uvicorn

    uvicorn.Server(uvicorn_config(service, host, port, **kw)).run()


class BackgroundServer:
    """A server running in a thread of this process (tests, benchmarks, notebooks).

    ``with BackgroundServer(service) as srv: RemoteDevice(srv.url, token=...)``. ``port=0``
    picks a free port; :attr:`url` has the one bound.
    """

    def __init__(
        self, service: DeviceService, host: str = "127.0.0.1", port: int = 0, **kw: Any
    ) -> None:
        import uvicorn

        self.service = service
        self._tls = kw.get("tls_cert") is not None
        self._server = uvicorn.Server(uvicorn_config(service, host, port, **kw))
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        """Start serving; returns once the socket listens."""
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError("the device server did not start")
            time.sleep(0.01)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        scheme = "https" if self._tls else "http"
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{scheme}://{shown}:{port}"
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["BackgroundServer", "check_bind", "is_loopback", "serve", "uvicorn_config"]
