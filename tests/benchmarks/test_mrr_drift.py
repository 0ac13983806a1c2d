"""Smoke test of benchmarks/mrr_drift.py with tiny settings (a few steps, one chip)."""

import torch
from bench_loader import load_bench

M = load_bench("mrr_drift.py", "mrr_drift")


def test_component_stability_penalty_is_the_lorentzian_slope_norm():
    from blacksat.component_stability import ComponentStability
    from blacksat.devices import MRRWeightBank

    dev = MRRWeightBank(layer_sizes=(3, 2))
    model = dev.nominal_model(dtype=torch.float64)
    x = torch.tensor([0.05, -0.1, 0.15, 0.3, -0.2, 0.0], dtype=torch.float64)
    est = ComponentStability(model, None, c=2.0)
    pen = est.penalty(x.clone().requires_grad_(True))
    d = x / 0.15
    slope = 4 * d / (0.15 * (1 + d * d) ** 2)  # dw/dx of w = 1 - 2 / (1 + (x / gamma)^2)
    assert torch.allclose(pen, 2.0 * torch.linalg.vector_norm(slope))


def test_runs_summary_selection_and_cells():
    vs = {v.family: v for v in M.variants(sigmas=(0.04,), cs=(1e-3,), rhos=(0.05,))}
    grid = (-2.0, 0.0, 2.0)
    runs = [
        M.run_variant(vs[f], 0, (1,), 3, grid=grid, sharpness=f == "BP")
        for f in ("BP", "noise injection", "SAM", "ASAM", "common-mode")
    ]
    summary = M.summarize(runs)
    bp = summary["BP: plain backprop"]
    assert bp["n"] == 1 and bp["hessian_top"] is not None and bp["cm_curvature"] is not None
    assert 0 <= bp["nom0"][0] <= 1 and len(bp["chip_curve"][0]) == 3
    chosen = M.select(summary, M.FAMILIES)
    chosen["unstructured"] = chosen["SAM"]
    cells = M.cells(summary, chosen)
    methods = [c["method"] for c in cells]
    assert methods == ["BP", "noise-aware", "unstructured SAT", "structured SAT"]


def test_section_from_the_saved_runs_holds_the_tables_and_the_computed_target():
    import json

    runs = json.loads((M.OUT / "runs.json").read_text())
    saved = json.loads((M.OUT / "summary.json").read_text())
    chosen = saved["chosen"]
    tuning = M.summarize([r for r in runs if r["phase"] == "tuning"])
    reported = M.summarize([r for r in runs if r["phase"] == "reported"])
    body = M.section(reported, tuning, chosen, saved["minutes"])
    st, bp = reported[chosen["common-mode"]], reported[chosen["BP"]]
    met = st["nom_kept"][0] >= 0.9 and bp["nom2"][0] < 0.5
    assert f"nominal physics): {'**met**' if met else '**missed**'}." in body
    assert f"BP reaches {M._pct(bp['nom2'])} % at 2 K" in body
    every = body.split("### Every variant")[1]
    for key, s in reported.items():  # one row per variant, with its figures
        assert f"| {key}" in every and f"| {M._pct(s['nom2'])} |" in every
    assert "### Reading" not in body  # the reading is written by people, in its own section
