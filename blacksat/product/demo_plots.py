"""The demo's plots (matplotlib, Agg backend; skipped without matplotlib). Every plot shows the
mean over the seeds with a min-max band, the chance level, and units on its axes:

- ``accuracy_by_method.png``: BP / offline SAT / query-only SAT / nevergrad side by side on the
  chip, on fresh chips and at the drift value that hurts offline BP most (mean ± std bars, the
  seeds as dots);
- ``accuracy_vs_reconfigurations.png``: query-only SAT vs nevergrad, test accuracy of the
  iterate held after each checkpoint of the budget (on the chip's noise-free exact model), with
  the offline solutions as reference lines;
- ``accuracy_vs_drift.png``: every method's accuracy on the chip under each nuisance over its
  rated range;
- ``loss_landscape.png``: the offline solutions' loss along a random and the common-mode
  direction in control space, with the chance-level loss and the rated drift marked.

Each function takes the demo's results dictionary (:func:`blacksat.product.demo.run_demo`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

BY_METHOD_PLOT = "accuracy_by_method.png"
ACCURACY_PLOT = "accuracy_vs_reconfigurations.png"
DRIFT_PLOT = "accuracy_vs_drift.png"
LANDSCAPE_PLOT = "loss_landscape.png"
PLOTS = (BY_METHOD_PLOT, ACCURACY_PLOT, DRIFT_PLOT, LANDSCAPE_PLOT)
COLORS = {
    "offline_bp": "tab:red",
    "offline_sat": "tab:blue",
    "zo_sat": "tab:green",
    "nevergrad": "tab:purple",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _color(key: str) -> str:
    return COLORS.get(key, "tab:gray")


def _chance(ax: Any, r: dict[str, Any], scale: float = 100.0) -> None:
    c = scale * r["chance"]
    ax.axhline(c, color="gray", ls=":", lw=1, label=f"chance ({100 * r['chance']:.0f} %)")


def plot_by_method(r: dict[str, Any], path: Path) -> None:
    """Grouped bars: each method on the chip, on fresh chips and at the worst drift value."""
    from blacksat.product.demo_report import worst_drift

    plt = _pyplot()
    ms = r["summary"]["methods"]
    groups = [("chip", "the chip"), ("fresh_chips", "fresh chips")]
    worst = worst_drift(r, "offline_bp")
    if worst is not None:
        groups.append(worst)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(ms)
    for j, (key, m) in enumerate(ms.items()):
        xs = np.arange(len(groups)) + (j - (len(ms) - 1) / 2) * width
        st = [m["metrics"][g]["mean"] for g, _ in groups]
        sd = [m["metrics"][g]["std"] for g, _ in groups]
        ax.bar(xs, [100 * v for v in st], width, yerr=[100 * v for v in sd], capsize=3,
               color=_color(key), alpha=0.8, label=m["label"])  # fmt: skip
        for x, (g, _) in zip(xs, groups, strict=True):
            vals = m["metrics"][g]["values"]
            ax.plot([x] * len(vals), [100 * v for v in vals], "k.", ms=3)
    _chance(ax, r)
    ax.set_xticks(range(len(groups)), [label for _, label in groups])
    ax.set_ylabel("test accuracy (%), full test split")
    ax.set_ylim(0, 100)
    ax.set_title(f"Mean ± std over {len(r['seeds'])} seeds (dots: each seed)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_budget_curve(r: dict[str, Any], path: Path) -> None:
    """Accuracy vs reconfigurations of the on-chip methods (mean line, min-max band)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ms = r["summary"]["methods"]
    curves = r["summary"]["budget_curve"]
    for key, rows in curves.items():
        x = [row["reconfigurations"] for row in rows]
        ax.plot(x, [100 * row["mean"] for row in rows], "o-", color=_color(key),
                label=ms[key]["label"])  # fmt: skip
        ax.fill_between(x, [100 * row["min"] for row in rows], [100 * row["max"] for row in rows],
                        color=_color(key), alpha=0.15, lw=0)  # fmt: skip
    for key in ("offline_bp", "offline_sat"):
        if key in ms:
            acc = ms[key]["metrics"]["exact_model"]["mean"]
            ax.axhline(100 * acc, ls="--", color=_color(key), label=f"{ms[key]['label']} (0)")
    _chance(ax, r)
    first = min(
        (row["reconfigurations"] for rows in curves.values() for row in rows
         if row["reconfigurations"] > 0),
        default=1,
    )  # fmt: skip
    ax.set_xscale("symlog", linthresh=first)
    ax.set_xlim(0, r["online"]["budget"] * 1.1)
    spends = sorted({row["reconfigurations"] for rows in curves.values() for row in rows})
    ax.set_xticks(spends, [str(v) for v in spends], fontsize=8)
    ax.minorticks_off()
    ax.set_ylim(0, 100)
    ax.set_xlabel("reconfigurations spent on the chip (0, then doubling)")
    ax.set_ylabel("test accuracy (%), exact model, noise-free")
    ax.set_title(f"Fine-tuning on the chip, budget {r['online']['budget']} (mean, min-max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_drift(r: dict[str, Any], path: Path) -> None:
    """Accuracy of every method under each nuisance sweep (one panel per nuisance)."""
    plt = _pyplot()
    ms = r["summary"]["methods"]
    run0 = r["runs"][0]["methods"]
    names = list(next(iter(run0.values()))["drift"])
    nz = r["device"]["nuisances"]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(6 * max(1, len(names)), 4.5))
    axes = list(getattr(axes, "flat", [axes]))
    for ax, name in zip(axes, names, strict=False):
        values = next(iter(run0.values()))["drift"][name]["values"]
        for key, m in ms.items():
            st = [m["metrics"][f"{name}={v:+g}"] for v in values]
            ax.plot(values, [100 * s["mean"] for s in st], "o-", color=_color(key),
                    label=m["label"])  # fmt: skip
            ax.fill_between(values, [100 * s["min"] for s in st], [100 * s["max"] for s in st],
                            color=_color(key), alpha=0.15, lw=0)  # fmt: skip
        _chance(ax, r)
        unit = nz.get(name, {}).get("unit", "")
        nominal = nz.get(name, {}).get("value")
        ax.set_xlabel(f"{name} ({unit}); nominal {nominal:g}" if unit else name)
        ax.set_ylabel("test accuracy on the chip (%)")
        ax.set_title(f"Accuracy under {name}, rated range (mean, min-max)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_landscape(r: dict[str, Any], path: Path) -> None:
    """Loss along the random and the common-mode direction through the offline solutions."""
    plt = _pyplot()
    land = r["landscape"]
    alphas = land["alphas"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    titles = {"random": "random direction", "common_mode": "common-mode direction (drift)"}
    chance_loss = float(np.log(1.0 / r["chance"]))
    for ax, (kind, title) in zip(axes, titles.items(), strict=True):
        for key, slices in r["summary"]["landscape"].items():
            s = slices[kind]
            label = r["summary"]["methods"][key]["label"]
            ax.plot(alphas, s["mean"], "-", color=_color(key), label=label)
            ax.fill_between(alphas, s["min"], s["max"], color=_color(key), alpha=0.15, lw=0)
        ax.axhline(chance_loss, color="gray", ls=":", lw=1,
                   label=f"chance-level loss ln {round(1 / r['chance'])}")  # fmt: skip
        rated = land.get("rated_common_mode")
        if kind == "common_mode" and rated:
            for x in (-rated, rated):
                ax.axvline(x, ls="--", color="gray", lw=1)
            ax.text(rated, chance_loss * 0.5, " rated drift", color="gray", fontsize=8)
        ax.set_xlabel("offset per control (control units, RMS)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(f"cross-entropy loss ({land['model']} model, {land['split']} split)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(results: dict[str, Any], out: Path) -> list[str]:
    """Write the plots into ``out``; returns their file names (none without matplotlib)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    plot_by_method(results, out / BY_METHOD_PLOT)
    plot_budget_curve(results, out / ACCURACY_PLOT)
    plot_drift(results, out / DRIFT_PLOT)
    plot_landscape(results, out / LANDSCAPE_PLOT)
    return list(PLOTS)


__all__ = [
    "ACCURACY_PLOT",
    "BY_METHOD_PLOT",
    "DRIFT_PLOT",
    "LANDSCAPE_PLOT",
    "PLOTS",
    "plot_budget_curve",
    "plot_by_method",
    "plot_drift",
    "plot_landscape",
    "write_plots",
]
