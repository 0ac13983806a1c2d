"""How good are the layered response's gradients? Against the simulator's exact ones (tuning chips).

    python benchmarks/layered_gradient.py                 # run what is missing, write the section
    python benchmarks/layered_gradient.py --report-only   # re-render from the saved runs
    python benchmarks/layered_gradient.py --quick         # one chip, a short run; prints

A diagnosis, not a result: where the query-only default's layered response
(:class:`~blacksat.estimators.LayeredResponse`) stops improving on the MRR network, is it short
of data or is its model of the wrong form? The simulator knows the truth, so each estimate can be
set against the gradient of the training loss through the chip's exact (noise-free) model, on
the whole training split; the estimator never sees it.

- ``trajectory``: the default (``compare`` method ``blacksat``, 256 samples per reconfiguration,
  the scenario of ``benchmarks/query_efficiency.py``) at 5,000 reconfigurations; at every
  ``EVERY``-th step the estimate's cosine with the exact gradient, both norms, the loss the
  estimate reports, the exact loss and the fit's R².
- ``plateau``: at the last setting that run read, fresh estimators (no memory, a new model)
  fitted to ``PROBES`` antithetic probes (the derived 15, three and eight times that), three
  seeds each: if the cosine rose with the probes, the plateau would be the data's; if it does
  not, the model's form.

Tuning chips only (100 and 101); ``--only chip=...`` splits them between processes.
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

CONFIG = "mrr"
BUDGET = 5000
CHIPS = (100, 101)
#: a trajectory row every this many steps
EVERY = 10
#: probes of the fresh fits at the plateau (the derived number is 15 on the MRR network)
PROBES = (15, 45, 120)
SEEDS = (0, 1, 2)
#: step windows of the trajectory table
WINDOWS = ((1, 25), (26, 50), (51, 100), (101, 200), (201, 10**9))


def _exact_gradient(task: Any, chip: Any, theta: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The gradient ``(d,)`` and value of the training loss through the chip's exact model."""
    import torch.nn.functional as F

    x, y = task.data.split("train")
    with torch.no_grad():
        enc = task.encode(torch.as_tensor(x, dtype=task.dtype)).double().reshape(len(y), -1)
    th = theta.detach().double().clone().requires_grad_(True)
    logits = task.decode(chip.exact_model()(th, enc).to(task.dtype))
    loss = F.cross_entropy(logits, torch.as_tensor(y))
    (g,) = torch.autograd.grad(loss, th)
    return g.double(), float(loss.detach())


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-300))


def _run(chip_seed: int, budget: int, every: int) -> tuple[dict[str, Any], Any, Any, Any]:
    """The default's run with the trajectory recorded: ``(row, task, chip, last theta)``."""
    import query_efficiency as qe

    import blacksat.product.compare as cmp

    built: list[Any] = []
    sc = qe.scenario(CONFIG)
    build = sc.build_chip
    object.__setattr__(sc, "build_chip", lambda s: built.append(build(s)) or built[-1])
    traj: dict[str, list[float]] = {
        k: [] for k in ("step", "cos", "g", "est", "loss", "exact", "r2")
    }
    seen: list[torch.Tensor] = []

    class Recorder(cmp._Recorder):
        def __call__(self, theta: torch.Tensor, batch: Any, ctx: Any) -> Any:
            est = super().__call__(theta, batch, ctx)
            seen[:] = [theta.detach().clone()]
            n = len(self.rows)
            if (n - 1) % every == 0:
                g, exact = _exact_gradient(self.task, built[-1], theta)
                ge = torch.as_tensor(est.grad).double()
                for k, v in (("step", n), ("cos", _cos(g, ge)), ("g", float(g.norm())),
                             ("est", float(ge.norm())), ("loss", float(est.loss)),
                             ("exact", exact), ("r2", float(getattr(self.inner, "last_fit_r2",
                                                                     np.nan)))):  # fmt: skip
                    traj[k].append(v)
            return est

    original = cmp._Recorder
    cmp._Recorder = Recorder  # type: ignore[misc]
    try:
        out = cmp.run_one("blacksat", sc, chip_seed, chip_seed, budget)
    finally:
        cmp._Recorder = original  # type: ignore[misc]
    row = {"accuracy": 100 * out["test_accuracy"], "train_loss": out["train_loss"], **traj}
    return row, sc.build_task(built[-1], chip_seed), built[-1], seen[-1]


def plateau_fit(
    task: Any, chip: Any, theta: torch.Tensor, probes: int, seed: int
) -> dict[str, Any]:
    """A fresh layered response (no memory) with ``probes`` probes at ``theta``, on the whole
    training split: its gradient's cosine with the exact one and its fit's R²."""
    from blacksat.estimators import LayeredResponse
    from blacksat.objective import StepContext

    span = float(np.median(chip.space.span))
    est = LayeredResponse(
        chip, task, sigma=0.02 * span, probes=probes, inputs=256, memory=1, seed=seed
    )
    n = len(task.data.split("train")[1])
    e = est(theta, task.batch("train", np.arange(n)), StepContext(np.random.default_rng(seed)))
    g, _ = _exact_gradient(task, chip, theta)
    return {"cos": _cos(g, torch.as_tensor(e.grad).double()), "r2": float(est.last_fit_r2)}


def run(study: Study, quick: bool) -> None:
    chips, budget, every = ((CHIPS[0],), 400, 3) if quick else (CHIPS, BUDGET, EVERY)
    probes = (4, 8) if quick else PROBES
    for chip_seed in chips:
        if study.skips(chip=chip_seed):
            continue
        done = study.find(kind="trajectory", chip=chip_seed)
        needed = [
            (p, s) for p in probes for s in SEEDS
            if study.find(kind="plateau", chip=chip_seed, probes=p, seed=s) is None
        ]  # fmt: skip
        if done is not None and not needed:
            continue
        # the plateau fits start from the run's last setting, so the run goes again if they must
        t0 = time.perf_counter()
        row, task, chip, theta = _run(chip_seed, budget, every)
        if done is None:
            wall = time.perf_counter() - t0
            study.add({"kind": "trajectory", "chip": chip_seed, "budget": budget, **row,
                       "wall_s": wall})  # fmt: skip
        for p, s in needed:
            r = study.run(
                lambda p=p, s=s, t=task, c=chip, th=theta: plateau_fit(t, c, th, p, s),
                kind="plateau", chip=chip_seed, probes=p, seed=s,
            )  # fmt: skip
            print(f"chip {chip_seed} probes {p} seed {s}: cos {r['cos']:.3f}, R² {r['r2']:.3f}")


def section(study: Study) -> str:
    rows = study.rows()
    traj = [r for r in rows if r["kind"] == "trajectory"]
    plat = [r for r in rows if r["kind"] == "plateau"]
    lines = [
        "## The layered response's gradients against the exact ones (MRR network, tuning chips)",
        "",
        study.header(
            "python benchmarks/layered_gradient.py",
            "A diagnosis (the script's docstring): the query-only default on the MRR network "
            f"({BUDGET:,} reconfigurations, 256 samples each, chips "
            f"{', '.join(map(str, sorted({r['chip'] for r in traj})))}), each estimate set "
            "against the gradient of the training loss through the chip's exact model "
            "(noise-free; the estimator never sees it). Mean ± sample std over the recorded "
            f"steps of each window (every {EVERY}th step) and the chips.",
        ),
        "",
        "| steps | cosine with the exact gradient | exact gradient norm | loss (estimate) | "
        "loss (exact) | fit R² |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for lo, hi in WINDOWS:
        sel: dict[str, list[float]] = {k: [] for k in ("cos", "g", "loss", "exact", "r2")}
        for r in traj:
            for i, step in enumerate(r["step"]):
                if lo <= step <= hi:
                    for k in sel:
                        sel[k].append(r[k][i])
        if not sel["cos"]:
            continue
        cells = []
        for k, digits in (("cos", 2), ("g", 3), ("loss", 3), ("exact", 3), ("r2", 2)):
            m, s, n = summary(sel[k])
            cells.append(f"{m:.{digits}f} ± {s:.{digits}f}" if n > 1 else f"{m:.{digits}f}")
        label = f"{lo}-{hi}" if hi < 10**9 else f"{lo}-end"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for r in traj:
        lines.append("")
        lines.append(
            f"Chip {r['chip']}: {len(r['step'])} recorded steps of the run; test accuracy "
            f"{r['accuracy']:.1f} %, training loss {r['train_loss']:.3f} (the setting it "
            "returned)."
        )
    if plat:
        lines += [
            "",
            "At the last setting the run read, fresh fits (no memory) to more probes (three seeds "
            "each, per chip):",
            "",
            "| probes | cosine with the exact gradient | fit R² |",
            "| ---: | ---: | ---: |",
        ]
        for p in sorted({r["probes"] for r in plat}):
            sel_rows = [r for r in plat if r["probes"] == p]
            cm, cs, _ = summary([r["cos"] for r in sel_rows])
            rm, rs, _ = summary([r["r2"] for r in sel_rows])
            lines.append(f"| {p} | {cm:.2f} ± {cs:.2f} | {rm:.2f} ± {rs:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    run_study(__doc__, "layered_gradient", run, section, argv)


if __name__ == "__main__":
    main()
