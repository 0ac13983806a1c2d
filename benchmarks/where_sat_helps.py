"""Where SAT does and does not help: one table across the studies, error type x method.

    python benchmarks/where_sat_helps.py            # writes its section of BENCHMARKS.md
    python benchmarks/where_sat_helps.py --print    # prints the section only

It runs nothing itself: it gathers the cells each study saved with ``_report.save_cells``
(``benchmarks/results/<study>/cells.json``, written by ``mrr_drift.py``, ``mzi_hybrid.py``,
``diffractive_misalignment.py`` and ``query_only.py``), so every figure in the table is one the
study's own section reports, with its seeds, chips and spread. A row is an error type on one device
(the same error can hurt differently on two devices); a cell is the test accuracy under that error,
mean +- spread over the study's runs, and in brackets the same method's accuracy without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ERROR_TYPES, METHODS, ROOT, write_section

RESULTS = ROOT / "benchmarks" / "results"
SAT_METHODS = ("unstructured SAT", "structured SAT", "online SAT", "zeroth-order SAT")


def load_cells(results: Path = RESULTS) -> list[dict[str, Any]]:
    """Every study's cells, each tagged with its ``study`` (the results folder's name)."""
    cells: list[dict[str, Any]] = []
    for path in sorted(results.glob("*/cells.json")):
        for cell in json.loads(path.read_text()):
            cells.append({**cell, "study": path.parent.name})
    return cells


Row = dict[str, Mapping[str, Any]]


def _rows(cells: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Row]:
    """``(error, device) -> method -> cell``, rows in ERROR_TYPES order. A method measured twice
    for one row keeps the cell with more runs (then the higher accuracy: the better variant)."""
    rows: dict[tuple[str, str], Row] = {}
    for c in cells:
        row = rows.setdefault((c["error"], c["device"]), {})
        old = row.get(c["method"])
        if old is None or (c["n"], c["acc"]) > (old["n"], old["acc"]):
            row[c["method"]] = c
    return dict(sorted(rows.items(), key=lambda kv: (ERROR_TYPES.index(kv[0][0]), kv[0][1])))


def _cell(c: Mapping[str, Any] | None) -> str:
    if c is None:
        return "-"
    clean = "" if c.get("clean") is None else f" ({c['clean']:.1f})"
    return f"{c['acc']:.1f} ± {c['acc_std']:.1f}{clean}"


def margins(row: Mapping[str, Mapping[str, Any]]) -> str:
    """Each SAT method's mean minus the better of backprop and noise-aware training on the row
    (pp), with the larger of the two spreads beside it: figures, no verdict."""
    refs = [row[m] for m in ("BP", "noise-aware") if m in row]
    if not refs:
        return "-"
    ref = max(refs, key=lambda c: c["acc"])
    parts = []
    for m in SAT_METHODS:
        if m in row:
            c = row[m]
            tol = max(c["acc_std"], ref["acc_std"])
            parts.append(f"{m} {c['acc'] - ref['acc']:+.1f} (spread {tol:.1f})")
    return f"vs {ref['method']}: " + "; ".join(parts) if parts else "-"


def section(cells: Sequence[Mapping[str, Any]]) -> str:
    rows = _rows(cells)
    if not rows:
        return (
            "## Where SAT does and does not help\n\n"
            "No study has saved its cells yet (run the study scripts first).\n"
        )
    methods = [m for m in METHODS if any(m in r for r in rows.values())]
    lines = [
        "## Where SAT does and does not help",
        "",
        "Command: `python benchmarks/where_sat_helps.py` (gathers the cells the study scripts "
        "below saved; it measures nothing itself). Test accuracy (%) under each error, mean ± "
        "spread over each study's seeds x chips, full test split; in brackets the same method "
        "without that error. The variant behind each cell and the exact condition are listed "
        "under the table; each study's section has the full figures.",
        "",
        "| error (device) | " + " | ".join(methods) + " |",
        "| --- | " + " | ".join("---" for _ in methods) + " |",
    ]
    for (error, device), row in rows.items():
        lines.append(
            f"| {error} ({device}) | " + " | ".join(_cell(row.get(m)) for m in methods) + " |"
        )
    lines += [
        "",
        "SAT minus the better of BP and noise-aware training on each row (pp; in brackets the "
        "larger of the two spreads):",
        "",
    ]
    for (error, device), row in rows.items():
        lines.append(f"- {error} ({device}): {margins(row)}")
    lines += ["", "Cells (study, condition, variant, runs):", ""]
    for (error, device), row in rows.items():
        for m in methods:
            c = row.get(m)
            if c is not None:
                lines.append(
                    f"- {error} ({device}) / {m}: `{c.get('study', '?')}`, {c['condition']}; "
                    f"{c['variant']}; n = {c['n']}"
                )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print only, do not write")
    args = parser.parse_args(argv)
    body = section(load_cells())
    print(body)
    if not args.print:
        write_section("where-sat-helps", body)


if __name__ == "__main__":
    main()
