"""What to do when a step's readings, loss or gradient are not finite: a wrapper around any
gradient estimator (``NonFinitePolicy(estimator, "skip")``), in the spirit of optax's
``apply_if_finite``.

A device can return NaN/inf (a saturated detector, a driver glitch) or a reading of the wrong
shape; the :class:`~blacksat.MeteredDevice` then raises :class:`~blacksat.InvalidReading` (the
query is charged). An estimate can also come out non-finite from finite readings (a loss that
overflows). :class:`NonFinitePolicy` catches both and, by its ``on_nonfinite`` setting:

- ``"raise"``: raises (:class:`~blacksat.InvalidReading` as it came, or
  :class:`~blacksat.NonFiniteError` for a non-finite estimate); the trainer rolls the step back;
- ``"skip"``: returns a *skipped* estimate: a zero gradient for the controls, none for the
  digital layers (a trainer leaves them untouched), the last finite loss (``0.0`` before any),
  no logits, and the cost the failed attempt spent;
- ``"penalize"``: returns a *penalized* estimate: the loss ``penalty`` and the gradient of
  ``pull / 2 * ||theta - theta_good||^2``, i.e. ``pull * (theta - theta_good)`` with
  ``theta_good`` the last point whose estimate was finite: the step retreats towards where the
  device last answered (a zero gradient before any finite estimate).

After ``max_consecutive`` failures in a row the next one raises
:class:`~blacksat.NonFiniteError` whatever the setting (a device stuck on garbage must not burn
the budget); a finite estimate resets the count. With a momentum optimizer (Adam) a zero
gradient still moves the controls along the momentum: "skip" skips the *measurement*, not the
optimizer's step.

The wrapper's memory (the count, ``theta_good``, the last finite loss) is in
:meth:`NonFinitePolicy.state_dict`, with the wrapped estimator's under ``"inner_state"``
(optax-style nesting); the trainer stores it in :attr:`~blacksat.checkpoint.TrainState.estimator`
at every checkpoint, also when a SAT wraps the policy, so a resumed run continues with the same
count and last good point.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from blacksat.errors import ConfigError, InvalidReading, NonFiniteError
from blacksat.estimators import estimator_state, load_estimator_state
from blacksat.meter import Ledger, MeteredDevice
from blacksat.objective import Batch, Estimate, StepContext
from blacksat.validation import check_choice, check_int, check_real

OnNonFinite = Literal["raise", "skip", "penalize"]
_ON = ("raise", "skip", "penalize")


def _problem(est: Estimate) -> str | None:
    """What is not finite in ``est`` (``None`` when everything is)."""
    if not math.isfinite(float(est.loss)):
        return f"the loss is {float(est.loss)}"
    if not bool(torch.isfinite(torch.as_tensor(est.grad)).all()):
        return "the gradient holds NaN/inf"
    for g in est.digital_grads or ():
        if g is not None and not bool(torch.isfinite(torch.as_tensor(g)).all()):
            return "a digital gradient holds NaN/inf"
    return None


def _find_meter(estimator: Any) -> MeteredDevice | None:
    """The metered device an estimator (or a SAT's descent/ascent) queries, if any."""
    for obj in (estimator, getattr(estimator, "descent", None), getattr(estimator, "ascent", None)):
        dev = getattr(obj, "device", None)
        if isinstance(dev, MeteredDevice):
            return dev
    return None


class NonFinitePolicy:
    """A gradient estimator that handles non-finite readings, losses and gradients of another.

    Args:
        estimator: any :class:`~blacksat.objective.GradientEstimator` (e.g. a
            :func:`~blacksat.sat` estimator: wrap the outermost one).
        on_nonfinite: ``"raise"``, ``"skip"`` (default) or ``"penalize"`` (module docstring).
        max_consecutive: failures in a row that are absorbed (``>= 1``); the next raises.
        penalty: the loss a penalized estimate reports (finite).
        pull: weight of the retreat gradient of a penalized estimate (finite, ``>= 0``).
        meter: the :class:`~blacksat.MeteredDevice` the estimator queries, to report the cost
            of an attempt that raised (found on ``estimator.device`` / its SAT halves when not
            given; without one the cost of a raised attempt is reported as zero).

    ``__call__(theta (d,), batch, ctx) -> Estimate``; ``evaluate`` is the inner estimator's.

    Attributes:
        consecutive: failures in a row so far.
        failures: failures absorbed or raised in all.
    """

    def __init__(
        self,
        estimator: Any,
        on_nonfinite: OnNonFinite = "skip",
        *,
        max_consecutive: int = 3,
        penalty: float = 10.0,
        pull: float = 1.0,
        meter: MeteredDevice | None = None,
    ) -> None:
        if not (callable(estimator) and hasattr(estimator, "task")):
            raise ConfigError(
                f"estimator must be a gradient estimator, got {type(estimator).__name__}"
            )
        check_choice("on_nonfinite", on_nonfinite, _ON)
        n = check_int("max_consecutive", max_consecutive, low=1)
        check_real("penalty", penalty)
        check_real("pull", pull, low=0.0)
        if meter is not None and not isinstance(meter, MeteredDevice):
            raise ConfigError(f"meter must be a MeteredDevice or None, got {type(meter).__name__}")
        self.estimator = estimator
        self.on_nonfinite: OnNonFinite = on_nonfinite
        self.max_consecutive = int(n)
        self.penalty, self.pull = float(penalty), float(pull)
        self.meter = meter if meter is not None else _find_meter(estimator)
        self.name = f"nonfinite_{getattr(estimator, 'name', 'estimator')}"
        self.reset()

    @property
    def task(self) -> Any:
        return self.estimator.task

    @property
    def space(self) -> Any:
        return getattr(self.estimator, "space", None)

    @property
    def settings_per_evaluation(self) -> int:
        return int(self.estimator.settings_per_evaluation)

    def settings_per_step(self) -> int:
        """The wrapped estimator's settings per step (a failed attempt spends no more)."""
        return int(self.estimator.settings_per_step())

    def reset(self) -> None:
        """Forget the count, the last good point and the last finite loss."""
        self.consecutive = 0
        self.failures = 0
        self._good: torch.Tensor | None = None
        self._loss: float | None = None

    def state_dict(self) -> dict[str, Any]:
        """The wrapper's memory (plain values and a tensor) and the wrapped estimator's
        (``"inner_state"``, ``None`` when it has none)."""
        return {
            "consecutive": self.consecutive,
            "failures": self.failures,
            "good": None if self._good is None else self._good.clone(),
            "loss": self._loss,
            "inner_state": estimator_state(self.estimator),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict` (a state without ``"inner_state"``, as written before
        states nested, leaves the wrapped estimator as it is)."""
        self.consecutive = int(state["consecutive"])
        self.failures = int(state["failures"])
        self._good = None if state["good"] is None else torch.as_tensor(state["good"]).clone()
        self._loss = state["loss"]
        load_estimator_state(self.estimator, state.get("inner_state"))

    # ------------------------------------------------------------------ estimator protocol
    def evaluate(
        self, thetas: torch.Tensor, batch: Batch, ctx: StepContext
    ) -> tuple[torch.Tensor, Ledger]:
        return self.estimator.evaluate(thetas, batch, ctx)

    def __call__(self, theta: torch.Tensor, batch: Batch, ctx: StepContext) -> Estimate:
        meter = self.meter
        before = meter.ledger if meter is not None else None
        try:
            est = self.estimator(theta, batch, ctx)
        except (InvalidReading, NonFiniteError) as exc:
            spent = Ledger() if meter is None or before is None else meter.ledger - before
            return self._failed(theta, exc, spent)
        problem = _problem(est)
        if problem is not None:
            err = NonFiniteError(f"the {self.estimator!r} estimate is not finite: {problem}")
            return self._failed(theta, err, est.cost)
        self.consecutive = 0
        self._good = theta.detach().to(torch.float64).clone()
        self._loss = float(est.loss)
        return est

    def _failed(self, theta: torch.Tensor, exc: Exception, cost: Ledger) -> Estimate:
        self.consecutive += 1
        self.failures += 1
        if self.on_nonfinite == "raise":
            raise exc
        if self.consecutive > self.max_consecutive:
            raise NonFiniteError(
                f"{self.consecutive} non-finite estimates in a row, more than the "
                f"{self.max_consecutive} that on_nonfinite={self.on_nonfinite!r} absorbs; "
                f"last: {exc}"
            ) from exc
        th = theta.detach().to(torch.float64)
        grad = torch.zeros_like(th)
        if self.on_nonfinite == "penalize" and self._good is not None:
            diff = th - self._good if self.space is None else self.space.difference(th, self._good)
            grad = self.pull * diff  # periodic controls retreat the short way round
            loss = self.penalty
        elif self.on_nonfinite == "penalize":
            loss = self.penalty
        else:
            loss = 0.0 if self._loss is None else self._loss
        return Estimate(grad=grad, loss=loss, cost=cost, digital_grads=None, logits=None)

    def __repr__(self) -> str:
        return (
            f"NonFinitePolicy({self.estimator!r}, on_nonfinite={self.on_nonfinite!r}, "
            f"max_consecutive={self.max_consecutive})"
        )


__all__ = ["NonFinitePolicy", "OnNonFinite"]
