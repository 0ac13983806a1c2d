"""The README's surrogate workflow, with its safeguards: a surrogate from one run's query log.

    python benchmarks/training_log.py                # runs what is not on disk, writes its section
    python benchmarks/training_log.py --report-only  # re-renders from the saved runs
    python benchmarks/training_log.py --quick        # one chip, few steps; prints only

Per chip (device seeds 1, 2, 3; task seed 0), exactly the README's commands through the library:

1. ``blacksat train --config examples/configs/online_sat_mzi.toml`` (online SAT on the 16-mode
   MZI at s = 0.15: the chip forward, the nominal model backward, 300 steps), its queries logged;
2. ``blacksat calibrate --kind residual`` on that log (the default fit);
3. ``blacksat train`` with ``[estimator] name = "autograd"`` and ``model`` = the surrogate file
   (the same SAT, lr, steps and batch as step 1), once with the default ``region = "covered"``
   (training stays inside the range the log covers) and once with ``region = "all"`` (the
   behaviour before the safeguard);
4. instead of 3, :func:`~blacksat.surrogates.train_trust_region` from the online run's result
   (its controls and digital layers) on the same surrogate: SAT on the surrogate inside a box
   of 2 % of each control's range (growing on agreement), each proposed move checked on the
   chip (the loss before and after on the same 256 training inputs) and kept only when the
   chip confirms it, a local design of 8 settings refitted each round; 6 rounds (at most
   1 + 6 x 9 = 55 reconfigurations). Run twice from the same start: with the check inputs set
   apart from the data the surrogate trains on (``check="held_out"``, the default) and drawn
   from it (``check="train"``).

Reported: the chip accuracy (full test split) of the run the log came from, the surrogate's
held-out R² and the spread of the log's settings (:meth:`~blacksat.surrogates.Coverage.spread`),
whether ``calibrate`` and ``train`` warned before training, and the chip accuracy after each
offline run.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import ROOT, Study, summary
from _study import main as run_study

from blacksat.estimators import Autograd
from blacksat.evaluation import accuracy
from blacksat.meter import MeteredDevice
from blacksat.perturbations import PerturbationModel
from blacksat.product.calibrate_cmd import calibrate_from_log, load_surrogate
from blacksat.product.config_io import load_toml
from blacksat.product.run import load_run, train
from blacksat.product.run_config import RunConfig
from blacksat.querydata import QueryData
from blacksat.querylog import QueryLog
from blacksat.sat import sat
from blacksat.surrogates import Calibration, train_trust_region
from blacksat.train_config import TrainConfig

CONFIG = ROOT / "examples" / "configs" / "online_sat_mzi.toml"
CHIPS = (1, 2, 3)
#: where the trust region's device checks draw their 256 inputs (``train_trust_region(check=)``)
CHECKS = ("held_out", "train")
CHECK_LABEL = {
    "held_out": "256 training inputs set apart from its training data (the default)",
    "train": "256 of the inputs it trains on",
}


def _config(chip: int, quick: bool, **estimator: Any) -> RunConfig:
    data = load_toml(CONFIG)
    data["device"]["seed"] = chip
    if estimator:
        data["estimator"] = estimator
    if quick:
        data["train"]["max_steps"] = 20
    return RunConfig.from_mapping(data)


def one_chip(chip: int, quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        online = train(_config(chip, quick), base / "online", progress=False)
        cal = calibrate_from_log(
            base / "online" / "queries.sqlite",
            "mzi",
            {**load_toml(CONFIG)["device"]["kwargs"], "seed": chip},
            "residual",
            base / "residual.pt",
            steps=20 if quick else None,
            identity=f"mzi-{chip}",
        )
        out: dict[str, Any] = {
            "online": 100 * online["accuracy"]["chip"],
            "log_settings": cal["settings"],
            "held_out_r2": cal["fit"]["held_out_r2"],
            "spread": cal["coverage"]["spread"],
            "calibrate_warned": bool(cal["warnings"]),
        }
        for check in CHECKS:
            out.update(trust_region(base, quick, check))
        for region in ("covered", "all"):
            cfg = _config(chip, quick, name="autograd", model=str(base / "residual.pt"),
                          region=region)  # fmt: skip
            res = train(cfg, base / f"offline-{region}", progress=False)
            out[f"offline_{region}"] = 100 * res["accuracy"]["chip"]
            out[f"offline_{region}_on_surrogate"] = 100 * res["accuracy"]["model"]
            out[f"train_warned_{region}"] = bool(res["warnings"])
    return out


def trust_region(base: Path, quick: bool, check: str) -> dict[str, Any]:
    """Step 4: device-checked surrogate descent from the online run's result, its moves checked
    on ``check`` inputs (``"held_out"``: set apart from the surrogate's training data;
    ``"train"``: drawn from it)."""
    run = load_run(base / "online")
    surrogate, _ = load_surrogate(base / "residual.pt")
    with QueryLog(base / "online" / "queries.sqlite", readonly=True) as log:
        data: QueryData = log.data(device=run.config.log.device_id)
    meter = MeteredDevice(run.chip)
    x = data.groups[0][1]
    drift: PerturbationModel = run.chip.perturbation_models()["phase_drift"]
    cfg = TrainConfig(lr=0.02, max_steps=10 if quick else 60, epochs=None, batch_size=64,
                      seed=0, progress=False)  # fmt: skip
    result = train_trust_region(
        run.task,
        Calibration(surrogate, data, meter.ledger, "completed"),
        meter,
        x,
        run.theta,
        make_estimator=lambda m, t: sat(Autograd(m, t), perturbation=drift, mode="average"),
        config=cfg,
        rounds=2 if quick else 6,
        radius=0.02,
        n_local=8,
        check=check,
    )
    run.chip.reset()
    tag = f"trust_region_{check}"
    return {
        tag: 100 * accuracy(run.task, run.chip, result.theta),
        f"{tag}_reconfigurations": meter.ledger.reconfigurations,
        f"{tag}_accepted": sum(r["accepted"] for r in result.rounds),
        f"{tag}_rounds": len(result.rounds),
    }


def section(study: Study) -> str:
    rows = study.rows()

    def cell(key: str) -> str:
        m, s, n = summary([r[key] for r in rows])
        return f"{m:.1f} ± {s:.1f}" if n > 1 else (f"{m:.1f}" if n else "-")

    def count(key: str) -> str:
        return f"{sum(bool(r[key]) for r in rows)} of {len(rows)}"

    m2, s2, _ = summary([r["held_out_r2"] for r in rows])
    ms, ss, _ = summary([r["spread"] for r in rows])
    return "\n".join(
        [
            "## The README's surrogate workflow from one run's query log, with its safeguards",
            "",
            study.header(
                "python benchmarks/training_log.py",
                f"Set-up in the script's docstring: chips (device seeds) "
                f"{', '.join(str(r['chip']) for r in rows)}; mean ± sample std over them.",
            ),
            "",
            "| | chip accuracy (%) |",
            "| --- | ---: |",
            f"| online SAT, the run the log came from | {cell('online')} |",
            f'| offline SAT on its residual surrogate, `region = "covered"` (default) | '
            f"{cell('offline_covered')} |",
            f'| the same, `region = "all"` | {cell("offline_all")} |',
            *[
                f"| device-checked trust region from the online result, on the same surrogate, "
                f"moves checked on {CHECK_LABEL[c]} "
                f"({cell(f'trust_region_{c}_reconfigurations')} more reconfigurations; moves "
                f"kept: {sum(r[f'trust_region_{c}_accepted'] for r in rows)} of "
                f"{sum(r[f'trust_region_{c}_rounds'] for r in rows)}) | "
                f"{cell(f'trust_region_{c}')} |"
                for c in CHECKS
            ],
            "",
            f"The log: {cell('log_settings')} settings; their spread {ms:.3f} ± {ss:.3f} of a "
            f"space-filling design; the residual's held-out R² {m2:.3f} ± {s2:.3f}. "
            f"`calibrate` warned in {count('calibrate_warned')} runs; `train` warned before "
            f"training in {count('train_warned_covered')} (covered) and "
            f"{count('train_warned_all')} (all). Accuracy on the surrogate itself: "
            f"{cell('offline_covered_on_surrogate')} (covered), "
            f"{cell('offline_all_on_surrogate')} (all).",
        ]
    )


def run(study: Study, quick: bool) -> None:
    for chip in CHIPS[:1] if quick else CHIPS:
        r = study.run(lambda c=chip: one_chip(c, quick), chip=chip)
        print(f"chip {chip}: online {r['online']:.1f} %, covered {r['offline_covered']:.1f} %, "
              f"all {r['offline_all']:.1f} %", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    run_study(__doc__, "training_log", run, section, argv)


if __name__ == "__main__":
    main()
