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


def test_the_reseeded_default_moves_every_seed_but_the_chips(monkeypatch):
    import blacksat.product.compare as compare

    calls = []

    def fake_run_one(method, scenario, seed, chip, budget):
        calls.append((seed, chip))
        return {"test_accuracy": 0.5, "reconfigurations": budget, "wall_s": 0.0}

    monkeypatch.setattr(compare, "run_one", fake_run_one)
    M.tuning_run("default", "crossbar", 40, 101)
    M.tuning_run(M.RESEED, "crossbar", 40, 101)
    assert calls == [(101, 101), (101 + M.RESEED_OFFSET, 101)]


def test_every_run_takes_the_record_unless_its_variant_says_otherwise(monkeypatch):
    """``RECORD`` (four directions a step) reaches the plan of the default and of a variant that
    does not set ``q``; a variant that sets it wins; a regime-2 configuration (``SECONDS``) runs
    the cost model's batch on the base configuration."""
    import blacksat.product.compare as compare
    import blacksat.query_plan as qp

    seen, methods = [], []

    def fake_run_one(method, scenario, seed, chip, budget):
        qp.plan_query_only(None, None, None)  # the partial the study installed, args only
        methods.append((method, scenario.device))
        return {"test_accuracy": 0.5, "reconfigurations": budget, "wall_s": 0.0}

    monkeypatch.setattr(qp, "plan_query_only", lambda *a, **k: seen.append(
        (k.get("q"), k.get("walk_floor"))))  # fmt: skip
    monkeypatch.setattr(compare, "run_one", fake_run_one)
    M.tuning_run("default", "crossbar", 40, 100)
    M.tuning_run("beta1=0.9", "crossbar", 40, 100)
    M.tuning_run("zeroth-order q=2 (now)", "mzi-0.05", 40, 100, 0)
    M.tuning_run("default", "diffractive-q16" + M.SECONDS, 40, 100, 0)
    assert seen == [(4, 0.0), (4, 0.0), (2, 0.0), (4, 0.0)]
    assert methods[0][0] == "blacksat" and methods[0][1] == "crossbar"
    batch_method, device = methods[-1]
    assert device == "diffractive" and batch_method.options["batch_size"] == 32


def test_a_cell_counts_as_resolved_beyond_twice_its_standard_error():
    # mean 2, std 1 over 4 chips: standard error 0.5, so 2 > 2 * 0.5
    assert M._resolved([1.0, 2.0, 3.0, 2.0])
    # mean 1, std 1.63: standard error 0.82
    assert not M._resolved([-1.0, 1.0, 3.0, 1.0])
    assert not M._resolved([5.0])  # one chip has no standard error
    rows = [
        {"variant": v, "config": "crossbar", "budget": 250, "chip": c, "accuracy": a}
        for v, accs in (("default", (80.0, 84.0, 82.0)), (M.RESEED, (80.5, 83.0, 82.5)))
        for c, a in zip((100, 101, 102), accs, strict=True)
    ]
    body = M.section(SavedRows(rows, "query_plan_tuning"))
    assert f"- `{M.RESEED}` against `default`: +0.0 over 1 cells" in body
    assert "beyond twice its standard error over the chips in 0)" in body


def test_a_powered_cell_pairs_each_variant_with_the_default_run_by_run():
    (config, budget), variants = next(iter(M.POWERED.items()))
    for v in (variants[0], variants[-1]):  # one against the default it ran beside, one against now
        ref = M.POWERED_REFERENCE.get(v, "default")
        rows = [
            {"variant": name, "config": config, "budget": budget, "chip": c, "repeat": k,
             "accuracy": 90.0 + c - 100 + k + shift, "train_loss": 0.2 - shift / 100}
            for name, shift in ((ref, 0.0), (v, 1.0), ("other", 9.0))
            for c in (100, 101)
            for k in range(2)
        ]  # fmt: skip
        rows[7]["accuracy"] += 2.0  # one pair differs by 3: mean +1.5, std 1.0 over 4 pairs
        body = M.section(SavedRows(rows, "query_plan_tuning"))
        cells = "| 4 | 91.00 | 92.50 | +1.50 ± 0.50 | 4 of 4 |"
        assert f"| {config} | {budget:,} | {v} | {ref} {cells}" in body, v
    assert M.POWERED_REFERENCE[variants[0]] == "layered central probes"
    assert "layered central probes" not in M.POWERED_REFERENCE
    # the powered runs stay out of the main table
    assert f"| {config} | {budget:,} | 91.0" not in body
