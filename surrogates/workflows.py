"""Surrogate-assisted workflows: calibrate from a budgeted design, refine actively, train.

The four ways a surrogate enters training (``DESIGN.md``, data flow), each a composition:

(a) **offline**: ``calibrate(...)`` spends a design against the budget and fits; then train on
    the surrogate with :class:`~blacksat.estimators.Autograd` (plain or inside
    :func:`~blacksat.sat.sat`), deploy, evaluate;
(b) **online physics-aware**: ``PhysicsAware(meter, surrogate, task)``: the forward pass on the
    device, the backward pass through the surrogate;
(c) **active refinement**: :func:`refine` re-queries around the iterate and where an ensemble's
    members disagree, then refits; :func:`train_active` alternates training on the surrogate
    with refinement;
(d) **surrogate ascent + device descent** in one SAT step:
    ``sat(descent=PhysicsAware(meter, surrogate, task), ascent=Autograd(surrogate, task), ...)``;
(e) **trust region with device checks**: :func:`train_trust_region` trains on the surrogate
    only inside a box around the iterate, checks each proposed move on the device (the loss
    before and after, on the same inputs), keeps it and grows the box only when the device
    confirms the surrogate's predicted decrease, shrinks it otherwise, and refits on a local
    design around the iterate each round: the surrogate is trusted only where queries said it
    was right.

Everything that reaches the device goes through it as given: wrap it in a
:class:`~blacksat.MeteredDevice` (with a :class:`~blacksat.QueryLog` observer) to enforce the
budget and keep every reading.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike

from blacksat.errors import BudgetExhausted, ConfigError
from blacksat.meter import Ledger
from blacksat.objective import add_costs
from blacksat.querydata import QueryData
from blacksat.surrogates import designs
from blacksat.surrogates.base import FitReport, Surrogate, sub_space
from blacksat.validation import check_choice, check_int

Design = Literal["sobol", "latin_hypercube", "uniform", "local"]


@dataclass(frozen=True, eq=False)
class Calibration:
    """The result of :func:`calibrate` / :func:`refine`.

    Attributes:
        surrogate: the fitted surrogate (the object passed in, fitted in place).
        data: every query it was fitted on (earlier data plus the new collection).
        spent: what the new collection cost.
        reason: ``"completed"`` or ``"budget"`` (the design was cut by the budget).
    """

    surrogate: Surrogate
    data: QueryData
    spent: Ledger
    reason: str

    @property
    def report(self) -> FitReport | None:
        """The surrogate's fit report."""
        return self.surrogate.report_


def _design(
    space: Any,
    kind: str,
    n: int,
    seed: Any,
    center: ArrayLike | None,
    radius: Any,
) -> np.ndarray:
    if kind == "local":
        if center is None or radius is None:
            raise ConfigError("a local design needs center and radius")
        return designs.local(space, center, radius, n, seed=seed)
    makers: dict[str, Callable[..., np.ndarray]] = {
        "sobol": designs.sobol,
        "latin_hypercube": designs.latin_hypercube,
        "uniform": designs.uniform,
    }
    if kind not in makers:
        raise ConfigError(f"design must be one of {[*makers, 'local']}, got {kind!r}")
    return makers[kind](space, n, seed=seed)


def _merge(prior: Any, new: QueryData) -> QueryData:
    if prior is None:
        return new
    old = prior if isinstance(prior, QueryData) else QueryData(tuple(prior))
    return old + new if new.n_settings else old


def calibrate(
    surrogate: Surrogate,
    device: Any,
    x: ArrayLike,
    n_settings: int,
    *,
    design: Design = "latin_hypercube",
    center: ArrayLike | None = None,
    radius: Any = None,
    seed: Any = 0,
    data: Any = None,
    chunk: int = 64,
) -> Calibration:
    """Collect a design of ``n_settings`` settings with inputs ``x (B, *in)`` from ``device``
    (spent against its budget: a budget cut keeps what was gathered), add earlier ``data``
    (e.g. ``QueryLog(path).data()``), fit ``surrogate`` on all of it.

    ``design`` is ``"latin_hypercube"`` (default), ``"sobol"``, ``"uniform"`` or ``"local"``
    (around ``center`` within ``radius``). A Latin hypercube, not Sobol, by default: in many
    dimensions the first hundred points of a scrambled Sobol sequence vary some pairs of
    controls together (correlation 0.95 between two of 320 controls at 100 settings), so a
    surrogate cannot tell which of the two drives a weight; on the crossbar that took a
    physics-free surrogate from 83.7 to 55.3 % on the chip at 100 settings
    (``benchmarks/designs.py``).
    """
    if not isinstance(surrogate, Surrogate):
        raise ConfigError(f"surrogate must be a blacksat Surrogate, got {type(surrogate).__name__}")
    thetas = _design(device.space, design, n_settings, seed, center, radius)
    got = designs.collect(device, thetas, x, chunk=chunk)
    everything = _merge(data, got.data)
    if everything.n_settings == 0:
        raise ConfigError("no queries to fit on: the budget allowed none and no data was given")
    surrogate.fit(everything)
    return Calibration(surrogate, everything, got.ledger_spent, got.reason)


def refine(
    calibration: Calibration,
    device: Any,
    x: ArrayLike,
    theta: ArrayLike,
    *,
    n_local: int = 32,
    radius: Any = 0.1,
    n_uncertain: int = 0,
    pool: int = 256,
    seed: Any = 0,
    chunk: int = 64,
) -> Calibration:
    """Active refinement around the iterate ``theta (d,)``: ``n_local`` settings of a local
    Latin-hypercube design within ``radius``, plus the ``n_uncertain`` settings of a ``pool``-point
    local candidate set (within ``2 * radius``) where the surrogate is least certain (needs an
    ``uncertainty(thetas, x)`` method, e.g. :class:`~blacksat.surrogates.Ensemble`); collected
    against the budget, appended to the data, refitted."""
    sur = calibration.surrogate
    rng = np.random.default_rng(seed)
    parts = [designs.local(device.space, theta, radius, n_local, seed=rng)] if n_local else []
    if n_uncertain:
        unc = getattr(sur, "uncertainty", None)
        if unc is None:
            raise ConfigError(f"{type(sur).__name__} has no uncertainty(); set n_uncertain=0")
        r2 = 2.0 * np.asarray(radius, dtype=np.float64)
        cand = designs.local(device.space, theta, r2, pool, seed=rng, kind="gaussian")
        xs = torch.as_tensor(np.asarray(x, dtype=np.float64))
        score = unc(torch.as_tensor(cand), xs).reshape(len(cand), -1).mean(-1).numpy()
        parts.append(cand[np.argsort(-score)[:n_uncertain]])
    if not parts:
        raise ConfigError("refine needs n_local > 0 or n_uncertain > 0")
    got = designs.collect(device, np.concatenate(parts), x, chunk=chunk)
    everything = _merge(calibration.data, got.data)
    sur.fit(everything)
    return Calibration(sur, everything, got.ledger_spent, got.reason)


@dataclass
class ActiveResult:
    """The end of :func:`train_active`: final controls, the calibration, a record per round."""

    theta: np.ndarray
    calibration: Calibration
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def spent(self) -> Ledger:
        """Device cost of the refinements (the initial calibration's cost excluded)."""
        return add_costs(*(r["spent"] for r in self.rounds)) if self.rounds else Ledger()


def train_active(
    task: Any,
    calibration: Calibration,
    device: Any,
    x: ArrayLike,
    theta0: ArrayLike,
    *,
    make_estimator: Callable[[Any, Any], Any],
    config: Any,
    rounds: int = 3,
    n_local: int = 32,
    radius: Any = 0.1,
    n_uncertain: int = 0,
    seed: int = 0,
) -> ActiveResult:
    """Alternate ``rounds`` times: train on the surrogate (``Trainer`` with
    ``make_estimator(surrogate, task)`` and ``config``; the optimizer restarts each round),
    then :func:`refine` around the new iterate. Stops early when the budget cuts a
    refinement. The task's digital layers are trained in place."""
    from blacksat.trainer import Trainer

    check_int("rounds", rounds, low=1)
    theta = np.asarray(theta0, dtype=np.float64).copy()
    result = ActiveResult(theta, calibration)
    for r in range(rounds):
        est = make_estimator(calibration.surrogate, task)
        cfg = dataclasses.replace(config, seed=config.seed + r)
        run = Trainer(task, est, device.space, cfg).fit(theta)
        theta = run.theta
        calibration = refine(
            calibration,
            device,
            x,
            theta,
            n_local=n_local,
            radius=radius,
            n_uncertain=n_uncertain,
            seed=[seed, r],
        )
        result.rounds.append(
            {
                "round": r,
                "loss": run.history[-1]["loss"] if run.history else float("nan"),
                "spent": calibration.spent,
                "report": calibration.report,
                "reason": calibration.reason,
            }
        )
        result.theta, result.calibration = theta, calibration
        if calibration.reason == "budget":
            break
    return result


@dataclass
class TrustRegionResult:
    """The end of :func:`train_trust_region`: final controls, the calibration, one record per
    round (``radius``, ``predicted`` and ``actual`` decrease of the loss, ``ratio``,
    ``accepted``, ``spent``)."""

    theta: np.ndarray
    calibration: Calibration
    rounds: list[dict[str, Any]] = field(default_factory=list)
    #: the training samples the device checks read (set apart from training with
    #: ``check="held_out"``)
    check_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def spent(self) -> Ledger:
        """Device cost of the checks and refinements (the initial calibration excluded)."""
        return add_costs(*(r["spent"] for r in self.rounds)) if self.rounds else Ledger()


def _box(space: Any, centre: np.ndarray, half: np.ndarray) -> Any:
    """``space`` cut to ``centre +- half`` (:func:`~blacksat.surrogates.base.sub_space`; a
    periodic control whose box spans its whole period keeps it)."""
    period = np.asarray(space.period, float)
    whole = (period > 0) & (2 * half >= period)
    lo = np.where(whole, np.asarray(space.lower, float), centre - half)
    hi = np.where(whole, np.asarray(space.upper, float), centre + half)
    return sub_space(space, lo, hi)


def _without(task: Any, idx: np.ndarray) -> Any:
    """A shallow copy of ``task`` (its digital layers shared) whose training split lacks the
    samples ``idx``."""
    data = task.data
    keep = np.setdiff1d(np.arange(len(data.y_train)), idx)
    view = copy.copy(task)
    view.data = dataclasses.replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])
    return view


def train_trust_region(
    task: Any,
    calibration: Calibration,
    device: Any,
    x: ArrayLike,
    theta0: ArrayLike,
    *,
    make_estimator: Callable[[Any, Any], Any],
    config: Any,
    rounds: int = 10,
    radius: float = 0.05,
    max_radius: float = 0.5,
    n_local: int = 16,
    eval_samples: int = 256,
    check: str = "held_out",
    accept: float = 0.1,
    seed: int = 0,
) -> TrustRegionResult:
    """Surrogate-assisted descent that trusts the surrogate only where the device confirms it.

    Each round: train on the surrogate (``Trainer`` with ``make_estimator(surrogate, task)``
    and ``config``) inside the box ``theta +- radius * span``; read the device's loss at the
    current and the proposed setting on the same ``eval_samples`` training inputs (two settings;
    the current one's reading is reused when nothing moved). With ``check="held_out"`` (the
    default) those inputs are set apart: the surrogate is trained on the rest of the training
    split, so a move is kept only when it lowers the device's loss on data it was not fitted
    to; ``check="train"`` draws them from the data the surrogate trains on (a move that
    overfits the surrogate's training data can then pass). With ``ratio`` = actual / predicted
    decrease, keep the move when ``ratio > accept`` (the box doubles, up to ``max_radius``, when
    ``ratio > 0.75``), else undo it (digital layers included) and halve the box; then refit on
    a local design of ``n_local`` settings around the iterate (:func:`refine`). Stops when the
    rounds are done or the budget cuts a collection. ``radius`` and ``max_radius`` are fractions
    of each control's range.
    """
    from blacksat.estimators import Autograd, ZerothOrder
    from blacksat.objective import StepContext
    from blacksat.trainer import Trainer

    check_int("rounds", rounds, low=1)
    space = device.space
    span = np.asarray(space.upper, float) - np.asarray(space.lower, float)
    theta = np.asarray(space.project(np.asarray(theta0, dtype=np.float64)), dtype=np.float64)
    check_choice("check", check, ("held_out", "train"))
    n_train = len(task.data.split("train")[1])
    check_int("eval_samples", eval_samples, low=1)
    if check == "held_out" and eval_samples >= n_train:
        raise ConfigError(
            f"check='held_out' sets eval_samples = {eval_samples} training inputs apart, which "
            f"leaves none of the {n_train} to train on: lower eval_samples or use check='train'"
        )
    idx = np.random.default_rng([seed, 17]).choice(n_train, min(eval_samples, n_train), False)
    batch = task.batch("train", idx)
    fit_task = _without(task, idx) if check == "held_out" else task
    ctx = StepContext(np.random.default_rng([seed, 18]))
    on_device = ZerothOrder(device, task, q=1)
    params = [p for p in task.digital_parameters() if p.requires_grad]

    def device_loss(th: np.ndarray) -> tuple[float, Ledger]:
        losses, cost = on_device.evaluate(torch.as_tensor(th)[None], batch, ctx)
        return float(losses[0]), cost

    def model_loss(th: np.ndarray) -> float:
        losses, _ = Autograd(calibration.surrogate, task).evaluate(
            torch.as_tensor(th)[None], batch, ctx
        )
        return float(losses[0])

    def restore(saved: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, v in zip(params, saved, strict=True):
                p.copy_(v)

    result = TrustRegionResult(theta, calibration, check_index=idx)
    r = float(radius)
    current, spent0 = device_loss(theta)
    for k in range(rounds):
        saved = [p.detach().clone() for p in params]
        before_model = model_loss(theta)
        box = _box(space, theta, r * span)
        cfg = dataclasses.replace(config, seed=config.seed + k)
        est = make_estimator(calibration.surrogate, fit_task)
        proposal = np.asarray(Trainer(fit_task, est, box, cfg).fit(theta).theta, dtype=np.float64)
        predicted = before_model - model_loss(proposal)
        try:
            after, cost = device_loss(proposal)
        except BudgetExhausted:  # no reconfiguration left to check the move: keep theta
            restore(saved)
            break
        actual = current - after
        ratio = actual / predicted if predicted > 0 else (1.0 if actual > 0 else -1.0)
        accepted = bool(ratio > accept and actual > 0)
        if accepted:
            theta, current = proposal, after
            if ratio > 0.75:
                r = min(2.0 * r, float(max_radius))
        else:
            restore(saved)
            r *= 0.5
        calibration = refine(calibration, device, x, theta, n_local=n_local, radius=r * span,
                             seed=[seed, k])  # fmt: skip
        spent = add_costs(cost, calibration.spent, *([spent0] if k == 0 else []))
        result.rounds.append(
            {"round": k, "radius": r, "predicted": predicted, "actual": actual, "ratio": ratio,
             "accepted": accepted, "device_loss": current, "spent": spent,
             "reason": calibration.reason}
        )  # fmt: skip
        result.theta, result.calibration = theta, calibration
        if calibration.reason == "budget":
            break
    return result


__all__ = [
    "ActiveResult",
    "Calibration",
    "TrustRegionResult",
    "calibrate",
    "refine",
    "train_active",
    "train_trust_region",
]
