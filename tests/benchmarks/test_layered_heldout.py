"""benchmarks/layered_heldout.py: the section pairs the methods per device and budget and says
which estimator the default's plan chose (synthetic rows, no training)."""

from bench_loader import SavedRows, load_bench

M = load_bench("layered_heldout.py", "layered_heldout")


def test_the_section_reports_each_method_and_the_plans_choice():
    rows = []
    for seed, accs in (
        (0, (80.0, 79.0, 75.0, 70.0, 60.0, 20.0, 30.0)),
        (1, (84.0, 81.0, 77.0, 72.0, 62.0, 24.0, 26.0)),
    ):
        for method, acc in zip(M.METHODS, accs, strict=True):
            est = {"cma": None, "no layered response": "zeroth_order"}.get(
                method, "layered_response"
            )
            rows.append(
                {"device": "mrr-narrow", "method": method, "budget": 1000, "seed": seed,
                 "accuracy": acc, "estimator": est}
            )  # fmt: skip
    rows.append(
        {"device": "crossbar-2", "method": "blacksat", "budget": 1000, "seed": 0,
         "accuracy": 25.0, "estimator": "zeroth_order"}
    )  # fmt: skip
    body = M.section(SavedRows(rows, "layered_heldout"))
    # the default's own plan is named, not that of its variant without the stall rule
    assert (
        "| mrr-narrow (two MRR banks, 64 -> 16 -> 10) | 1,184 | 1,000 | 82.0 ± 2.8 | "
        "layered_response | 80.0 ± 1.4 | 76.0 ± 1.4 | 71.0 ± 1.4 | 61.0 ± 1.4 | 22.0 ± 2.8 | "
        "28.0 ± 2.8 | "
        "+54.0 ± 4.0 |" in body  # blacksat - cma seed by seed: 50 and 58
    )
    assert "| crossbar-2 (two crossbar layers, 64 -> 16 -> 10) | 2,368 | 1,000 | 25.0 | " \
        "zeroth_order | — | — | — | — | — | — | — |" in body  # fmt: skip
    # a run that handed over names both plans, runs of one cell that differ both ways
    rows = [
        {"device": "mrr-4", "method": "blacksat", "budget": 5000, "seed": seed,
         "accuracy": 20.0, "estimator": est}
        for seed, est in enumerate(
            ["layered_response", "layered_response, handed over to zeroth_order"]
        )
    ]  # fmt: skip
    body = M.section(SavedRows(rows, "layered_heldout"))
    assert "| layered_response; layered_response, handed over to zeroth_order |" in body


def test_the_variant_without_the_stall_rule_runs_only_where_the_layered_response_is_the_plan():
    assert "no stall backtrack" in M.METHODS
    assert set(M.LINEAR) <= set(M.DEVICES)
    assert not {"mrr-3", "crossbar-2", "crossbar-2-narrow"} & set(M.LINEAR)  # layered starts
    assert "weak-check refusal" in M.METHODS and set(M.WEAK) <= set(M.DEVICES)
    # the variant without the handover: where the layered response is the plan (never a
    # layered start's shape)
    assert "no handover" in M.METHODS and set(M.LINEAR) <= set(M.HANDOVER) <= set(M.DEVICES)
    assert not {"mrr-3", "crossbar-2", "crossbar-2-narrow"} & set(M.HANDOVER)


def test_the_linear_checks_statistics_get_their_own_table_and_stay_out_of_the_first():
    rows = [
        {"device": "mrr-narrow", "method": "blacksat", "budget": 1000, "seed": 0,
         "accuracy": 90.0, "estimator": "layered_response"},
        {"device": "mrr-narrow", "method": "linear check", "budget": 0, "seed": 0,
         "holds": True, "residual_noise": 1.2, "spread_noise": 180.0},
        {"device": "mrr-narrow", "method": "linear check", "budget": 0, "seed": 100,
         "holds": False, "residual_noise": 2.5, "spread_noise": 30.0},
    ]  # fmt: skip
    body = M.section(SavedRows(rows, "layered_heldout"))
    assert "| mrr-narrow | 1.20-2.50 | 30.0-180.0 | 1 of 2 |" in body
    assert "| 0 |" not in body  # no budget-0 row in the accuracy table
