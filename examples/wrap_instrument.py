"""Wrap your own instrument and train it with zeroth-order SAT, from queries alone.

    python examples/wrap_instrument.py
    python examples/wrap_instrument.py --budget 4000 --log run/queries.sqlite

An instrument only has to look like a blacksat ``Device``: a ``space`` (a ``ParamSpace`` with the
instrument's hard limits) and ``query`` / ``query_many`` that apply settings and return readings
as numpy arrays. It needs nothing of blacksat but ``ParamSpace``, and exposes no gradients.

``MockWeightBank`` below stands for a 3 x 5 bank of thermally tuned optical modulators (one heater
per weight, balanced photodetection, weights ``cos(phase)`` in ``[-1, 1]``; the fifth input is a
constant reference beam, a bias); the marked block is where your driver calls go. Here a tiny
optical model with hidden fabrication errors and readout noise answers instead. blacksat then
wraps it in a ``MeteredDevice`` (validation against the limits, a hard budget, counting) with a
``QueryLog`` (every reading persisted before use), and trains it with SAT whose descent
gradients come from queries alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from blacksat import MeteredDevice, ParamSpace, QueryLog, Task, TrainConfig, Trainer, sat
from blacksat.data import load_iris
from blacksat.estimators import ZerothOrder
from blacksat.evaluation import accuracy
from blacksat.perturbations import CommonMode
from blacksat.task import Ports

V_MAX = 4.0  # the heater driver's limit, in volts: no setting above it ever reaches the hardware


class MockWeightBank:
    """A ``n_out x n_in`` bank of heater-tuned modulators: ``y = W(v) x`` with
    ``W_ij = cos(k v_ij^2 + phi_ij)`` (thermal phase grows with heater power ~ ``v^2``).

    ``theta (d,) = v`` heater voltages in ``[0, V_MAX]``; ``x (B, n_in)`` optical input powers;
    readings ``(B, n_out)`` balanced photocurrents. Batched: ``(K, d)`` -> ``(K, B, n_out)``.
    """

    def __init__(self, n_in: int = 5, n_out: int = 3, *, seed: int = 0, noise: float = 0.01):
        self.n_in, self.n_out = n_in, n_out
        names = [f"heater[{i},{j}]" for i in range(n_out) for j in range(n_in)]
        self.space = ParamSpace.box(n_in * n_out, 0.0, V_MAX, names=names)
        self.input_shape, self.output_shape = (n_in,), (n_out,)
        # --- the simulation standing in for the hardware: hidden from the trainer ---
        rng = np.random.default_rng(seed)
        self._phase_offset = rng.normal(0.0, 0.3, (n_out, n_in))  # fabrication errors
        self._efficiency = 0.45 * (1.0 + rng.normal(0.0, 0.05, (n_out, n_in)))  # rad / V^2
        self._noise, self._rng = noise, np.random.default_rng(seed + 1)

    def query(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """One setting ``(d,)``, inputs ``(B, n_in)`` -> readings ``(B, n_out)``."""
        return self.query_many(np.asarray(theta)[None], x)[0]

    def query_many(self, thetas: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``K`` settings, one input batch -> ``(K, B, n_out)``."""
        thetas, x = np.asarray(thetas, dtype=np.float64), np.asarray(x, dtype=np.float64)
        readings = []
        for volts in thetas:
            # >>> your driver goes here, e.g.:
            # >>>     self.driver.set_heater_voltages(volts.reshape(self.n_out, self.n_in))
            # >>>     self.driver.wait_settled()              # a reconfiguration: the slow part
            # >>>     y = self.driver.measure(x)              # B inputs through the bank
            y = self._simulate(volts, x)
            readings.append(y)
        return np.stack(readings)

    def _simulate(self, volts: np.ndarray, x: np.ndarray) -> np.ndarray:
        phase = self._efficiency * volts.reshape(self.n_out, self.n_in) ** 2 + self._phase_offset
        y = x @ np.cos(phase).T
        return y + self._noise * self._rng.standard_normal(y.shape)


def with_reference(features: torch.Tensor) -> torch.Tensor:
    """The bank's inputs: the 4 iris features as optical powers plus a reference beam of
    power 1, ``(B, 4) -> (B, 5)``."""
    return torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], dim=1)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=3000, help="reconfiguration budget")
    ap.add_argument("--steps", type=int, default=400, help="at most this many SAT steps")
    ap.add_argument("--log", default=None, help="query log file (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    instrument = MockWeightBank(seed=args.seed)
    data = load_iris(seed=args.seed)
    readout = Ports(3, normalize=False, scale=10.0)  # photocurrents -> logits
    task = Task(data, input_shape=(5,), encoder=with_reference, readout=readout)
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(args.log) if args.log else Path(tmp) / "queries.sqlite"
        with QueryLog(log_path, device="weight-bank-1") as log:
            meter = MeteredDevice(instrument, max_reconfigurations=args.budget, observers=[log])
            theta0 = instrument.space.center.copy()
            before = accuracy(task, instrument, theta0)  # a check outside the training budget
            # flat against a common drift of every heater (ambient temperature), queries only
            est = sat(
                ZerothOrder(meter, task, q=4, sigma=0.05),
                perturbation=CommonMode(0.05),
                mode="average",
            )
            config = TrainConfig(
                lr=0.05,
                max_steps=args.steps,
                epochs=None,
                batch_size=32,
                seed=args.seed,
                progress=not args.quiet,
            )
            result = Trainer(task, est, instrument.space, config, meter=meter).fit(theta0)
            after = accuracy(task, instrument, result.theta)
            logged = len(log)
            spent = log.spent(device="weight-bank-1")

    led = meter.ledger
    print(f"stopped ({result.reason}) after {result.steps} steps")
    print(f"  test accuracy: {before:.3f} at the start -> {after:.3f} after training")
    print(
        f"  ledger: {led.reconfigurations} reconfigurations (budget {args.budget}), "
        f"{led.samples} samples, {led.queries} queries, {led.failures} failures"
    )
    print(
        f"  query log: {logged} queries, {spent.reconfigurations} reconfigurations recorded; "
        f"{time.perf_counter() - t0:.1f} s"
    )
    return {
        "accuracy_before": before,
        "accuracy_after": after,
        "reconfigurations": float(led.reconfigurations),
        "samples": float(led.samples),
        "logged_queries": float(logged),
    }


if __name__ == "__main__":
    main()
