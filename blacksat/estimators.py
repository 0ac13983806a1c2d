"""Gradient estimators: autograd through a model, physics-aware (device forward, model backward),
and zeroth-order from queries alone.

Every estimator is ``estimator(theta (d,), batch, ctx) -> Estimate`` plus
``estimator.evaluate(thetas (K, d), batch, ctx) -> (losses (K,), cost)``; none mutates ``theta``;
each reports the reconfigurations and samples it spent (:class:`~blacksat.meter.Ledger`) and,
before any query, what it will spend: ``settings_per_step()`` (settings one estimate sends to
the device) and ``settings_per_evaluation`` (settings ``evaluate`` sends per row: 1 on a device,
0 through a model); budgets and schedules are sized from these (:mod:`blacksat.builder`). Device
queries go through the device given (wrap it in :class:`~blacksat.meter.MeteredDevice` to enforce
budgets); every setting sent is first clipped into the device's :class:`~blacksat.ParamSpace`.

Registered by name in :data:`ESTIMATORS` (with :class:`~blacksat.layered_response.LayeredResponse`,
query-only gradients of a device built from weight banks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from blacksat.device import Device
from blacksat.errors import ConfigError, InvalidReading
from blacksat.keep_best import KEEP_SMOOTHING
from blacksat.layered_response import (
    ANCHORS,
    MEMORY,
    OPERATING_POINTS,
    SCHEME,
    SCHEMES,
    BankJacobian,
    banks_of,
    derived_probes,
    parse_banks,
    probe_changes,
    probe_signs,
    settings_per_step,
)
from blacksat.meter import Ledger, MeteredDevice
from blacksat.objective import Batch, Estimate, StepContext, TrainingTask, add_costs, objective
from blacksat.space import ParamSpace
from blacksat.validation import check_choice, check_int, check_real

Family = Callable[..., Any]


def _pick(source: Any, family: Family | None, nuisance: Mapping[str, float], what: str) -> Any:
    """The source itself, or ``family(**nuisance)`` when nuisance values are requested."""
    if not nuisance:
        return source
    if family is None:
        raise ConfigError(
            f"nuisance values {dict(nuisance)} requested, but this {what} has no `family` to "
            "build the perturbed source; pass family=... (e.g. chip.model_family())"
        )
    return family(**nuisance)


def _digital(task: TrainingTask) -> list[torch.nn.Parameter]:
    return [p for p in task.digital_parameters() if p.requires_grad]


def _grads(loss: torch.Tensor, theta: torch.Tensor | None, params: list[torch.nn.Parameter]):
    inputs = ([theta] if theta is not None else []) + params
    gs = torch.autograd.grad(loss, inputs, allow_unused=True) if inputs else ()
    g_theta = gs[0] if theta is not None else None
    return g_theta, list(gs[1:] if theta is not None else gs)


def query_cost(
    device: Device, k: int, b: int, run: Callable[[], np.ndarray]
) -> tuple[np.ndarray, Ledger]:
    """Run a device call and return its readings with the cost it spent.

    With a :class:`MeteredDevice` the cost is the ledger difference (exact, including
    reconfigurations saved by re-using the held setting); otherwise ``k`` reconfigurations and
    ``k * b`` samples are assumed.
    """
    if isinstance(device, MeteredDevice):
        before = device.ledger
        y = run()
        return y, device.ledger - before
    return run(), Ledger(k, k * b, 1, 0)


def _clip(space: ParamSpace | None, thetas: torch.Tensor) -> torch.Tensor:
    """``thetas (..., d)`` into ``space``: clipped, periodic controls wrapped (no gradient)."""
    if space is None:
        return thetas
    return torch.as_tensor(space.project(thetas))


class Autograd:
    """Exact gradients through a differentiable model (the fallback when the model is known).

    Args:
        model: a :class:`~blacksat.Model` (e.g. ``chip.nominal_model()``, ``chip.exact_model()``
            or a surrogate).
        task: the :class:`~blacksat.task.Task`.
        family: optional ``family(**nuisance) -> Model`` for nuisance perturbations.
        space: optional control space (used by SAT to keep perturbed points in bounds).
    """

    name = "autograd"

    def __init__(
        self,
        model: Any,
        task: TrainingTask,
        *,
        family: Family | None = None,
        space: ParamSpace | None = None,
    ) -> None:
        if not callable(model):
            raise ConfigError(
                f"model must be callable as model(theta, x), got {type(model).__name__}"
            )
        self.model, self.task, self.family, self.space = model, task, family, space

    settings_per_evaluation = 0  # a model, not the device

    def settings_per_step(self) -> int:
        """Settings sent to the device per estimate: none (the gradient is the model's)."""
        return 0

    def __call__(self, theta: torch.Tensor, batch: Batch, ctx: StepContext) -> Estimate:
        model = _pick(self.model, self.family, ctx.nuisance, "autograd estimator")
        th = theta.detach().to(self.task.dtype).requires_grad_(True)
        params = _digital(self.task)
        logits = self.task.logits_model(model, th, batch.features)
        loss = objective(self.task, logits, batch, ctx)
        g, dg = _grads(loss, th, params)
        return Estimate(
            grad=g.detach().to(torch.float64),
            loss=float(loss.detach()),
            digital_grads=dg if params else None,
            logits=logits.detach(),
        )

    def evaluate(
        self, thetas: torch.Tensor, batch: Batch, ctx: StepContext
    ) -> tuple[torch.Tensor, Ledger]:
        model = _pick(self.model, self.family, ctx.nuisance, "autograd estimator")
        with torch.no_grad():
            logits = self.task.logits_model(model, thetas.to(self.task.dtype), batch.features)
            return objective(self.task, logits, batch, ctx).to(torch.float64), Ledger()

    def __repr__(self) -> str:
        return f"Autograd(model={type(self.model).__name__})"


class _DeviceEstimator:
    """Shared device plumbing: encode once per batch, query, decode, losses per setting."""

    name = "device"
    settings_per_evaluation = 1  # every row of ``evaluate`` is one setting on the device

    def __init__(self, device: Device, task: TrainingTask, family: Family | None) -> None:
        if not (hasattr(device, "query_many") and hasattr(device, "space")):
            raise ConfigError(
                f"device must implement the Device protocol, got {type(device).__name__}"
            )
        self.device, self.task, self.family = device, task, family
        self.space: ParamSpace = device.space

    def _device(self, ctx: StepContext) -> Device:
        return _pick(self.device, self.family, ctx.nuisance, f"{self.name} estimator")

    def _query(
        self, thetas: torch.Tensor, x: torch.Tensor, ctx: StepContext
    ) -> tuple[torch.Tensor, Ledger]:
        """``thetas (K, d)`` (clipped into bounds), ``x (B, *in)`` -> readings ``(K, B, *out)``."""
        dev = self._device(ctx)
        t = _clip(self.space, thetas.detach().to(torch.float64)).numpy()
        xs = x.detach().to(torch.float64).numpy()
        y, cost = query_cost(dev, t.shape[0], xs.shape[0], lambda: dev.query_many(t, xs))
        return torch.as_tensor(y, dtype=self.task.dtype), cost

    def evaluate(
        self, thetas: torch.Tensor, batch: Batch, ctx: StepContext
    ) -> tuple[torch.Tensor, Ledger]:
        with torch.no_grad():
            y, cost = self._query(thetas, self.task.encode(batch.features), ctx)
            return objective(self.task, self.task.decode(y), batch, ctx).to(torch.float64), cost


class PhysicsAware(_DeviceEstimator):
    """Physics-aware training (PAT, Wright et al. 2022): the forward pass on the device, the
    backward pass through a model's vector-Jacobian product at the same ``theta``.

    ``y = y_model + stop_grad(y_device - y_model)``: the loss sees the device's readings, the
    gradient flows through the model. One reconfiguration and ``B`` samples per estimate; digital
    layers before and after the device get exact chain-rule gradients (through the model's input
    Jacobian for the front end).

    Args:
        device: the (metered) device.
        model: any differentiable :class:`~blacksat.Model` (nominal physics or a surrogate).
        task: the task.
        family: optional ``family(**nuisance) -> Device`` (simulation only).
    """

    name = "physics_aware"

    def __init__(
        self, device: Device, model: Any, task: TrainingTask, *, family: Family | None = None
    ) -> None:
        super().__init__(device, task, family)
        if not callable(model):
            raise ConfigError(
                f"model must be callable as model(theta, x), got {type(model).__name__}"
            )
        self.model = model

    def settings_per_step(self) -> int:
        """Settings sent per estimate: one (the forward pass at ``theta``)."""
        return 1

    def __call__(self, theta: torch.Tensor, batch: Batch, ctx: StepContext) -> Estimate:
        params = _digital(self.task)
        x = self.task.encode(batch.features)
        y_dev, cost = self._query(theta[None], x, ctx)
        th = _clip(self.space, theta.detach()).to(self.task.dtype).requires_grad_(True)
        y_mod = self.model(th, x)
        y = y_mod + (y_dev[0] - y_mod).detach()
        logits = self.task.decode(y)
        loss = objective(self.task, logits, batch, ctx)
        g, dg = _grads(loss, th, params)
        return Estimate(
            grad=g.detach().to(torch.float64),
            loss=float(loss.detach()),
            cost=cost,
            digital_grads=dg if params else None,
            logits=logits.detach(),
        )

    def __repr__(self) -> str:
        return f"PhysicsAware(model={type(self.model).__name__})"


Directions = Literal["gaussian", "rademacher", "sphere", "coordinate"]
Scheme = Literal["central", "forward"]


class ZerothOrder(_DeviceEstimator):
    """Gradients from queries alone (two-point random-direction or coordinate finite differences).

    For ``q`` directions ``u_i`` (with ``E[u u^T] = I``) and smoothing radius ``sigma``:

    - ``scheme="central"`` (antithetic): ``g = 1/q sum_i (L(theta + s u_i) - L(theta - s u_i)) /
      (2 s) u_i`` from ``2q`` settings;
    - ``scheme="forward"`` (shared base): ``g = 1/q sum_i (L(theta + s u_i) - L(theta)) / s u_i``
      from ``q + 1`` settings.

    ``directions``: ``"gaussian"``, ``"rademacher"`` (+-1), ``"sphere"`` (uniform on the sphere of
    radius ``sqrt(d)``) or ``"coordinate"`` (steps of ``sigma`` along ``q`` distinct random
    coordinates, summed with weight ``d / q`` so the estimate stays unbiased; ``q=None`` takes all
    ``d``: exact finite differences). All settings
    of a step go to the device in **one** ``query_many`` call, on the same minibatch. Settings are
    clipped into the device's bounds before sending (near a bound the difference is one-sided;
    a periodic control wraps instead, so ``theta +- sigma u`` stays two-sided on the circle).

    Digital layers after the device (``task.back``) get exact gradients from the readings already
    paid for; a trainable front end cannot be differentiated through an opaque device (its
    gradients are ``None``: use :class:`PhysicsAware` or freeze it).
    """

    name = "zeroth_order"

    def __init__(
        self,
        device: Device,
        task: TrainingTask,
        *,
        q: int | None = 8,
        sigma: float = 0.05,
        directions: Directions = "gaussian",
        scheme: Scheme = "central",
        family: Family | None = None,
    ) -> None:
        super().__init__(device, task, family)
        check_choice("directions", directions, ("gaussian", "rademacher", "sphere", "coordinate"))
        check_choice("scheme", scheme, ("central", "forward"))
        if q is None and directions != "coordinate":
            raise ConfigError("q=None (all coordinates) needs directions='coordinate'")
        check_int("q", q, low=1, none_ok=True)
        check_real("sigma", sigma, low=0.0, low_open=True)
        d = self.space.dim
        if directions == "coordinate" and q is not None and q > d:
            raise ConfigError(f"q={q} coordinates requested but the device has only d={d} controls")
        self.q = d if q is None else int(q)
        self.sigma, self.directions, self.scheme = float(sigma), directions, scheme

    def settings_per_step(self) -> int:
        """Settings sent per estimate: ``2q`` (central) or ``q + 1`` (forward)."""
        return 2 * self.q if self.scheme == "central" else self.q + 1

    def _directions(self, d: int, rng: np.random.Generator) -> np.ndarray:
        q = self.q
        if self.directions == "gaussian":
            return rng.standard_normal((q, d))
        if self.directions == "rademacher":
            return rng.choice(np.array([-1.0, 1.0]), size=(q, d))
        if self.directions == "sphere":
            u = rng.standard_normal((q, d))
            return u / np.linalg.norm(u, axis=1, keepdims=True) * np.sqrt(d)
        idx = np.arange(d) if q == d else rng.choice(d, size=q, replace=False)
        u = np.zeros((q, d))
        u[np.arange(q), idx] = 1.0  # unit steps of sigma along q distinct coordinates
        return u

    def __call__(self, theta: torch.Tensor, batch: Batch, ctx: StepContext) -> Estimate:
        th = theta.detach().to(torch.float64)
        u = torch.as_tensor(self._directions(th.numel(), ctx.rng), dtype=torch.float64)
        s = self.sigma
        if self.scheme == "central":
            thetas = torch.cat([th + s * u, th - s * u])
        else:
            thetas = torch.cat([th[None], th + s * u])
        with torch.no_grad():
            x = self.task.encode(batch.features)
        y, cost = self._query(thetas, x, ctx)
        params = _digital(self.task)
        back = [p for p in params if self.task.back is not None and _owns(self.task.back, p)]
        logits = self.task.decode(y)  # (K, B, C), differentiable in the back layers only
        losses = objective(self.task, logits, batch, ctx)  # (K,)
        lv = losses.detach().to(torch.float64)
        q = self.q
        if self.scheme == "central":
            coef = (lv[:q] - lv[q:]) / (2 * s)
            loss_at, logits_at = float(lv.mean()), logits.detach().mean(0)
        else:
            coef = (lv[1:] - lv[0]) / s
            loss_at, logits_at = float(lv[0]), logits.detach()[0]
        # random directions: E[u u^T] = I, average over q; coordinates: each sampled with
        # probability q / d, so the sum is scaled by d / q (exact differences when q = d)
        weight = th.numel() / q if self.directions == "coordinate" else 1.0 / q
        grad = weight * (coef[:, None] * u).sum(0)
        digital = None
        if params:
            mean_loss = losses[0] if self.scheme == "forward" else losses.mean()
            gb = torch.autograd.grad(mean_loss, back, allow_unused=True) if back else ()
            by_id = {id(p): g for p, g in zip(back, gb, strict=True)}
            digital = [by_id.get(id(p)) for p in params]
        return Estimate(grad=grad, loss=loss_at, cost=cost, digital_grads=digital, logits=logits_at)

    def __repr__(self) -> str:
        return (
            f"ZerothOrder(q={self.q}, sigma={self.sigma}, directions={self.directions!r}, "
            f"scheme={self.scheme!r})"
        )


class LayeredResponse(_DeviceEstimator):
    """Gradients of a device built from weight banks, from its linear response (module
    docstring).

    Each step reads ``theta`` and ``probes`` settings ``theta + sigma r_k`` (random signs, clipped
    into the space; ``scheme="forward"``, their response changes centred over the step) or the ``2 *
    probes`` settings ``theta +- sigma r_k`` (``"central"``): ``1 + probes`` or ``1 + 2 * probes``
    reconfigurations (:mod:`blacksat.layered_response`). The wiring model is fitted to this step's
    probes and those of the ``memory - 1`` steps before it. The probes are read in
    one ``query_many`` call on ``inputs`` probe inputs uniform over the device's input range
    (its declared ``input_range``, else the range of the step's encoded batch), so that every
    input is driven fully; each probe's linear fit is its response matrix, and the fitted wiring
    model learns how the controls move it. ``theta`` is read on ``inputs`` of the step's own
    training samples (``anchor="batch"``; topped up with probe inputs when the batch is
    smaller), in a second call: its linear fit is the response *where the task drives
    the device*, and the loss of the step's batch is computed through it, so the model's
    gradient turns into one for every control. With ``anchor="probes"`` ``theta`` is read on the
    probe inputs in the same call (the batch's samples then never go to the device): the loss
    is then that of the best linear map over the whole input range, which misreads a device
    that is only nearly linear (an MRR network's saturating detectors) where the task drives
    it.

    Args:
        device: the device (normally a :class:`~blacksat.meter.MeteredDevice`).
        task: the training task.
        sigma: the probes' radius (controls' units).
        probes: fresh probes a step (pairs with ``scheme="central"``; default:
            :func:`derived_probes` of the wiring, ``memory`` and ``scheme``).
        scheme: ``"forward"`` (one-sided probes centred over the step) or ``"central"``
            (antithetic pairs); default :data:`~blacksat.layered_response.SCHEME`.
        inputs: probe inputs a reconfiguration (default: the batch's size); more than
            ``n_in + 1``.
        banks: the wiring (default: the device's ``weight_banks``).
        sweeps: alternating sweeps a step after the first fit.
        anchor: what ``theta`` is read with: ``"batch"`` (the step's training samples) or
            ``"probes"`` (the probe inputs).
        memory: steps whose probes the fit uses (this one's and ``memory - 1`` before it;
            default :data:`~blacksat.layered_response.MEMORY`; 1: this step's only).
        operating_point: the wiring model's operating-point term
            (:class:`~blacksat.layered_response.BankJacobian`): ``"off"``, ``"on"`` (its
            unknowns count in the derived ``probes``), or ``"late"``: both models are fitted to
            the same probes (the derived number of the model without it) from the first step,
            and the gradient comes from the one with the term after ``from_step`` steps
            (``True`` / ``False``: ``"on"`` / ``"off"``).
        from_step: with ``operating_point="late"``, the steps that take their gradient from the
            model without the term.
        plateau: with ``operating_point="late"``, switch earlier, for good, once the moving
            average of the step losses (the kept setting's,
            :data:`~blacksat.keep_best.KEEP_SMOOTHING`) has set no new low for this many
            steps: the separable model has run out (0: only at ``from_step``).
        train_share: the share of each probe reconfiguration's inputs that are training samples
            of the step's batch (the rest uniform over the input range; 0: all uniform).
        input_means: the operating-point term weighs each input by the mean of the step's probe
            inputs (:attr:`~blacksat.layered_response.BankJacobian.input_mean`; otherwise it
            takes the inputs' means as equal, as they are for uniform probe inputs).
        seed: the model's initial guess.
        family: a nuisance family of devices (as for the other device estimators).

    The digital layers get exact gradients through the identified response (a front end
    before the device as well: the response is linear in the inputs).
    """

    name = "layered_response"

    def __init__(
        self,
        device: Device,
        task: TrainingTask,
        *,
        sigma: float,
        probes: int | None = None,
        inputs: int | None = None,
        banks: Sequence[Any] | None = None,
        sweeps: int = 10,
        anchor: str = "batch",
        memory: int = MEMORY,
        operating_point: bool | str = "off",
        from_step: int = 0,
        plateau: int = 0,
        train_share: float = 0.0,
        input_means: bool = False,
        scheme: str = SCHEME,
        seed: int = 0,
        family: Any = None,
    ) -> None:
        super().__init__(device, task, family)
        d = self.space.dim
        self.anchor = check_choice("anchor", anchor, ANCHORS)
        self.scheme = check_choice("scheme", scheme, SCHEMES)
        wiring = parse_banks(banks, d) if banks is not None else banks_of(device)
        if wiring is None:
            raise ConfigError(
                f"{type(device).__name__} declares no weight_banks: the layered response needs the "
                "device's wiring (device.weight_banks, or banks=[(rows, cols), ...])"
            )
        n_in = int(np.prod(getattr(device, "input_shape", None) or (wiring[0].cols,)))
        n_out = int(np.prod(getattr(device, "output_shape", None) or (wiring[-1].rows,)))
        if (n_in, n_out) != (wiring[0].cols, wiring[-1].rows):
            raise ConfigError(
                f"the weight banks map {wiring[0].cols} inputs to {wiring[-1].rows} outputs, the "
                f"device {n_in} to {n_out}"
            )
        self.banks = wiring
        self.sigma = check_real("sigma", sigma, low=0.0, low_open=True)
        self.memory = int(check_int("memory", memory, low=1))
        if isinstance(operating_point, bool):
            operating_point = "on" if operating_point else "off"
        self.operating_point = check_choice("operating_point", operating_point, OPERATING_POINTS)
        self.train_share = check_real("train_share", train_share, low=0.0, high=1.0)
        if not isinstance(input_means, bool):
            raise ConfigError(f"input_means must be true or false, got {input_means!r}")
        self.input_means = input_means
        self.probes = (
            derived_probes(wiring, self.memory, self.operating_point == "on", self.scheme)
            if probes is None
            else check_int("probes", probes, low=2 if self.scheme == "forward" else 1)
        )
        self.inputs = check_int("inputs", inputs, low=n_in + 2, none_ok=True)
        self.sweeps = check_int("sweeps", sweeps, low=1)
        self.model = BankJacobian(wiring, seed=seed, operating_point=self.operating_point == "on")
        #: with ``operating_point="late"`` on a network of banks, the model with the term (fitted
        #: beside ``model``; ``None`` otherwise)
        self.op_model = (
            BankJacobian(wiring, seed=seed, operating_point=True)
            if self.operating_point == "late" and len(wiring) > 1
            else None
        )
        self.from_step = check_int("from_step", from_step, low=0)
        self.plateau = check_int("plateau", plateau, low=0)
        #: the step losses' moving average, its lowest value, the steps since it set one, and
        #: the step the plateau switched the gradient to ``op_model`` at (``None``: not yet)
        self.average, self.lowest, self.since = math.nan, math.inf, 0
        self.switched: int | None = None
        #: estimates made so far (part of the state: the switch to ``op_model`` counts them)
        self.steps = 0
        #: which model gave the last gradient: ``"separable"`` or ``"operating point"``
        self.last_model = "separable"
        #: the probes of the last ``memory`` steps: ``(dA (K, n_out, n_in + 1), delta (K, d))``
        self.recent: list[tuple[torch.Tensor, torch.Tensor]] = []
        #: the last fit's R² (the share of the probes' response changes the model explains)
        self.last_fit_r2 = math.nan

    def settings_per_step(self) -> int:
        """Settings sent per estimate: ``1 + probes`` (``"forward"``) or ``1 + 2 probes``."""
        return settings_per_step(self.probes, self.scheme)

    def _range(self, enc: torch.Tensor) -> tuple[float, float]:
        """Where the probe inputs lie: the device's declared ``input_range``, else the range of
        the step's encoded batch ``enc``, the same for every input (each input driven over the
        whole range the device sees in use: inputs the training data drives weakly would
        otherwise be identified from small signals, and their noise would enter the fit)."""
        declared = getattr(self.device, "input_range", None)
        if declared is not None:
            return float(declared[0]), float(declared[1])
        return float(enc.min()), float(enc.max())

    def _inputs(
        self, n: int, bounds: tuple[float, float], rng: np.random.Generator
    ) -> torch.Tensor:
        """``n`` probe inputs ``(n, n_in)``, uniform over ``bounds``."""
        n_in = self.banks[0].cols
        if n < n_in + 2:
            raise ConfigError(
                f"{n} inputs a reconfiguration cannot identify a linear response of {n_in} inputs "
                f"(needs at least {n_in + 2}); raise the batch size or pass inputs="
            )
        lo, hi = bounds
        return torch.as_tensor(lo + (hi - lo) * rng.random((n, n_in)), dtype=torch.float64)

    def __call__(self, theta: torch.Tensor, batch: Batch, ctx: StepContext) -> Estimate:
        th = theta.detach().to(torch.float64)
        k = self.probes
        r = probe_signs(k, th.numel(), self.scheme, ctx.rng)
        enc = self.task.encode(batch.features).to(torch.float64).reshape(len(batch.labels), -1)
        x = self._inputs(self.inputs or len(batch.labels), self._range(enc.detach()), ctx.rng)
        if self.train_share > 0:  # some of the probe inputs are the batch's own samples
            m = min(round(self.train_share * len(x)), len(enc))
            some = torch.as_tensor(ctx.rng.choice(len(enc), m, replace=False))
            x = torch.cat([enc.detach()[some], x[m:]])
        sent = [th + self.sigma * r] + ([th - self.sigma * r] if self.scheme == "central" else [])
        thetas = _clip(self.space, torch.cat([th[None], *sent]))
        shape = tuple(getattr(self.device, "input_shape", None) or (x.shape[1],))
        # (inputs, the settings read with them): theta on the batch's own samples (topped up
        # with probe inputs when the batch is smaller, so its response stays identified) and
        # the probes on x, or every setting on x
        if self.anchor == "batch":
            pick = torch.as_tensor(ctx.rng.choice(len(enc), min(len(x), len(enc)), replace=False))
            x0 = torch.cat([enc.detach()[pick], x[: len(x) - len(pick)]])
            calls = [(x0, thetas[:1]), (x, thetas[1:])]
        else:
            calls = [(x, thetas)]
        reads = [self._query(ths, xs.reshape(len(xs), *shape), ctx) for xs, ths in calls]
        cost = add_costs(*(c for _, c in reads))
        ys = [y for y, _ in reads]  # (settings, n, *out) each
        if not all(torch.isfinite(y).all() for y in ys):
            # a metered device refuses these; an unmetered one may not
            flat = torch.cat([y.reshape(-1) for y in ys])
            raise InvalidReading(
                f"the device returned {int((~torch.isfinite(flat)).sum())} NaN/inf readings; "
                "the layered response's fitted model is left as it was",
                reading=flat.numpy(),
            )
        resp = torch.cat(
            [
                _response(xs, y.to(torch.float64).reshape(len(ths), len(xs), -1))
                for (xs, ths), y in zip(calls, ys, strict=True)
            ]
        )
        a = resp.transpose(1, 2)  # (1 + k or 1 + 2k, n_out, n_in + 1)
        fresh = probe_changes(a[1:], thetas[1:], th, self.scheme, self.space.period)
        recent = [*self.recent, fresh][-self.memory :]
        a0 = a[0].clone().requires_grad_(True)
        params = _digital(self.task)
        out = enc @ a0[:, :-1].T + a0[:, -1]
        logits = self.task.decode(out.to(self.task.dtype))
        loss = objective(self.task, logits, batch, ctx)
        grads = torch.autograd.grad(loss, [a0, *params], allow_unused=True)
        g_a = grads[0].detach().to(torch.float64)
        models = [self.model] if self.op_model is None else [self.model, self.op_model]
        if self.input_means:  # this step's probe inputs' mean, for every probe of the window
            mean = x.mean(0)
            for m in models:
                m.input_mean = mean
        r2s = [
            m.fit(
                torch.cat([r[0] for r in recent]),
                torch.cat([r[1] for r in recent]),
                self.sweeps if m.fitted else None,  # the first fit: FIRST_SWEEPS
            )
            for m in models
        ]
        self.recent = recent
        self.steps += 1
        self._follow(float(loss.detach()))
        use_op = self.op_model is not None and (
            self.steps > self.from_step or self.switched is not None
        )
        self.last_model = "operating point" if use_op else "separable"
        chosen = models[-1] if use_op else self.model
        self.last_fit_r2 = r2s[-1] if use_op else r2s[0]
        grad = chosen.grad(g_a)
        digital: list[torch.Tensor | None] | None = list(grads[1:]) if params else None
        return Estimate(
            grad=grad,
            loss=float(loss.detach()),
            cost=cost,
            digital_grads=digital,
            logits=logits.detach(),
        )

    def _follow(self, loss: float) -> None:
        """Fold the step's ``loss`` into the moving average; with ``plateau``, switch to the
        model with the operating-point term once the average has set no new low for that many
        steps."""
        s = KEEP_SMOOTHING
        if math.isfinite(loss):
            self.average = loss if math.isnan(self.average) else s * self.average + (1 - s) * loss
        if self.average < self.lowest:
            self.lowest, self.since = self.average, 0
        else:
            self.since += 1
        if self.plateau and self.switched is None and self.since >= self.plateau:
            if self.op_model is not None and self.steps <= self.from_step:
                self.switched = self.steps

    def state_dict(self) -> dict[str, Any]:
        """The fitted wiring model(s) (warm start of the next fit), the recent steps' probes,
        the estimates made so far and the plateau's record."""
        return {
            "model": self.model.state_dict(),
            "recent": [{"dA": d.clone(), "delta": t.clone()} for d, t in self.recent],
            "op_model": None if self.op_model is None else self.op_model.state_dict(),
            "steps": self.steps,
            "plateau": [self.average, self.lowest, self.since, self.switched],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict` (a state saved before the probes were kept has none; one
        saved before ``operating_point="late"`` has no second model, which then starts afresh)."""
        steps = state.get("steps", 0)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ConfigError(f"the saved layered-response step count is malformed ({steps!r})")
        record = state.get("plateau")  # saved before the plateau switch: a fresh record
        if record is not None:
            try:
                average, lowest, since = float(record[0]), float(record[1]), int(record[2])
                switched = None if record[3] is None else int(record[3])
            except (TypeError, ValueError, IndexError) as exc:
                msg = f"the saved layered-response plateau record is malformed ({exc!r})"
                raise ConfigError(msg) from None
        self.model.load_state_dict(state["model"])
        if self.op_model is not None and state.get("op_model") is not None:
            self.op_model.load_state_dict(state["op_model"])
        self.steps = steps
        if record is not None:
            self.average, self.lowest, self.since, self.switched = average, lowest, since, switched
        try:
            self.recent = [
                (torch.as_tensor(r["dA"], dtype=torch.float64), torch.as_tensor(r["delta"]))
                for r in state.get("recent") or []
            ][-self.memory :]
        except (KeyError, TypeError) as exc:
            msg = f"the saved layered-response probes are malformed ({exc!r})"
            raise ConfigError(msg) from None

    def __repr__(self) -> str:
        banks = [(b.rows, b.cols, b.blocks) for b in self.banks]
        return (
            f"LayeredResponse(banks={banks}, probes={self.probes}, sigma={self.sigma}, "
            f"scheme={self.scheme!r}, anchor={self.anchor!r}, memory={self.memory}, "
            f"operating_point={self.operating_point})"
        )


def _response(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Least-squares linear response of readings ``y (S, n, n_out)`` to inputs ``x (n, n_in)``:
    ``(S, n_in + 1, n_out)``, the bias last."""
    design = torch.cat([x.reshape(len(x), -1), torch.ones(len(x), 1, dtype=x.dtype)], 1)
    return torch.linalg.pinv(design.to(torch.float64)) @ y


def _owns(module: torch.nn.Module, p: torch.nn.Parameter) -> bool:
    return any(p is mp for mp in module.parameters())


ESTIMATORS: dict[str, type] = {
    Autograd.name: Autograd,
    PhysicsAware.name: PhysicsAware,
    ZerothOrder.name: ZerothOrder,
}


def estimator_state(estimator: Any) -> dict[str, Any] | None:
    """An estimator's memory (its ``state_dict()``), ``None`` for one without memory.

    Wrappers (SAT, :class:`~blacksat.nonfinite.NonFinitePolicy`) nest the state of what they
    wrap under ``"inner_state"`` (optax-style), so one call captures every level."""
    sd = getattr(estimator, "state_dict", None)
    return sd() if callable(sd) else None


def load_estimator_state(estimator: Any, state: Mapping[str, Any] | None) -> None:
    """Inverse of :func:`estimator_state` (a ``None`` state, or an estimator without memory, is a
    no-op)."""
    load = getattr(estimator, "load_state_dict", None)
    if state is not None and callable(load):
        load(state)


def make_estimator(name: str, *args: Any, **kwargs: Any) -> Any:
    """Build a registered estimator by name (``"autograd"``, ``"physics_aware"``,
    ``"zeroth_order"``, ``"layered_response"``)."""
    if name not in ESTIMATORS:
        raise ConfigError(f"unknown estimator {name!r}; registered: {sorted(ESTIMATORS)}")
    return ESTIMATORS[name](*args, **kwargs)


ESTIMATORS[LayeredResponse.name] = LayeredResponse
#: estimators that learn from device queries alone (no model to differentiate)
QUERY_ONLY = ("zeroth_order", "layered_response")

__all__ = [
    "ESTIMATORS",
    "QUERY_ONLY",
    "Autograd",
    "LayeredResponse",
    "PhysicsAware",
    "ZerothOrder",
    "estimator_state",
    "load_estimator_state",
    "make_estimator",
    "query_cost",
]
