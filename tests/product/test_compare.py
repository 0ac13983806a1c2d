"""The comparison runner: deterministic runs, the files of a sweep, Dask = local executor, budgets
respected by every registered method, the head-to-head verdict, argument validation.

Everything runs on a 4-mode mesh (12 controls) with iris and budgets of a few dozen
reconfigurations.
"""

import csv
import json
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from blacksat.errors import ConfigError
from blacksat.product.compare import (
    METHODS,
    Method,
    Scenario,
    compare,
    csv_columns,
    method,
    run_one,
)
from blacksat.product.compare_plots import aggregate, head_to_head, head_to_head_table

SMALL = Scenario(
    device_kwargs={"n_modes": 4},
    dataset="iris",
    ng_workers=4,
    drift={"temperature": (-1.0, 1.0)},
)
ZO = Method("zo", "blacksat", {"q": 2, "sigma": 0.1, "lr": 0.1, "batch_size": 16})
ZO_SAT = Method(
    "zo-sat-small",
    "blacksat",
    {"q": 2, "sigma": 0.1, "lr": 0.1, "batch_size": 16, "perturbation": "phase_drift"},
)
NG = Method("1+1", "nevergrad", {"optimizer": "OnePlusOne"})
SWEEP = {"methods": [NG, ZO], "scenario": SMALL, "seeds": [0, 1], "budgets": [12, 24]}


def strip(rows):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


@pytest.fixture(scope="module")
def threaded():
    with ThreadPoolExecutor(2) as ex:
        return compare(**SWEEP, executor=ex, progress=False)


# ---------------------------------------------------------------------- run_one
@pytest.mark.parametrize("m", [NG, ZO_SAT], ids=lambda m: m.name)
def test_run_one_is_a_pure_function_of_its_seeds(m):
    a = run_one(m, SMALL, 3, 5, 24)
    b = run_one(m, SMALL, 3, 5, 24)
    assert strip([a]) == strip([b])
    other = run_one(m, SMALL, 4, 5, 24)
    assert other["trace"] != a["trace"]  # the seed matters


def test_run_one_row_holds_the_evaluation():
    row = run_one(ZO, SMALL, 0, 0, 20)
    assert row["method"] == "zo" and row["label"] == "query-only" and row["chip"] == 0
    assert 0 < row["reconfigurations"] <= 20
    assert row["samples"] == row["reconfigurations"] * 16  # batches of 16 in one epoch of 105
    for key in ("test_accuracy", "acc_temperature-1", "acc_temperature+1", "fresh_chip_accuracy"):
        assert 0.0 <= row[key] <= 1.0
    assert np.isfinite(row["train_loss"]) and row["train_loss"] > 0
    steps = row["trace"]
    assert [r["reconfigurations"] for r in steps] == [4 * (i + 1) for i in range(len(steps))]


def test_labels_say_what_a_method_uses():
    assert method("pat-sat").label == "twin-assisted" and method("pat-sat").twin_assisted
    assert method("zo-sat").label == "query-only"
    assert method("cma").label == "nevergrad"


# ---------------------------------------------------------------------- the sweep
def test_compare_writes_csv_json_summary_and_plots(threaded, tmp_path):
    out = threaded.write(tmp_path / "cmp")
    rows = threaded.rows
    assert len(rows) == 2 * 2 * 2  # methods x budgets x (seed, paired chip)
    assert [(r["method"], r["budget"], r["seed"]) for r in rows[:4]] == [
        ("1+1", 12, 0),
        ("1+1", 12, 1),
        ("1+1", 24, 0),
        ("1+1", 24, 1),
    ]
    assert threaded.paired and all(r["chip"] == r["seed"] for r in rows)
    with open(out / "results.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == csv_columns(SMALL)
    assert {"acc_temperature-1", "acc_temperature+1", "fresh_chip_accuracy"} <= set(table[0])
    assert "trace" not in table[0] and len(table) == len(rows)
    assert float(table[-1]["test_accuracy"]) == rows[-1]["test_accuracy"]
    doc = json.loads((out / "results.json").read_text())
    assert doc["budgets"] == [12, 24] and doc["scenario"]["dataset"] == "iris"
    assert "nevergrad" in doc["versions"] and len(doc["rows"]) == len(rows)
    assert all(isinstance(r["trace"], list) and r["trace"] for r in doc["rows"])
    summary = (out / "summary.md").read_text()
    assert (
        "| 1+1 | nevergrad | nevergrad |" in summary and "| zo | blacksat | query-only |" in summary
    )
    for png in ("accuracy_vs_reconfigurations.png", "robustness.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_dask_executor_gives_the_same_rows_as_the_local_one(threaded):
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        via_executor = compare(**SWEEP, executor=client.get_executor(pure=False), progress=False)
        via_address = compare(**SWEEP, scheduler=cluster.scheduler_address, progress=False)
    assert strip(via_executor.rows) == strip(threaded.rows)
    assert strip(via_address.rows) == strip(threaded.rows)


def test_every_registered_method_respects_its_budget():
    budget = 37  # not a multiple of any method's cost per step
    for m in METHODS.values():
        row = run_one(m, SMALL, 0, 1, budget)
        assert 0 < row["reconfigurations"] <= budget, m.name
        assert all(r["reconfigurations"] <= budget for r in row["trace"]), m.name


def test_chip_axis_runs_every_seed_on_every_chip():
    res = compare(
        [ZO], SMALL, seeds=[0], chips=[2, 3], budgets=[8], executor=_Inline(), progress=False
    )
    assert [(r["seed"], r["chip"]) for r in res.rows] == [(0, 2), (0, 3)]
    assert not res.paired and res.chips == [2, 3]
    assert res.rows[0]["test_accuracy"] != res.rows[1]["test_accuracy"] or (
        res.rows[0]["trace"] != res.rows[1]["trace"]
    )


class _Inline:
    """A minimal executor running each call at submit time."""

    def submit(self, fn, *args):
        from concurrent.futures import Future

        fut = Future()
        fut.set_result(fn(*args))
        return fut


# ---------------------------------------------------------------------- the verdict
def _summary_row(name, label, budget, acc, samples):
    return {
        "method": name,
        "label": label,
        "budget": budget,
        "test_accuracy_mean": acc,
        "test_accuracy_std": 0.01,
        "samples_mean": samples,
    }


def test_head_to_head_needs_accuracy_and_a_fifth_of_the_samples():
    summary = [
        _summary_row("cma", "nevergrad", 100, 0.50, 1000.0),
        _summary_row("pso", "nevergrad", 100, 0.40, 1000.0),
        _summary_row("zo", "query-only", 100, 0.55, 190.0),
        _summary_row("pat", "twin-assisted", 100, 0.99, 10.0),  # never counted
        _summary_row("cma", "nevergrad", 200, 0.70, 2000.0),
        _summary_row("zo", "query-only", 200, 0.75, 500.0),
    ]
    first, second = head_to_head(summary)
    assert (first["blacksat"], first["nevergrad"]) == ("zo", "cma")
    assert first["met"] and first["samples_ratio"] == pytest.approx(0.19)
    assert second["accuracy_ok"] and not second["samples_ok"] and not second["met"]


def test_head_to_head_pairs_the_two_methods_run_by_run():
    summary = [
        _summary_row("cma", "nevergrad", 100, 0.50, 1000.0),
        _summary_row("zo", "query-only", 100, 0.55, 190.0),
    ]
    runs = [  # zo - cma by (seed, chip): +0.04, +0.06; the unpaired run is left out
        {"method": "cma", "budget": 100, "seed": 0, "chip": 0, "test_accuracy": 0.50},
        {"method": "cma", "budget": 100, "seed": 1, "chip": 1, "test_accuracy": 0.48},
        {"method": "zo", "budget": 100, "seed": 0, "chip": 0, "test_accuracy": 0.54},
        {"method": "zo", "budget": 100, "seed": 1, "chip": 1, "test_accuracy": 0.54},
        {"method": "zo", "budget": 100, "seed": 2, "chip": 2, "test_accuracy": 0.99},
    ]
    (rec,) = head_to_head(summary, rows=runs)
    assert rec["difference"] == pytest.approx(0.05)
    assert rec["difference_se"] == pytest.approx(0.01)  # std 0.0141 / sqrt(2)
    assert "| yes | +5.0 ± 1.0 |" in head_to_head_table([rec])
    (bare,) = head_to_head(summary)  # without the runs: no paired difference
    assert math.isnan(bare["difference"]) and "| yes | - |" in head_to_head_table([bare])


def test_aggregate_means_and_spreads(threaded):
    summary = aggregate(threaded.rows, SMALL)
    assert [(s["method"], s["budget"], s["n"]) for s in summary] == [
        ("1+1", 12, 2),
        ("1+1", 24, 2),
        ("zo", 12, 2),
        ("zo", 24, 2),
    ]
    accs = [r["test_accuracy"] for r in threaded.rows if r["method"] == "zo" and r["budget"] == 24]
    s = summary[3]
    assert s["test_accuracy_mean"] == pytest.approx(np.mean(accs))
    assert s["test_accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert s["test_accuracy_min"] <= s["test_accuracy_mean"] <= s["test_accuracy_max"]


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "build",
    [
        lambda: Method("x", "genetic", {}),
        lambda: Method("", "blacksat", {}),
        lambda: Method("x", "nevergrad", {}),
        lambda: Method("x", "nevergrad", {"optimizer": "CMA", "lr": 0.1}),
        lambda: Method("x", "blacksat", {"estimator": "magic"}),
        lambda: Method("x", "blacksat", {"q": 0}),
        lambda: Method("x", "blacksat", {"lr": -1.0}),
        lambda: Method("x", "blacksat", {"rho": 0.1, "perturbation": "phase_drift"}),
        lambda: Scenario(device="abacus"),
        lambda: Scenario(device_kwargs={"seed": 3}),
        lambda: Scenario(init="somewhere"),
        lambda: Scenario(ng_batch_size=0),
        lambda: Scenario(drift={"temperature": ("hot",)}),
        lambda: Scenario(drift={"temperature": (0.0, 1.0)}),  # 0 K is the nominal accuracy
        lambda: Scenario(drift={"temperature": (1.0, 1.0)}),
        lambda: Scenario(drift={"pressure": (1.0,)}),
        lambda: Method("x", "blacksat", {"sigma": 0.0}),
        lambda: Method("x", "blacksat", {"directions": "diagonal"}),
        lambda: Method("x", "blacksat", {"schedule": "sometimes"}),
        lambda: method("no-such-method"),
        lambda: run_one(ZO, SMALL, -1, 0, 10),
        lambda: run_one(ZO, SMALL, 0, 0, 0),
        lambda: run_one(Method("x", "blacksat", {"perturbation": "gravity"}), SMALL, 0, 0, 10),
        lambda: compare([ZO], SMALL, seeds=[], budgets=[10], executor=_Inline()),
        lambda: compare([ZO], SMALL, seeds=[0], budgets=[10, 10], executor=_Inline()),
        lambda: compare([ZO, ZO], SMALL, seeds=[0], budgets=[10], executor=_Inline()),
        lambda: compare([ZO], SMALL, seeds=[0], chips="all", budgets=[10], executor=_Inline()),
        lambda: compare([ZO], SMALL, seeds=[0], budgets=[10], executor=_Inline(), scheduler="x"),
        lambda: compare(
            [Method("x", "nevergrad", {"optimizer": "NoSuchOpt"})], SMALL, [0], budgets=[10]
        ),
    ],
)
def test_invalid_arguments_raise_config_error(build):
    with pytest.raises(ConfigError):
        build()


def test_runs_pickle_for_process_and_dask_workers():
    import pickle

    from blacksat.product import compare as module

    args = pickle.loads(pickle.dumps((list(METHODS.values()), SMALL)))
    assert args[0] == list(METHODS.values()) and args[1] == SMALL
    assert pickle.loads(pickle.dumps(module.run_one)) is module.run_one


# ---------------------------------------------------------------------- output safety
def test_compare_checks_its_output_before_running(tmp_path, monkeypatch):
    import blacksat.product.compare as cmp

    def never(*args, **kwargs):
        raise AssertionError("a run started before the output was checked")

    monkeypatch.setattr(cmp, "run_one", never)
    afile = tmp_path / "file"
    afile.write_text("x")
    for bad, msg in ((afile, "existing file"), ("/proc/blacksat-x", "cannot be written")):
        with pytest.raises(ConfigError, match=msg):
            compare(**SWEEP, executor=ThreadPoolExecutor(1), out_dir=bad, progress=False)
    done = tmp_path / "done"
    done.mkdir()
    (done / "results.csv").write_text("keep me")
    with pytest.raises(ConfigError, match="--force"):
        compare(**SWEEP, executor=ThreadPoolExecutor(1), out_dir=done, progress=False)
    assert (done / "results.csv").read_text() == "keep me"


def test_compare_writes_each_row_as_it_finishes_and_resumes(threaded, tmp_path, monkeypatch):
    import blacksat.product.compare as cmp

    by_key = {(r["method"], r["seed"], r["chip"], r["budget"]): r for r in threaded.rows}
    calls = []

    def fake(m, scenario, seed, chip, budget, fail_after=None):
        calls.append((m.name, seed, chip, budget))
        if fail_after is not None and len(calls) > fail_after:
            raise RuntimeError("the machine went down")
        return dict(by_key[(m.name, seed, chip, budget)])

    out = tmp_path / "sweep"
    monkeypatch.setattr(cmp, "run_one", lambda *a: fake(*a, fail_after=3))
    with pytest.raises(RuntimeError), ThreadPoolExecutor(1) as ex:
        compare(**SWEEP, executor=ex, out_dir=out, progress=False)
    lines = (out / "rows.jsonl").read_text().splitlines()
    assert len(lines) == 3  # every finished run is on disk
    (out / "rows.jsonl").write_text("\n".join(lines) + '\n{"method": "1+1", "se')  # torn
    calls.clear()
    monkeypatch.setattr(cmp, "run_one", lambda *a: fake(*a))
    with pytest.raises(ConfigError, match="--resume"), ThreadPoolExecutor(1) as ex:
        compare(**SWEEP, executor=ex, out_dir=out, progress=False)
    with ThreadPoolExecutor(1) as ex:
        res = compare(**SWEEP, executor=ex, out_dir=out, progress=False, resume=True)
    assert len(calls) == len(threaded.rows) - 3  # only the missing runs ran
    assert strip(res.rows) == strip(threaded.rows)
    assert len((out / "rows.jsonl").read_text().splitlines()) == len(threaded.rows)
    other = {**SWEEP, "scenario": Scenario(device_kwargs={"n_modes": 4}, dataset="iris")}
    with pytest.raises(ConfigError, match="another scenario"), ThreadPoolExecutor(1) as ex:
        compare(**other, executor=ex, out_dir=out, progress=False, resume=True)
    calls.clear()
    with ThreadPoolExecutor(1) as ex:
        compare(**SWEEP, executor=ex, out_dir=out, progress=False, force=True)
    assert len(calls) == len(threaded.rows)  # --force starts over


def test_summary_defines_the_target_and_names_columns_like_the_csv(threaded):
    from blacksat.product.compare_plots import (
        TARGET_DEFINITION,
        _colors,
        accuracy_table,
        summary_markdown,
    )

    text = summary_markdown(threaded, [])
    assert TARGET_DEFINITION in text and "Target met:" in text
    table = accuracy_table(threaded.summary())
    assert table.splitlines()[0].startswith("| method | kind | label |")
    row = next(line for line in table.splitlines() if line.startswith("| 1+1 |"))
    assert row.startswith("| 1+1 | nevergrad | nevergrad |")  # kind, then label, as in the CSV
    zo = next(line for line in table.splitlines() if line.startswith("| zo |"))
    assert zo.startswith("| zo | blacksat | query-only |")
    import matplotlib

    colours = _colors(12)
    assert len(set(colours)) == 12  # every method its own colour
    # one hue per method: tab10 first, never tab20's light/dark pairs of one hue side by side
    assert colours[:10] == list(matplotlib.colormaps["tab10"].colors)


def test_a_run_limits_the_blas_pools_to_its_threads_and_restores_them():
    from threadpoolctl import threadpool_info, threadpool_limits

    from blacksat.product.compare import _threads

    np.linalg.eigh(np.eye(3))  # numpy's BLAS is loaded, so it has a pool to limit
    with threadpool_limits(limits=2):  # the process's own setting, restored below
        before = [p["num_threads"] for p in threadpool_info()]
        assert before and all(n == 2 for n in before)
        with _threads(1):
            with _threads(1):  # a second concurrent run in the process
                assert all(p["num_threads"] == 1 for p in threadpool_info())
            assert all(p["num_threads"] == 1 for p in threadpool_info())  # one still inside
        assert [p["num_threads"] for p in threadpool_info()] == before


def test_a_failed_run_does_not_lose_runs_that_finished_alongside_it(threaded, tmp_path):
    """Runs already finished when another fails are on disk, whichever order the executor
    reports them in (every future here is done before compare looks at any)."""
    from concurrent.futures import Future

    by_key = {(r["method"], r["seed"], r["chip"], r["budget"]): r for r in threaded.rows}

    class Done:
        """An executor that has run everything by the time compare waits: the fourth run
        submitted fails, the others succeed."""

        def __init__(self) -> None:
            self.n = 0

        def submit(self, fn, m, scenario, seed, chip, budget):
            self.n += 1
            f: Future = Future()
            if self.n == 4:
                f.set_exception(RuntimeError("the machine went down"))
            else:
                f.set_result(dict(by_key[(m.name, seed, chip, budget)]))
            return f

    out = tmp_path / "sweep"
    with pytest.raises(RuntimeError, match="went down"):
        compare(**SWEEP, executor=Done(), out_dir=out, progress=False)
    lines = (out / "rows.jsonl").read_text().splitlines()
    assert len(lines) == len(threaded.rows) - 1  # all but the failed run
