"""benchmarks/physics_free.py: which (seed, chip) pairs each configuration runs, and how two
processes share them (fake runs, no training)."""

import pytest
from bench_loader import load_bench

M = load_bench("physics_free.py", "physics_free")


def test_every_pair_runs_where_the_flag_says_and_the_check_pairs_elsewhere():
    every = [(s, c) for s in M.SEEDS for c in M.CHIPS]
    for config, (_, _, all_pairs) in M.CONFIGS.items():
        assert M.pairs_of(config) == (every if all_pairs else list(M.CHECK_RUNS)), config
    assert len(M.pairs_of("mrr")) == 9  # the MRR network: 3 seeds x 3 chips
    assert M._names(False) == "the diffractive network"
    assert M._names(True).startswith("the crossbar, ")


@pytest.fixture
def fake_runs(monkeypatch):
    def fake(*args, **kwargs):
        return {"accuracy": 50.0, "fit_r2": 0.5, "response": "linear"}

    for name in ("white_box_run", "surrogate_run", "greybox_run", "query_only_run"):
        monkeypatch.setattr(M, name, fake)


def _pairs(only):
    study = M.Study("physics_free", "physics_free", quick=True, only=only)
    M.run(study, quick=False)
    return {(r["seed"], r["chip"]) for r in study.rows()}


def test_seed_and_chip_filters_split_a_configuration_between_processes(fake_runs):
    first = _pairs({"config": {"mrr"}, "seed": {"0", "1"}, "chip": {"1", "2"}})
    second = _pairs({"config": {"mrr"}, "seed": {"1", "2"}, "chip": {"0", "1"}})
    assert first == {(0, 1), (0, 2), (1, 1), (1, 2)}
    assert second == {(1, 0), (1, 1), (2, 0), (2, 1)}
    # together with the check pairs already on disk ((0, 0), (1, 1), (2, 2)) they cover all 9
    assert first | second | set(M.CHECK_RUNS) == set(M.pairs_of("mrr"))
    # a filter that names no seed or chip runs every pair of the configuration
    assert _pairs({"config": {"mrr"}}) == set(M.pairs_of("mrr"))
