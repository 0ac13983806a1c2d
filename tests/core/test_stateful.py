"""The budget is never exceeded and the ledger always equals an independent tally, whatever mix
of single queries, batched queries, SAT steps, nevergrad ask/tell batches, device crashes and
resumes (a fresh MeteredDevice restored to the saved ledger) happens.

A hypothesis state machine drives one simulated chip through a counting double. Each machine
draws its budgets and whether the meter retries failed queries. A "crash" makes the next device
call fail (a flaky link); a "resume" replaces the meter by a new one restored to the ledger saved
at that point, as a new process would from its checkpoint (the tally forgets the held setting:
a reconnect leaves it unknown, which is also what the fresh meter assumes).
"""

import functools
import warnings

import numpy as np
import torch
from doubles import CountingDevice, FlakyDevice
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from blacksat import BudgetExhausted, DeviceError
from blacksat.data import load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.estimators import ZerothOrder
from blacksat.meter import MeteredDevice
from blacksat.ng.adapter import DeviceObjective, minimize
from blacksat.objective import StepContext
from blacksat.retry import RetryPolicy
from blacksat.sat import sat

B = 8


@functools.lru_cache(maxsize=1)
def setting():
    chip = MZIMesh(n_modes=4, seed=0, noise=0.0, drift=0.0)
    task = default_task(chip, load_iris(seed=0)).to(torch.float64)
    return chip, task


class MeteredRun(RuleBasedStateMachine):
    @initialize(
        reconf=st.integers(4, 120),
        samples=st.integers(16, 1200),
        retries=st.integers(0, 2),
    )
    def start(self, reconf, samples, retries):
        chip, self.task = setting()
        self.flaky = FlakyDevice(chip, failures=0)
        self.counter = CountingDevice(self.flaky)
        self.budget = (reconf, samples)
        self.retry = RetryPolicy(max_retries=retries, backoff=0.0) if retries else None
        self.points = chip.space.sample(np.random.default_rng(1), 4)
        self.x = np.random.default_rng(2).uniform(0.1, 1.0, (B, 4))
        self.rng = np.random.default_rng(3)
        self.resumes = 0
        self.meter = self._new_meter()

    def _new_meter(self) -> MeteredDevice:
        meter = MeteredDevice(
            self.counter,
            max_reconfigurations=self.budget[0],
            max_samples=self.budget[1],
            retry=self.retry,
        )
        self.sat = sat(ZerothOrder(meter, self.task, q=2, sigma=0.1), rho=0.05)
        self.objective = DeviceObjective(self.task, meter, batch_size=B, seed=self.resumes)
        return meter

    def _guard(self, fn):
        try:
            fn()
        except (BudgetExhausted, DeviceError) as exc:
            event(type(exc).__name__)

    @rule(which=st.integers(0, 3), b=st.integers(1, B))
    def single_query(self, which, b):
        self._guard(lambda: self.meter.query(self.points[which], self.x[:b]))

    @rule(idx=st.lists(st.integers(0, 3), min_size=1, max_size=5), b=st.integers(1, B))
    def batched_query(self, idx, b):
        self._guard(lambda: self.meter.query_many(self.points[idx], self.x[:b]))

    @rule(which=st.integers(0, 3))
    def sat_step(self, which):
        batch = self.task.batch("train", np.arange(B))
        theta = torch.as_tensor(self.points[which])
        self._guard(lambda: self.sat(theta, batch, StepContext(self.rng)))

    @rule(budget=st.integers(1, 6), workers=st.integers(1, 3))
    def nevergrad_batches(self, budget, workers):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._guard(
                lambda: minimize(
                    self.objective, "OnePlusOne", budget=budget, num_workers=workers, seed=0
                )
            )

    @rule(failures=st.integers(1, 3))
    def crash(self, failures):
        self.flaky.reset(failures)

    @rule()
    def resume(self):
        saved = self.meter.ledger  # what the crashed run's checkpoint holds
        self.resumes += 1
        self.counter.forget()
        self.meter = self._new_meter()
        self.meter.restore(saved)

    @invariant()
    def budget_is_never_exceeded(self):
        ledger = self.meter.ledger
        assert ledger.reconfigurations <= self.budget[0]
        assert ledger.samples <= self.budget[1]

    @invariant()
    def ledger_equals_the_tally(self):
        ledger, c = self.meter.ledger, self.counter
        assert (ledger.reconfigurations, ledger.samples, ledger.queries) == (
            c.reconfigurations,
            c.samples,
            c.calls,
        )
        assert ledger.failures <= ledger.queries


MeteredRun.TestCase.settings = settings(
    settings.get_profile("ci"), max_examples=40, stateful_step_count=20
)
TestMeteredRun = MeteredRun.TestCase
