"""``QueryLog``: the crash-safe, append-only record of every query that cost device time.

Device time is the scarce resource (``DESIGN.md``, boundary 4): every completed query is written
to the run directory *before* its reading is used, and replays into surrogate fitting and into
later runs. A :class:`QueryLog` is an observer of a :class:`~blacksat.MeteredDevice`, which calls
it after a successful query and before returning the reading::

    log = QueryLog(run_dir / "queries.sqlite", device="chip-7")
    meter.add_observer(log)            # or: log = log_queries(meter, path, device="chip-7")
    ...
    data = QueryLog(path, readonly=True).data(device="chip-7")   # -> QueryData

Why SQLite (the standard library's ``sqlite3``) rather than a custom append-only file:

- **atomic commits**: each query is one transaction, committed (``synchronous=FULL``: the WAL
  is fsynced) before the observer returns. A query is either entirely in the log or not at all;
  a process killed at any instant loses at most the query being written, never a completed one.
- **no custom framing**: no length prefixes, checksums or recovery scan to get right; a torn
  write at the end of the write-ahead log is detected and discarded by SQLite, and cannot
  corrupt the rows committed before it.
- **queryable, one file**: counts, per-device filters and the inputs table are plain SQL; the
  log is a single portable file (plus its transient ``-wal``/``-shm`` companions while open)
  that any SQLite tool can inspect.

The WAL journal lets readers (a surrogate fit, a dashboard) read while a run appends.

Schema (version 1): ``meta(key, value)`` names the format and version; ``inputs`` stores each
distinct input batch once, keyed by the SHA-256 of its dtype, shape and bytes (the same minibatch
is sent with many settings); ``queries`` holds one row per query: ``id`` (0-based, in order),
``time`` (unix seconds), ``device`` (identity string), ``thetas (K, d)``, ``input_id``,
``y (K, B, *out)``, ``reconfigurations``, ``samples``, and (nullable) ``client`` (who asked, e.g. a
device server's token name) and ``request_key`` (the client's idempotency key, unique per client:
a retried request is found, never logged twice). Arrays are little-endian float64 bytes
with their shape as JSON; nothing is pickled, so reading a log never executes code. The control
space a device's settings lived in (bounds, levels, which controls are periodic) is kept in
``meta`` as JSON under ``space:<device>`` (:meth:`QueryLog.set_space`, :meth:`QueryLog.space`);
a log written before it was recorded simply has none.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time as _time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from blacksat.errors import ConfigError, ShapeError
from blacksat.meter import Ledger, MeteredDevice, QueryRecord
from blacksat.querydata import QueryData, check_group
from blacksat.space import ParamSpace

FORMAT = "blacksat.querylog"
VERSION = 1
_F8 = np.dtype("<f8")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE inputs (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    shape TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE queries (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    device TEXT NOT NULL,
    thetas_shape TEXT NOT NULL,
    thetas BLOB NOT NULL,
    input_id INTEGER NOT NULL REFERENCES inputs(id),
    y_shape TEXT NOT NULL,
    y BLOB NOT NULL,
    reconfigurations INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    client TEXT,
    request_key TEXT
);
CREATE INDEX queries_device ON queries(device, id);
"""
#: columns added after version 1 was released (nullable; added to older logs opened writable)
_EXTRA = (("client", "TEXT"), ("request_key", "TEXT"))
_REQUEST_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS queries_request ON queries(client, request_key) "
    "WHERE request_key IS NOT NULL"
)
_COLUMNS = {
    "meta": {"key", "value"},
    "inputs": {"id", "hash", "shape", "data"},
    "queries": set(
        "id time device thetas_shape thetas input_id y_shape y reconfigurations samples".split()
    ),
}


@dataclass(frozen=True, eq=False)
class LoggedQuery:
    """One query as read back from a :class:`QueryLog`.

    Attributes:
        index: position in the log (0-based, increasing in the order of logging).
        time: wall-clock time of logging (unix seconds).
        device: identity of the device that answered.
        thetas: settings sent, ``(K, d)``.
        x: inputs, ``(B, *in)`` (float64).
        y: readings, ``(K, B, *out)``.
        reconfigurations: reconfigurations charged for this query.
        samples: samples charged for this query (``K * B``).
        client: who asked (e.g. a device server's token name), or ``None``.
        request_key: the client's idempotency key, or ``None``.
    """

    index: int
    time: float
    device: str
    thetas: np.ndarray
    x: np.ndarray
    y: np.ndarray
    reconfigurations: int
    samples: int
    client: str | None = None
    request_key: str | None = None

    def __repr__(self) -> str:
        return (
            f"LoggedQuery(index={self.index}, device={self.device!r}, "
            f"thetas={self.thetas.shape}, x={self.x.shape}, y={self.y.shape})"
        )


class QueryLog:
    """An append-only, crash-safe SQLite store of device queries.

    Args:
        path: the log file; created (with its schema) when missing, appended to when it exists.
        device: the identity recorded with each query logged through the observer interface
            (``log(record)``) or by :meth:`append` without an explicit ``device``.
        readonly: open an existing log for reading only; every write raises.

    Raises:
        ConfigError: the file is not a blacksat query log (not SQLite, foreign tables, wrong
            format or version), or ``readonly`` and the file does not exist.

    A log is an observer: ``MeteredDevice(dev, observers=[log])`` or ``meter.add_observer(log)``.
    Each query is one committed transaction before the call returns. Use it as a context
    manager, or call :meth:`close`. Pickling reopens the same file by path.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, device: str = "device", readonly: bool = False
    ) -> None:
        if not isinstance(device, str) or not device:
            raise ConfigError(f"device must be a non-empty string, got {device!r}")
        self.path = Path(path)
        self.device = device
        self.readonly = bool(readonly)
        self._lock = threading.Lock()
        self._inputs: dict[str, int] = {}
        self._shapes: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = {}
        self._conn: sqlite3.Connection | None = self._open()

    # ------------------------------------------------------------------ opening
    def _open(self) -> sqlite3.Connection:
        if self.readonly and not self.path.is_file():
            raise ConfigError(f"no query log at {str(self.path)!r} to open read-only")
        if self.path.is_dir():
            raise ConfigError(f"query log path {str(self.path)!r} is a directory, expected a file")
        if not self.readonly:  # the run directory is created with its log
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create the directory of query log {str(self.path)!r}: {exc}"
                ) from exc
        uri = f"{self.path.resolve().as_uri()}?mode={'ro' if self.readonly else 'rwc'}"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if not tables and not self.readonly:
                self._create(conn)
            else:
                self._check_schema(conn, tables)
            if not self.readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                self._add_extra_columns(conn)
            have = {r[1] for r in conn.execute("PRAGMA table_info(queries)")}
            self._extended = {name for name, _ in _EXTRA} <= have
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ConfigError(
                f"{str(self.path)!r} is not a blacksat query log (not a readable SQLite "
                f"database: {exc})"
            ) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("format", FORMAT), ("version", str(VERSION)), ("created", repr(_time.time()))],
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _add_extra_columns(self, conn: sqlite3.Connection) -> None:
        have = {r[1] for r in conn.execute("PRAGMA table_info(queries)")}
        for name, kind in _EXTRA:
            if name not in have:
                conn.execute(f"ALTER TABLE queries ADD COLUMN {name} {kind}")
        conn.execute(_REQUEST_INDEX)

    def _check_schema(self, conn: sqlite3.Connection, tables: set[str]) -> None:
        where = f"{str(self.path)!r} is not a blacksat query log"
        if not tables:
            raise ConfigError(f"{where}: it is empty (open it writable to create one)")
        if "meta" not in tables:
            raise ConfigError(f"{where}: it has tables {sorted(tables)} but no 'meta' table")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT:
            raise ConfigError(f"{where}: format is {meta.get('format')!r}, expected {FORMAT!r}")
        if meta.get("version") != str(VERSION):
            raise ConfigError(
                f"{str(self.path)!r} is a query log of format version {meta.get('version')}; "
                f"this blacksat reads version {VERSION}"
            )
        for table, want in _COLUMNS.items():
            have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            if not want <= have:
                raise ConfigError(f"{where}: table {table!r} lacks column(s) {sorted(want - have)}")

    # ------------------------------------------------------------------ the control space
    def set_space(self, space: ParamSpace, *, device: str | None = None) -> None:
        """Record the :class:`~blacksat.ParamSpace` of ``device`` (default: this log's
        identity) once, committed. Recording the same space again is a no-op; a different one
        raises :class:`ConfigError` (one identity, one space: its queries must mean the same)."""
        if not isinstance(space, ParamSpace):
            raise ConfigError(f"space must be a ParamSpace, got {type(space).__name__}")
        key = f"space:{self.device if device is None else device}"
        text = json.dumps(space.to_dict())
        with self._lock:
            conn = self._writable()
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, text))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if row is not None and ParamSpace.from_dict(json.loads(row[0])) != space:
            raise ConfigError(
                f"the query log already records another control space for {key[6:]!r} "
                f"({ParamSpace.from_dict(json.loads(row[0]))!r}, now {space!r}); log this device "
                "under another identity"
            )

    def space(self, *, device: str | None = None) -> ParamSpace | None:
        """The recorded control space of ``device`` (default: this log's identity), or
        ``None`` when none was recorded (e.g. a log written before spaces were kept: treat its
        controls as bounded)."""
        key = f"space:{self.device if device is None else device}"
        rows = self._fetch("SELECT value FROM meta WHERE key = ?", (key,))
        if not rows:
            return None
        try:
            return ParamSpace.from_dict(json.loads(rows[0][0]))
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"the query log's space for {key[6:]!r} is unreadable: {exc}"
            ) from None

    # ------------------------------------------------------------------ writing
    def __call__(self, record: QueryRecord) -> None:
        """Observer interface: append a completed query of a metered device and commit it."""
        self.append(
            record.thetas,
            record.x,
            record.y,
            reconfigurations=record.cost.reconfigurations,
            samples=record.cost.samples,
        )

    def append(
        self,
        thetas: ArrayLike,
        x: ArrayLike,
        y: ArrayLike,
        *,
        reconfigurations: int | None = None,
        samples: int | None = None,
        device: str | None = None,
        time: float | None = None,
        client: str | None = None,
        request_key: str | None = None,
    ) -> int:
        """Append one query and commit it; returns its index.

        Args:
            thetas: settings sent, ``(K, d)``.
            x: inputs, ``(B, *in)``.
            y: readings, ``(K, B, *out)``; all finite.
            reconfigurations: what the query was charged; default: the settings that differ
                from the one before them, the first counted as a change (``1..K``).
            samples: default ``K * B``.
            device: identity of the answering device (default: the log's ``device``).
            time: unix time (default: now).
            client: who asked (e.g. a device server's token name); ``None``: not recorded.
            request_key: the client's idempotency key (unique per client; see :meth:`find`).

        Raises:
            ShapeError / NonFiniteError: invalid arrays, or shapes that differ from the ones
                this device was logged with before.
            ConfigError: a read-only or closed log, or invalid counts.
        """
        conn = self._writable()
        dev = self.device if device is None else device
        if not isinstance(dev, str) or not dev:
            raise ConfigError(f"device must be a non-empty string, got {dev!r}")
        t, xs, ys = check_group(thetas, x, y)
        k, b = t.shape[0], xs.shape[0]
        if reconfigurations is None:
            reconfigurations = 1 + int(np.sum(np.any(t[1:] != t[:-1], axis=1)))
        if samples is None:
            samples = k * b
        for name, v in (("reconfigurations", reconfigurations), ("samples", samples)):
            if isinstance(v, bool) or int(v) != v or v < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {v!r}")
        for name, v in (("client", client), ("request_key", request_key)):
            if v is not None and (not isinstance(v, str) or not v):
                raise ConfigError(f"{name} must be a non-empty string or None, got {v!r}")
        stamp = _time.time() if time is None else float(time)
        xb = np.ascontiguousarray(xs, dtype=_F8)
        digest = hashlib.sha256(f"{xb.dtype.str}|{xb.shape}|".encode() + xb.tobytes()).hexdigest()
        with self._lock:
            self._check_shapes(conn, dev, t, xs, ys)
            conn.execute("BEGIN IMMEDIATE")
            try:
                input_id = self._input_id(conn, digest, xb)
                (index,) = conn.execute("SELECT COALESCE(MAX(id) + 1, 0) FROM queries").fetchone()
                conn.execute(
                    "INSERT INTO queries (id, time, device, thetas_shape, thetas, input_id, "
                    "y_shape, y, reconfigurations, samples, client, request_key) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        index,
                        stamp,
                        dev,
                        _shape_text(t),
                        _blob(t),
                        input_id,
                        _shape_text(ys),
                        _blob(ys),
                        int(reconfigurations),
                        int(samples),
                        client,
                        request_key,
                    ),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._inputs.pop(digest, None)
                raise
        self._shapes.setdefault(dev, (t.shape[1], xs.shape[1:], ys.shape[2:]))
        return int(index)

    def _input_id(self, conn: sqlite3.Connection, digest: str, xb: np.ndarray) -> int:
        cached = self._inputs.get(digest)
        if cached is not None:
            return cached
        row = conn.execute("SELECT id FROM inputs WHERE hash = ?", (digest,)).fetchone()
        if row is None:
            cur = conn.execute(
                "INSERT INTO inputs (hash, shape, data) VALUES (?, ?, ?)",
                (digest, _shape_text(xb), _blob(xb)),
            )
            row = (cur.lastrowid,)
        self._inputs[digest] = int(row[0])
        return int(row[0])

    def _check_shapes(
        self, conn: sqlite3.Connection, dev: str, t: np.ndarray, x: np.ndarray, y: np.ndarray
    ) -> None:
        if dev not in self._shapes:
            row = conn.execute(
                "SELECT q.thetas_shape, i.shape, q.y_shape FROM queries q "
                "JOIN inputs i ON i.id = q.input_id WHERE q.device = ? ORDER BY q.id LIMIT 1",
                (dev,),
            ).fetchone()
            if row is None:
                return
            ts, xs, ys = (tuple(json.loads(s)) for s in row)
            self._shapes[dev] = (ts[1], xs[1:], ys[2:])
        d, inp, out = self._shapes[dev]
        if (t.shape[1], x.shape[1:], y.shape[2:]) != (d, inp, out):
            raise ShapeError(
                f"device {dev!r} was logged with d = {d}, inputs (B, *{inp}) and outputs "
                f"(K, B, *{out}); got d = {t.shape[1]}, inputs {x.shape} and outputs {y.shape}"
            )

    def _writable(self) -> sqlite3.Connection:
        if self.readonly:
            raise ConfigError(f"query log {str(self.path)!r} was opened read-only; nothing written")
        return self._connection()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConfigError(f"query log {str(self.path)!r} is closed")
        return self._conn

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        """Number of logged queries (all devices)."""
        return int(self._fetch("SELECT COUNT(*) FROM queries")[0][0])

    def devices(self) -> list[str]:
        """Device identities in the log, in order of first appearance."""
        rows = self._fetch("SELECT device FROM queries GROUP BY device ORDER BY MIN(id)")
        return [r[0] for r in rows]

    def spent(self, *, device: str | None = None, client: str | None = None) -> Ledger:
        """The summed cost of the logged queries, optionally of one device and/or one client
        (``failures`` is 0: only completed queries are logged). Restoring a meter from it
        resumes budgets across runs (a device server resumes each token's this way)."""
        if client is not None and not self._extended:
            return Ledger()  # an older read-only log records no clients
        where, args = _filter(device, client)
        ((r, s, n),) = self._fetch(
            "SELECT COALESCE(SUM(reconfigurations), 0), COALESCE(SUM(samples), 0), COUNT(*) "
            f"FROM queries{where}",
            args,
        )
        return Ledger(int(r), int(s), int(n), 0)

    def find(self, client: str, request_key: str) -> LoggedQuery | None:
        """The query ``client`` sent with idempotency key ``request_key``, or ``None``."""
        if not self._extended:
            return None
        found = list(self._records(" WHERE client = ? AND request_key = ?", (client, request_key)))
        return found[0] if found else None

    def records(self, *, device: str | None = None) -> Iterator[LoggedQuery]:
        """The logged queries in order (optionally of one device), read lazily.

        An input batch shared by several queries is decoded once and shared (read-only).
        """
        return self._records(*_filter(device))

    def _records(self, where: str, args: tuple[Any, ...]) -> Iterator[LoggedQuery]:
        extra = ", client, request_key" if self._extended else ", NULL, NULL"
        rows = self._fetch(
            "SELECT id, time, device, thetas_shape, thetas, input_id, y_shape, y, "
            f"reconfigurations, samples{extra} FROM queries{where} ORDER BY id",
            args,
        )
        inputs: dict[int, np.ndarray] = {}
        for idx, stamp, dev, ts, tb, iid, ys, yb, r, s, who, key in rows:
            if iid not in inputs:
                inputs[iid] = self._read_input(iid)
            yield LoggedQuery(
                int(idx),
                float(stamp),
                dev,
                _array(tb, ts),
                inputs[iid],
                _array(yb, ys),
                int(r),
                int(s),
                who,
                key,
            )

    def data(self, *, device: str | None = None) -> QueryData:
        """Every logged query (optionally of one device) as :class:`QueryData`, one group per
        query, in order.

        Raises:
            ShapeError: devices of different shapes are mixed (pass ``device=``).
        """
        groups = [(q.thetas, q.x, q.y) for q in self.records(device=device)]
        try:
            return QueryData(tuple(groups))
        except ShapeError as exc:
            raise ShapeError(
                f"{exc}; the log holds devices {self.devices()} of different shapes: pass device="
            ) from exc

    def _read_input(self, input_id: int) -> np.ndarray:
        ((shape, blob),) = self._fetch("SELECT shape, data FROM inputs WHERE id = ?", (input_id,))
        return _array(blob, shape)

    def _fetch(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the file (idempotent). Every appended query is already committed."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._conn is None

    def __enter__(self) -> QueryLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path), "device": self.device, "readonly": self.readonly}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], device=state["device"], readonly=state["readonly"])  # type: ignore[misc]

    def __repr__(self) -> str:
        status = "closed" if self._conn is None else f"queries={len(self)}"
        mode = ", readonly" if self.readonly else ""
        return f"QueryLog({str(self.path)!r}, device={self.device!r}, {status}{mode})"


def log_queries(
    meter: MeteredDevice, path: str | os.PathLike[str], *, device: str = "device"
) -> QueryLog:
    """Open (or create) the log at ``path``, record the meter's control space under
    ``device`` and register the log as an observer of ``meter``."""
    log = QueryLog(path, device=device)
    if isinstance(getattr(meter, "space", None), ParamSpace):
        log.set_space(meter.space)
    meter.add_observer(log)
    return log


def _filter(device: str | None, client: str | None = None) -> tuple[str, tuple[Any, ...]]:
    terms = [(c, v) for c, v in (("device", device), ("client", client)) if v is not None]
    if not terms:
        return "", ()
    return " WHERE " + " AND ".join(f"{c} = ?" for c, _ in terms), tuple(v for _, v in terms)


def _shape_text(a: np.ndarray) -> str:
    return json.dumps([int(s) for s in a.shape])


def _blob(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=_F8).tobytes()


def _array(blob: bytes, shape_text: str) -> np.ndarray:
    arr = np.frombuffer(blob, dtype=_F8).reshape(json.loads(shape_text)).astype(np.float64)
    arr.flags.writeable = False
    return arr


__all__ = ["FORMAT", "VERSION", "LoggedQuery", "QueryLog", "log_queries"]
