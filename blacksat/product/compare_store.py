"""The output directory of a comparison sweep while it runs
(:func:`blacksat.product.compare.compare`):
checked before any run starts, and filled one finished run at a time.

- ``sweep.json``: what the rows depend on besides their key (the scenario and each method's
  options); a resumed sweep must match it;
- ``rows.jsonl``: one JSON line per finished run, appended (flushed and ``fsync``-ed) as soon as
  the run completes. A line cut short by a crash is ignored on resume.

The final files (``results.csv``, ``results.json``, ``summary.md``, plots) are written from the
rows when the sweep ends (:mod:`blacksat.product.compare_plots`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blacksat.errors import ConfigError
from blacksat.outputs import prepare_dir, write_private

ROWS = "rows.jsonl"
SWEEP = "sweep.json"
#: what counts as results in a compare directory (refused without --force or --resume)
RESULT_FILES = (
    ROWS,
    SWEEP,
    "results.csv",
    "results.json",
    "summary.md",
    "accuracy_vs_reconfigurations.png",
    "robustness.png",
)

Key = tuple[str, int, int, int]  # method, seed, chip, budget


def row_key(row: dict[str, Any]) -> Key:
    """``(method, seed, chip, budget)`` of a row."""
    return (str(row["method"]), int(row["seed"]), int(row["chip"]), int(row["budget"]))


def _plain(doc: Any) -> Any:
    return json.loads(json.dumps(doc, default=_jsonable))


def _jsonable(v: Any) -> Any:
    item = getattr(v, "item", None)
    return item() if callable(item) else repr(v)


@dataclass
class RowStore:
    """An open compare directory: the rows already finished (``rows``) and :meth:`append`."""

    directory: Path
    rows: dict[Key, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(
        cls, out_dir: str | Path, sweep: dict[str, Any], *, force: bool, resume: bool
    ) -> RowStore:
        """Check ``out_dir`` (before any work) and open it.

        Raises:
            ConfigError: ``out_dir`` is a file or not writable; it holds results and neither
                ``force`` nor ``resume`` is given; both are given; or ``resume`` and its
                ``sweep.json`` describes another scenario or other method options.
        """
        if force and resume:
            raise ConfigError("give --resume or --force, not both")
        d = prepare_dir(
            out_dir,
            force=force or resume,
            results=RESULT_FILES,
            resume_hint=", --resume to keep its finished runs",
        )
        doc = _plain(sweep)
        store = cls(d)
        if resume:
            store._check_sweep(doc)
            store.rows = store._read_rows()
        elif (d / ROWS).exists():
            (d / ROWS).unlink()  # --force: the old rows go
        write_private(d / SWEEP, json.dumps(doc, indent=2) + "\n")
        if store.rows:  # rewrite without a torn last line, so appends start clean
            text = "".join(json.dumps(r, default=_jsonable) + "\n" for r in store.rows.values())
            write_private(d / ROWS, text)
        return store

    def _check_sweep(self, doc: dict[str, Any]) -> None:
        path = self.directory / SWEEP
        if not path.exists():
            if (self.directory / ROWS).exists():
                raise ConfigError(f"{str(path)!r} is missing; the rows cannot be resumed")
            return
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise ConfigError(f"{str(path)!r} is not valid JSON; cannot resume") from None
        if saved.get("scenario") != doc["scenario"]:
            raise ConfigError(
                f"--resume: {str(self.directory)!r} holds a sweep of another scenario; resume "
                "it with the same scenario, or use --force or another --out"
            )
        for name, spec in doc["methods"].items():
            old = saved.get("methods", {}).get(name)
            if old is not None and old != spec:
                raise ConfigError(
                    f"--resume: method {name!r} ran with other options in "
                    f"{str(self.directory)!r}; use --force or another --out"
                )
        doc["methods"] = {**saved.get("methods", {}), **doc["methods"]}

    def _read_rows(self) -> dict[Key, dict[str, Any]]:
        path = self.directory / ROWS
        rows: dict[Key, dict[str, Any]] = {}
        if not path.exists():
            return rows
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                rows[row_key(row)] = row
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash: that run is run again
        return rows

    def append(self, row: dict[str, Any]) -> None:
        """Add one finished run's row (on disk before this returns)."""
        self.rows[row_key(row)] = row
        with open(self.directory / ROWS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=_jsonable) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


__all__ = ["RESULT_FILES", "ROWS", "SWEEP", "RowStore", "row_key"]
