"""Helpers of the device-server tests: a small noise-free chip behind a loopback server."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from blacksat.devices import MZIMesh
from blacksat.querylog import QueryLog
from blacksat.remote.auth import TokenStore
from blacksat.remote.server import BackgroundServer
from blacksat.remote.service import DeviceService, Limits


def chip(n_modes: int = 4, seed: int = 0) -> MZIMesh:
    """A noise-free, drift-free chip: the same setting always reads the same."""
    return MZIMesh(n_modes=n_modes, noise=0.0, drift=0.0, seed=seed)


class Spy:
    """A device that records every call that reaches it (a setting applied)."""

    def __init__(self, device: Any, bounded: bool = False) -> None:
        self._device = device
        self.space = device.space.bounded() if bounded else device.space
        self.input_shape = device.input_shape
        self.output_shape = device.output_shape
        for name in ("input_range", "output_kind", "weight_banks"):  # what the device declares
            if getattr(device, name, None) is not None:
                setattr(self, name, getattr(device, name))
        self.applied: list[np.ndarray] = []

    def query(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self.query_many(np.asarray(theta)[None], x)[0]

    def query_many(self, thetas: np.ndarray, x: np.ndarray) -> np.ndarray:
        self.applied.append(np.array(thetas))
        return self._device.query_many(thetas, x)


@dataclass
class Lab:
    """A running server and what a test needs to talk to it."""

    server: BackgroundServer
    service: DeviceService
    spy: Spy
    tokens: dict[str, str]
    state: Path

    @property
    def url(self) -> str:
        return self.server.url


@contextlib.contextmanager
def lab(
    state: Path,
    *,
    limits: Limits | None = None,
    budgets: dict[str, tuple[int | None, int | None]] | None = None,
    device: Any = None,
    bounded: bool = False,
    **server_kw: Any,
) -> Iterator[Lab]:
    """Tokens alice (read, query), bob (read, query), reader (read), root (admin, read).
    ``bounded``: serve the chip's phases as bounded controls (an actuator that cannot wrap), so
    a value past a bound is refused rather than wrapped."""
    state.mkdir(parents=True, exist_ok=True)
    store = TokenStore(state / "tokens.json")
    budgets = budgets or {}
    secrets = {}
    for name, scopes in (
        ("alice", ("read", "query")),
        ("bob", ("read", "query")),
        ("reader", ("read",)),
        ("root", ("read", "admin")),
    ):
        if store.get(name) is None:
            r, s = budgets.get(name, (None, None))
            secrets[name] = store.create(name, scopes, max_reconfigurations=r, max_samples=s)
    spy = Spy(device if device is not None else chip(), bounded=bounded)
    log = QueryLog(state / "queries.sqlite", device="chip")
    service = DeviceService(spy, store, log, name="chip", limits=limits)
    server = BackgroundServer(service, **server_kw)
    with server:
        yield Lab(server, service, spy, secrets, state)
    log.close()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost and its key (openssl or
    cryptography)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        _with_cryptography(cert, key)
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor openssl is available")
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return cert, key


def _with_cryptography(cert_path: Path, key_path: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
