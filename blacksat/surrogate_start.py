"""Surrogate start: where a device's structure allows it, a short design, a physics-free
surrogate and offline training give the query-only default its starting point.

Zeroth-order training learns a device one noisy direction at a time. On a device whose response
is a linear map of its inputs with each weight set by a few controls (an analog crossbar, a
micro-ring weight bank), about a hundred space-filling settings identify the whole map
(:class:`~blacksat.surrogates.LinearResponse`), and training on that surrogate offline gets
within a point of the white box (``BENCHMARKS.md``, physics-free surrogates). On a device where
the structure fails (interference in a mesh, a diffractive network) the same design is wasted.
So :func:`surrogate_start` decides from the device itself, in stages, each stopping early:

1. **what it can afford**: the design has ``ceil(DESIGN_PER_LOG_D * ln d)`` settings (screening
   must pick each weight's controls out of ``d``; on the crossbar 50 settings were too few and
   100 enough), it may take at most ``MAX_SHARE`` of the budget, and each setting is read with
   the run's batch of inputs, which must identify a linear response (``n_in + 1`` coefficients
   per output, with inputs to spare);
2. **a probe** of ``PROBE`` settings (the first of a Latin-hypercube design: a Sobol design's
   controls are correlated in pairs at this size, which hides which control drives which weight)
   read with probe inputs spread over the range of the encoded training inputs: the fitted
   response must hold on inputs held out from each setting, and the controls' own tuning curves
   must explain at least ``PROBE_ADDITIVE`` of how the response changes (the *additive tuning
   curves* check; at most 0.2 on an interfering mesh, 0.35-0.8 on an MRR weight bank, near 1 on
   a crossbar);
3. **the rest of the design** and a refit: the surrogate must predict held-out settings with
   R² >= ``MIN_R2``;
4. **offline training** on the surrogate, inside the range its data covers (Adam, ``OFFLINE_LR``
   of the span, ``OFFLINE_STEPS`` steps of ``OFFLINE_BATCH``, the digital layers left alone);
5. **a device check**: the loss at the start and at the trained setting on one minibatch (two
   reconfigurations); the trained setting is kept only when the device confirms it is better.

Every query goes through the (metered) device and is charged to the budget. The result says
what happened and why (:class:`StartReport`); the zeroth-order run continues from the setting
it returns with what is left. The constants were chosen on tuning chips (100-103) and frozen.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from blacksat.validation import as_generator

#: settings of the probe (the first of the design)
PROBE = 24
#: share of the response's variation the controls' own tuning curves must explain at the probe:
#: on tuning chips 100-103 the probe gave at most 0.2 on the MZI meshes (interference), at least
#: 0.35 on an MRR weight bank (thermal crosstalk couples neighbouring rings) and 0.96 on the
#: crossbar; a first threshold of 0.6 turned the weight bank away on some chips
PROBE_ADDITIVE = 0.3
#: the design has ceil(DESIGN_PER_LOG_D * ln d) settings
DESIGN_PER_LOG_D = 16.0
#: the design takes at most this share of the budget
MAX_SHARE = 0.4
#: held-out R² the full fit must reach
MIN_R2 = 0.8
#: offline training on the surrogate: Adam at this share of the median span...
OFFLINE_LR = 0.01
#: ... for this many steps ...
OFFLINE_STEPS = 1500
#: ... of this many training samples
OFFLINE_BATCH = 64


@dataclass(frozen=True)
class StartReport:
    """What :func:`surrogate_start` did.

    Attributes:
        outcome: ``"trained"`` (the device confirmed the surrogate's setting), ``"kept"`` (it
            trained, but the device found the start better), or ``"skipped"`` (a stage
            stopped it; the start is unchanged).
        reason: why, in words.
        reconfigurations: what it spent.
        design: settings of the design it planned (``0`` when it could not afford one).
        additive: the probe's additive tuning-curve share (``None`` before the probe).
        response: the response the probe chose (``"linear"`` / ``"intensity"``).
        fit_r2: held-out R² of the full fit (``None`` when it stopped before).
        loss_before: the device's loss at the start on the check's minibatch.
        loss_after: the device's loss at the trained setting on the same minibatch.
    """

    outcome: str
    reason: str
    reconfigurations: int = 0
    design: int = 0
    additive: float | None = None
    response: str | None = None
    fit_r2: float | None = None
    loss_before: float | None = None
    loss_after: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StartReport:
        return cls(**data)

    def __str__(self) -> str:
        return f"surrogate start: {self.outcome} ({self.reason}; {self.reconfigurations} reconf.)"


def design_size(d: int) -> int:
    """Settings of the design for ``d`` controls: ``ceil(DESIGN_PER_LOG_D * ln d)``, at least
    twice the probe."""
    return max(2 * PROBE, math.ceil(DESIGN_PER_LOG_D * math.log(max(d, 2))))


def probe_inputs(task: Any, device: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` probe inputs ``(n, *input_shape)``: uniform over the device's declared
    ``input_range``, else over each feature's range in the task's encoded training inputs (the
    inputs the device will be driven with; spread so that each setting's response is
    identified)."""
    shape = tuple(device.input_shape)
    declared = getattr(device, "input_range", None)
    if declared is not None:
        return rng.uniform(float(declared[0]), float(declared[1]), (n, *shape))
    x, _ = task.data.split("train")
    with torch.no_grad():
        enc = task.encode(torch.as_tensor(x, dtype=task.dtype)).double().cpu().numpy()
    enc = enc.reshape(len(enc), -1)
    lo, hi = enc.min(0), enc.max(0)
    return (lo + (hi - lo) * rng.random((n, lo.size))).reshape(n, *shape)


def surrogate_start(
    task: Any,
    device: Any,
    theta: Any,
    *,
    budget: int,
    batch: int,
    seed: int | np.random.Generator | None = 0,
) -> tuple[np.ndarray, StartReport]:
    """Try a physics-free start from ``theta (d,)`` on ``device`` (see the module docstring).

    Args:
        task: the training task (its loss, encoder and training data).
        device: the device, normally a :class:`~blacksat.meter.MeteredDevice` (every query is
            charged to it).
        theta: the current start ``(d,)``.
        budget: reconfigurations of the whole run.
        batch: samples per reconfiguration of the run (the probe reads this many inputs).
        seed: the design's, the probe inputs' and the offline training's randomness.

    Returns:
        ``(theta (d,), report)``: the setting to continue from (``theta`` unless the device
        confirmed a better one) and the :class:`StartReport`.
    """
    from blacksat.estimators import Autograd, ZerothOrder
    from blacksat.objective import StepContext
    from blacksat.surrogates import LinearResponse, designs
    from blacksat.surrogates.linear_response import RESPONSE_R2, n_features
    from blacksat.train_config import TrainConfig
    from blacksat.trainer import Trainer

    space = device.space
    theta = np.asarray(space.project(np.asarray(theta, dtype=np.float64)))
    d, n_in = space.dim, int(np.prod(device.input_shape))
    n = design_size(d)

    def skipped(reason: str, spent: int = 0, **info: Any) -> tuple[np.ndarray, StartReport]:
        return theta, StartReport("skipped", reason, spent, **info)

    if n > MAX_SHARE * budget:
        return skipped(
            f"a design of {n} settings would take more than {MAX_SHARE:.0%} of {budget} "
            "reconfigurations"
        )
    p = n_features(n_in, "linear")
    if batch < p + max(2, p // 4):
        return skipped(
            f"{batch} inputs per setting cannot identify a linear response of {n_in} inputs "
            f"(needs {p + max(2, p // 4)})"
        )
    rng = as_generator(seed)
    x = probe_inputs(task, device, batch, rng)
    thetas = designs.latin_hypercube(space, n, seed=rng)
    probe = designs.collect(device, thetas[:PROBE], x)
    used = probe.ledger_spent.reconfigurations  # what the start has spent so far
    if probe.reason != "completed":
        return skipped("the budget ran out during the probe", used, design=n)
    sur = LinearResponse(seed=int(rng.integers(2**31))).fit(probe.data)
    checks = {c.assumption: c.r2 for c in sur.checks_}
    response = str(sur.response_)
    additive = checks.get("additive tuning curves", math.nan)
    info: dict[str, Any] = {"design": n, "response": response, "additive": float(additive)}
    if checks.get(f"{response} response", -math.inf) < RESPONSE_R2:
        return skipped(
            f"no linear or intensity response at the probe (best {response}, R² "
            f"{checks.get(f'{response} response', math.nan):.2f})",
            used,
            **info,
        )
    if not additive >= PROBE_ADDITIVE:
        return skipped(
            f"the controls' own tuning curves explain {additive:.2f} of the response at the "
            f"probe (needs {PROBE_ADDITIVE}): the controls interact",
            used,
            **info,
        )
    rest = designs.collect(device, thetas[PROBE:], x)
    used += rest.ledger_spent.reconfigurations
    data = probe.data + rest.data if rest.data.n_settings else probe.data
    sur = LinearResponse(seed=int(rng.integers(2**31))).fit(data)
    r2 = float(sur.report_.held_out_r2) if sur.report_ is not None else math.nan
    info["fit_r2"] = r2
    if not r2 >= MIN_R2:
        return skipped(
            f"the surrogate predicts held-out settings with R² {r2:.2f} (needs {MIN_R2})",
            used,
            **info,
        )
    region = sur.coverage_.region(space) if sur.coverage_ is not None else space
    cfg = TrainConfig(
        lr=OFFLINE_LR * float(np.median(space.span)),
        max_steps=OFFLINE_STEPS,
        epochs=None,
        batch_size=OFFLINE_BATCH,
        seed=int(rng.integers(2**31)),
        progress=False,
        train_digital=False,
    )
    est = Autograd(sur, task, space=region)
    trained = Trainer(task, est, region, cfg).fit(np.asarray(region.project(theta))).theta
    trained = np.asarray(space.project(trained))
    # the device check: both settings on one minibatch
    n_train = len(task.data.split("train")[1])
    index = rng.choice(n_train, size=min(batch, n_train), replace=False)
    check = ZerothOrder(device, task, q=1, sigma=1.0)
    losses, cost = check.evaluate(
        torch.as_tensor(np.stack([theta, trained])), task.batch("train", index), StepContext(rng)
    )
    before, after = (float(v) for v in losses.detach().numpy())
    used += cost.reconfigurations
    info.update(loss_before=before, loss_after=after)
    if after < before:
        return trained, StartReport("trained", "the device confirmed the surrogate", used, **info)
    return theta, StartReport(
        "kept", "the device found the start better than the trained setting", used, **info
    )


__all__ = ["StartReport", "design_size", "probe_inputs", "surrogate_start"]
