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
- ``plateau``: at the setting where that run read its lowest step loss (its plateau; a run can
  climb off it later, and it returns a setting of about that loss), fresh estimators (no
  memory, a new model) fitted to ``PROBES`` antithetic probes (the derived 15, three and eight
  times that), three seeds each: if the cosine rose with the probes, the plateau would be the
  data's; if it does not, the model's form.

- ``oracle``: at the same setting, what the probes could give at best. The response ``A`` at a
  setting is the least-squares linear map of the exact model's outputs on 256 inputs; its
  Jacobian, applied to the loss gradient ``G`` the estimator computes (at the response read on
  training samples), is the gradient a perfect model of the probes' response changes would
  return (the ``ceiling``), for probe inputs that are uniform over the inputs' range (what the
  estimator reads), half training samples and half uniform, or training samples only
  (``SHARES``). ``model``: the separable wiring model fitted to ``ORACLE_PROBES`` exact,
  noise-free probes (central differences of ``A``) on those inputs; ``op``: the model with the
  operating-point term; ``*_few``: both fitted to the first ``FEW_PROBES``; ``extended``: a free
  rank-one term per hidden unit, fitted by Adam (:func:`extended_fit`).

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
#: share of the probe inputs that are training samples (the rest uniform over their range)
SHARES = (0.0, 0.5, 1.0)
#: exact probes of the oracle's model fit
ORACLE_PROBES = 60
#: ... and of its fits to as many probes as one fit of the run has (5 fresh a step, 3 steps)
FEW_PROBES = 15
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
    """The default's run with the trajectory recorded: ``(row, task, chip, theta)``, ``theta``
    the setting where the run read its lowest step loss (a long run can climb off its plateau
    later; the setting it returns is of about that loss)."""
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
    lowest = [float("inf")]

    class Recorder(cmp._Recorder):
        def __call__(self, theta: torch.Tensor, batch: Any, ctx: Any) -> Any:
            est = super().__call__(theta, batch, ctx)
            if float(est.loss) < lowest[0]:  # the setting of the lowest step loss read
                lowest[0], seen[:] = float(est.loss), [theta.detach().clone()]
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
    """A fresh layered response (no memory) with ``probes`` antithetic probe pairs at ``theta``
    (``scheme="central"``, as these fits were first run), on the whole training split: its
    gradient's cosine with the exact one and its fit's R²."""
    from blacksat.estimators import LayeredResponse
    from blacksat.objective import StepContext

    span = float(np.median(chip.space.span))
    est = LayeredResponse(
        chip, task, sigma=0.02 * span, probes=probes, inputs=256, memory=1, scheme="central",
        seed=seed,
    )  # fmt: skip
    n = len(task.data.split("train")[1])
    e = est(theta, task.batch("train", np.arange(n)), StepContext(np.random.default_rng(seed)))
    g, _ = _exact_gradient(task, chip, theta)
    return {"cos": _cos(g, torch.as_tensor(e.grad).double()), "r2": float(est.last_fit_r2)}


def oracle_fit(
    task: Any, chip: Any, theta: torch.Tensor, share: float, probes: int = ORACLE_PROBES
) -> dict[str, Any]:
    """The ``oracle`` row at ``theta`` for probe inputs with ``share`` training samples (the
    module docstring): the ceiling's and the exactly fitted model's cosines with the exact
    gradient, and that fit's R²."""
    import torch.nn.functional as F

    from blacksat.layered_response import BankJacobian, banks_of

    model = chip.exact_model()
    x, y = task.data.split("train")
    with torch.no_grad():
        enc = task.encode(torch.as_tensor(x, dtype=task.dtype)).double().reshape(len(y), -1)
    rng = np.random.default_rng([round(100 * share), 5])
    train = enc[torch.as_tensor(rng.choice(len(enc), 256, replace=False))]
    lo, hi = float(enc.min()), float(enc.max())
    uniform = torch.as_tensor(lo + (hi - lo) * rng.random((256, enc.shape[1])))
    m = round(share * 256)
    probe_x = torch.cat([train[:m], uniform[m:]])

    def response(th: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        design = torch.cat([xs, torch.ones(len(xs), 1, dtype=xs.dtype)], 1)
        return (torch.linalg.pinv(design) @ model(th, xs).double()).T  # (n_out, n_in + 1)

    a0 = response(theta.double(), train).detach().requires_grad_(True)
    logits = task.decode((enc @ a0[:, :-1].T + a0[:, -1]).to(task.dtype))
    (grad_a,) = torch.autograd.grad(F.cross_entropy(logits, torch.as_tensor(y)), a0)
    g, _ = _exact_gradient(task, chip, theta)
    th = theta.double().clone().requires_grad_(True)
    (ceiling,) = torch.autograd.grad((response(th, probe_x) * grad_a).sum(), th)
    eps = 1e-4
    signs = torch.as_tensor(rng.choice([-1.0, 1.0], size=(probes, theta.numel())))
    with torch.no_grad():
        d_a = torch.stack(
            [(response(theta + eps * r, probe_x) - response(theta - eps * r, probe_x)) / 2
             for r in signs]
        )  # fmt: skip
    out: dict[str, Any] = {"ceiling": _cos(g, ceiling.double())}
    for n, suffix in ((probes, ""), (min(FEW_PROBES, probes), "_few")):
        for op, key in ((False, "model"), (True, "op")):
            fit = BankJacobian(banks_of(chip), seed=0, operating_point=op)
            r2 = fit.fit(d_a[:n], eps * signs[:n], 200)
            out[f"{key}{suffix}"] = _cos(g, fit.grad(grad_a.double()))
            out[f"{'r2' if key == 'model' else 'op_r2'}{suffix}"] = float(r2)
            if not op and not suffix:
                ext, ext_r2 = extended_fit(fit, d_a, eps * signs, grad_a.double())
                out.update(extended=_cos(g, ext), extended_r2=ext_r2)
    return out


def extended_fit(
    fit: Any, d_a: torch.Tensor, delta: torch.Tensor, grad_a: torch.Tensor, steps: int = 3000
) -> tuple[torch.Tensor, float]:
    """A candidate next model, measured here before it is built: the separable fit of a network
    of two banks (one control per weight) plus, per hidden unit ``j``, a rank-one term for the
    operating point a first-bank ring moves: ``dA_k = L1 [(S1 * d1_k) [I | 0] + diag(w_k) V] +
    (S2 * d2_k) R2`` with ``w_kj = sum_c d1_kjc U_jc``. Started from ``fit`` (``U``, ``V`` small)
    and fitted to ``d_a (K, n_out, n_in + 1)`` at ``delta (K, d)`` by Adam on the squared error.
    Returns the gradient ``(d,)`` it gives for ``grad_a`` and its R²."""
    b1, b2 = fit.banks
    if len(fit.banks) != 2 or b1.blocks != 1 or b2.blocks != 1:
        raise ValueError("the extended model is written for two banks of one control per weight")
    gen = torch.Generator().manual_seed(0)
    s1 = fit.S[0][0].clone().requires_grad_(True)
    l1 = fit.L[0].clone().requires_grad_(True)
    s2 = fit.S[1][0].clone().requires_grad_(True)
    r2m = fit.R[1].clone().requires_grad_(True)
    u = (1e-3 * torch.randn(b1.rows, b1.cols, generator=gen, dtype=torch.float64)).requires_grad_()
    v = 1e-3 * torch.randn(b1.rows, b1.cols + 1, generator=gen, dtype=torch.float64)
    v.requires_grad_(True)

    def predict(delta: torch.Tensor) -> torch.Tensor:
        d1 = delta[:, : b1.size].reshape(-1, b1.rows, b1.cols)
        d2 = delta[:, b1.size :].reshape(-1, b2.rows, b2.cols)
        t1 = torch.cat([s1 * d1, d1.new_zeros(len(d1), b1.rows, 1)], -1)
        t1 = t1 + (d1 * u).sum(-1)[:, :, None] * v[None]
        return l1 @ t1 + (s2 * d2) @ r2m

    scale = float((d_a**2).mean())
    opt = torch.optim.Adam([s1, l1, s2, r2m, u, v], lr=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        err = ((predict(delta) - d_a) ** 2).mean() / scale
        err.backward()
        opt.step()
    zero = torch.zeros(1, delta.shape[1], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad((grad_a * predict(zero)[0]).sum(), zero)
    return grad[0].detach(), 1.0 - float(err.detach())


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
        shares = [h for h in SHARES if study.find(kind="oracle", chip=chip_seed, share=h) is None]
        if done is not None and not needed and not shares:
            continue
        # the plateau fits start from the run's lowest-loss setting: the run goes again if they must
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
        for h in shares:
            r = study.run(
                lambda h=h, t=task, c=chip, th=theta: oracle_fit(t, c, th, h, 6 if quick else 60),
                kind="oracle", chip=chip_seed, share=h,
            )  # fmt: skip
            print(f"chip {chip_seed} share {h}: ceiling {r['ceiling']:.3f}, model {r['model']:.3f}")


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
            "At the setting where the run read its lowest step loss, fresh fits (no memory) to "
            "more probes (three seeds "
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
    oracle = [r for r in rows if r["kind"] == "oracle"]
    if oracle:
        lines += [
            "",
            "At the same setting, the best the probes could give (noise-free, from the exact "
            f"model; {ORACLE_PROBES} exact probes for the models' fits, or the first "
            f"{FEW_PROBES} of them; mean ± sample std over the chips): the cosine with the exact "
            "gradient of the gradient a perfect model of the probes' response changes would "
            "return (ceiling), of the separable wiring model fitted to them, of the model with "
            "the operating-point term (`BankJacobian(operating_point=True)`), and of the "
            "separable model extended by a free rank-one term per hidden unit (`extended_fit`: "
            "the candidate measured before the term was built, fitted by Adam; not in the "
            "estimator):",
            "",
            f"| probe inputs | ceiling | separable ({ORACLE_PROBES}) | R² | operating point "
            f"({ORACLE_PROBES}) | R² | free rank-one ({ORACLE_PROBES}) | R² | separable "
            f"({FEW_PROBES}) | operating point ({FEW_PROBES}) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        names = {
            0.0: "uniform (the estimator's)",
            0.5: "half training samples",
            1.0: "training samples",
        }
        for h in sorted({r["share"] for r in oracle}):
            sel_rows = [r for r in oracle if r["share"] == h]
            cells = []
            for k in ("ceiling", "model", "r2", "op", "op_r2", "extended", "extended_r2",
                      "model_few", "op_few"):  # fmt: skip
                m, s, n = summary([r[k] for r in sel_rows if k in r])
                cells.append("—" if n == 0 else f"{m:.2f} ± {s:.2f}" if n > 1 else f"{m:.2f}")
            lines.append(f"| {names.get(h, h)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    run_study(__doc__, "layered_gradient", run, section, argv)


if __name__ == "__main__":
    main()
