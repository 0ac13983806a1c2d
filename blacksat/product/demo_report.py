"""The demo's ``report.md``: the setup, the accuracy table of every method, the budget curve, the
loss-landscape summary, the plots and the timings, rendered from the results dictionary of
:func:`blacksat.product.demo.run_demo` (whose module docstring documents every field)."""

from __future__ import annotations

from typing import Any

from blacksat.evaluation import markdown_table


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def accuracy_table(r: dict[str, Any]) -> str:
    """Methods as columns; models, chip, fresh chips, drift values and cost as rows."""
    m = r["methods"]
    keys = list(m)
    lines = [
        "| evaluated on (full test split) | " + " | ".join(m[k]["label"] for k in keys) + " |",
        "| --- |" + " --- |" * len(keys),
    ]

    def row(label: str, fmt: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(fmt(m[k]) for k in keys) + " |")

    row("nominal model (what offline training saw)", lambda v: _pct(v["nominal_model"]))
    row("exact model of the chip (noise-free)", lambda v: _pct(v["exact_model"]))
    row("**the chip** (metered queries)", lambda v: f"**{v['chip']:.3f}**")
    n = len(m[keys[0]]["fresh_chips"]["accuracies"])
    row(
        f"{n} fresh chips: mean +- std",
        lambda v: f"{v['fresh_chips']['mean']:.3f} +- {v['fresh_chips']['std']:.3f}",
    )
    row(
        "fresh chips: each",
        lambda v: ", ".join(f"{a:.3f}" for a in v["fresh_chips"]["accuracies"]),
    )
    units = {k: d.get("unit", "") for k, d in r["device"]["nuisances"].items()}
    for nz, sweep in m[keys[0]]["drift"].items():
        for i, value in enumerate(sweep["values"]):
            row(
                f"chip at {nz} = {value:+.3g} {units.get(nz, '')}".rstrip(),
                lambda v, nz=nz, i=i: _pct(v["drift"][nz]["accuracies"][i]),
            )
    row("reconfigurations spent training", lambda v: str(v["training_ledger"]["reconfigurations"]))
    row("samples spent training", lambda v: str(v["training_ledger"]["samples"]))
    row("steps / stop", lambda v: f"{v['steps']} / {v['stop']}")
    return "\n".join(lines)


def budget_table(r: dict[str, Any]) -> str:
    """Accuracy at each checkpoint of the budget, one column per on-chip method."""
    curves = r["budget_curve"]["methods"]
    keys = list(curves)
    cols = ["reconfigurations", *(r["methods"][k]["label"] for k in keys)]
    rows = []
    for i, point in enumerate(curves[keys[0]]):
        row: dict[str, Any] = {"reconfigurations": point["reconfigurations"]}
        for k in keys:
            row[r["methods"][k]["label"]] = curves[k][i]["accuracy"]
        rows.append(row)
    return markdown_table(rows, cols, digits=3)


def landscape_table(r: dict[str, Any]) -> str:
    """Loss at the solution and its largest increase at the ends of each slice."""
    land = r["landscape"]
    mid = len(land["alphas"]) // 2
    rows = []
    for key, slices in land["methods"].items():
        row: dict[str, Any] = {"method": r["methods"][key]["label"], "loss": slices["random"][mid]}
        for kind in ("random", "common_mode"):
            s = slices[kind]
            row[f"increase at +-{land['radius']:g} ({kind})"] = max(s[0], s[-1]) - s[mid]
        rows.append(row)
    cols = list(rows[0]) if rows else ["method"]
    return markdown_table(rows, cols, digits=3)


def report_markdown(r: dict[str, Any]) -> str:
    """The whole report."""
    dev, off, on = r["device"], r["offline"], r["online"]
    zo, ng = on["zo"], on["nevergrad"]
    parts = [
        "# blacksat demo report",
        "",
        f"Device: `{dev['class']}` ({dev['controls']} controls, config "
        f"`{ {k: dev['config'][k] for k in ('n_modes', 's_bs', 's_ps') if k in dev['config']} }`)"
        f", data: {r['dataset']}, seed {r['seed']}{' (quick run)' if r['quick'] else ''}.",
        "",
        f"- **offline BP / offline SAT**: {off['steps']} Adam steps (lr {off['lr']:g}, "
        f"minibatches of {off['batch_size']}) on the nominal model, deployed unchanged; SAT: "
        f"{off['sat']}.",
        f"- **query-only SAT**: from the offline SAT solution, zeroth-order estimates on the chip "
        f"(q = {zo['q']} directions, sigma = {zo['sigma']:g}, minibatches of "
        f"{zo['batch_size']}), average case over `{zo['perturbation']}`, Adam lr {zo['lr']:g} "
        f"with a cosine schedule; budget {on['budget']} reconfigurations.",
        f"- **nevergrad {ng['optimizer']}**: from the same start, loss on the {ng['loss']}, "
        f"{ng['workers']} settings per device call; the same budget.",
        "",
        "## Accuracy",
        "",
        accuracy_table(r),
        "",
        "## Accuracy vs reconfigurations",
        "",
        f"Test accuracy of the iterate held after each checkpoint, evaluated on "
        f"{r['budget_curve']['evaluated_on']}.",
        "",
        budget_table(r),
        "",
        "## Loss landscape of the offline solutions",
        "",
        f"Mean loss on the {r['landscape']['split']} split through the "
        f"{r['landscape']['model']} model along a random direction and the common-mode "
        "direction (every control shifted alike, as a temperature change does), offsets in "
        "control units per control (RMS).",
        "",
        landscape_table(r),
        "",
    ]
    if r["plots"]:
        parts += ["## Plots", "", *[f"![{p}]({p})" for p in r["plots"]], ""]
    else:
        parts += ["(plots skipped: matplotlib is not installed)", ""]
    t = ", ".join(f"{k} {v:.1f} s" for k, v in r.get("timings", {}).items())
    parts += [
        f"Wall time {r.get('wall_seconds', 0.0):.1f} s ({t}).",
        "",
        "Every field of `results.json` is documented in the `blacksat.product.demo` module.",
        "",
    ]
    return "\n".join(parts)


__all__ = ["accuracy_table", "budget_table", "landscape_table", "report_markdown"]
