"""Bearer tokens of a device server: stored hashed, compared in constant time, scoped.

A token is a random secret (``secrets.token_urlsafe(32)``: 256 bits) shown once when it is
created; the server keeps only its SHA-256 digest (a random 256-bit secret needs no slow password
hash: nothing shorter than the secret itself can be guessed). A presented token is hashed and
compared with **every** stored digest by :func:`hmac.compare_digest`, so neither the comparison
nor the number of comparisons depends on which digest (if any) matches.

Scopes (a token holds any subset):

- ``read``: ``describe`` (space, shapes, budget left, lease, version) and the token's spend;
- ``query``: program settings and read outputs (takes the write lease);
- ``admin``: create and revoke tokens, change budgets.

Each token carries its own budget (``max_reconfigurations``, ``max_samples``; ``None``:
unlimited), enforced by the server's own :class:`~blacksat.MeteredDevice` for that token.

The store is a JSON file (``{"format": ..., "tokens": [{name, sha256, scopes, budgets,
revoked}]}``), rewritten atomically (temporary file + ``os.replace``) with mode 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from blacksat.errors import ConfigError

SCOPES = ("read", "query", "admin")
FORMAT = "blacksat.tokens"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def digest(secret: str) -> str:
    """The SHA-256 hex digest stored in place of a token."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Token:
    """One stored token (its digest, never its secret)."""

    name: str
    sha256: str
    scopes: tuple[str, ...]
    max_reconfigurations: int | None = None
    max_samples: int | None = None
    revoked: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(
                f"token name must be 1-64 letters, digits, '_', '.' or '-', got {self.name!r}"
            )
        if not isinstance(self.sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ConfigError(f"token {self.name!r}: sha256 must be 64 hex digits")
        scopes = tuple(self.scopes) if isinstance(self.scopes, (list, tuple)) else None
        if not scopes or any(s not in SCOPES for s in scopes):
            raise ConfigError(
                f"token {self.name!r}: scopes must be a non-empty subset of {list(SCOPES)}, "
                f"got {self.scopes!r}"
            )
        object.__setattr__(self, "scopes", tuple(s for s in SCOPES if s in scopes))
        for key in ("max_reconfigurations", "max_samples"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ConfigError(f"token {self.name!r}: {key} must be an integer >= 0 or None")
        if not isinstance(self.revoked, bool):
            raise ConfigError(f"token {self.name!r}: revoked must be true or false")


class TokenStore:
    """The tokens of one server, optionally persisted to a JSON file.

    Args:
        path: the store file (``None``: in memory only). Loaded when it exists.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {}
        self._stamp: int | None = None
        if self.path is not None and self.path.exists():
            self._load()

    # ------------------------------------------------------------------ persistence
    def _refresh(self) -> None:
        """Reload the file when another process (``blacksat token revoke``) changed it."""
        if self.path is None:
            return
        try:
            stamp = self.path.stat().st_mtime_ns
        except OSError:
            return
        if stamp != self._stamp:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            stamp = self.path.stat().st_mtime_ns
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read token store {str(self.path)!r}: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ConfigError(f"{str(self.path)!r} is not a blacksat token store")
        entries = doc.get("tokens")
        if not isinstance(entries, list):
            raise ConfigError(f"{str(self.path)!r}: 'tokens' must be a list")
        tokens: dict[str, Token] = {}
        for e in entries:
            if not isinstance(e, dict):
                raise ConfigError(f"{str(self.path)!r}: every token must be an object")
            try:
                tok = Token(**e)
            except TypeError as exc:
                raise ConfigError(f"{str(self.path)!r}: {exc}") from None
            tokens[tok.name] = tok
        self._tokens, self._stamp = tokens, stamp

    def _save(self) -> None:
        if self.path is None:
            return
        doc = {"format": FORMAT, "tokens": [asdict(t) for t in self._tokens.values()]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            self._stamp = self.path.stat().st_mtime_ns
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------------ management
    def create(
        self,
        name: str,
        scopes: tuple[str, ...] | list[str],
        *,
        max_reconfigurations: int | None = None,
        max_samples: int | None = None,
    ) -> str:
        """Add a token and return its secret (shown once; only its digest is kept).

        Raises:
            ConfigError: an invalid name, scope or budget, or a name already in use (revoked
                names stay taken, so a log's client names stay unambiguous).
        """
        secret = secrets.token_urlsafe(32)
        tok = Token(name, digest(secret), tuple(scopes), max_reconfigurations, max_samples)
        with self._lock:
            self._refresh()
            if name in self._tokens:
                raise ConfigError(f"a token named {name!r} exists already")
            self._tokens[name] = tok
            self._save()
        return secret

    def revoke(self, name: str) -> Token:
        """Revoke a token by name (it authenticates nothing from now on)."""
        return self._update(name, revoked=True)

    def set_budget(
        self, name: str, max_reconfigurations: int | None, max_samples: int | None
    ) -> Token:
        """Change a token's budgets."""
        return self._update(
            name, max_reconfigurations=max_reconfigurations, max_samples=max_samples
        )

    def _update(self, name: str, **changes: Any) -> Token:
        with self._lock:
            self._refresh()
            if name not in self._tokens:
                raise ConfigError(f"no token named {name!r}")
            tok = replace(self._tokens[name], **changes)
            self._tokens[name] = tok
            self._save()
        return tok

    # ------------------------------------------------------------------ lookup
    def authenticate(self, secret: str | None) -> Token | None:
        """The live token whose secret this is, or ``None`` (missing, unknown or revoked)."""
        if not secret:
            return None
        presented = digest(secret)
        found = None
        with self._lock:
            self._refresh()
            tokens = list(self._tokens.values())
        for tok in tokens:  # every digest is compared: no early exit, no timing by position
            if hmac.compare_digest(presented, tok.sha256):
                found = tok
        return None if found is None or found.revoked else found

    def get(self, name: str) -> Token | None:
        """A token by name (revoked or not)."""
        with self._lock:
            return self._tokens.get(name)

    def names(self) -> list[str]:
        """Every token name (revoked ones included)."""
        with self._lock:
            return list(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)


def parse_scopes(text: str) -> tuple[str, ...]:
    """``"read,query"`` -> ``("read", "query")``; raises :class:`ConfigError` on unknown ones."""
    scopes = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in scopes if s not in SCOPES]
    if not scopes or bad:
        raise ConfigError(
            f"scopes must be a comma-separated subset of {list(SCOPES)}, got {text!r}"
        )
    return scopes


__all__ = ["FORMAT", "SCOPES", "Token", "TokenStore", "digest", "parse_scopes"]
