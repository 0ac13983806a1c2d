"""benchmarks/query_plan_tuning.py: a variant reaches the plan, and the section pairs each
variant with the default chip by chip (synthetic rows, plus one tiny real run)."""

from bench_loader import load_bench

M = load_bench("query_plan_tuning.py", "query_plan_tuning")


class Rows:
    def __init__(self, rows):
        self._rows = rows
        self.name = "query_plan_tuning"

    def rows(self):
        return self._rows

    def header(self, command, what=""):
        return f"Command: `{command}`. {what}"


def test_the_section_pairs_each_variant_with_the_default_chip_by_chip():
    rows = [
        {"variant": v, "config": "crossbar", "budget": 250, "chip": c, "accuracy": a}
        for v, accs in (("default", (40.0, 50.0)), ("beta1=0.9", (30.0, 44.0)))
        for c, a in zip((100, 101), accs, strict=True)
    ]
    body = M.section(Rows(rows))
    assert "| crossbar | 250 | 45.0 ± 7.1 | 37.0 ± 9.9 (-8.0) |" in body
    assert "- `beta1=0.9`: -8.0 over 1 cells (ahead of the default in 0, behind in 1)" in body


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
