"""Where a command's results go, checked **before** any work is done.

Every command that writes results (``train``, ``evaluate``, ``calibrate``, ``compare``,
``demo``) calls one of these first, so that a bad location (an existing file where a directory
is wanted, a read-only or missing parent, ``/proc/x``) fails at once rather than after minutes
of work, and a location that already holds results is refused unless the caller says
``force``:

- :func:`prepare_dir`: an output directory (created; a probe file is written and removed);
- :func:`prepare_file`: an output file (its directory created and probed);
- :func:`os_reason`: an :class:`OSError` in words, without the ``[Errno N]`` prefix;
- :func:`write_private`: write a text file atomically with the permissions every run file has.

Errors are :class:`~blacksat.errors.ConfigError` (the CLI prints them as one line).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from blacksat.errors import ConfigError


def file_mode() -> int:
    """The permissions of every file a run writes: what ``open()`` gives a new file under the
    process's umask (usually ``0o644``), the same for the checkpoint, the logs, the query log
    and the results (``tempfile`` alone would give ``0o600`` to the atomically written ones)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or directory",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.EISDIR: "it is a directory",
    errno.EEXIST: "it already exists",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EINVAL: "invalid argument",
}


def os_reason(exc: OSError) -> str:
    """``exc`` in words (``"permission denied"``), never ``"[Errno 13] ..."``."""
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    text = exc.strerror or str(exc.args[-1] if exc.args else type(exc).__name__)
    return str(text).lower()


def os_message(exc: OSError) -> str:
    """``exc`` as one sentence naming the path it concerns (``'x': permission denied``)."""
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    where = " -> ".join(repr(os.fsdecode(n)) for n in names)
    return f"{where}: {os_reason(exc)}" if where else os_reason(exc)


def _probe(directory: Path, what: str) -> None:
    """Create ``directory`` (and parents) and write and remove a probe file in it."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{what} {str(directory)!r} is an existing file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".blacksat-probe-", dir=directory)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ConfigError(
            f"{what} {str(directory)!r} cannot be written ({os_reason(exc)}); nothing was run"
        ) from None


def prepare_dir(
    path: str | os.PathLike[str],
    *,
    what: str = "--out",
    force: bool = False,
    results: Iterable[str] | None = None,
    resume_hint: str = "",
) -> Path:
    """Check and create the output directory ``path`` before any work.

    Args:
        path: the directory.
        what: how the caller names it in messages (e.g. ``"--out"``).
        force: allow results already there to be overwritten.
        results: the file names that count as results (``None``: any entry). A directory
            holding one of them is refused without ``force``.
        resume_hint: appended to the refusal (e.g. ``", or --resume to continue it"``).

    Raises:
        ConfigError: ``path`` is a file, cannot be created or written, or holds results and
            ``force`` is false. Nothing is written in that case.
    """
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise ConfigError(f"{what} {str(d)!r} is an existing file, not a directory")
    if d.is_dir() and not force:
        present = sorted(p.name for p in d.iterdir())
        held = present if results is None else [n for n in present if n in set(results)]
        if held:
            raise ConfigError(
                f"{what} {str(d)!r} already holds results ({', '.join(held[:4])}); pass "
                f"--force to overwrite them{resume_hint}, or choose another {what}"
            )
    _probe(d, what)
    return d


def prepare_file(
    path: str | os.PathLike[str],
    *,
    what: str = "--out",
    force: bool = False,
    also: Iterable[Path] = (),
) -> Path:
    """Check the output file ``path`` (and the files in ``also`` written beside it) before any
    work: not a directory, not already there unless ``force``, its directory writable
    (created if missing)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what} {str(p)!r} is a directory; give a file name")
    if not force:
        for f in (p, *also):
            if f.exists():
                raise ConfigError(
                    f"{what}: {str(f)!r} already exists; pass --force to overwrite it, or "
                    f"choose another {what}"
                )
    _probe(p.parent if str(p.parent) else Path("."), f"the directory of {what}")
    return p


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, ``os.replace``) with
    :func:`file_mode`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


__all__ = ["file_mode", "os_message", "os_reason", "prepare_dir", "prepare_file", "write_private"]
