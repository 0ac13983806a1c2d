"""The demo's plots (matplotlib, Agg backend; skipped without matplotlib):

- ``accuracy_vs_reconfigurations.png``: query-only SAT vs nevergrad, test accuracy of the
  iterate held after each checkpoint of the budget (on the chip's noise-free exact model), with
  the offline solutions as reference lines;
- ``accuracy_vs_drift.png``: every method's accuracy on the chip under each nuisance over its
  rated range;
- ``loss_landscape.png``: the offline solutions' loss along a random and the common-mode
  direction in control space.

Each function takes the demo's results dictionary (:func:`blacksat.product.demo.run_demo`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ACCURACY_PLOT = "accuracy_vs_reconfigurations.png"
DRIFT_PLOT = "accuracy_vs_drift.png"
LANDSCAPE_PLOT = "loss_landscape.png"
COLORS = {"offline_bp": "tab:red", "offline_sat": "tab:blue", "zo_sat": "tab:green"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _color(key: str) -> str:
    return COLORS.get(key, "tab:purple")


def plot_budget_curve(results: dict[str, Any], path: Path) -> None:
    """Accuracy vs reconfigurations of the on-chip methods."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    methods = results["methods"]
    for key, rows in results["budget_curve"]["methods"].items():
        r = [row["reconfigurations"] for row in rows]
        a = [row["accuracy"] for row in rows]
        ax.plot(r, a, "o-", color=_color(key), label=methods[key]["label"])
    for key in ("offline_bp", "offline_sat"):
        if key in methods:
            acc = methods[key]["exact_model"]
            ax.axhline(acc, ls="--", color=_color(key), label=f"{methods[key]['label']} (0)")
    curves = list(results["budget_curve"]["methods"].values())
    first = min(
        (row["reconfigurations"] for rows in curves for row in rows if row["reconfigurations"] > 0),
        default=1,
    )
    ax.set_xscale("symlog", linthresh=first)
    ax.set_xlim(0, results["online"]["budget"] * 1.1)
    spends = sorted({row["reconfigurations"] for rows in curves for row in rows})
    ax.set_xticks(spends, [str(v) for v in spends], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("reconfigurations spent on the chip (0, then doubling)")
    ax.set_ylabel("test accuracy (exact model, noise-free)")
    ax.set_title(f"Fine-tuning on the chip, budget {results['online']['budget']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_drift(results: dict[str, Any], path: Path) -> None:
    """Accuracy of every method under each nuisance sweep (one panel per nuisance)."""
    plt = _pyplot()
    methods = results["methods"]
    names = list(next(iter(methods.values()))["drift"])
    nz = results["device"]["nuisances"]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(6 * max(1, len(names)), 4.5))
    axes = list(getattr(axes, "flat", [axes]))
    for ax, name in zip(axes, names, strict=False):
        for key, m in methods.items():
            d = m["drift"][name]
            ax.plot(d["values"], d["accuracies"], "o-", color=_color(key), label=m["label"])
        ax.set_xlabel(f"{name} [{nz.get(name, {}).get('unit', '')}]")
        ax.set_ylabel("test accuracy on the chip")
        ax.set_title(f"Accuracy under {name} (rated range)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_landscape(results: dict[str, Any], path: Path) -> None:
    """Loss along the random and the common-mode direction through the offline solutions."""
    plt = _pyplot()
    land = results["landscape"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    titles = {"random": "random direction", "common_mode": "common-mode direction (drift)"}
    for ax, (kind, title) in zip(axes, titles.items(), strict=True):
        for key, slices in land["methods"].items():
            label = results["methods"][key]["label"]
            ax.plot(land["alphas"], slices[kind], "-", color=_color(key), label=label)
        rated = land.get("rated_common_mode")
        if kind == "common_mode" and rated:
            for x in (-rated, rated):
                ax.axvline(x, ls=":", color="gray")
            ax.text(rated, ax.get_ylim()[1] * 0.9, " rated drift", color="gray", fontsize=8)
        ax.set_xlabel("offset per control (control units, RMS)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(f"loss ({land['model']} model, {land['split']} split)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(results: dict[str, Any], out: Path) -> list[str]:
    """Write the three plots into ``out``; returns their file names (none without
    matplotlib)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    plot_budget_curve(results, out / ACCURACY_PLOT)
    plot_drift(results, out / DRIFT_PLOT)
    plot_landscape(results, out / LANDSCAPE_PLOT)
    return [ACCURACY_PLOT, DRIFT_PLOT, LANDSCAPE_PLOT]


__all__ = [
    "ACCURACY_PLOT",
    "DRIFT_PLOT",
    "LANDSCAPE_PLOT",
    "plot_budget_curve",
    "plot_drift",
    "plot_landscape",
    "write_plots",
]
