"""The complete state of a training run, and its atomic checkpoint on disk.

:class:`TrainState` holds **everything** a run needs to continue exactly where it stopped: the
controls, the optimizer and scheduler state, the digital layers, the position in the data (the
current epoch's permutation and the next batch offset), the run's random generator, the device
budget ledger, the history, the SAF memory and a simulated device's random streams. Resuming from
it ends bitwise identical to an uninterrupted run (``DESIGN.md``, boundary 4); a physical device,
whose noise no file can replay, continues from the same state with fresh noise.

:func:`save_checkpoint` writes it atomically (a temporary file in the same directory, ``fsync``,
``os.replace``): a crash mid-write leaves the previous checkpoint intact and no partial file.
The file holds only tensors and plain Python values, so :func:`load_checkpoint` reads it with
``torch.load(weights_only=True)``: loading a checkpoint never executes code.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import os
import pickle
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blacksat.errors import ConfigError
from blacksat.meter import Ledger
from blacksat.outputs import file_mode
from blacksat.space import ParamSpace

_FORMAT = "blacksat.TrainState"
_VERSION = 1


@dataclass
class TrainState:
    """All the state of a training run, in one object.

    Attributes:
        theta: ``(d,)`` float64 controls (continuous relaxation, inside the bounds).
        step: optimization steps completed.
        epoch: epochs completed (the current epoch's 0-based number).
        order: ``(N,)`` int64 permutation of the training samples for the current epoch, or
            ``None`` at an epoch boundary (the next step draws a fresh one from ``rng``).
        offset: position in ``order`` of the next batch.
        rng: the run's ``numpy.random.Generator`` state (``bit_generator.state``, plain dict).
        optimizer: ``torch.optim`` state dict (param group 0: ``theta``; 1: digital layers).
        scheduler: learning-rate scheduler state dict, or ``None`` without a schedule.
        digital: state dicts of the task's digital layers, ``{"front": ..., "back": ...}``.
        ledger: cumulative device cost (the meter's ledger when the run has one, else the sum
            of the estimates' costs over completed steps).
        history: one record per completed step (``step``, ``epoch``, ``loss``, ``lr``,
            ``grad_norm``).
        saf: the SAF trajectory-loss memory (``TrajectoryLoss.state_dict()``), or ``None``.
        estimator: the estimator's own memory (its ``state_dict()``, nested: a wrapper holds what
            it wraps under ``"inner_state"``; e.g. a
            :class:`~blacksat.nonfinite.NonFinitePolicy`'s failure count), or ``None``.
        device_rng: the simulated device's random streams and held state
            (``rng_state()`` of the device behind the meter), or ``None`` (a physical device,
            or no meter): a resumed run restores them, so that on a simulator it meets the same
            noise as an uninterrupted run.
        elapsed: wall-clock seconds spent in training so far (over all resumes).
        meta: what the run was configured with (checked when resuming); ``meta["space"]``
            is the control space (:meth:`~blacksat.ParamSpace.to_dict`), see :attr:`space`.
        best: with ``TrainConfig(keep="best")``, the best setting measured so far and the
            moving average that ranks them (:meth:`~blacksat.keep_best.BestSetting.state_dict`);
            ``None`` otherwise (and in checkpoints written before it was kept).
    """

    theta: torch.Tensor
    step: int = 0
    epoch: int = 0
    order: torch.Tensor | None = None
    offset: int = 0
    rng: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] | None = None
    digital: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    ledger: Ledger = field(default_factory=Ledger)
    history: list[dict[str, Any]] = field(default_factory=list)
    saf: dict[str, Any] | None = None
    estimator: dict[str, Any] | None = None
    device_rng: dict[str, Any] | None = None
    elapsed: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    best: dict[str, Any] | None = None

    def make_rng(self) -> np.random.Generator:
        """A fresh generator in the stored state (the state itself is not shared)."""
        name = self.rng.get("bit_generator")
        cls = getattr(np.random, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, np.random.BitGenerator)):
            raise ConfigError(f"unknown numpy bit generator {name!r} in the train state")
        gen = np.random.Generator(cls())
        gen.bit_generator.state = copy.deepcopy(self.rng)
        return gen

    @property
    def space(self) -> ParamSpace | None:
        """The control space the run trained in (``meta["space"]``), or ``None`` for a state
        saved before spaces were kept (its controls were bounded)."""
        data = self.meta.get("space")
        return None if data is None else ParamSpace.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Tensors and plain Python values only (deep copies): what a checkpoint file holds."""
        out: dict[str, Any] = {"format": _FORMAT, "version": _VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "ledger":
                value = {k.name: int(getattr(value, k.name)) for k in fields(Ledger)}
            out[f.name] = _copy(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ConfigError("not a blacksat training checkpoint (missing format tag)")
        if data.get("version") != _VERSION:
            raise ConfigError(
                f"checkpoint format version {data.get('version')!r} is not supported "
                f"(this blacksat reads version {_VERSION})"
            )
        names = {f.name for f in fields(cls)}
        missing = {"theta"} - set(data)
        if missing:
            raise ConfigError(f"checkpoint lacks {sorted(missing)}")
        kwargs = {k: _copy(v) for k, v in data.items() if k in names}
        kwargs["ledger"] = Ledger(**kwargs.get("ledger", {}))
        return cls(**kwargs)

    def copy(self) -> TrainState:
        """A deep copy."""
        return TrainState.from_dict(self.to_dict())


def _copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    return copy.deepcopy(value)


def save_checkpoint(state: TrainState, path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically; returns the path.

    The bytes go to a temporary file in the same directory, are flushed and ``fsync``-ed, and
    the file then replaces ``path`` in one ``os.replace``. If anything fails on the way, the
    temporary file is removed and whatever was at ``path`` before is left intact. Temporary
    files left by a writer that was killed outright (no chance to clean up) are removed by the
    next save to the same path.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
    payload = state.to_dict()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())  # like every other run file, not tempfile's 0600
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)
    return target


def load_checkpoint(path: str | os.PathLike[str]) -> TrainState:
    """Read a :class:`TrainState` written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        FileNotFoundError: no file at ``path``.
        ConfigError: the file is not a blacksat training checkpoint or cannot be read.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint at {p}")
    where = f"checkpoint {str(p)!r}"
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ConfigError(f"cannot read {where} ({exc.strerror or 'unreadable'})") from None
    if size == 0:
        raise ConfigError(f"{where} is empty (0 bytes); it cannot be resumed")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc) or "This file can still be loaded" in str(exc):
            raise ConfigError(
                f"{where} holds objects other than tensors and plain values; blacksat loads "
                "only what it wrote and never unpickles code"
            ) from None
        raise ConfigError(f"{where} is damaged or not a blacksat checkpoint") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"{where} is damaged or truncated ({type(exc).__name__}); it cannot be resumed"
        ) from None
    try:
        return TrainState.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["TrainState", "load_checkpoint", "save_checkpoint"]
