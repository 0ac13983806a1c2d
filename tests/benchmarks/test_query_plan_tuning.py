"""benchmarks/query_plan_tuning.py: a variant reaches the plan, and the section pairs each
variant with the default chip by chip (synthetic rows, plus one tiny real run)."""

from bench_loader import SavedRows, load_bench

M = load_bench("query_plan_tuning.py", "query_plan_tuning")


def test_the_section_pairs_each_variant_with_the_plan_it_changes_chip_by_chip():
    """``no surrogate start`` is paired with ``no layered response`` (the zeroth-order plan with
    its start); a variant of the zeroth-order plan (``beta1=0.9``) with ``no surrogate start``,
    the plan it changes one argument of."""
    rows = [
        {"variant": v, "config": "crossbar", "budget": 250, "chip": c, "accuracy": a}
        for v, accs in (
            ("no layered response", (80.0, 84.0)),
            ("no surrogate start", (40.0, 50.0)),
            ("beta1=0.9", (30.0, 44.0)),
        )
        for c, a in zip((100, 101), accs, strict=True)
    ]
    body = M.section(SavedRows(rows, "query_plan_tuning"))
    assert "| crossbar | 250 | 82.0 ± 2.8 | 45.0 ± 7.1 (-37.0) | 37.0 ± 9.9 (-8.0) |" in body
    assert "- `no surrogate start` against `no layered response`: -37.0 over 1 cells" in body
    assert "- `beta1=0.9` against `no surrogate start`: -8.0 over 1 cells (ahead in 0, " in body


def test_a_variant_reaches_the_plan(monkeypatch):
    import blacksat.query_plan as qp

    seen = []
    real = qp.plan_query_only

    def spy(*args, **kwargs):
        seen.append(kwargs.get("beta1"))
        return real(*args, **kwargs)

    monkeypatch.setattr(qp, "plan_query_only", spy)
    row = M.tuning_run("beta1=0.9", "crossbar", 40, 100)
    assert seen == [0.9] and qp.plan_query_only is spy  # restored after the run
    assert 0 < row["reconfigurations"] <= 40 and 0.0 <= row["accuracy"] <= 100.0
