"""The whole opaque-device workflow on your own instrument, from queries alone.

    python examples/wrap_instrument.py
    python examples/wrap_instrument.py --budget 2000 --log run/queries.sqlite

1. **wrap**: an instrument only has to look like a blacksat ``Device``: a ``space`` (a
   ``ParamSpace`` with its hard limits) and ``query`` / ``query_many`` returning numpy readings.
   It declares its shapes, whether it re-programs on every call (``reprograms_on_query``), its
   input limits and the kind of its readings; it needs nothing of blacksat but ``ParamSpace``.
2. **characterize** it (``blacksat.characterize``): readout noise, programming noise, drift and
   sensitivity, measured with a stated budget, turned into a perturbation model;
3. **train** it with query-only SAT against that measured model (``ZerothOrder`` + ``sat``);
4. **evaluate** on re-programming (each batch a fresh write), on drift (the ambient
   temperature moved) and on fresh devices of the same process;
5. **compare** with a nevergrad optimizer at the same budget of reconfigurations.

``MockWeightBank`` below stands for a 3 x 5 bank of thermally tuned optical modulators (one heater
per weight, balanced photodetection, weights ``cos(phase)`` in ``[-1, 1]``; the fifth input is a
constant reference beam, a bias). Every call writes the heater voltages again, and each write
settles with a small random phase error; the marked block is where your driver calls go. Here a
tiny optical model with hidden fabrication errors answers instead.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from blacksat import MeteredDevice, ParamSpace, QueryLog, Task, TrainConfig, Trainer, sat
from blacksat.characterize import characterize
from blacksat.data import load_iris
from blacksat.estimators import ZerothOrder
from blacksat.ng.adapter import DeviceObjective, minimize
from blacksat.task import Ports

V_MAX = 4.0  # the heater driver's limit, in volts: no setting above it ever reaches the hardware


class MockWeightBank:
    """A ``n_out x n_in`` bank of heater-tuned modulators: ``y = W(v) x`` with
    ``W_ij = cos(k v_ij^2 + phi_ij + a)`` (thermal phase grows with heater power ~ ``v^2``;
    ``a``: ambient phase drift common to every modulator).

    ``theta (d,) = v`` heater voltages in ``[0, V_MAX]``; ``x (B, n_in)`` optical input powers
    in ``[0, 1]``; readings ``(B, n_out)`` balanced photocurrents (signed). Batched:
    ``(K, d)`` -> ``(K, B, n_out)``. Every setting sent is written again (a settling phase
    error of ``write_noise`` rad each time), hence ``reprograms_on_query = True``.
    """

    reprograms_on_query = True  # the driver writes every setting it is sent
    input_range = (0.0, 1.0)  # optical powers
    output_kind = "signed"  # balanced photocurrents

    def __init__(
        self,
        n_in: int = 5,
        n_out: int = 3,
        *,
        seed: int = 0,
        noise: float = 0.01,
        write_noise: float = 0.05,
        ambient: float = 0.0,
    ):
        self.n_in, self.n_out = n_in, n_out
        names = [f"heater[{i},{j}]" for i in range(n_out) for j in range(n_in)]
        self.space = ParamSpace.box(n_in * n_out, 0.0, V_MAX, names=names)
        self.input_shape, self.output_shape = (n_in,), (n_out,)
        # --- the simulation standing in for the hardware: hidden from the trainer ---
        rng = np.random.default_rng(seed)
        self._phase_offset = rng.normal(0.0, 0.3, (n_out, n_in))  # fabrication errors
        self._efficiency = 0.45 * (1.0 + rng.normal(0.0, 0.05, (n_out, n_in)))  # rad / V^2
        self._noise, self._write_noise, self._ambient = noise, write_noise, ambient
        self._rng = np.random.default_rng(seed + 1)
        self.writes = 0  # the driver's own count of program operations

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
            self.writes += 1
            y = self._simulate(volts, x)
            readings.append(y)
        return np.stack(readings)

    def _simulate(self, volts: np.ndarray, x: np.ndarray) -> np.ndarray:
        settle = self._write_noise * self._rng.standard_normal((self.n_out, self.n_in))
        phase = self._efficiency * volts.reshape(self.n_out, self.n_in) ** 2
        w = np.cos(phase + self._phase_offset + self._ambient + settle)
        y = x @ w.T
        return y + self._noise * self._rng.standard_normal(y.shape)


def with_reference(features: torch.Tensor) -> torch.Tensor:
    """The bank's inputs: the 4 iris features as optical powers plus a reference beam of
    power 1, ``(B, 4) -> (B, 5)``."""
    return torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], dim=1)


def evaluate(task: Task, theta: np.ndarray, seed: int) -> dict[str, float]:
    """Accuracy (full test split) re-programmed (mean of 3 evaluations), under ambient drift
    (+0.3 rad) and on 2 fresh devices."""
    chip = MockWeightBank(seed=seed)
    return {
        "reprogramming": float(np.mean([task.accuracy(chip, theta) for _ in range(3)])),
        "drift": task.accuracy(MockWeightBank(seed=seed, ambient=0.3), theta),
        "fresh": float(
            np.mean([task.accuracy(MockWeightBank(seed=seed + k), theta) for k in (100, 101)])
        ),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=2400, help="reconfigurations per method")
    ap.add_argument("--characterize", type=int, default=150, help="of which to measure")
    ap.add_argument("--log", default=None, help="query log file (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    instrument = MockWeightBank(seed=args.seed)
    data = load_iris(seed=args.seed)
    readout = Ports(3, normalize=False, scale=10.0)  # photocurrents -> logits
    task = Task(data, input_shape=(5,), encoder=with_reference, readout=readout)
    theta0 = instrument.space.center.copy()
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(args.log) if args.log else Path(tmp) / "queries.sqlite"
        with QueryLog(log_path, device="weight-bank-1") as log:
            # 1. wrap: validation against the limits, a hard budget, counting, every reading logged
            meter = MeteredDevice(instrument, max_reconfigurations=args.budget, observers=[log])
            # 2. characterize at the start setting, on 32 training inputs
            with torch.no_grad():
                x = task.encode(torch.as_tensor(data.split("train")[0][:32])).double().numpy()
            measured = characterize(meter, x, budget=args.characterize, theta=theta0)
            # 3. query-only SAT, average case over the measured model, on what is left
            est = sat(ZerothOrder(meter, task, q=4, sigma=0.05), perturbation=measured.model,
                      mode="average")  # fmt: skip
            config = TrainConfig(lr=0.05, max_steps=10**6, epochs=None, batch_size=32,
                                 seed=args.seed, progress=not args.quiet)  # fmt: skip
            result = Trainer(task, est, instrument.space, config, meter=meter).fit(theta0)
            logged = len(log)
    # 4. evaluate (fresh instruments: the trained one's write count stays the meter's)
    ours = evaluate(task, result.theta, args.seed)
    # 5. nevergrad at the same budget, on an identical instrument
    ng_meter = MeteredDevice(MockWeightBank(seed=args.seed), max_reconfigurations=args.budget)
    ng = minimize(DeviceObjective(task, ng_meter, seed=args.seed), "OnePlusOne",
                  budget=args.budget, num_workers=8, seed=args.seed, init=theta0)  # fmt: skip
    theirs = evaluate(task, np.asarray(ng.theta), args.seed)

    led = meter.ledger
    assert led.reconfigurations == instrument.writes  # the ledger is the driver's own count
    print(measured.markdown())
    print(f"\nSAT against the measured model: stopped ({result.reason}) after {result.steps} steps")
    print(
        f"  ledger: {led.reconfigurations} reconfigurations (budget {args.budget}; the driver "
        f"counted {instrument.writes} writes), {led.samples} samples; {logged} queries logged"
    )
    for name, acc in (("query-only SAT (measured)", ours), ("nevergrad OnePlusOne", theirs)):
        print(
            f"  {name:26s} re-programmed {acc['reprogramming']:.3f}, drift +0.3 rad "
            f"{acc['drift']:.3f}, fresh devices {acc['fresh']:.3f}"
        )
    print(f"  nevergrad spent {ng_meter.ledger.reconfigurations} reconfigurations; "
          f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    return {
        **{f"sat_{k}": v for k, v in ours.items()},
        **{f"ng_{k}": v for k, v in theirs.items()},
        "reconfigurations": float(led.reconfigurations),
        "writes": float(instrument.writes),
        "characterization_reconfigurations": float(measured.ledger.reconfigurations),
        "ng_reconfigurations": float(ng_meter.ledger.reconfigurations),
        "logged_queries": float(logged),
        "radius": measured.model.radius,
    }


if __name__ == "__main__":
    main()
