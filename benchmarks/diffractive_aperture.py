"""What sets a diffractive network's accuracy: its pixel count or its aperture (Fresnel number).

    python benchmarks/diffractive_aperture.py                # runs what is not on disk, writes
                                                             # its section of BENCHMARKS.md
    python benchmarks/diffractive_aperture.py --report-only  # re-renders from the saved runs
    python benchmarks/diffractive_aperture.py --quick        # one tiny run; prints only
    python benchmarks/diffractive_aperture.py --only geometry=128px@2um  # this process's share

The misalignment study at 64 and 128 SLM pixels first kept the default 8 um pitch, and plain
backprop lost 11 and 23 points of clean accuracy against 32 pixels. This script separates the
pixel count from the geometry: the aperture ``n * pitch`` (with the wavelength, 532 nm, and the
spacing, 2 mm: the Fresnel number ``(aperture / 2)^2 / (wavelength z)``) and the spread, how far
one pixel's light reaches at the next plane as a share of the aperture, ``wavelength z / (n
pitch^2)`` (:attr:`DiffractiveNetwork.fresnel_numbers`, :attr:`DiffractiveNetwork.spreads`).
Rows are sorted by the spread.

Per run: ``DiffractiveNetwork(n, pitch)`` of reference seed ``s`` (0, 1, 2), the default task on
digits (data split of ``s``), trained offline on its nominal model with the misalignment
study's Adam settings (``benchmarks/diffractive_misalignment.py``: lr 0.05, batches of 64, 600
steps of plain backprop from the initial controls, digital layers trained alongside; that study
splits the 600 steps into a 200-step warm start and 400 steps with a fresh Adam state); reported:
test accuracy (full test split) and training accuracy on the nominal model, no misalignment.
Geometries: the paper's aperture (256 um: 128 px at 2 um) at 32, 64 and 128 pixels, the same
pixel counts at 8 um, and 32 pixels at 16 um (the aperture, and so the Fresnel number, of
64 px at 8 um) and at 4 um (half the default aperture, a quarter of its Fresnel number).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import Study, summary
from _study import main as run_study

from blacksat import TrainConfig, Trainer
from blacksat.data import load_digits
from blacksat.devices import DiffractiveNetwork
from blacksat.devices.tasks import default_task
from blacksat.estimators import Autograd

SEEDS = (0, 1, 2)
#: (pixels per side, pitch in um): the paper's aperture at three pixel counts, the same counts at
#: 8 um, and 32 px at half and twice the default pitch
GEOMETRIES = ((32, 8.0), (64, 4.0), (128, 2.0), (64, 8.0), (128, 8.0), (32, 4.0), (32, 16.0))
#: the misalignment study's Adam settings
STEPS, LR, BATCH = 600, 0.05, 64


def spread(n: int, pitch_um: float) -> float:
    """The device's own :attr:`DiffractiveNetwork.spreads` at a geometry (the first gap; every
    gap here is the default 2 mm): how far one pixel's light reaches at the next plane, as a
    share of the aperture."""
    return DiffractiveNetwork(n=n, pitch=pitch_um * 1e-6, noise=0.0, drift=0.0).spreads[0]


def label(n: int, pitch_um: float) -> str:
    return f"{n}px@{pitch_um:g}um"


def one_run(n: int, pitch_um: float, seed: int, steps: int) -> dict[str, Any]:
    chip = DiffractiveNetwork(n=n, pitch=pitch_um * 1e-6, seed=seed)
    task = default_task(chip, load_digits(seed=seed), seed=seed)
    model = chip.nominal_model(dtype=task.dtype)
    cfg = TrainConfig(
        lr=LR, max_steps=steps, epochs=None, batch_size=BATCH, seed=seed, progress=False
    )
    est = Autograd(model, task, space=chip.space)
    theta = Trainer(task, est, chip.space, cfg).fit(chip.initial_controls(seed)).theta
    return {
        "accuracy": 100 * task.accuracy(model, theta),
        "train_accuracy": 100 * task.accuracy(model, theta, split="train"),
        "aperture_um": chip.aperture * 1e6,
        "fresnel": chip.fresnel_numbers[0],
    }


def run(study: Study, quick: bool) -> None:
    for n, pitch in GEOMETRIES[:1] if quick else GEOMETRIES:
        if study.skips(geometry=label(n, pitch)):
            continue
        for seed in (0,) if quick else SEEDS:
            r = study.run(
                lambda n=n, p=pitch, s=seed: one_run(n, p, s, 20 if quick else STEPS),
                geometry=label(n, pitch), n=n, pitch_um=pitch, seed=seed,
            )  # fmt: skip
            acc, train, fresnel = r["accuracy"], r["train_accuracy"], r["fresnel"]
            print(f"{label(n, pitch)} seed {seed}: test {acc:.1f} %, train {train:.1f} % "
                  f"(Fresnel {fresnel:.1f})", flush=True)  # fmt: skip


def section(study: Study) -> str:
    rows = study.rows()
    lines = [
        "## Diffractive network: pixels or aperture (Fresnel number)",
        "",
        study.header(
            "python benchmarks/diffractive_aperture.py",
            "Set-up in the script's docstring: `DiffractiveNetwork(n, pitch)`, 2 masks, 532 nm, "
            f"2 mm spacing; plain backprop on the nominal model, {STEPS} Adam steps at lr {LR:g}, "
            f"batches of {BATCH} (the misalignment study's settings); accuracy on the nominal "
            "model with no misalignment (%), mean ± sample std over the runs (seeds 0, 1, 2; "
            "seed s on reference device s); train: wall seconds of a run, mean.",
        ),
        "",
        "| pixels | pitch (um) | aperture (um) | Fresnel number | spread (share of the "
        "aperture) | runs | test accuracy | training accuracy | train (s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, pitch in sorted(GEOMETRIES, key=lambda g: spread(*g)):
        rs = [r for r in rows if r["geometry"] == label(n, pitch)]
        if not rs:
            continue
        cells = []
        for key in ("accuracy", "train_accuracy"):
            m, s, k = summary([r[key] for r in rs])
            cells.append(f"{m:.1f} ± {s:.1f}" if k > 1 else f"{m:.1f} (one run)")
        wall = summary([r["wall_s"] for r in rs])[0]
        lines.append(
            f"| {n} | {pitch:g} | {rs[0]['aperture_um']:.0f} | {rs[0]['fresnel']:.1f} | "
            f"{spread(n, pitch):.2f} | {len(rs)} | {cells[0]} | {cells[1]} | {wall:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    run_study(__doc__, "diffractive_aperture", run, section, argv)


if __name__ == "__main__":
    main()
