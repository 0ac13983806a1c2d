"""The layered response on wired devices it was not tuned on: the query-only default with and
without it, and CMA-ES, at equal reconfigurations.

    python benchmarks/layered_heldout.py                       # run what is missing, write it
    python benchmarks/layered_heldout.py --report-only         # re-render from the saved runs
    python benchmarks/layered_heldout.py --only device=mrr-3   # this process's share
    python benchmarks/layered_heldout.py --quick               # one seed, small budgets; prints

The layered response's constants (:mod:`blacksat.query_plan`: radius, step, momentum, travel
floor) were chosen on tuning chips 100-103 of the 2,368-ring MRR network (64 -> 32 -> 10), the
16 -> 10 crossbar and a 64 -> 10 MRR bank, and reported on chips 0-2 of the first two
(``benchmarks/query_efficiency.py``). Here the same frozen default trains devices of other
shapes, on chips 0-2, where nothing was chosen:

- ``mrr-3``: three MRR banks, 64 -> 24 -> 16 -> 10 (2,080 rings; a middle bank, whose fit solves
  every slope at once);
- ``mrr-narrow``: two banks with a narrower hidden layer, 64 -> 16 -> 10 (1,184 rings);
- ``crossbar-2``: a two-layer crossbar, 64 -> 16 -> 10 (2,368 conductances, a differential pair
  per weight), whose layers are joined by a nonlinear stage: the probe's linear-response check
  decides whether the layered response applies.

Where the check turns the layered response away (``mrr-3`` and ``crossbar-2``), the default runs
it as a start until its plateau and continues with zeroth order (``LAYERED_START``). That rule
was chosen on tuning chips 100-103 of those two shapes (``benchmarks/query_plan_tuning.py``,
``no layered start``), so for it they are tuning shapes (reported here on chips 0-2); two shapes
added after it was frozen check it where nothing was chosen:

- ``mrr-3-narrow``: three MRR banks, 64 -> 16 -> 16 -> 10 (1,440 rings);
- ``crossbar-2-narrow``: a two-layer crossbar, 64 -> 8 -> 10 (1,184 conductances).

On ``mrr-3-narrow`` the check passes and the layered response itself lost with budget; the rule
that answered it, going back to the kept setting after a stall (``LAYERED_BACKTRACK_PATIENCE``),
was chosen on tuning chips 100-103 of that shape and of the tuning devices, so ``mrr-3-narrow`` is
a tuning shape for it too. Two shapes added after it was frozen, both let through by the check,
check it where nothing was chosen:

- ``mrr-4-narrow``: four MRR banks, 64 -> 16 -> 16 -> 16 -> 10 (1,696 rings);
- ``mrr-wide``: two MRR banks with a wider hidden layer, 64 -> 48 -> 10 (3,552 rings).

On ``mrr-4-narrow`` the check passes vacuously (readings barely above their noise) and the
layered response stays at chance; two rules answered it, both chosen there: refusing a check
whose readings stand less than ``WEAK_CHECK`` times above their noise (the layered start runs
instead; the method ``weak-check refusal``, ``layered_weak_check=WEAK_CHECK``), and a start
whose gain does not stand ``PROGRESS_Z`` noise deviations above its first reading leaves the
zeroth-order plan as it was. Two shapes added after both were frozen, whose checks also pass on
readings a few times their noise, check them; on the second the refusal lost, so it is not the
default (``LAYERED_WEAK_CHECK`` = 0):

- ``crossbar-3``: three crossbar layers, 64 -> 16 -> 16 -> 10 (2,880 conductances);
- ``mrr-sigmoid``: the MRR network's 64 -> 32 -> 10 with modulators that saturate (a sigmoid
  O/E/O response, ``activation="sigmoid"``; 2,368 rings).

Where the layered response is the plan on readings that stand less than ``WEAK_CHECK`` times
above their noise, a run that stalls twice before its loss ever fell by more than its noise now
hands over to the zeroth-order plan (``LAYERED_HANDOVER``; the method ``no handover`` is the
default without it, ``layered_handover=False``). It was chosen on the reported chips of
``mrr-4-narrow`` (where it answers the stall at chance) and ``mrr-3-narrow`` (where handing over
at the first stall lost a run that leaves its start slowly), so those are its tuning shapes;
three shapes added after it was frozen check it where nothing was chosen:

- ``mrr-4``: four MRR banks, 64 -> 32 -> 16 -> 16 -> 10 (2,816 rings);
- ``mrr-sharp``: the MRR network's 64 -> 32 -> 10 with rings of half the linewidth (0.08);
- ``mrr-3-sigmoid``: three MRR banks with sigmoid O/E/O stages, 64 -> 24 -> 16 -> 10.

Methods (``compare``'s, 256 samples per reconfiguration, every run from the centre of the box
with the same frozen front end): ``blacksat`` (the default), ``no layered response`` (the
default with ``layered=False``: the zeroth-order plan after the surrogate start) and nevergrad's
``cma`` (library defaults); where the layered response runs as the plan (the shapes the check lets
through, ``LINEAR``), also ``no stall backtrack`` (the default with
``layered_backtrack_patience=None``: the default before the stall rule; elsewhere it is the
default's own code path, the layered start never backtracking at a stall; not run on the last
two shapes, added later); where the layered response is the plan on some chip (``HANDOVER``),
also ``no handover`` and ``central probes`` (the default with ``layered_scheme="central"``:
antithetic probe pairs, the default before ``LAYERED_SCHEME``; its rows are that default's,
relabelled: the same code path, and every other variant ran with the pairs and pins them).
Seeds 0, 1, 2, seed
``s`` on chip ``s``; accuracy on the full test split of the chip; mean ± sample std (ddof 1).
``--only`` filters on ``device``.

What the plan's linear-response check sees (rows of ``method = "linear check"``, ``budget`` 0;
no training): on each shape's reported chips 0-2 and tuning chips 100-103, the check's
readings (two random settings and the first again, ``CHECK_INPUTS`` probe inputs each, as
:func:`blacksat.query_plan.plan_query_only` reads them, with a seed of their own): the linear
fit's residual and the readings' variance over the inputs, in units of the readout noise's
variance (median over the two settings), and whether the check passes.
"""

from __future__ import annotations

import functools
import itertools
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import Study, summary
from _study import main as run_study

#: held-out configuration -> (registry name, constructor arguments, description)
DEVICES: dict[str, tuple[str, dict[str, Any], str]] = {
    "mrr-3": ("mrr", {"layer_sizes": (64, 24, 16, 10)}, "three MRR banks, 64 -> 24 -> 16 -> 10"),
    "mrr-narrow": ("mrr", {"layer_sizes": (64, 16, 10)}, "two MRR banks, 64 -> 16 -> 10"),
    "crossbar-2": (
        "crossbar",
        {"layer_sizes": (64, 16, 10)},
        "two crossbar layers, 64 -> 16 -> 10",
    ),
    "mrr-3-narrow": (
        "mrr",
        {"layer_sizes": (64, 16, 16, 10)},
        "three MRR banks, 64 -> 16 -> 16 -> 10",
    ),
    "crossbar-2-narrow": (
        "crossbar",
        {"layer_sizes": (64, 8, 10)},
        "two crossbar layers, 64 -> 8 -> 10",
    ),
    "mrr-4-narrow": (
        "mrr",
        {"layer_sizes": (64, 16, 16, 16, 10)},
        "four MRR banks, 64 -> 16 -> 16 -> 16 -> 10",
    ),
    "mrr-wide": ("mrr", {"layer_sizes": (64, 48, 10)}, "two MRR banks, 64 -> 48 -> 10"),
    "crossbar-3": (
        "crossbar",
        {"layer_sizes": (64, 16, 16, 10)},
        "three crossbar layers, 64 -> 16 -> 16 -> 10",
    ),
    "mrr-sigmoid": (
        "mrr",
        {"layer_sizes": (64, 32, 10), "activation": "sigmoid"},
        "two MRR banks with sigmoid O/E/O stages, 64 -> 32 -> 10",
    ),
    "mrr-4": (
        "mrr",
        {"layer_sizes": (64, 32, 16, 16, 10)},
        "four MRR banks, 64 -> 32 -> 16 -> 16 -> 10",
    ),
    "mrr-sharp": (
        "mrr",
        {"layer_sizes": (64, 32, 10), "linewidth": 0.08},
        "two MRR banks with rings of half the linewidth, 64 -> 32 -> 10",
    ),
    "mrr-3-sigmoid": (
        "mrr",
        {"layer_sizes": (64, 24, 16, 10), "activation": "sigmoid"},
        "three MRR banks with sigmoid O/E/O stages, 64 -> 24 -> 16 -> 10",
    ),
}
METHODS = (
    "blacksat",
    "central probes",
    "no handover",
    "no stall backtrack",
    "weak-check refusal",
    "no layered response",
    "cma",
)
#: the chips the linear check's statistics are read on (reported and tuning) and its inputs a
#: setting (the plan's: 256 samples per reconfiguration)
CHECK_CHIPS = (0, 1, 2, 100, 101, 102, 103)
CHECK_INPUTS = 256
#: the shapes whose readings the linear check lets through (the layered response is the plan):
#: only there does ``no stall backtrack`` differ from the default
LINEAR = ("mrr-narrow", "mrr-3-narrow", "mrr-4-narrow", "mrr-wide")
#: the shapes whose linear check passes on readings barely above their noise (only there does
#: ``weak-check refusal`` differ from the default, and run)
WEAK = ("mrr-4-narrow", "crossbar-3", "mrr-sigmoid")
#: the shapes where the layered response is the plan on some chip (the check lets it through),
#: the only ones where ``no handover`` can differ from the default (and runs)
HANDOVER = (*LINEAR, "crossbar-3", "mrr-sigmoid", "mrr-4", "mrr-sharp", "mrr-3-sigmoid")
BUDGETS = (1000, 5000)
SEEDS = (0, 1, 2)


def scenario(device: str) -> Any:
    import query_efficiency as qe

    from blacksat.product.compare import Scenario

    name, kwargs, _ = DEVICES[device]
    return Scenario(
        device=name,
        device_kwargs=kwargs,
        fresh_chip_offset=qe.SWEEP_FRESH_CHIP_OFFSET,
        ng_batch_size=qe.SAMPLES,
    )


def one_run(method: str, device: str, budget: int, seed: int) -> dict[str, Any]:
    """One run: its test accuracy (%), what it spent and which estimator the plan chose."""
    import blacksat.query_plan as qp
    from blacksat.product.compare import run_one

    original = qp.plan_query_only
    chosen: list[str] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        if method == "no layered response":
            kwargs["layered"] = False
        if method == "no stall backtrack":
            kwargs["layered_backtrack_patience"] = None
        if method == "weak-check refusal":
            kwargs["layered_weak_check"] = qp.WEAK_CHECK
        if method == "no handover":
            kwargs["layered_handover"] = False
        if method != "blacksat":  # every variant ran with antithetic probe pairs
            kwargs.setdefault("layered_scheme", "central")
        plan = original(*args, **kwargs)
        layered_start = (plan.start or {}).get("kind") == "layered"
        if chosen:  # plan_handover's zeroth-order plan (through this module's name)
            chosen.append(f"handed over to {plan.estimator}")
        else:
            chosen.append(f"layered start, {plan.estimator}" if layered_start else plan.estimator)
        return plan

    qp.plan_query_only = spy
    try:
        row = run_one(
            "cma" if method == "cma" else "blacksat", scenario(device), seed, seed, budget
        )
    finally:
        qp.plan_query_only = original
    return {
        "accuracy": 100 * row["test_accuracy"],
        "reconfigurations": row["reconfigurations"],
        "estimator": ", ".join(chosen) if chosen else None,
    }


def check_run(device: str, chip_seed: int) -> dict[str, Any]:
    """The linear-response check's statistics on one chip (module docstring)."""
    import numpy as np

    from blacksat.query_plan import linear_response_check

    sc = scenario(device)
    chip = sc.build_chip(chip_seed)
    task = sc.build_task(chip, chip_seed)
    c = linear_response_check(task, chip, CHECK_INPUTS, np.random.default_rng([chip_seed, 7]))
    return {"holds": c.holds, "residual_noise": c.residual, "spread_noise": c.spread}


def run(study: Study, quick: bool) -> None:
    seeds = SEEDS[:1] if quick else SEEDS
    budgets = (200,) if quick else BUDGETS
    for device in DEVICES:
        if study.skips(device=device):
            continue
        for chip_seed in CHECK_CHIPS[:1] if quick else CHECK_CHIPS:
            study.run(
                functools.partial(check_run, device, chip_seed),
                device=device, method="linear check", budget=0, seed=chip_seed,
            )  # fmt: skip
        for budget in budgets:
            for method in METHODS:
                if method == "no stall backtrack" and device not in LINEAR:
                    continue  # the default's own code path there (later shapes: not run)
                if method == "weak-check refusal" and device not in WEAK:
                    continue
                if method in ("no handover", "central probes") and device not in HANDOVER:
                    continue
                for seed in seeds:
                    row = study.run(
                        functools.partial(one_run, method, device, budget, seed),
                        device=device, method=method, budget=budget, seed=seed,
                    )  # fmt: skip
                    print(f"{device:>10} {method:>20} {budget:>5} seed {seed}: "
                          f"{row['accuracy']:.1f} % ({row['estimator']})", flush=True)  # fmt: skip


def section(study: Study) -> str:
    from blacksat.query_plan import WEAK_CHECK

    every = study.rows()
    rows = [r for r in every if r["method"] != "linear check"]
    checks = [r for r in every if r["method"] == "linear check"]
    lines = [
        "## The layered response on wired devices it was not tuned on",
        "",
        study.header(
            "python benchmarks/layered_heldout.py",
            "The query-only default (`blacksat`), the same without the layered response and "
            "nevergrad's CMA at equal reconfigurations (256 samples each), on device shapes "
            "where none of the layered response's constants were chosen (the layered start's "
            "rule was chosen on tuning chips of `mrr-3` and `crossbar-2`, and `mrr-3-narrow` "
            "and `crossbar-2-narrow` came after it; the stall rule, and so `no stall "
            "backtrack`, was chosen on tuning chips of `mrr-3-narrow`, and `mrr-4-narrow` and "
            "`mrr-wide` came after it; the weak-check refusal, `weak-check refusal`, and the "
            "start's progress test were chosen on `mrr-4-narrow`'s reported chips, and "
            "`crossbar-3` and `mrr-sigmoid` came after them; the handover, and so `no "
            "handover`, was chosen on the reported chips of `mrr-4-narrow` and `mrr-3-narrow`, "
            "and `mrr-4`, `mrr-sharp` and `mrr-3-sigmoid` came after it); seeds 0, 1, 2 (seed "
            "`s` on chip `s`), full test split, mean ± sample std. `no handover` ran only where "
            "the layered response is the plan, `no stall backtrack` only on the first four of "
            "those shapes, `weak-check refusal` only where the check's readings stand barely "
            "above their noise, `central probes` (the default before its probes became one-sided: "
            "`blacksat.query_plan.LAYERED_SCHEME`) where the layered response is the plan. The "
            "set-up is in the script's docstring.",
        ),
        "",
        "| device | controls | budget | blacksat | estimator the plan chose | "
        + " | ".join(METHODS[1:])
        + " | blacksat − cma (± standard error, paired by seed) |",
        "| --- | ---: | ---: | ---: | --- |" + " ---: |" * len(METHODS),
    ]
    for device, (_, kwargs, text) in DEVICES.items():
        sizes = kwargs["layer_sizes"]
        pairs = 2 if device.startswith("crossbar") else 1
        d = pairs * sum(a * b for a, b in itertools.pairwise(sizes))
        for budget in sorted({r["budget"] for r in rows if r["device"] == device}):
            cells = []
            for method in METHODS:
                accs = [
                    r["accuracy"]
                    for r in rows
                    if (r["device"], r["method"], r["budget"]) == (device, method, budget)
                ]
                m, s, n = summary(accs)
                cells.append("—" if n == 0 else f"{m:.1f} ± {s:.1f}" if n > 1 else f"{m:.1f}")
            chose = sorted(
                {
                    str(r.get("estimator"))
                    for r in rows
                    if (r["device"], r["method"], r["budget"]) == (device, "blacksat", budget)
                }
            )
            lines.append(
                f"| {device} ({text}) | {d:,} | {budget:,} | {cells[0]} | {'; '.join(chose)} | "
                + " | ".join(cells[1:])
                + f" | {_against_cma(rows, device, budget)} |"
            )
    if checks:
        lines += [
            "",
            "What the plan's linear-response check sees (two random settings and the first "
            f"again, {CHECK_INPUTS} probe inputs each; chips "
            f"{', '.join(map(str, CHECK_CHIPS))}): the linear fit's residual and the readings' "
            "variance over the inputs, in units of the readout noise's variance (median over "
            "the two settings; range over the chips), on how many chips a linear fit explains "
            "the readings down to their noise, and on how many the plan takes the layered "
            f"response with `weak-check refusal` (on readings at least `WEAK_CHECK` = "
            f"{WEAK_CHECK:g} times above their noise; the default takes it wherever the fit "
            "is linear within the noise).",
            "",
            "| device | residual / noise | readings' variance / noise | linear within the noise "
            "| above WEAK_CHECK too |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for device in DEVICES:
            mine = [r for r in checks if r["device"] == device]
            if not mine:
                continue
            res = [r["residual_noise"] for r in mine]
            spr = [r["spread_noise"] for r in mine]
            taken = sum(bool(r["holds"]) and r["spread_noise"] >= WEAK_CHECK for r in mine)
            lines.append(
                f"| {device} | {min(res):.2f}-{max(res):.2f} | {min(spr):.1f}-{max(spr):.1f} | "
                f"{sum(bool(r['holds']) for r in mine)} of {len(mine)} | "
                f"{taken} of {len(mine)} |"
            )
    return "\n".join(lines)


def _against_cma(rows: list[dict[str, Any]], device: str, budget: int) -> str:
    """blacksat's accuracy minus CMA's, seed by seed (each seed on its own chip), as ``mean ±
    standard error`` (:func:`blacksat.evaluation.paired_difference`); ``—`` without pairs."""
    from blacksat.evaluation import paired_difference

    acc = {
        m: {
            r["seed"]: r["accuracy"]
            for r in rows
            if (r["device"], r["method"], r["budget"]) == (device, m, budget)
        }
        for m in ("blacksat", "cma")
    }
    mean, se, n = paired_difference(acc["blacksat"], acc["cma"])
    if n == 0:
        return "—"
    return f"{mean:+.1f}" + ("" if math.isnan(se) else f" ± {se:.1f}")


def main(argv: list[str] | None = None) -> None:
    run_study(__doc__, "layered_heldout", run, section, argv)


if __name__ == "__main__":
    main()
