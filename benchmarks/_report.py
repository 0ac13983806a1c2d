"""Write a generated section into BENCHMARKS.md between markers (figures are never hand-edited)."""

from __future__ import annotations

import fcntl
import json
import os
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from blacksat.evaluation import Summary

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"
HEADER = (
    "# blacksat benchmarks\n\n"
    "Every figure below is written by a committed script under `benchmarks/`.\n"
)


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, else the platform's), or ``""``:
    ratios of batched to single calls depend on it, not only on the core count."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor().strip()


def machine() -> str:
    """A one-line description of where the figures were measured."""
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    cpu = cpu_model()
    return (
        f"{platform.machine()}{f' ({cpu})' if cpu else ''}, {os.cpu_count()} CPU cores{gpu}, "
        f"torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


def summary(values: Iterable[float | None]) -> tuple[float, float, int]:
    """``(mean, std, n)`` of the values that are not ``None``: the one summary every study
    reports, :class:`blacksat.evaluation.Summary` (sample std, ``ddof=1``; 0 for one value);
    ``(nan, nan, 0)`` for none."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return float("nan"), float("nan"), 0
    s = Summary.of(vals)
    return s.mean, s.std, len(vals)


def write_section(key: str, body: str) -> None:
    """Replace (or append) the section delimited by ``<!-- key:begin -->``/``<!-- key:end -->``."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    with open(BENCHMARKS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # benchmarks running side by side update other keys
        _replace(begin, end, body)


def _replace(begin: str, end: str, body: str) -> None:
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        # a new hand-written reading goes right after the section it reads
        key = begin.removeprefix("<!-- ").removesuffix(":begin -->")
        after = f"<!-- {key.removesuffix('_reading')}:end -->"
        if key.endswith("_reading") and after in text:
            head, tail = text.split(after, 1)
            text = head + after + "\n\n" + block + tail
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)


#: Rows and columns of the "where SAT does and does not help" table (benchmarks/where_sat_helps.py).
ERROR_TYPES = ("coupler ratio", "phase", "common-mode drift", "misalignment", "fresh chip")
METHODS = (
    "BP",
    "noise-aware",
    "unstructured SAT",
    "structured SAT",
    "online SAT",
    "zeroth-order SAT",
)


def save_cells(study: str, cells: Iterable[Mapping[str, Any]]) -> Path:
    """Write one study's cells of the "where SAT helps" table to ``results/<study>/cells.json``.

    Each cell: ``error`` (one of :data:`ERROR_TYPES`), ``method`` (one of :data:`METHODS`),
    ``variant`` (what exactly ran, e.g. "SAM rho=0.1", "common-mode average case"),
    ``condition`` (where it was measured, e.g. "dT = +2 K", "rotation 2 deg"), ``acc`` and
    ``acc_std`` (test accuracy in %, mean and spread over ``n`` runs) under that error, and
    ``clean`` (the same method's accuracy without it, %, or None), ``device``.
    """
    rows = [dict(c) for c in cells]
    for c in rows:
        if c["error"] not in ERROR_TYPES or c["method"] not in METHODS:
            raise ValueError(f"unknown error type or method in cell {c}")
        for k in ("variant", "condition", "acc", "acc_std", "n", "clean", "device"):
            if k not in c:
                raise ValueError(f"cell {c} lacks {k!r}")
    out = ROOT / "benchmarks" / "results" / study / "cells.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    return out
