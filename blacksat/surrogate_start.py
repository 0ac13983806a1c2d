"""Surrogate start: where a device's structure allows it, a short design, a physics-free
surrogate and offline training give the query-only default its starting point.

Zeroth-order training learns a device one noisy direction at a time. On a device whose response
is a linear map of its inputs with each weight set by a few controls (an analog crossbar, a
micro-ring weight bank), about a hundred space-filling settings identify the whole map
(:class:`~blacksat.surrogates.LinearResponse`), and training on that surrogate offline gets
within a point of the white box (``BENCHMARKS.md``, physics-free surrogates). On a device where
the structure fails (interference in a mesh, a diffractive network) the same design is wasted.
So :func:`surrogate_start` decides from the device itself, in stages, each stopping early:

0. **what the device declares**: a network of two or more weight banks (``weight_banks``)
   composes them, so each response coefficient is a product over every bank and depends on
   controls of each (the locality test below fails there by construction: 1.74-2.10 on the MRR
   network's tuning chips); the start stops before any query;
1. **what it can afford**: the design has ``ceil(DESIGN_PER_LOG_D * ln d)`` settings (screening
   must pick each weight's controls out of ``d``; on the crossbar 50 settings were too few and
   100 enough), it may take at most ``MAX_SHARE`` of the budget, and each setting is read with
   the run's batch of inputs, which must identify a linear response (``n_in + 1`` coefficients
   per output, with inputs to spare);
2. **a probe** of ``PROBE`` settings (the first of a Latin-hypercube design: a Sobol design's
   controls are correlated in pairs at this size, which hides which control drives which weight)
   read with probe inputs spread over the range of the encoded training inputs: the fitted
   response must hold on inputs held out from each setting. Then **a locality test** of six
   more settings: ``BLOCK_READS`` probe settings with a random ``BLOCK`` of their controls
   redrawn, and ``REPEAT_READS`` probe settings read again. Where each response coefficient
   depends on a few controls, the median coefficient is untouched by the block (it depends on
   fewer than ``ln 2 / -ln(1 - BLOCK)``, about 11, controls) and moves no more than between two
   readings of one setting; where every control acts on every coefficient (interference), it
   moves more.
   The ratio of the two median moves must stay below ``MAX_BLOCK_RATIO``. It replaces a test of
   the controls' additive share at the probe, which 24 settings of hundreds of controls estimate
   with a spread of about one (-0.3 to 1.0 on the MRR weight banks of tuning chips 100-103, 0.43
   to 1.0 on the crossbars): it had turned the bank away on 3 of 9 runs;
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
#: the locality test reads this many probe settings with a block of their controls redrawn...
BLOCK_READS = 4
#: ... and this many probe settings a second time
REPEAT_READS = 2
#: share of the controls the locality test redraws (at least one)
BLOCK = 1.0 / 16.0
#: the locality test passes while a redrawn block moves the median response coefficient less than
#: this many times as much as a second reading of one setting does (1 % of a coefficient's spread
#: over the probe is added to both medians, so a noiseless device can pass; with fewer than 16
#: controls the block is one control, and with one control the test cannot fail). On
#: tuning chips 100-103 (two probes each): 1.05-1.29 on the crossbar and the MRR weight bank,
#: 1.74-2.10 on the MRR network (whose coefficients are products of two banks), 1.97-3.19 on the
#: 16-mode meshes
MAX_BLOCK_RATIO = 1.5
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
        additive: the probe's additive tuning-curve share (``None`` before the probe; recorded,
            not tested: 24 settings estimate it too loosely).
        locality: the locality test's ratio (:func:`block_ratio`; ``None`` before it).
        response: the response the probe chose (``"linear"`` / ``"intensity"``).
        linear: whether a linear response held at the probe (``None`` before the probe): held
            out across the probe's settings, and after the locality test also at each setting
            down to the readout noise of its repeated readings.
        fit_r2: held-out R² of the full fit (``None`` when it stopped before).
        loss_before: the device's loss at the start on the check's minibatch.
        loss_after: the device's loss at the trained setting on the same minibatch.
    """

    outcome: str
    reason: str
    reconfigurations: int = 0
    design: int = 0
    additive: float | None = None
    locality: float | None = None
    response: str | None = None
    linear: bool | None = None
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
    networks: bool = False,
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
        networks: probe a device that declares a network of weight banks too (stage 0 stops
            there otherwise; the query-only default probed them before this stage existed).

    Returns:
        ``(theta (d,), report)``: the setting to continue from (``theta`` unless the device
        confirmed a better one) and the :class:`StartReport`.
    """
    from blacksat.estimators import Autograd, ZerothOrder
    from blacksat.layered_response import banks_of
    from blacksat.objective import StepContext
    from blacksat.querydata import QueryData
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

    banks = banks_of(device)
    if banks is not None and len(banks) > 1 and not networks:
        return skipped(
            f"the device declares a network of {len(banks)} weight banks: each response "
            "coefficient is a product over every bank's weights, so none is local to a few "
            "controls"
        )
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
    # the report goes into plan.json: what could not be measured is None, never NaN
    info: dict[str, Any] = {
        "design": n,
        "response": response,
        "linear": bool(checks.get("linear response", -math.inf) >= RESPONSE_R2),
        "additive": _finite(additive),
    }
    if checks.get(f"{response} response", -math.inf) < RESPONSE_R2:
        return skipped(
            f"no linear or intensity response at the probe (best {response}, R² "
            f"{checks.get(f'{response} response', math.nan):.2f})",
            used,
            **info,
        )
    moved = _locality_reads(space, thetas[:PROBE], rng)
    test = designs.collect(device, moved, x)
    used += test.ledger_spent.reconfigurations
    if test.reason != "completed":
        return skipped("the budget ran out during the locality test", used, **info)
    ratio = block_ratio(probe.data, test.data, response)
    info["locality"] = _finite(ratio)
    if info["linear"]:  # held out across settings; now each setting against the readout noise
        info["linear"] = _linear_within_noise(probe.data, test.data)
    if d > 1 and not math.isfinite(ratio):
        return skipped(
            "no response coefficient varies over the probe: nothing to learn a surrogate of",
            used,
            **info,
        )
    if d > 1 and not ratio < MAX_BLOCK_RATIO:  # one control: every coefficient is local to it
        return skipped(
            f"a random {BLOCK:.0%} of the controls moves the median response coefficient "
            f"{ratio:.1f}x as much as a second reading does (local controls: below "
            f"{MAX_BLOCK_RATIO}): the controls act on every coefficient",
            used,
            **info,
        )
    rest = designs.collect(device, thetas[PROBE:], x)
    used += rest.ledger_spent.reconfigurations
    if rest.reason != "completed":
        return skipped("the budget ran out during the design", used, **info)
    # the redrawn settings join the fit; the second reading of a probe setting does not (it
    # would sit on both sides of the fit's held-out split; a redrawn setting shares 15/16 of its
    # controls with its probe setting, a milder overlap the fit's few parameters tolerate)
    t_moved, x_moved, y_moved = test.data.groups[0]
    data = probe.data + QueryData.from_arrays(t_moved[:BLOCK_READS], x_moved, y_moved[:BLOCK_READS])
    data = data + rest.data if rest.data.n_settings else data
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


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _locality_reads(space: Any, probe: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The locality test's settings ``(BLOCK_READS + REPEAT_READS, d)``: the first
    ``BLOCK_READS`` probe settings with a random ``BLOCK`` of their controls redrawn uniformly,
    then the next ``REPEAT_READS`` probe settings again (never next to themselves, so each is a
    fresh reconfiguration). Redrawn controls land on the space's levels where it has them."""
    d = probe.shape[1]
    size = max(1, round(BLOCK * d))
    out = []
    for k in range(BLOCK_READS):
        moved = probe[k].copy()
        idx = rng.choice(d, size=size, replace=False)
        moved[idx] = space.lower[idx] + (space.upper[idx] - space.lower[idx]) * rng.random(size)
        out.append(np.asarray(space.snap(space.project(moved))))
    out.extend(probe[BLOCK_READS : BLOCK_READS + REPEAT_READS])
    return np.stack(out)


def _linear_within_noise(probe: Any, test: Any) -> bool:
    """The probe's settings against the readout noise of the locality test's repeated readings
    (:func:`~blacksat.layered_response.linear_within_noise`): what the layered response needs
    of a device before it trusts its wiring."""
    from blacksat.layered_response import linear_within_noise
    from blacksat.surrogates.linear_response import RESPONSE_R2

    _, x, y = probe.groups[0]
    _, _, y_test = test.groups[0]
    first = y[BLOCK_READS : BLOCK_READS + REPEAT_READS]
    again = y_test[BLOCK_READS : BLOCK_READS + REPEAT_READS]
    return linear_within_noise(x, y, first, again, 1.0 - RESPONSE_R2)


def block_ratio(probe: Any, test: Any, response: str) -> float:
    """The locality test's statistic from the probe's and the test's :class:`QueryData`: the
    median move of a response coefficient when a block of controls is redrawn, over its median
    move between two readings of one setting, each in units of the coefficient's spread over the
    probe, with a floor of ``0.01`` added to both medians (so that a noiseless device, whose
    untouched coefficients do not move at all, reads about 1 rather than 0 / 0). ``nan`` when no
    coefficient varies over the probe."""
    from blacksat.surrogates.linear_response import response_coefficients

    _, x, y = probe.groups[0]
    _, x_test, y_test = test.groups[0]
    base = response_coefficients(x, y, response)
    moved = response_coefficients(x_test, y_test, response)
    spread = base.std(axis=0, ddof=1)
    live = spread > 1e-9 * max(float(spread.max()), 1e-300)
    if not live.any():
        return math.nan
    rel = np.abs(moved - base[: len(moved)])[:, live] / spread[live]
    floor = 0.01
    return float((np.median(rel[:BLOCK_READS]) + floor) / (np.median(rel[BLOCK_READS:]) + floor))


__all__ = ["StartReport", "block_ratio", "design_size", "probe_inputs", "surrogate_start"]
