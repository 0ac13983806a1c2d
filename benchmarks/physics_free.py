"""Physics-free surrogates: from a budget of reconfigurations to offline SAT to the device.

    python benchmarks/physics_free.py                # runs what is not on disk, writes its section
    python benchmarks/physics_free.py --report-only  # re-renders from the saved runs
    python benchmarks/physics_free.py --quick        # one run, tiny budgets; prints only
    python benchmarks/physics_free.py --only config=mzi,mrr   # this process's share of the runs

Per run (training seed ``s`` on chip ``c``; seeds 0, 1, 2 x chips 0, 1, 2): ``N`` settings drawn
uniformly over the device's control space (a space-filling design) are each read with ``B``
probe inputs (uniform over the device's declared input range, else over each feature's range
in the task's encoded training inputs; ``B`` = 2 x the coefficients of an intensity response
+ 4 for devices of at most 32 inputs, of a linear response beyond, at least 64).
:class:`~blacksat.surrogates.LinearResponse` is fitted on them with its defaults
(``response="auto"``: nothing about the device is declared); then offline SAT on the surrogate
(an L2 ball of radius 0.002 of the control box's diagonal, Adam at lr 0.01 of the median
control span, 1500 steps of batch 64,
the digital front end trained too, inside the range the data covers), and the result is
deployed unchanged on the chip: test accuracy on the full test split. The surrogate's fit
quality is measured on 50 fresh settings read with the same inputs (not charged).

Against, at the same chip and seed:

- ``white box``: the same offline SAT through the chip's exact model (the ceiling);
- ``grey box``: the same design fitted by :class:`~blacksat.surrogates.GreyBox` (the device's
  nominal physics with fitted error parameters, its defaults but 2,048 readings a step on the
  diffractive network, where the default's 16,384 give every step 8 times the work) and trained
  on the same way:
  what knowing the physics adds;
- ``query-only default``: ``blacksat``'s query-only default (``compare`` method ``blacksat``)
  with ``N`` reconfigurations on the chip;
- ``grey box, readout noise`` and ``white box, readout noise``: the same offline SAT through
  Gaussian readout noise (:class:`~blacksat.readout_noise.ReadoutNoise`): for the grey box of
  the noise measured on the chip with one more reconfiguration (the probe inputs read 4 times
  in one query), for the white box the chip's own (``noisy_model()``; a crossbar's programming
  noise too). Noise-free training can settle where the class readings differ by less than the
  detector's noise.

Devices: ``crossbar`` (the default analog array, 16 -> 10, 320 controls, a write per query),
``mrr-bank`` (one MRR weight bank 64 -> 10, 640 rings), and, as checks of the assumptions, the
default ``mrr`` network (64-32-10: two banks with an O/E/O stage between them), the 16-mode
``mzi`` at s = 0.05 (intensity detection, global interference) and the 16 x 16 ``diffractive``
network (image inputs): on these the surrogate's report says which assumption the data
contradicts, and the rows show what training on it anyway gives.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import Study, summary
from _study import main as run_study

from blacksat.estimators import Autograd
from blacksat.evaluation import accuracy
from blacksat.product.compare import Scenario, run_one
from blacksat.readout_noise import ReadoutNoise, measure_readout_noise
from blacksat.sat import sat
from blacksat.surrogate_start import probe_inputs
from blacksat.surrogates import GreyBox, LinearResponse
from blacksat.train_config import TrainConfig
from blacksat.trainer import Trainer

SEEDS = (0, 1, 2)
CHIPS = (0, 1, 2)
BUDGETS = (100, 500, 2000)
CHECK_BUDGET = 500
#: configuration -> (device, device arguments, whether every seed x chip pair runs)
CONFIGS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "crossbar": ("crossbar", {}, True),
    "mrr-bank": ("mrr", {"layer_sizes": (64, 10)}, True),
    "mrr": ("mrr", {}, True),
    "mzi": ("mzi", {"n_modes": 16, "s_bs": 0.05, "s_ps": 0.05}, True),
    "diffractive": ("diffractive", {"n": 16}, False),
}
#: configurations without a grey-box run, and why
NO_GREY_BOX: dict[str, str] = {}
#: grey-box arguments other than its defaults, and why: on the diffractive network the default
#: (16,384 readings a step, each a pair of FFT propagations) gives every step 8 times the work
#: of 2,048 (2-6 min a fit). Chosen for time alone: on tuning seed and chip 100 at N = 500,
#: batches of 512 and 2,048 fitted the same (held-out R^2 -0.02) and ended at 14 % on the chip
GREY_BOX_KWARGS: dict[str, dict[str, Any]] = {"diffractive": {"batch_samples": 2048}}
#: (seed, chip) pairs of the devices where the structure does not hold (the assumption checks)
CHECK_RUNS = ((0, 0), (1, 1), (2, 2))


#: how the section names each configuration
LONG_NAMES = {
    "crossbar": "the crossbar",
    "mrr-bank": "the MRR bank",
    "mrr": "the MRR network",
    "mzi": "the MZI",
    "diffractive": "the diffractive network",
}


def _names(every_pair: bool) -> str:
    """The configurations that run every seed x chip pair (or only the check pairs), in words."""
    names = [LONG_NAMES[c] for c, (_, _, every) in CONFIGS.items() if every == every_pair]
    return ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1]


def pairs_of(config: str) -> list[tuple[int, int]]:
    """The (seed, chip) runs of a configuration: 3 x 3, or the 3 check pairs."""
    return [(s, c) for s in SEEDS for c in CHIPS] if CONFIGS[config][2] else list(CHECK_RUNS)


#: the offline SAT recipe, frozen for every device and method: an L2 ball of RHO_REL x the
#: control box's diagonal, Adam at LR_REL x the median control span, STEPS steps. Chosen on
#: tuning seed and chip 100 of all five configurations from (RHO_REL, STEPS) in {0.02, 0.005,
#: 0.002} x {600, 1500} by the white box's accuracy: 0.02 (the first recipe) cut the white box
#: to 17 % on the MZI, 66 % on the MRR network and 45 % on the MRR bank (0.002: 49 / 94 / 92 %)
RHO_REL = 0.002
LR_REL = 0.01
STEPS = 1500
FRESH = 50


def scenario(config: str) -> Scenario:
    device, kwargs, _ = CONFIGS[config]
    return Scenario(device=device, device_kwargs=kwargs)


def _inputs(chip: Any, task: Any, b: int, seed: int) -> np.ndarray:
    """``b`` probe inputs ``(b, *input_shape)``: uniform over the device's declared
    ``input_range``, else over each feature's range in the task's encoded training inputs (what
    the device will be driven with; a lab chooses its probe inputs)."""
    return probe_inputs(task, chip, b, np.random.default_rng([seed, 3]))


def _read(chip: Any, thetas: np.ndarray, x: np.ndarray) -> np.ndarray:
    chunks = [chip.query_many(thetas[i : i + 64], x) for i in range(0, len(thetas), 64)]
    return np.concatenate(chunks)


def n_inputs(n_in: int) -> int:
    """Inputs per setting: twice the coefficients of an intensity response where that is
    affordable (``n_in <= 32``), else of a linear one, + 4; at least 64."""
    p = n_in * (n_in + 1) // 2 + n_in + 1 if n_in <= 32 else n_in + 1
    return max(64, 2 * p + 4)


def _offline_sat(task: Any, model: Any, space: Any, start: np.ndarray, seed: int) -> np.ndarray:
    rho = RHO_REL * float(np.linalg.norm(space.upper - space.lower))
    lr = LR_REL * float(np.median(space.upper - space.lower))
    cfg = TrainConfig(lr=lr, max_steps=STEPS, epochs=None, batch_size=64, seed=seed,
                      progress=False)  # fmt: skip
    est = sat(Autograd(model, task, space=space), rho=rho)
    return Trainer(task, est, space, cfg).fit(np.asarray(space.project(start))).theta


def _design(config: str, budget: int, seed: int, chip_seed: int) -> tuple[Any, ...]:
    """The chip, task, design settings, probe inputs and readings of one run."""
    sc = scenario(config)
    chip = sc.build_chip(chip_seed)
    task = sc.build_task(chip, seed).to(torch.float64)
    n_in = int(np.prod(chip.input_shape))
    x = _inputs(chip, task, n_inputs(n_in), seed)
    rng = np.random.default_rng([seed, chip_seed, budget])
    thetas = chip.space.sample(rng, budget)
    t0 = time.perf_counter()
    y = _read(chip, thetas, x)
    return sc, chip, task, thetas, x, y, time.perf_counter() - t0


def _deploy(
    sc: Any, chip: Any, task: Any, sur: Any, x: Any, seed: int, chip_seed: int, train_on: Any = None
) -> dict:
    """Fit quality at fresh settings, offline SAT inside the covered range (on ``train_on``,
    default the surrogate itself; e.g. the surrogate through readout noise), the chip's
    accuracy."""
    model = sur if train_on is None else train_on
    fresh = chip.space.sample(np.random.default_rng([seed, chip_seed, 99]), FRESH)
    fit_r2 = sur.score([(fresh, x, _read(chip, fresh, x))])["r2"]
    region = sur.coverage_.region(chip.space)
    theta = _offline_sat(task, model, region, sc.initial(chip, seed), seed)
    chip.reset()
    return {
        "accuracy": 100 * accuracy(task, chip, theta),
        "surrogate_accuracy": 100 * accuracy(task, model, theta),
        "fit_r2": fit_r2,
        "held_out_r2": sur.report_.held_out_r2,
        "inputs": len(x),
    }


def surrogate_run(config: str, budget: int, seed: int, chip_seed: int) -> dict[str, Any]:
    sc, chip, task, thetas, x, y, read_s = _design(config, budget, seed, chip_seed)
    t0 = time.perf_counter()
    sur = LinearResponse(seed=seed).fit([(thetas, x, y)])
    fit_s = time.perf_counter() - t0
    return {
        **_deploy(sc, chip, task, sur, x, seed, chip_seed),
        "response": sur.response_,
        "checks": [{"assumption": c.assumption, "r2": c.r2, "holds": c.holds} for c in sur.checks_],
        "read_s": read_s,
        "fit_s": fit_s,
    }


def greybox_run(
    config: str, budget: int, seed: int, chip_seed: int, noisy: bool = False
) -> dict[str, Any]:
    """The same design fitted by a grey box (the device's nominal physics with fitted error
    parameters, its defaults): what knowing the physics adds. ``noisy``: its offline SAT runs
    through the readout noise measured on the chip (one more reconfiguration: the probe inputs
    read 4 times in one query at the design's first setting,
    :func:`~blacksat.readout_noise.measure_readout_noise`)."""
    sc, chip, task, thetas, x, y, read_s = _design(config, budget, seed, chip_seed)
    std = measure_readout_noise(chip, x, thetas[0]) if noisy else 0.0
    t0 = time.perf_counter()
    kwargs = GREY_BOX_KWARGS.get(config, {})
    grey = GreyBox(chip.nominal_model(dtype=torch.float64), seed=seed, **kwargs)
    grey.fit([(thetas, x, y)])
    fit_s = time.perf_counter() - t0
    row = {"read_s": read_s, "fit_s": fit_s}
    if not noisy:
        return {**_deploy(sc, chip, task, grey, x, seed, chip_seed), **row}
    model = ReadoutNoise(grey, std, seed=seed)
    return {**_deploy(sc, chip, task, grey, x, seed, chip_seed, train_on=model), **row,
            "readout_noise": std, "noise_reconfigurations": 1}  # fmt: skip


def white_box_run(config: str, seed: int, chip_seed: int, noisy: bool = False) -> dict[str, Any]:
    """Offline SAT through the chip's exact model, or (``noisy``) through the exact model with
    the chip's per-query randomness (``noisy_model``: its readout noise, a crossbar's
    programming noise)."""
    sc = scenario(config)
    chip = sc.build_chip(chip_seed)
    task = sc.build_task(chip, seed).to(torch.float64)
    model = (
        chip.noisy_model(dtype=torch.float64, seed=seed)
        if noisy
        else chip.exact_model(dtype=torch.float64)
    )
    theta = _offline_sat(task, model, chip.space, sc.initial(chip, seed), seed)
    chip.reset()
    return {"accuracy": 100 * accuracy(task, chip, theta)}


def query_only_run(config: str, budget: int, seed: int, chip_seed: int) -> dict[str, Any]:
    row = run_one("blacksat", scenario(config), seed, chip_seed, budget)
    return {"accuracy": 100 * row["test_accuracy"], "reconfigurations": row["reconfigurations"]}


def run(study: Study, quick: bool) -> None:
    for config in CONFIGS:
        if quick and config not in ("crossbar", "mzi"):
            continue
        if study.skips(config=config):  # --only config=mzi,mrr: a second process shares
            continue
        budgets, pairs = ((100,), [(0, 0)]) if quick else (BUDGETS, pairs_of(config))
        for seed, chip in pairs:
            if study.skips(seed=seed, chip=chip):  # --only seed=0,1 --only chip=2: shares
                continue
            study.run(
                lambda c=config, s=seed, ch=chip: white_box_run(c, s, ch),
                config=config, method="white box", budget=0, seed=seed, chip=chip,
            )  # fmt: skip
            study.run(
                lambda c=config, s=seed, ch=chip: white_box_run(c, s, ch, noisy=True),
                config=config, method="white box, readout noise", budget=0, seed=seed, chip=chip,
            )  # fmt: skip
            for budget in budgets:
                r = study.run(
                    lambda c=config, b=budget, s=seed, ch=chip: surrogate_run(c, b, s, ch),
                    config=config, method="linear_response", budget=budget, seed=seed, chip=chip,
                )  # fmt: skip
                print(f"{config} N={budget} seed {seed} chip {chip}: {r['accuracy']:.1f} % "
                      f"(fit R^2 {r['fit_r2']:.3f}, {r['response']})", flush=True)  # fmt: skip
                if config not in NO_GREY_BOX:
                    study.run(
                        lambda c=config, b=budget, s=seed, ch=chip: greybox_run(c, b, s, ch),
                        config=config, method="grey box", budget=budget, seed=seed, chip=chip,
                    )  # fmt: skip
                    study.run(
                        lambda c=config, b=budget, s=seed, ch=chip: greybox_run(c, b, s, ch, True),
                        config=config, method="grey box, readout noise", budget=budget,
                        seed=seed, chip=chip,
                    )  # fmt: skip
                study.run(
                    lambda c=config, b=budget, s=seed, ch=chip: query_only_run(c, b, s, ch),
                    config=config, method="query-only default", budget=budget, seed=seed,
                    chip=chip,
                )  # fmt: skip


def _cell(rows: list[dict[str, Any]], key: str = "accuracy", digits: int = 1) -> str:
    m, s, n = summary([r[key] for r in rows])
    if n == 0:
        return "-"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if n > 1 else f"{m:.{digits}f}"


def noise_table(pick: Any) -> list[str]:
    """Offline SAT through the readout noise against without it (the grey box and the white
    box): the table's lines (none before such runs exist)."""
    if not pick(method="grey box, readout noise") and not pick(method="white box, readout noise"):
        return []
    lines = [
        "",
        "Offline SAT through the readout noise (`blacksat.ReadoutNoise`): the grey box of the "
        "same design, trained through Gaussian noise of the readout noise measured on the chip "
        "(one more reconfiguration: the probe inputs read 4 times in one query, "
        "`blacksat.readout_noise.measure_readout_noise`); the white box through the chip's "
        "`noisy_model()` (its readout noise; on the crossbar also its programming noise). "
        "Test accuracy on the chip (%), the same runs and pairs as above.",
        "",
        "| device | N | grey box | grey box, readout noise | readout noise measured (output "
        "units) | white box | white box, readout noise |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for config in CONFIGS:
        white = pick(config=config, method="white box")
        white_n = pick(config=config, method="white box, readout noise")
        for b in BUDGETS:
            grey = pick(config=config, method="grey box", budget=b)
            grey_n = pick(config=config, method="grey box, readout noise", budget=b)
            if not grey_n:
                continue
            lines.append(
                f"| {config} | {b} | {_cell(grey)} | {_cell(grey_n)} | "
                f"{_cell(grey_n, 'readout_noise', 4)} | {_cell(white)} | {_cell(white_n)} |"
            )
    return lines


def section(study: Study) -> str:
    rows = study.rows()
    pick = lambda **kw: [r for r in rows if all(r.get(k) == v for k, v in kw.items())]  # noqa: E731
    lines = [
        "## Physics-free surrogates: linear response, local controls, tuning curves",
        "",
        study.header(
            "python benchmarks/physics_free.py",
            "Set-up in the script's docstring: a space-filling design of N reconfigurations, "
            "each read with B inputs; `LinearResponse()` with its defaults (nothing declared); "
            "offline SAT on it inside the range its data covers; deployed on the chip. Test "
            "accuracy (%, full test split), mean ± sample std over the runs: 3 seeds x 3 "
            f"chips (9 runs) on {_names(True)}, the 3 check pairs (seed = chip = 0, 1, 2) on "
            f"{_names(False)}; *fit R²*: readings at 50 fresh settings.",
        ),
        "",
        "| device | runs | N (reconfigurations) | inputs per setting | physics-free surrogate "
        "| fit R² | grey box (nominal physics + fitted errors) | fit R² | query-only default "
        "| white box |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for config in CONFIGS:
        white = pick(config=config, method="white box")
        for b in BUDGETS:
            sur = pick(config=config, method="linear_response", budget=b)
            zo = pick(config=config, method="query-only default", budget=b)
            grey = pick(config=config, method="grey box", budget=b)
            if not sur:
                continue
            lines.append(
                f"| {config} | {len(sur)} | {b} | {sur[0]['inputs']} | {_cell(sur)} | "
                f"{_cell(sur, 'fit_r2', 3)} | {_cell(grey)} | {_cell(grey, 'fit_r2', 3)} | "
                f"{_cell(zo)} | {_cell(white)} |"
            )
    lines += ["", *[f"No grey box on the {c}: {why}." for c, why in NO_GREY_BOX.items()]]
    lines += [
        f"Grey box on the {c}: "
        + ", ".join(f"`{k}={v}`" for k, v in kw.items())
        + " (the default, 16,384 readings a step, gives every step 8 times the work; these fits "
        "took 2-6 min; chosen for time, not accuracy)."
        for c, kw in GREY_BOX_KWARGS.items()
    ]
    lines += noise_table(pick)
    lines += [
        "",
        "Assumption checks (the surrogate's report; the runs of the table above, "
        f"N = {CHECK_BUDGET}): R² of each check on data it was not fitted on (a check holds at "
        "0.95 for the response, 0.9 for locality + tuning curves), the response chosen, the fit "
        "R² at fresh settings and the accuracy of offline SAT on the surrogate deployed on the "
        "chip. *Additive tuning curves*: the share of the response coefficients' variance that "
        "every control's own tuning curve explains, all of them summed (first-order effects, "
        "chance removed): the most any surrogate built from per-control tuning curves can "
        "explain, with however many controls per coefficient.",
        "",
        "| device | linear response | intensity response | locality + tuning curves "
        "| additive tuning curves (ceiling) | chosen | fit R² | on the chip |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for config in CONFIGS:
        sur = pick(config=config, method="linear_response", budget=CHECK_BUDGET)
        if not sur:
            continue

        def check(name: str, rs: list[dict[str, Any]] = sur) -> str:
            vals = [c["r2"] for r in rs for c in r["checks"] if c["assumption"] == name]
            if not vals:
                return "-"
            m, _, n = summary(vals)
            held = sum(c["holds"] for r in rs for c in r["checks"] if c["assumption"] == name)
            return f"{m:.3f} ({held}/{n} hold)"

        chosen = sorted({r["response"] for r in sur})
        lines.append(
            f"| {config} | {check('linear response')} | {check('intensity response')} | "
            f"{check('locality + tuning curves')} | {check('additive tuning curves')} | "
            f"{', '.join(chosen)} | "
            f"{_cell(sur, 'fit_r2', 3)} | {_cell(sur)} |"
        )
    fits = [r["fit_s"] for r in rows if r["method"] == "linear_response"]
    if fits:
        lines += ["", f"Fit time (closed form, one thread): median {np.median(fits):.1f} s, "
                  f"longest {max(fits):.1f} s. Per device (s, median over its runs; controls d):",
                  "", "| device | d | " + " | ".join(f"N = {b}" for b in BUDGETS) + " |",
                  "| --- | ---: | " + " | ".join("---:" for _ in BUDGETS) + " |"]  # fmt: skip
        for config in CONFIGS:
            per = [[r["fit_s"] for r in pick(config=config, method="linear_response", budget=b)]
                   for b in BUDGETS]  # fmt: skip
            if any(per):
                dim = scenario(config).build_chip(0).space.dim
                cells = " | ".join(f"{np.median(v):.1f}" if v else "-" for v in per)
                lines.append(f"| {config} | {dim} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    run_study(__doc__, "physics_free", run, section, argv)


if __name__ == "__main__":
    main()
