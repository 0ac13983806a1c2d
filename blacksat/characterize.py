"""Characterization from queries: measure a device's noise and turn it into a perturbation model.

``characterize(device, x, budget=...)`` spends a stated budget of reconfigurations on one
setting ``theta`` and the inputs ``x (B, *in)``, all through a
:class:`~blacksat.meter.MeteredDevice`, and measures (each with a 95 % confidence interval and
the ledger it cost):

- **readout noise**: the inputs repeated ``copies`` times within one query, one programming:
  the spread of the copies' readings is the read noise alone (output units);
- **programming noise**: the same setting programmed again ``programs`` times (an explicit
  re-program, or plain queries on a device that re-programs on every call), each reading
  averaged over the copies; the spread across programmings, less the read noise left in the
  averages, is what a write adds (output units);
- **drift**: the setting held and read ``reads`` times in a row; the slope of the relative
  change of the readings per read (a power law, a thermal walk and a gain drift all show up
  here; on a device that re-programs on every call it includes the re-programming);
- **sensitivity**: central differences of ``+-step`` of the range, half of the probes along
  random sign vectors over every control (``E[(J delta)^2] = step^2 sum_j J_ej^2``, the
  aggregate the model needs, with every control contributing signal), half along single
  coordinates (per-control sensitivity, each with the noise floor of one probe).

The model: with the sensitivity ``J`` (outputs x controls), an independent Gaussian disturbance
of every control of standard deviation ``s`` moves each output by ``s^2 sum_j J_ej^2`` in
variance; the **programming** and **drift** variances (over the measured window) are converted
into control units this way, and the result is a
:class:`~blacksat.perturbations.PerControl` Gaussian of radius
``sqrt(s_program^2 + s_drift^2)``: ``sat(..., perturbation=c.model)`` is flat against what the
device was measured to do, with no physics given. Read noise is reported but left out (no
setting can be flat against noise added after the device).

:meth:`Characterization.to_dict` / :func:`save` write JSON (no pickle); :func:`load_model`
reads the model back.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from blacksat.errors import ConfigError
from blacksat.meter import Ledger, MeteredDevice
from blacksat.perturbations import PerControl
from blacksat.readout_noise import pooled_readout_variance

MODEL_FORMAT = "blacksat.measured-perturbation/1"
REPORT_SCHEMA = "blacksat.characterization/1"


@dataclass(frozen=True)
class Measurement:
    """One measured quantity: ``value`` with its 95 % interval ``ci``, in ``unit``, and what
    measuring it cost (``ledger``)."""

    value: float
    ci: tuple[float, float]
    unit: str
    ledger: Ledger
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "ci": list(self.ci),
            "unit": self.unit,
            "ledger": asdict(self.ledger),
            **self.detail,
        }


@dataclass(frozen=True)
class Characterization:
    """What :func:`characterize` measured and the perturbation model built from it."""

    readout_noise: Measurement
    programming_noise: Measurement
    drift: Measurement
    sensitivity: Measurement
    control_noise: dict[str, float]
    model: PerControl
    ledger: Ledger

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA,
            "readout_noise": self.readout_noise.to_dict(),
            "programming_noise": self.programming_noise.to_dict(),
            "drift": self.drift.to_dict(),
            "sensitivity": self.sensitivity.to_dict(),
            "control_noise": dict(self.control_noise),
            "model": model_dict(self.model, int(self.sensitivity.detail["controls"])),
            "ledger": asdict(self.ledger),
        }

    def markdown(self) -> str:
        """The report as a markdown table."""
        rows = [
            "| quantity | value | 95 % interval | unit | reconfigurations | samples |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name in ("readout_noise", "programming_noise", "drift", "sensitivity"):
            m: Measurement = getattr(self, name)
            rows.append(
                f"| {name.replace('_', ' ')} | {m.value:.4g} | [{m.ci[0]:.4g}, {m.ci[1]:.4g}] "
                f"| {m.unit} | {m.ledger.reconfigurations} | {m.ledger.samples} |"
            )
        cn = self.control_noise
        return "\n".join(
            [
                *rows,
                "",
                f"Equivalent control noise (std, control units): programming "
                f"{cn['programming']:.4g}, drift {cn['drift']:.4g}; model: PerControl gaussian "
                f"radius {self.model.radius:.4g}. Total spent: {self.ledger.reconfigurations} "
                f"reconfigurations, {self.ledger.samples} samples, {self.ledger.queries} queries.",
            ]
        )


def _chi2_ci(var: float, dof: int) -> tuple[float, float]:
    """95 % interval of a standard deviation from a variance estimate with ``dof`` degrees."""
    if dof < 1 or not math.isfinite(var):
        return (float("nan"), float("nan"))
    lo = dof * var / stats.chi2.ppf(0.975, dof)
    hi = dof * var / stats.chi2.ppf(0.025, dof)
    return (math.sqrt(max(lo, 0.0)), math.sqrt(max(hi, 0.0)))


def _plan(budget: int, d: int, read_cost: int) -> tuple[int, int]:
    """``(programs, probes)`` for a reconfiguration ``budget``: a quarter of it (at least 4)
    re-programs the setting, the rest (after the drift reads' cost) goes to central probes."""
    programs = max(4, budget // 4)
    probes = min(d, (budget - programs - read_cost) // 2)
    if probes < 1:
        raise ConfigError(
            f"a budget of {budget} reconfigurations is too small to characterize this device "
            f"(at least {programs + read_cost + 2} needed)"
        )
    return programs, probes


def characterize(
    device: Any,
    x: Any,
    *,
    budget: int,
    theta: Any = None,
    copies: int = 4,
    reads: int = 16,
    step: float = 0.05,
    seed: int = 0,
) -> Characterization:
    """Measure ``device`` at ``theta (d,)`` (default: the box centre) with inputs
    ``x (B, *in)``, spending at most ``budget`` reconfigurations (module docstring).

    ``device`` may be a :class:`~blacksat.meter.MeteredDevice` (its own budgets apply too and
    its ledger carries the cost) or any device (wrapped in one here).
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 8:
        raise ConfigError(f"budget must be an integer >= 8 reconfigurations, got {budget!r}")
    for name, v, low in (("copies", copies, 2), ("reads", reads, 3)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {v!r}")
    if not (isinstance(step, (int, float)) and 0 < step < 0.5):
        raise ConfigError(f"step must be a fraction of the range in (0, 0.5), got {step!r}")
    if isinstance(device, MeteredDevice):
        meter = device
    else:
        meter = MeteredDevice(device, max_reconfigurations=int(budget))
    space = meter.space
    d = space.dim
    theta = space.center.copy() if theta is None else space.validate(theta)
    x = np.asarray(x, dtype=np.float64)
    programs, probes = _plan(int(budget), d, reads if meter.reprograms_on_query else 0)
    start = meter.ledger
    b = x.shape[0]
    tiled = np.concatenate([x] * copies)  # (copies * B, *in)

    # ---------------------------------------------------------------- readout noise
    before = meter.ledger
    y = meter.query(theta, tiled).reshape(copies, b, -1)  # (copies, B, m)
    var_read, dof = pooled_readout_variance(y)
    readout = Measurement(
        math.sqrt(var_read), _chi2_ci(var_read, dof), "output units", meter.ledger - before,
        {"copies": copies},
    )  # fmt: skip

    # ---------------------------------------------------------------- programming noise
    before = meter.ledger
    means = [y.mean(axis=0)]
    reprogram = not meter.reprograms_on_query
    for _ in range(programs - 1):
        yk = meter.query(theta, tiled, reprogram=reprogram).reshape(copies, b, -1)
        means.append(yk.mean(axis=0))
    mk = np.stack(means)  # (programs, B, m)
    var_prog = max(float(np.mean(np.var(mk, axis=0, ddof=1))) - var_read / copies, 0.0)
    programming = Measurement(
        math.sqrt(var_prog), _chi2_ci(var_prog, programs - 1), "output units",
        meter.ledger - before, {"programs": programs},
    )  # fmt: skip

    # ---------------------------------------------------------------- drift
    before = meter.ledger
    series = np.stack([meter.query(theta, x).reshape(b, -1) for _ in range(reads)])
    ref = series[0]
    denom = float(np.sum(ref * ref)) or 1.0
    rel = np.array([float(np.sum((s - ref) * ref)) / denom for s in series])
    t = np.arange(reads, dtype=np.float64)
    fit = stats.linregress(t, rel)
    half = 1.96 * float(fit.stderr)
    # per-reading least-squares slopes, less what noise alone gives them, over the window
    noise_var = var_read + (var_prog if meter.reprograms_on_query else 0.0)
    tc = t - t.mean()
    slopes = np.tensordot(tc, series, axes=(0, 0)) / float(np.sum(tc**2))  # (B, m)
    var_slope = float(np.mean(slopes**2)) - noise_var / float(np.sum(tc**2))
    var_drift = var_slope * (reads - 1) ** 2
    drift = Measurement(
        float(fit.slope), (float(fit.slope) - half, float(fit.slope) + half),
        "relative change per read", meter.ledger - before,
        {"reads": reads, "window_change_rms": math.sqrt(max(var_drift, 0.0))},
    )  # fmt: skip

    # ---------------------------------------------------------------- sensitivity
    before = meter.ledger
    rng = np.random.default_rng(seed)
    noise_var = var_read + var_prog  # per reading, each probe setting is a fresh programming
    span = space.upper - space.lower
    n_coord = probes // 2
    n_rand = probes - n_coord
    # random +-s directions over every control: E[(J delta)_e^2] = s^2 sum_j J_ej^2
    s_dir = step * span
    signs = rng.choice([-1.0, 1.0], size=(n_rand, d))
    delta = signs * s_dir
    centre = np.clip(theta, space.lower + s_dir, space.upper - s_dir)
    idx = np.sort(rng.choice(d, size=n_coord, replace=False))
    coord = np.zeros((n_coord, d))
    coord[np.arange(n_coord), idx] = s_dir[idx]
    steps = np.concatenate([delta, coord])  # (P, d)
    pairs = np.empty((2 * probes, d))
    pairs[0::2], pairs[1::2] = centre + steps, centre - steps
    yp = meter.query_many(pairs, x).reshape(2 * probes, b, -1)
    diff = yp[0::2] - yp[1::2]  # (P, B, m) = 2 J step + noise
    ms = np.mean(diff**2, axis=(1, 2))  # (P,)
    q_draws = (ms[:n_rand] - 2.0 * noise_var) / (4.0 * float(np.mean(s_dir**2)))
    q = max(float(np.mean(q_draws)), 0.0)  # sum_j J_ej^2, averaged over outputs e
    se_q = float(np.std(q_draws, ddof=1) / math.sqrt(n_rand)) if n_rand > 1 else float("nan")
    per = np.sqrt(np.maximum(ms[n_rand:] - 2.0 * noise_var, 0.0) / (4.0 * s_dir[idx] ** 2))
    half = 2.0 * noise_var / (4.0 * s_dir[idx] ** 2)  # the noise floor of one coordinate probe
    rms = math.sqrt(q / d)
    ci = (math.sqrt(max(q - 1.96 * se_q, 0.0) / d), math.sqrt(max(q + 1.96 * se_q, 0.0) / d))
    sensitivity = Measurement(
        rms, ci, "rms output change per control unit", meter.ledger - before,
        {"controls": int(d), "directions": int(n_rand), "step": float(step),
         "probed": idx.tolist(), "per_control": per.tolist(),
         "per_control_noise_floor": np.sqrt(half).tolist()},
    )  # fmt: skip

    s_prog = math.sqrt(var_prog / q) if q > 0 else 0.0
    s_drift = drift.detail["window_change_rms"] / math.sqrt(q) if q > 0 else 0.0
    radius = math.sqrt(s_prog**2 + s_drift**2)
    return Characterization(
        readout,
        programming,
        drift,
        sensitivity,
        {"programming": s_prog, "drift": s_drift},
        PerControl(radius, kind="gaussian"),
        meter.ledger - start,
    )


def model_dict(model: PerControl, dim: int) -> dict[str, Any]:
    """The JSON form of a measured model."""
    return {"format": MODEL_FORMAT, "kind": "PerControl", "distribution": model.kind,
            "radius": float(model.radius), "controls": int(dim)}  # fmt: skip


def save(c: Characterization, out_dir: str | Path, *, force: bool = False) -> dict[str, Path]:
    """Write ``characterization.json``, ``characterization.md`` and ``model.json`` into
    ``out_dir``; existing files are kept unless ``force``."""
    out = Path(out_dir)
    paths = {
        "report": out / "characterization.json",
        "markdown": out / "characterization.md",
        "model": out / "model.json",
    }
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        raise ConfigError(f"{existing[0]!r} exists; pass --force to overwrite, or another --out")
    out.mkdir(parents=True, exist_ok=True)
    report = c.to_dict()
    paths["report"].write_text(json.dumps(report, indent=2))
    paths["markdown"].write_text(c.markdown() + "\n")
    paths["model"].write_text(json.dumps(report["model"], indent=2))
    return paths


def load_model(path: str | Path, dim: int | None = None) -> PerControl:
    """The perturbation model of a ``model.json`` (or ``characterization.json``) file, checked
    against ``dim`` controls when given."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read a measured model from {str(p)!r}: {exc}") from None
    if isinstance(data, dict) and data.get("schema") == REPORT_SCHEMA:
        data = data.get("model")
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise ConfigError(
            f"{str(p)!r} is not a measured perturbation model ({MODEL_FORMAT}); write one with "
            "blacksat characterize"
        )
    if dim is not None and data.get("controls") != dim:
        raise ConfigError(
            f"{str(p)!r} was measured on a device of {data.get('controls')} controls, "
            f"this one has {dim}"
        )
    return PerControl(float(data["radius"]), kind=data.get("distribution", "gaussian"))


__all__ = [
    "MODEL_FORMAT",
    "REPORT_SCHEMA",
    "Characterization",
    "Measurement",
    "characterize",
    "load_model",
    "model_dict",
    "save",
]
