"""Which global design to calibrate a physics-free surrogate on: Sobol, Latin hypercube, uniform.

    python benchmarks/designs.py                # runs what is not on disk, writes its section
    python benchmarks/designs.py --report-only  # re-renders from the saved runs
    python benchmarks/designs.py --quick        # one run; prints only
    python benchmarks/designs.py --only design=sobol   # this process's share of the runs

Per run (seed = chip = 0, 1, 2): ``N`` settings from one design
(:func:`blacksat.surrogates.designs.sobol` / ``latin_hypercube`` / ``uniform``, seeded by the
run), each read with the probe inputs of ``benchmarks/physics_free.py``;
:class:`~blacksat.surrogates.LinearResponse` fitted with its defaults; offline SAT on it and
deployment on the chip exactly as in that study (its ``_deploy``). Reported: the largest
correlation between two controls across the design's settings (what a screening for "which
control drives which weight" has to see through), the fit R² at 50 fresh uniform settings and
the test accuracy on the chip (full test split).

Devices: the two where the surrogate's structure holds (``physics_free``): the analog crossbar
(320 controls) and one MRR weight bank (640 rings).

**Local designs** (:func:`~blacksat.surrogates.designs.local`, what ``refine`` and the trust
region collect around the iterate): ``N`` settings of each kind (``sobol``, ``latin_hypercube``,
``gaussian``) within ``LOCAL_RADIUS`` of each control's span of the box's centre, read and
fitted the same way; reported: the largest correlation between two controls and the fit R² at 50
fresh settings drawn uniformly from the same cube (the region the design is meant to teach).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import physics_free as pf
from _study import Study, summary
from _study import main as run_study

from blacksat.surrogates import LinearResponse, designs

SEEDS = (0, 1, 2)
CONFIGS = ("crossbar", "mrr-bank")
DESIGNS = ("sobol", "latin_hypercube", "uniform")
BUDGETS = (100, 500)
#: local designs: kinds, sizes (``refine``'s default is 32) and half-width (share of the span)
LOCAL_KINDS = ("sobol", "latin_hypercube", "gaussian")
LOCAL_SIZES = (32, 100)
LOCAL_RADIUS = 0.1
#: fresh settings the local fits are scored on
FRESH = 50


def max_correlation(thetas: np.ndarray) -> float:
    """The largest ``|corr|`` between two controls over the settings ``thetas (N, d)``."""
    c = np.corrcoef(thetas.T)
    np.fill_diagonal(c, 0.0)
    return float(np.nanmax(np.abs(c)))


def design_run(config: str, design: str, budget: int, seed: int) -> dict[str, Any]:
    sc = pf.scenario(config)
    chip = sc.build_chip(seed)
    task = sc.build_task(chip, seed).to(torch.float64)
    n_in = int(np.prod(chip.input_shape))
    x = pf._inputs(chip, task, pf.n_inputs(n_in), seed)
    maker = getattr(designs, design)
    thetas = maker(chip.space, budget, seed=np.random.default_rng([seed, budget, 7]))
    sur = LinearResponse(seed=seed).fit([(thetas, x, pf._read(chip, thetas, x))])
    return {
        **pf._deploy(sc, chip, task, sur, x, seed, seed),
        "max_corr": max_correlation(thetas),
        "locality_r2": next(
            (c.r2 for c in sur.checks_ if c.assumption == "locality + tuning curves"), None
        ),
    }


def local_run(config: str, kind: str, n: int, seed: int) -> dict[str, Any]:
    """A local design of ``n`` settings of ``kind`` around the box's centre: its largest pair
    correlation and the fit R² at fresh uniform settings of the same cube."""
    sc = pf.scenario(config)
    chip = sc.build_chip(seed)
    task = sc.build_task(chip, seed).to(torch.float64)
    space = chip.space
    x = pf._inputs(chip, task, pf.n_inputs(int(np.prod(chip.input_shape))), seed)
    radius = LOCAL_RADIUS * space.span
    rng = np.random.default_rng([seed, n, 17])
    thetas = designs.local(space, space.center, radius, n, seed=rng, kind=kind)  # type: ignore[arg-type]
    sur = LinearResponse(seed=seed).fit([(thetas, x, pf._read(chip, thetas, x))])
    unit = np.random.default_rng([seed, n, 99]).random((FRESH, space.dim))
    fresh = np.asarray(space.project(space.center + radius * (2.0 * unit - 1.0)))
    return {
        "max_corr": max_correlation(thetas),
        "fit_r2": sur.score([(fresh, x, pf._read(chip, fresh, x))])["r2"],
        "held_out_r2": sur.report_.held_out_r2 if sur.report_ is not None else None,
    }


def run(study: Study, quick: bool) -> None:
    for config in CONFIGS:
        for design in DESIGNS:
            if study.skips(design=design):
                continue
            for budget in (100,) if quick else BUDGETS:
                for seed in (0,) if quick else SEEDS:
                    r = study.run(
                        lambda c=config, d=design, b=budget, s=seed: design_run(c, d, b, s),
                        config=config, design=design, budget=budget, seed=seed,
                    )  # fmt: skip
                    print(f"{config} {design} N={budget} seed {seed}: {r['accuracy']:.1f} % "
                          f"(fit R^2 {r['fit_r2']:.3f}, max corr {r['max_corr']:.2f})",
                          flush=True)  # fmt: skip
        if quick:
            break
    for config in CONFIGS:
        for kind in LOCAL_KINDS:
            if study.skips(design=f"local {kind}"):
                continue
            for n in (32,) if quick else LOCAL_SIZES:
                for seed in (0,) if quick else SEEDS:
                    r = study.run(
                        lambda c=config, k=kind, n=n, s=seed: local_run(c, k, n, s),
                        config=config, design=f"local {kind}", budget=n, seed=seed,
                    )  # fmt: skip
                    print(f"{config} local {kind} N={n} seed {seed}: fit R^2 {r['fit_r2']:.3f} "
                          f"(max corr {r['max_corr']:.2f})", flush=True)  # fmt: skip
        if quick:
            return


def _cell(rows: list[dict[str, Any]], key: str, digits: int = 1) -> str:
    m, s, n = summary([r[key] for r in rows])
    return "-" if n == 0 else f"{m:.{digits}f} ± {s:.{digits}f}"


def section(study: Study) -> str:
    rows = study.rows()

    def pick(config: str, design: str, n: int) -> list[dict[str, Any]]:
        return [r for r in rows if (r["config"], r["design"], r["budget"]) == (config, design, n)]

    lines = [
        "## Designs for a physics-free surrogate: Sobol, Latin hypercube, uniform",
        "",
        study.header(
            "python benchmarks/designs.py",
            "Set-up in the script's docstring: N settings of one global design, `LinearResponse()` "
            "with its defaults, offline SAT on it and deployment as in the physics-free study. "
            "Mean ± sample std over seed = chip = 0, 1, 2; *max corr.*: the largest correlation "
            "between two controls across the design's settings; *fit R²*: readings at 50 fresh "
            "settings; accuracy on the chip, full test split.",
        ),
        "",
        "| device | N | design | max corr. | locality check R² | fit R² | on the chip (%) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for config in CONFIGS:
        for budget in BUDGETS:
            for design in DESIGNS:
                rs = pick(config, design, budget)
                if rs:
                    lines.append(
                        f"| {config} | {budget} | {design} | {_cell(rs, 'max_corr', 2)} | "
                        f"{_cell(rs, 'locality_r2', 3)} | {_cell(rs, 'fit_r2', 3)} | "
                        f"{_cell(rs, 'accuracy')} |"
                    )
    lines += [
        "",
        f"Local designs (`designs.local`): N settings within {LOCAL_RADIUS:.0%} of each "
        f"control's span of the box's centre; fit R² at {FRESH} fresh settings drawn uniformly "
        "from the same cube; mean ± sample std over seed = chip = 0, 1, 2.",
        "",
        "| device | N | local design | max corr. | fit R² |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for config in CONFIGS:
        for n in LOCAL_SIZES:
            for kind in LOCAL_KINDS:
                rs = pick(config, f"local {kind}", n)
                if rs:
                    lines.append(
                        f"| {config} | {n} | {kind} | {_cell(rs, 'max_corr', 2)} | "
                        f"{_cell(rs, 'fit_r2', 3)} |"
                    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    run_study(__doc__, "designs", run, section, argv)


if __name__ == "__main__":
    main()
