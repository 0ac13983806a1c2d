"""The demo's summary over seeds and its ``report.md``: the setup, the accuracy of every method
(mean ± sample std over the seeds, % on the full test split), the findings computed from those
numbers, the budget curve, the loss-landscape summary, the plots and the timings, rendered from
the results dictionary of :func:`blacksat.product.demo.run_demo` (whose module docstring
documents every field).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from blacksat.evaluation import Summary


def stats(values: Sequence[float]) -> dict[str, Any]:
    """``mean``, ``std`` (sample, ddof = 1; 0 for one value), ``min``, ``max``, ``values``."""
    s = Summary.of(values)  # the one definition: sample std (ddof = 1), 0 for one value
    return {"mean": s.mean, "std": s.std, "min": s.min, "max": s.max, "values": list(s.accuracies)}


def metric_values(run: dict[str, Any], key: str) -> dict[str, float]:
    """The accuracies of one method in one seed's run, by metric name: ``chip``,
    ``nominal_model``, ``exact_model``, ``fresh_chips`` (their mean) and ``<nuisance>=<value>``
    for each drift value."""
    m = run["methods"][key]
    out = {
        "chip": m["chip"],
        "nominal_model": m["nominal_model"],
        "exact_model": m["exact_model"],
        "fresh_chips": m["fresh_chips"]["mean"],
    }
    for nz, sweep in m["drift"].items():
        for v, a in zip(sweep["values"], sweep["accuracies"], strict=True):
            out[f"{nz}={v:+g}"] = a
    return out


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Statistics over the seeds' runs: per method its ``label``, ``kind`` and ``metrics``
    (:func:`metric_values` -> :func:`stats`); per on-chip method its ``budget_curve`` (per
    checkpoint: ``reconfigurations`` and the accuracy's stats); per offline method its
    ``landscape`` (per direction: ``mean``, ``min``, ``max`` loss per offset)."""
    first = runs[0]
    out: dict[str, Any] = {"methods": {}, "budget_curve": {}, "landscape": {}}
    for key, m in first["methods"].items():
        per = [metric_values(r, key) for r in runs]
        out["methods"][key] = {
            "label": m["label"],
            "kind": m["kind"],
            "metrics": {name: stats([p[name] for p in per]) for name in per[0]},
            "reconfigurations": stats(
                [r["methods"][key]["training_ledger"]["reconfigurations"] for r in runs]
            ),
        }
    for key, rows in first["budget_curve"].items():
        out["budget_curve"][key] = [
            {
                "reconfigurations": row["reconfigurations"],
                **stats([r["budget_curve"][key][i]["accuracy"] for r in runs]),
            }
            for i, row in enumerate(rows)
        ]
    for key, slices in first["landscape"]["methods"].items():
        out["landscape"][key] = {}
        for kind in slices:
            a = np.array([r["landscape"]["methods"][key][kind] for r in runs])
            out["landscape"][key][kind] = {
                "mean": a.mean(0).tolist(),
                "min": a.min(0).tolist(),
                "max": a.max(0).tolist(),
            }
    return out


def pct(s: dict[str, Any]) -> str:
    """``mean ± std`` in % with one decimal."""
    return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"


def drift_label(nuisance: str, value: float, info: dict[str, Any]) -> str:
    """``"chip at temperature +2 K"``, ``"chip at scale x0.9 (nominal x1)"``: signed offsets
    for a nuisance whose nominal value is 0, a factor for a ratio, always with the unit."""
    unit = info.get("unit", "")
    nominal = float(info.get("value", 0.0))
    if unit == "ratio":
        return f"chip at {nuisance} x{value:g} (nominal x{nominal:g})"
    shown = f"{value:+g}" if nominal == 0 else f"{value:g} (nominal {nominal:g})"
    return f"chip at {nuisance} {shown} {unit}".rstrip()


def drift_metrics(r: dict[str, Any]) -> list[tuple[str, str]]:
    """``(metric name, row label with unit)`` of every drift value."""
    info = r["device"]["nuisances"]
    m = next(iter(r["summary"]["methods"].values()))["metrics"]
    out = []
    for name in m:
        if "=" in name:
            nz, v = name.split("=")
            out.append((name, drift_label(nz, float(v), info.get(nz, {}))))
    return out


def accuracy_table(r: dict[str, Any]) -> str:
    """Methods as columns; the chip, the models, fresh chips and drift values as rows."""
    ms = r["summary"]["methods"]
    keys = list(ms)
    lines = [
        "| accuracy %, full test split (mean ± std over seeds) | "
        + " | ".join(ms[k]["label"] for k in keys)
        + " |",
        "| --- |" + " ---: |" * len(keys),
    ]

    def row(label: str, name: str, bold: bool = False) -> None:
        cells = [pct(ms[k]["metrics"][name]) for k in keys]
        if bold:
            cells = [f"**{c}**" for c in cells]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("**the chip** (metered queries)", "chip", bold=True)
    row("nominal model (what offline training saw)", "nominal_model")
    row("exact model of the chip (noise-free)", "exact_model")
    n = len(r["runs"][0]["methods"][keys[0]]["fresh_chips"]["accuracies"])
    row(f"fresh chips of the process (mean of {n} per seed)", "fresh_chips")
    for name, label in drift_metrics(r):
        row(label, name)
    spent = [f"{ms[k]['reconfigurations']['mean']:.0f}" for k in keys]
    lines.append("| reconfigurations spent training | " + " | ".join(spent) + " |")
    return "\n".join(lines)


def _compare(
    r: dict[str, Any], a: str, b: str, metric: str
) -> tuple[float, float, int, int] | None:
    """Paired difference ``a - b`` of ``metric`` over the seeds: mean, std (pp), how many seeds
    ``a`` was higher, seeds."""
    ms = r["summary"]["methods"]
    if a not in ms or b not in ms or metric not in ms[a]["metrics"]:
        return None
    va = np.array(ms[a]["metrics"][metric]["values"])
    vb = np.array(ms[b]["metrics"][metric]["values"])
    d = 100 * (va - vb)
    std = float(d.std(ddof=1)) if d.size > 1 else 0.0
    return float(d.mean()), std, int(np.sum(d > 0)), int(d.size)


def _verdict(mean: float, std: float, wins: int, n: int) -> str:
    if n > 1 and abs(mean) <= std:
        return "no clear difference (the mean difference is within its spread)"
    if mean > 0:
        return "helped" if wins == n else "helped on average"
    if mean < 0:
        return "hurt" if wins == 0 else "hurt on average"
    return "no difference"


def worst_drift(r: dict[str, Any], key: str) -> tuple[str, str] | None:
    """The drift value at which ``key`` (offline BP) loses most: ``(metric, label)``."""
    ms = r["summary"]["methods"]
    drifts = drift_metrics(r)
    if not drifts or key not in ms:
        return None
    return min(drifts, key=lambda d: ms[key]["metrics"][d[0]]["mean"])


def findings(r: dict[str, Any]) -> list[str]:
    """Short statements computed from the numbers: what helped, what did not, with the
    spreads (paired differences over the seeds, percentage points)."""
    ms = r["summary"]["methods"]
    n = len(r["seeds"])
    out = []
    worst = worst_drift(r, "offline_bp")
    questions = [
        ("offline_sat", "offline_bp", "chip", "offline SAT vs offline BP on the chip"),
        ("offline_sat", "offline_bp", "fresh_chips", "offline SAT vs offline BP on fresh chips"),
    ]
    if worst is not None:
        questions.append(
            ("offline_sat", "offline_bp", worst[0], f"offline SAT vs offline BP, {worst[1]}")
        )
    questions += [
        ("zo_sat", "offline_sat", "chip", "query-only SAT vs its start (offline SAT), on the chip"),
        ("zo_sat", "nevergrad", "chip", "query-only SAT vs nevergrad at the same budget, chip"),
    ]
    if worst is not None:
        questions.append(
            ("zo_sat", "nevergrad", worst[0], f"query-only SAT vs nevergrad, {worst[1]}")
        )
    for a, b, metric, text in questions:
        c = _compare(r, a, b, metric)
        if c is None:
            continue
        mean, std, wins, total = c
        out.append(
            f"- {text}: {pct(ms[a]['metrics'][metric])} vs {pct(ms[b]['metrics'][metric])} % "
            f"(difference {mean:+.1f} ± {std:.1f} pp, higher on {wins} of {total} seeds): "
            f"**{_verdict(mean, std, wins, total)}**."
        )
    chance = r["chance"]
    low = [ms[k]["label"] for k in ms if ms[k]["metrics"]["chip"]["mean"] < chance + 0.05]
    if low:
        out.append(
            f"- Within 5 points of chance ({100 * chance:.0f} %) on the chip: {', '.join(low)}."
        )
    best = max(ms, key=lambda k: ms[k]["metrics"]["chip"]["mean"])
    out.append(
        f"- Best on the chip: {ms[best]['label']} ({pct(ms[best]['metrics']['chip'])} %); "
        f"{n} seed(s){' (quick run: far fewer steps than the full demo)' if r['quick'] else ''}."
    )
    return out


def budget_table(r: dict[str, Any]) -> str:
    """Accuracy (%) at each checkpoint of the budget, one column per on-chip method."""
    curves = r["summary"]["budget_curve"]
    keys = list(curves)
    ms = r["summary"]["methods"]
    lines = [
        "| reconfigurations | " + " | ".join(f"{ms[k]['label']} (%)" for k in keys) + " |",
        "| ---: |" + " ---: |" * len(keys),
    ]
    for i, point in enumerate(curves[keys[0]]):
        cells = [pct(curves[k][i]) for k in keys]
        lines.append(f"| {point['reconfigurations']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def landscape_table(r: dict[str, Any]) -> str:
    """Mean loss at the solution and at both ends of each slice (and at the rated drift)."""
    land = r["landscape"]
    alphas = np.asarray(land["alphas"])
    mid = len(alphas) // 2
    radius = land["radius"]
    rated = land.get("rated_common_mode")
    cols = ["method", "loss at the solution"]
    for kind in ("random", "common_mode"):
        cols += [f"{kind} -{radius:g}", f"{kind} +{radius:g}"]
    if rated:
        cols += [f"common_mode -{rated:g} (rated)", f"common_mode +{rated:g} (rated)"]
    lines = ["| " + " | ".join(cols) + " |", "| --- |" + " ---: |" * (len(cols) - 1)]
    for key, slices in r["summary"]["landscape"].items():
        rnd, cm = slices["random"]["mean"], slices["common_mode"]["mean"]
        cells = [
            f"{rnd[mid]:.3f}",
            f"{rnd[0]:.3f}",
            f"{rnd[-1]:.3f}",
            f"{cm[0]:.3f}",
            f"{cm[-1]:.3f}",
        ]
        if rated:
            for a in (-rated, rated):
                cells.append(f"{float(np.interp(a, alphas, cm)):.3f}")
        label = r["summary"]["methods"][key]["label"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_markdown(r: dict[str, Any]) -> str:
    """The whole report."""
    dev, off, on = r["device"], r["offline"], r["online"]
    zo, ng = on["zo"], on["nevergrad"]
    land = r["landscape"]
    zo_what = (
        f"average case over `{zo['perturbation']}`"
        if zo["perturbation"]
        else "plain zeroth-order descent (no SAT: a chip cannot be misaligned on demand)"
    )
    config = {k: dev["config"][k] for k in ("n_modes", "s_bs", "s_ps") if k in dev["config"]}
    parts = [
        "# blacksat demo report",
        "",
        f"Device: `{dev['class']}` ({dev['controls']} controls{', config ' if config else ''}"
        f"{f'`{config}`' if config else ''}), data: {r['dataset']}, seeds {r['seeds']}"
        f"{' (quick run)' if r['quick'] else ''}. Chance: {100 * r['chance']:.0f} %.",
        "",
        f"- **offline BP / offline SAT**: {off['steps']} Adam steps (lr {off['lr']:g}, "
        f"minibatches of {off['batch_size']}) on the nominal model, deployed unchanged; SAT "
        f"against {off['sat']}: the perturbation model the measurements say protects against "
        "this device's disturbance (BENCHMARKS.md).",
        f"- **query-only SAT**: from the offline SAT solution, zeroth-order estimates on the chip "
        f"(q = {zo['q']} directions, sigma = {zo['sigma']:g}, minibatches of "
        f"{zo['batch_size']}), {zo_what}, Adam lr {zo['lr']:g} with a cosine schedule; budget "
        f"{on['budget']} reconfigurations.",
        f"- **nevergrad {ng['optimizer']}**: from the same start, loss on the {ng['loss']}, "
        f"{ng['workers']} settings per device call; the same budget.",
        "",
        "## Accuracy",
        "",
        accuracy_table(r),
        "",
        "## Findings",
        "",
        "Computed from the table (paired differences over the seeds, in percentage points; "
        "'no clear difference' when the mean difference is not larger than its sample std):",
        "",
        *findings(r),
        "",
        "## Accuracy vs reconfigurations",
        "",
        "Test accuracy of the iterate held after each checkpoint, on the chip's noise-free "
        "exact model (outside the budget), mean ± std over the seeds.",
        "",
        budget_table(r),
        "",
        "## Loss landscape of the offline solutions",
        "",
        f"Mean loss on the {land['split']} split through the {land['model']} model along a random "
        "direction and the common-mode direction (every control shifted alike, as a temperature "
        f"change does), offsets up to ±{land['radius']:g} per control (control units, RMS; "
        f"L2 norm {land['l2_norm_of_radius']:.2f})"
        + (
            f", twice the rated drift of ±{land['rated_common_mode']:g}"
            if land.get("rated_common_mode")
            else ""
        )
        + f". Mean over the seeds; the chance-level loss is ln {round(1 / r['chance'])} = "
        f"{np.log(1 / r['chance']):.3f}: a slice that sits there is not flat, it is lost.",
        "",
        landscape_table(r),
        "",
    ]
    if r["plots"]:
        parts += ["## Plots", "", *[f"![{p}]({p})" for p in r["plots"]], ""]
    else:
        parts += ["(plots skipped: matplotlib is not installed)", ""]
    parts += [
        f"Wall time {r.get('wall_seconds', 0.0):.1f} s; per seed: "
        + "; ".join(
            f"{run['seed']}: " + ", ".join(f"{k} {v:.1f} s" for k, v in run["timings"].items())
            for run in r["runs"]
        )
        + ".",
        "",
        "Every field of `results.json` is documented in the `blacksat.product.demo` module.",
        "",
    ]
    return "\n".join(parts)


__all__ = [
    "accuracy_table",
    "aggregate",
    "budget_table",
    "drift_label",
    "findings",
    "landscape_table",
    "report_markdown",
    "stats",
]
