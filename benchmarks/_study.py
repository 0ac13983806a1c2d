"""The harness every study shares: its runs on disk, its arguments, its chips, its header.

A study is a set of runs (one training of one method on one chip under one seed), each a JSON
row. :class:`Study` appends a row to ``results/<name>/rows.jsonl`` the moment the run finishes
(one ``write`` of one line, flushed and fsynced, so a crash loses at most the run in flight),
skips runs already on disk when the study is started again, and re-renders its section from the
rows alone (``--report-only``). Chips follow one rule everywhere: a run trains on chip seed
``s`` (reported seeds 0, 1, 2, ...; tuning seeds 100-102) and is deployed on the fresh chips
:func:`blacksat.evaluation.fresh_chip_seeds` names (``s + 1000 + i``). Generated sections hold
the set-up and the tables; what the figures mean is written by people, in a ``<key>_reading``
section beside it that no script touches.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from _report import ROOT, machine, summary, write_section

from blacksat.evaluation import fresh_chip_seeds

RESULTS = ROOT / "benchmarks" / "results"

__all__ = [
    "RESULTS",
    "Study",
    "field_filter",
    "fresh_chip_seeds",
    "machine",
    "main",
    "parser",
    "redo",
    "summary",
]


def parser(doc: str | None, *, report_only: bool = True) -> argparse.ArgumentParser:
    """The arguments every study takes: ``--quick`` (tiny budgets, prints only, nothing saved),
    ``--force`` (discard the saved runs first) and ``--report-only`` (re-render from disk)."""
    ap = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    ap.add_argument("--quick", action="store_true", help="tiny budgets, one seed; prints only")
    ap.add_argument("--force", action="store_true", help="discard the saved runs first")
    if report_only:
        ap.add_argument("--report-only", action="store_true", help="re-render from saved runs")
    ap.add_argument(
        "--only", action="append", default=[], metavar="FIELD=VALUE[,VALUE]",
        help="run only the runs whose FIELD is one of the VALUEs (the field a study's loop "
        "filters on: its docstring says which); the others are skipped, not discarded, so two "
        "processes given disjoint values share the work on two cores",
    )  # fmt: skip
    ap.add_argument(
        "--redo", action="append", default=[], metavar="FIELD=VALUE[,VALUE]",
        help="discard the saved runs whose FIELD is one of the VALUEs (all given fields must "
        "match; repeatable), so they run again: e.g. --redo method=linear_response",
    )  # fmt: skip
    return ap


def field_filter(items: Iterable[str], option: str) -> dict[str, set[str]]:
    """``["method=a,b", "budget=100"]`` -> ``{"method": {"a", "b"}, "budget": {"100"}}``."""
    out: dict[str, set[str]] = {}
    for item in items:
        field, sep, values = item.partition("=")
        if not sep or not field or not values:
            raise SystemExit(f"{option} takes FIELD=VALUE[,VALUE], got {item!r}")
        out.setdefault(field, set()).update(v for v in values.split(",") if v)
    return out


class Study:
    """One study's runs on disk (``results/<name>/rows.jsonl``) and its section.

    Args:
        name: the results folder (``benchmarks/results/<name>``).
        key: the ``BENCHMARKS.md`` section key (``<!-- key:begin -->``).
        quick: a smoke run: rows are kept in memory only and nothing is written.
        only: ``--only``: field -> the values of the runs this process runs (:meth:`skips`).
        directory: where the runs live, if not ``benchmarks/results/<name>``.
    """

    def __init__(
        self,
        name: str,
        key: str,
        *,
        quick: bool = False,
        only: Mapping[str, set[str]] | None = None,
        directory: Path | None = None,
    ) -> None:
        self.name, self.key, self.quick = name, key, quick
        self.only = dict(only or {})
        self.dir = RESULTS / name if directory is None else Path(directory)
        self.path = self.dir / "rows.jsonl"
        self._memory: list[dict[str, Any]] = []
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------------ rows
    def rows(self) -> list[dict[str, Any]]:
        """Every finished run (a line that fails to parse, e.g. cut by a crash, is skipped)."""
        if self.quick:
            return list(self._memory)
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def add(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Persist one finished run (appended and fsynced before the next run starts)."""
        r = dict(row)
        if self.quick:
            self._memory.append(r)
            return r
        self.dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(r, sort_keys=True) + "\n"
        with open(self.path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        return r

    def find(self, **ids: Any) -> dict[str, Any] | None:
        """The saved run whose fields equal ``ids`` (``None`` if there is none)."""
        for r in self.rows():
            if all(r.get(k) == v for k, v in ids.items()):
                return r
        return None

    def run(self, fn: Callable[[], Mapping[str, Any]], **ids: Any) -> dict[str, Any]:
        """The run identified by ``ids``: from disk when it finished before, else ``fn()`` (its
        row merged with ``ids`` and its wall time), saved as it completes."""
        done = self.find(**ids)
        if done is not None:
            return done
        t0 = time.perf_counter()
        row = {**ids, **fn()}
        row.setdefault("wall_s", time.perf_counter() - t0)
        row.setdefault("machine", machine())
        return self.add(row)

    def skips(self, **ids: Any) -> bool:
        """Whether ``--only`` leaves out runs with these fields (a field it does not name never
        does): the study's loop asks before running them."""
        return any(k in self.only and str(v) not in self.only[k] for k, v in ids.items())

    def drop(self, match: Mapping[str, set[str]]) -> int:
        """Discard the saved runs whose fields all match (``str(row[field])`` in the set), so
        they run again; the others are kept. The file is replaced atomically. Returns how many
        runs were dropped."""
        if self.quick or not match or not self.path.exists():
            return 0
        lines = [line for line in self.path.read_text().splitlines() if line.strip()]
        keep = []  # the kept runs' lines as they were written (a cut line is kept as well)
        for line in lines:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                keep.append(line)
                continue
            if not all(str(r.get(k)) in v for k, v in match.items()):
                keep.append(line)
        if len(keep) == len(lines):
            return 0
        tmp = self.path.with_suffix(".jsonl.tmp")
        with open(tmp, "w") as f:
            f.writelines(line + "\n" for line in keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        return len(lines) - len(keep)

    def reset(self) -> None:
        """Discard the saved runs (``--force``)."""
        if self.path.exists() and not self.quick:
            self.path.unlink()

    # ------------------------------------------------------------------ report
    def minutes(self, rows: Iterable[Mapping[str, Any]] | None = None) -> float:
        """Training minutes of the runs (their summed ``wall_s``)."""
        rs = self.rows() if rows is None else rows
        return sum(float(r.get("wall_s", 0.0)) for r in rs) / 60

    def header(self, command: str, what: str = "") -> str:
        """``Command: `...` (N min of runs on <machine>). <what>`` — the first line of a section."""
        return (
            f"Command: `{command}` ({self.minutes():.1f} min of runs, summed wall time, on "
            f"{self.machines()}; runs in `benchmarks/results/{self.name}/rows.jsonl`). {what}"
        ).rstrip()

    def machines(self) -> str:
        """Where the runs ran, as their rows record it (rows from before machines were
        recorded count as this machine's)."""
        here = machine()
        seen = dict.fromkeys(str(r.get("machine", here)) for r in self.rows())
        return " and ".join(seen) or here

    def write(self, body: str) -> None:
        """Write the generated section (a quick run prints it instead)."""
        if self.quick:
            print(body)
            return
        write_section(self.key, body)
        print(f"wrote the {self.key} section of BENCHMARKS.md")


def redo(study: Study, args: argparse.Namespace) -> None:
    """``--redo``: discard the matching saved runs (not with ``--report-only``)."""
    if args.redo and not getattr(args, "report_only", False):
        dropped = study.drop(field_filter(args.redo, "--redo"))
        print(f"discarded {dropped} saved runs to run again")


def main(
    doc: str | None,
    name: str,
    run: Callable[[Study, bool], None],
    section: Callable[[Study], str],
    argv: list[str] | None = None,
    *,
    key: str | None = None,
) -> None:
    """The command line of a study: ``--force`` discards its saved runs (``--redo`` those that
    match), ``run(study, quick)`` runs what is not on disk (``--only``: this process's share;
    skipped with ``--report-only``), ``section(study)`` is written (printed with ``--quick``);
    one torch thread."""
    import torch

    args = parser(doc).parse_args(argv)
    torch.set_num_threads(1)
    study = Study(name, key or name, quick=args.quick, only=field_filter(args.only, "--only"))
    if args.force:
        study.reset()
    redo(study, args)
    if not args.report_only:
        run(study, args.quick)
    study.write(section(study))
