"""Reports of a comparison sweep (:func:`blacksat.product.compare.compare`): aggregates, markdown
tables,
the head-to-head verdict, the files (``results.csv``, ``results.json``, ``summary.md``) and the
plots (``accuracy_vs_reconfigurations.png``, ``robustness.png``; matplotlib is optional: without
it the plots are skipped and the summary says so).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from blacksat.evaluation import Summary, paired_difference

if TYPE_CHECKING:
    from blacksat.product.compare import CompareResult, Scenario


def scenario_dict(scenario: Scenario) -> dict[str, Any]:
    """A JSON-friendly description of a scenario (:class:`~blacksat.product.compare.Scenario`)."""
    d = dataclasses.asdict(scenario)
    if not isinstance(scenario.device, str):
        dev = scenario.device
        d["device"] = f"{getattr(dev, '__module__', '?')}:{getattr(dev, '__qualname__', dev)}"
    d["drift"] = {k: list(v) for k, v in scenario.drift.items()}
    return d


_LINESTYLE = {"nevergrad": "--", "query-only": "-", "twin-assisted": ":"}
ACCURACY_PLOT = "accuracy_vs_reconfigurations.png"
#: what "target met" means in summary.md (:func:`head_to_head`)
TARGET_DEFINITION = (
    "Target met: at that budget the best query-only blacksat method (highest mean test "
    "accuracy) reaches at least the mean test accuracy of the best nevergrad method **and** "
    "used at most 1/5 of its samples (samples ratio = blacksat / nevergrad). Accuracy: % on "
    "the full test split, mean ± sample std (ddof = 1) over the runs."
)
PAIRED_DEFINITION = (
    "Difference, paired: blacksat's accuracy minus nevergrad's run by run (the same seed and "
    "chip), mean ± its standard error; a difference within about twice its error is what these "
    "seeds cannot tell from level."
)
ROBUSTNESS_PLOT = "robustness.png"


# ---------------------------------------------------------------------- aggregates
def _stats(values: Sequence[float]) -> dict[str, float]:
    s = Summary.of(values)  # the one definition: sample std (ddof = 1), 0 for one value
    return {"mean": s.mean, "std": s.std, "min": s.min, "max": s.max}


def metrics(scenario: Scenario) -> list[str]:
    """The numeric row keys that are aggregated."""
    return [
        "test_accuracy", "train_loss", *scenario.drift_columns(), "fresh_chip_accuracy",
        "reconfigurations", "samples", "queries", "wall_s",
    ]  # fmt: skip


def aggregate(rows: Sequence[dict[str, Any]], scenario: Scenario) -> list[dict[str, Any]]:
    """One record per (method, budget), in the rows' order: ``method``, ``kind``, ``label``,
    ``budget``, ``n`` (runs), and ``<metric>_mean|_std|_min|_max`` for every metric
    (:func:`metrics`; ``std`` with ``ddof=1``, 0 for a single run)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["budget"]), []).append(r)
    out = []
    for (name, budget), rs in groups.items():
        rec: dict[str, Any] = {
            "method": name,
            "kind": rs[0]["kind"],
            "label": rs[0]["label"],
            "budget": budget,
            "n": len(rs),
        }
        for key in metrics(scenario):
            for stat, v in _stats([r[key] for r in rs]).items():
                rec[f"{key}_{stat}"] = v
        out.append(rec)
    return out


def head_to_head(
    summary: Sequence[dict[str, Any]],
    ratio: float = 5.0,
    rows: Sequence[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Per budget, the best query-only blacksat method against the best nevergrad baseline
    (best = highest mean test accuracy). The target is met when blacksat's mean accuracy is at
    least nevergrad's **and** it used at most ``1 / ratio`` of nevergrad's samples.

    Returns records with ``budget``, ``blacksat``, ``blacksat_accuracy``, ``blacksat_std``,
    ``blacksat_samples``, ``nevergrad``, ``nevergrad_accuracy``, ``nevergrad_std``,
    ``nevergrad_samples``, ``samples_ratio`` (blacksat / nevergrad), ``accuracy_ok``,
    ``samples_ok``, ``met``, and, given the sweep's ``rows``, ``difference`` and
    ``difference_se``: blacksat's accuracy minus nevergrad's run by run (the same seed and chip),
    their mean and its standard error (``nan`` without two pairs); empty when either side is
    missing."""
    out = []
    for budget in sorted({s["budget"] for s in summary}):
        at = [s for s in summary if s["budget"] == budget]
        bs = [s for s in at if s["label"] == "query-only"]
        ng = [s for s in at if s["label"] == "nevergrad"]
        if not bs or not ng:
            continue
        b = max(bs, key=lambda s: s["test_accuracy_mean"])
        n = max(ng, key=lambda s: s["test_accuracy_mean"])
        r = b["samples_mean"] / n["samples_mean"] if n["samples_mean"] > 0 else math.inf
        acc_ok = b["test_accuracy_mean"] >= n["test_accuracy_mean"]
        samples_ok = r <= 1.0 / ratio
        out.append(
            {
                "budget": budget,
                "blacksat": b["method"],
                "blacksat_accuracy": b["test_accuracy_mean"],
                "blacksat_std": b["test_accuracy_std"],
                "blacksat_samples": b["samples_mean"],
                "nevergrad": n["method"],
                "nevergrad_accuracy": n["test_accuracy_mean"],
                "nevergrad_std": n["test_accuracy_std"],
                "nevergrad_samples": n["samples_mean"],
                "samples_ratio": r,
                "accuracy_ok": acc_ok,
                "samples_ok": samples_ok,
                "met": acc_ok and samples_ok,
                **_paired(rows or (), b["method"], n["method"], budget),
            }
        )
    return out


def _paired(rows: Sequence[dict[str, Any]], a: str, b: str, budget: int) -> dict[str, float]:
    """``a``'s test accuracy minus ``b``'s run by run (the same seed and chip) at ``budget``:
    ``difference`` (their mean) and ``difference_se`` (its standard error,
    :func:`~blacksat.evaluation.paired_difference`)."""
    acc: dict[str, dict[tuple[Any, Any], float]] = {a: {}, b: {}}
    for r in rows:
        if r.get("budget") == budget and r.get("method") in acc:
            acc[r["method"]][(r.get("seed"), r.get("chip"))] = float(r["test_accuracy"])
    mean, se, _ = paired_difference(acc[a], acc[b])
    return {"difference": mean, "difference_se": se}


# ---------------------------------------------------------------------- markdown
def _pct(mean: float, std: float) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def _count(v: float) -> str:
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.0f}k" if v >= 1e4 else f"{v:.0f}"


def accuracy_table(summary: Sequence[dict[str, Any]]) -> str:
    """Markdown: test accuracy (%) mean ± std and samples used, method x budget."""
    budgets = sorted({s["budget"] for s in summary})
    names = list(dict.fromkeys(s["method"] for s in summary))
    by = {(s["method"], s["budget"]): s for s in summary}
    head = "| method | kind | label | " + " | ".join(
        f"{b} reconf.: acc. % (samples)" for b in budgets
    )
    lines = [head + " |", "| --- | --- | --- |" + " --- |" * len(budgets)]
    for name in names:
        cells = []
        for b in budgets:
            s = by.get((name, b))
            cells.append(
                "–"
                if s is None
                else f"{_pct(s['test_accuracy_mean'], s['test_accuracy_std'])} "
                f"({_count(s['samples_mean'])})"
            )
        first = next(s for s in summary if s["method"] == name)
        lines.append(f"| {name} | {first['kind']} | {first['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def head_to_head_table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown of :func:`head_to_head`."""
    lines = [
        "| budget | best blacksat (query-only) | acc. % | best nevergrad | acc. % | "
        "samples ratio | target met | difference, paired (points) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        verdict = "yes" if r["met"] else (
            "no (" + ", ".join(
                w for w, ok in (("accuracy", r["accuracy_ok"]), ("samples", r["samples_ok"]))
                if not ok
            ) + ")"
        )  # fmt: skip
        diff = _difference(r)
        lines.append(
            f"| {r['budget']} | {r['blacksat']} | {_pct(r['blacksat_accuracy'], r['blacksat_std'])}"
            f" | {r['nevergrad']} | {_pct(r['nevergrad_accuracy'], r['nevergrad_std'])} | "
            f"1/{1 / r['samples_ratio']:.1f} | {verdict} | {diff} |"
            if r["samples_ratio"] > 0
            else f"| {r['budget']} | {r['blacksat']} | - | {r['nevergrad']} | - | 0 | {verdict} "
            f"| {diff} |"
        )
    return "\n".join(lines)


def _difference(record: dict[str, Any]) -> str:
    """``+x.x ± y.y`` points (the paired difference and its standard error; a difference within
    twice its error is what the sweep's seeds cannot tell from level), or ``-``."""
    d, se = record.get("difference", math.nan), record.get("difference_se", math.nan)
    if math.isnan(d):
        return "-"
    return f"{100 * d:+.1f}" + ("" if math.isnan(se) else f" ± {100 * se:.1f}")


def robustness_table(summary: Sequence[dict[str, Any]], scenario: Scenario) -> str:
    """Markdown: mean accuracy (%) at the largest budget under each drift value and on a
    fresh chip."""
    top = max(s["budget"] for s in summary)
    cols = scenario.drift_columns()
    drifts = [
        f"{k} {v:+g} {scenario.nuisance(k).unit}" for k, vs in scenario.drift.items() for v in vs
    ]
    head = ["method", "nominal", *drifts, "fresh chip"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for s in summary:
        if s["budget"] != top:
            continue
        vals = [s["test_accuracy_mean"], *[s[f"{c}_mean"] for c in cols]]
        vals.append(s["fresh_chip_accuracy_mean"])
        lines.append(f"| {s['method']} | " + " | ".join(f"{100 * v:.1f}" for v in vals) + " |")
    return "\n".join(lines)


def summary_markdown(result: CompareResult, plots: Sequence[str] = ()) -> str:
    """The ``summary.md`` text of a sweep."""
    summary = result.summary()
    pairs = "paired with the seeds" if result.paired else f"{result.chips} (every seed on each)"
    parts = [
        "# blacksat vs nevergrad",
        "",
        f"Scenario: `{json.dumps(scenario_dict(result.scenario))}`; seeds {result.seeds}, "
        f"chips {pairs}; budgets (reconfigurations) {result.budgets}.",
        "",
        "## Test accuracy (full test split, bare chip) and samples used",
        "",
        accuracy_table(summary),
    ]
    h2h = head_to_head(summary, rows=result.rows)
    if h2h:
        parts += [
            "",
            "## Best query-only blacksat vs best nevergrad",
            "",
            TARGET_DEFINITION + " " + PAIRED_DEFINITION,
            "",
            head_to_head_table(h2h),
        ]
    parts += [
        "",
        f"## Robustness at {max(result.budgets)} reconfigurations",
        "",
        robustness_table(summary, result.scenario),
    ]
    if plots:
        parts += ["", *[f"![{p}]({p})" for p in plots]]
    else:
        parts += ["", "(plots skipped: matplotlib is not installed)"]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------- files
def write_csv(result: CompareResult, path: Path) -> None:
    """One row per run, no trace."""
    cols = result.columns()
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in result.rows:
            w.writerow({k: r[k] for k in cols})


def write_json(result: CompareResult, path: Path) -> None:
    """Rows with traces, methods, scenario, axes and versions."""
    doc = {
        "scenario": scenario_dict(result.scenario),
        "methods": [
            {"name": m.name, "kind": m.kind, "label": m.label, "options": m.options, "doc": m.doc}
            for m in result.methods
        ],
        "seeds": result.seeds,
        "chips": result.chips,
        "paired": result.paired,
        "budgets": result.budgets,
        "versions": result.versions,
        "rows": result.rows,
    }
    path.write_text(json.dumps(doc, default=_jsonable) + "\n", encoding="utf-8")


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return repr(v)


def write_report(result: CompareResult, out_dir: Path) -> Path:
    """Write every file of a sweep into ``out_dir`` (created); returns it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(result, out_dir / "results.csv")
    write_json(result, out_dir / "results.json")
    plots: list[str] = []
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        summary = result.summary()
        plot_accuracy(summary, out_dir / ACCURACY_PLOT, chance=_chance(result.scenario))
        plot_robustness(summary, result.scenario, out_dir / ROBUSTNESS_PLOT)
        plots = [ACCURACY_PLOT, ROBUSTNESS_PLOT]
    (out_dir / "summary.md").write_text(summary_markdown(result, plots), encoding="utf-8")
    return out_dir


def _chance(scenario: Scenario) -> float | None:
    """``1 / classes`` of the scenario's dataset (``None`` if it cannot be loaded)."""
    from blacksat.data import load_dataset
    from blacksat.errors import BlacksatError

    try:
        return 1.0 / load_dataset(scenario.dataset, **scenario.dataset_kwargs).n_classes
    except (BlacksatError, OSError):
        return None


# ---------------------------------------------------------------------- plots
def _figure(ncols: int = 1, width: float = 7.0) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width, 4.5), squeeze=False)


def _colors(n: int) -> list[Any]:
    """``n`` clearly distinct colours (tab10, then Dark2, then Set1; no two shades of one hue
    side by side as tab20 gives)."""
    import matplotlib

    palette = [
        *matplotlib.colormaps["tab10"].colors,
        *matplotlib.colormaps["Dark2"].colors,
        *matplotlib.colormaps["Set1"].colors,
    ]
    return [palette[i % len(palette)] for i in range(n)]


def plot_accuracy(
    summary: Sequence[dict[str, Any]], path: Path, chance: float | None = None
) -> None:
    """Test accuracy vs reconfiguration budget: mean line and min-max band over runs per
    method (x log scale); nevergrad dashed, query-only solid, twin-assisted dotted; the chance
    level (``chance``, a fraction) as a grey line."""
    import matplotlib.pyplot as plt

    fig, axes = _figure(width=8.0)
    ax = axes[0, 0]
    names = list(dict.fromkeys(s["method"] for s in summary))
    for name, color in zip(names, _colors(len(names)), strict=True):
        ss = sorted((s for s in summary if s["method"] == name), key=lambda s: s["budget"])
        x = [s["budget"] for s in ss]
        ax.plot(
            x,
            [100 * s["test_accuracy_mean"] for s in ss],
            _LINESTYLE[ss[0]["label"]],
            marker="o",
            ms=3,
            color=color,
            label=f"{name} ({ss[0]['label']})",
        )
        ax.fill_between(
            x,
            [100 * s["test_accuracy_min"] for s in ss],
            [100 * s["test_accuracy_max"] for s in ss],
            color=color,
            alpha=0.12,
            lw=0,
        )
    budgets = sorted({s["budget"] for s in summary})
    if chance is not None:
        ax.axhline(100 * chance, color="gray", ls=":", lw=1, label=f"chance ({100 * chance:.0f} %)")
    ax.set_xscale("log")
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("reconfiguration budget")
    ax.set_ylabel("test accuracy on the chip (%)")
    ax.set_title("accuracy vs reconfigurations (mean, min-max band)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_robustness(summary: Sequence[dict[str, Any]], scenario: Scenario, path: Path) -> None:
    """At the largest budget: accuracy under each drift value (one panel per nuisance, the
    nominal point at the nuisance's default) and on a fresh chip, per method."""
    import matplotlib.pyplot as plt

    top = max(s["budget"] for s in summary)
    ss = [s for s in summary if s["budget"] == top]
    nuisances = list(scenario.drift)
    fig, axes = _figure(ncols=len(nuisances) + 1, width=5.0 * (len(nuisances) + 1))
    colors = _colors(len(ss))
    for j, name in enumerate(nuisances):
        ax = axes[0, j]
        nuisance = scenario.nuisance(name)
        nominal = float(nuisance.default)
        values = sorted({nominal, *scenario.drift[name]})
        for s, color in zip(ss, colors, strict=True):
            ys = [
                s["test_accuracy_mean"] if v == nominal else s[f"acc_{name}{v:+g}_mean"]
                for v in values
            ]
            ax.plot(
                values,
                [100 * y for y in ys],
                _LINESTYLE[s["label"]],
                marker="o",
                ms=3,
                color=color,
                label=s["method"],
            )
        ax.set_xlabel(f"{name} ({nuisance.unit}); nominal {nominal:g}")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"drift ({top} reconfigurations)")
        ax.grid(alpha=0.3)
    ax = axes[0, -1]
    ax.bar(
        range(len(ss)),
        [100 * s["fresh_chip_accuracy_mean"] for s in ss],
        yerr=[100 * s["fresh_chip_accuracy_std"] for s in ss],
        color=colors,
    )
    ax.set_xticks(range(len(ss)), [s["method"] for s in ss], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("test accuracy on a fresh chip (%)")
    ax.set_title("transfer to a fresh chip")
    axes[0, 0].legend(fontsize=6, loc="lower center", ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = [
    "ACCURACY_PLOT",
    "ROBUSTNESS_PLOT",
    "TARGET_DEFINITION",
    "accuracy_table",
    "aggregate",
    "head_to_head",
    "head_to_head_table",
    "metrics",
    "plot_accuracy",
    "plot_robustness",
    "robustness_table",
    "summary_markdown",
    "write_csv",
    "write_json",
    "write_report",
]
