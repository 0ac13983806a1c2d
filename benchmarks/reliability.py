"""Reliability: a fault-injection campaign on simulated MZI meshes.

    python benchmarks/reliability.py            # the full campaign, writes BENCHMARKS.md
    python benchmarks/reliability.py --quick    # a smaller one, prints only

Three parts, all seeded:

1. **Faults**: zeroth-order SAT runs (a retrying meter, a skipping non-finite policy, a query log)
   on meshes whose every device call fails with probability ``p`` (an exception, a time-out, a
   NaN / +inf / -inf reading, a reading of the wrong shape). Counted: faults injected, failed
   attempts charged, retries, skipped steps, how the run ended, settings outside the box sent,
   ledger vs an independent tally, completed queries missing from the log.
2. **Bad inputs**: settings with NaN / +-inf / out of bounds / wrong shape and inputs with NaN /
   inf / wrong shape / no rows / no numbers, through ``query``, ``query_many``, the nevergrad
   objective and ``Trainer.fit``: each refused (or clipped, where clipping is the documented
   behaviour) before anything reaches the device.
3. **Crashes**: a run crashed at every device call, and at every checkpoint write, resumed from
   its last checkpoint with fresh objects (a new process); plus runs killed with SIGKILL in a
   child process at random moments. Each must end bitwise equal to an uninterrupted run, charge
   everything it spent, and lose no completed query from the log.

Doubles (fault injection, counting, recording) are re-implemented here: benchmarks do not import
the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, machine, write_section

import blacksat.trainer as trainer_mod
from blacksat.checkpoint import load_checkpoint
from blacksat.data import load_iris
from blacksat.devices import MZIMesh
from blacksat.devices.tasks import default_task
from blacksat.errors import BlacksatError, DeviceError, ValidationError
from blacksat.estimators import ZerothOrder
from blacksat.meter import MeteredDevice
from blacksat.ng.adapter import DeviceObjective
from blacksat.nonfinite import NonFinitePolicy
from blacksat.querylog import QueryLog
from blacksat.retry import RetryPolicy
from blacksat.sat import sat
from blacksat.trainer import TrainConfig, Trainer

FAULTS = ("exception", "timeout", "nan", "+inf", "-inf", "shape")
DATA = load_iris(seed=0)


class Harness:
    """Counts (independently of the meter), records settings outside the box, injects faults
    with probability ``p`` per call, and sleeps ``settle`` seconds per call (device time)."""

    def __init__(self, chip, kind=None, p=0.0, seed=0, crash_at=(), settle=0.0):
        self.chip, self.space, self.kind, self.p = chip, chip.space, kind, p
        self.input_shape, self.output_shape = chip.input_shape, chip.output_shape
        self.rng = np.random.default_rng(seed)
        self.crash_at, self.settle = set(crash_at), settle
        self.calls = self.injected = self.reconfigurations = self.samples = self.outside = 0
        self._last = None

    def query_many(self, thetas, x):
        k, self.calls = self.calls, self.calls + 1
        for t in np.asarray(thetas):
            self.outside += int(not self.space.contains(t))
            self.reconfigurations += int(self._last is None or np.any(t != self._last))
            self._last = np.array(t)
            self.samples += len(x)
        fault = self.kind is not None and self.rng.random() < self.p
        self.injected += int(fault)
        try:
            if k in self.crash_at:
                raise ConnectionError("injected crash")
            if fault and self.kind in ("exception", "timeout"):
                raise (ConnectionError if self.kind == "exception" else TimeoutError)("injected")
        except BaseException:
            self._last = None  # the held setting is unknown after a failure
            raise
        if self.settle:
            time.sleep(self.settle)
        y = self.chip.query_many(thetas, x)
        if fault and self.kind == "shape":
            return y[..., :-1]
        if fault:
            y[..., 0] = {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf}[self.kind]
        return y

    def query(self, theta, x):
        return self.query_many(np.asarray(theta)[None], x)[0]

    def rng_state(self):  # the simulator's noise and drift, for checkpoints
        return self.chip.rng_state()

    def set_rng_state(self, state):
        self.chip.set_rng_state(state)


def chip_of(n_modes, quiet=True):
    kw = {"noise": 0.0, "drift": 0.0} if quiet else {}
    return MZIMesh(n_modes=n_modes, seed=0, **kw)


def full_loss(task, chip, theta):
    features = task.batch("train", np.arange(len(DATA.y_train))).features
    with torch.no_grad():
        logits = task.logits_device(chip, np.asarray(theta), features)
        return float(task.loss(logits, task.batch("train", np.arange(len(DATA.y_train))).labels))


# ---------------------------------------------------------------------- 1. faults
def fault_run(n_modes, kind, p, steps, seed, workdir):
    chip = chip_of(n_modes, quiet=False)
    harness = Harness(chip, kind, p, seed=seed)  # the faults' draws; training is seeded 0
    pauses: list[float] = []
    log = QueryLog(Path(workdir) / f"faults-{n_modes}-{kind}-{p}.sqlite")
    retry = RetryPolicy(max_retries=3, backoff=0.05, sleep=pauses.append)  # pauses recorded
    meter = MeteredDevice(harness, retry=retry, observers=[log])
    task = default_task(chip, DATA, seed=0).to(torch.float64)
    est = NonFinitePolicy(sat(ZerothOrder(meter, task, q=4, sigma=0.1), rho=0.05), "skip")
    config = TrainConfig(lr=0.05, max_steps=steps, batch_size=32, seed=0, progress=False)
    trainer = Trainer(task, est, chip.space, config, meter=meter)
    try:
        res = trainer.fit(chip.space.center)
        outcome, theta = res.reason, res.theta
    except BlacksatError as exc:
        outcome, theta = f"stopped: {type(exc).__name__}", trainer.snapshot().theta.numpy()
    led = meter.ledger
    row = {
        "n_modes": n_modes,
        "fault": kind,
        "p": p,
        "calls": harness.calls,
        "injected": harness.injected,
        "failures_charged": led.failures,
        "retries": len(pauses),
        "skipped_steps": est.failures,
        "outcome": outcome,
        "final_loss": full_loss(task, chip_of(n_modes), theta),
        "outside_sent": harness.outside,
        "ledger_equals_tally": (led.reconfigurations, led.samples, led.queries)
        == (harness.reconfigurations, harness.samples, harness.calls),
        "lost_from_log": led.queries - led.failures - len(log),
    }
    log.close()
    return row


# ---------------------------------------------------------------------- 2. bad inputs
def bad_inputs(trials, seed):
    rng = np.random.default_rng(seed)
    chip = chip_of(4)
    harness = Harness(chip)
    # declared bounded, as a driver whose heaters cannot wrap would: with the chip's own periodic
    # declaration an out-of-range phase is the same phase, wrapped into range, not a bad input
    harness.space = chip.space.bounded()
    space, d = harness.space, chip.space.dim
    meter = MeteredDevice(harness)
    task = default_task(chip, DATA, seed=0).to(torch.float64)
    objective = DeviceObjective(task, meter, batch_size=8)
    x_ok = rng.uniform(0.1, 1.0, (4, 4))

    def setting(kind):
        t = space.sample(rng)
        j = rng.integers(d)
        if kind in ("NaN", "+inf", "-inf"):
            t[j] = {"NaN": np.nan, "+inf": np.inf, "-inf": -np.inf}[kind]
        elif kind == "out of bounds":  # from 1e-9 to 1e3 past a face
            step = 10.0 ** rng.uniform(-9, 3)
            t[j] = space.upper[j] + step if rng.random() < 0.5 else space.lower[j] - step
        elif kind == "wrong shape":
            t = t[: rng.integers(1, d)] if rng.random() < 0.5 else np.append(t, 0.0)
        return t

    def inputs(kind):
        if kind == "NaN" or kind == "inf":
            x = x_ok.copy()
            x[rng.integers(4), rng.integers(4)] = np.nan if kind == "NaN" else np.inf
            return x
        if kind == "wrong shape":
            return rng.uniform(0, 1, (4, 3 if rng.random() < 0.5 else 5))
        if kind == "no rows":
            return np.zeros((0, 4))
        return np.array([["a", "b", "c", "d"]])

    def tally(what, paths, make):
        stats = {path: [0, 0] for path in paths}
        for _ in range(trials):
            arg = make()
            for path, call in paths.items():
                try:
                    out = call(arg)
                except ValidationError:
                    stats[path][0] += 1
                    continue
                if isinstance(out, np.ndarray) and np.all(np.isposinf(out)):
                    stats[path][0] += 1  # the objective's refusal: never sent, loss +inf
                else:
                    stats[path][1] += 1  # accepted: clipped into the box (documented)
        return [
            {"what": what, "path": path, "tried": trials, "refused": r, "clipped": c}
            for path, (r, c) in stats.items()
        ]

    config = TrainConfig(max_steps=1, progress=False)
    setting_paths = {
        "query": lambda t: meter.query(t, x_ok),
        "query_many": lambda t: meter.query_many(
            np.stack([np.resize(space.center, t.shape), t]), x_ok
        ),
        "nevergrad objective": lambda t: objective.losses(t[None]),
        "Trainer.fit": lambda t: Trainer(task, ZerothOrder(meter, task), space, config).fit(t),
    }
    input_paths = {
        "query": lambda x: meter.query(space.center, x),
        "query_many": lambda x: meter.query_many(space.sample(rng, 2), x),
    }
    rows = []
    for kind in ("NaN", "+inf", "-inf", "out of bounds", "wrong shape"):
        rows += tally(f"setting: {kind}", setting_paths, lambda kind=kind: setting(kind))
    for kind in ("NaN", "inf", "wrong shape", "no rows", "not numeric"):
        rows += tally(f"inputs: {kind}", input_paths, lambda kind=kind: inputs(kind))
    return rows, harness.outside


# ---------------------------------------------------------------------- 3. crashes
def crash_build(
    crash_at=(), ckpt=None, log_path=None, settle=0.0, steps=12, meter_cls=None, quiet=True
):
    chip = chip_of(4, quiet=quiet)
    harness = Harness(chip, crash_at=crash_at, settle=settle)
    observers = [QueryLog(log_path)] if log_path is not None else []
    meter = (meter_cls or MeteredDevice)(harness, observers=observers)
    task = default_task(chip, DATA, seed=0).to(torch.float64)
    est = sat(ZerothOrder(meter, task, q=2, sigma=0.1), rho=0.05)
    config = TrainConfig(lr=0.05, max_steps=steps, batch_size=16, seed=0, progress=False)
    if ckpt is not None:
        config = dataclasses.replace(config, checkpoint_every=1 if settle else 3)
    trainer = Trainer(task, est, chip.space, config, meter=meter, checkpoint_path=ckpt)
    return trainer, meter, harness, observers


def crash_campaign(workdir, kills, seed, quiet=True):
    """Crashes at every device call, failed checkpoint writes (quiet chip only: a run whose
    first checkpoint was never written starts again, which on a noisy chip meets new noise)
    and SIGKILLs of a child process, each resumed and compared with an uninterrupted run."""
    ref_trainer, ref_meter, _, _ = crash_build(quiet=quiet)
    ref = ref_trainer.fit(chip_of(4).space.center)
    calls = ref_meter.ledger.queries
    rows = []

    def resume(ckpt, spent_before, log_path):
        again, _, harness2, logs = crash_build(ckpt=ckpt, log_path=log_path, quiet=quiet)
        res = again.resume(ckpt)
        logged = len(logs[0])
        logs[0].close()
        completed = res.ledger.queries - res.ledger.failures
        return {
            "lost_from_log": max(0, completed - logged),
            "bitwise": bool(torch.equal(res.state.theta, ref.state.theta)),
            "ledger_ge_reference": all(
                getattr(res.ledger, f) >= getattr(ref.ledger, f)
                for f in ("reconfigurations", "samples", "queries")
            ),
            "charged_equals_spent": res.ledger.reconfigurations
            == spent_before + harness2.reconfigurations,
            "logged": logged,
        }

    for k in range(calls):  # a device crash at every call
        d = Path(tempfile.mkdtemp(dir=workdir))
        trainer, meter, harness, logs = crash_build(
            crash_at={k}, ckpt=d / "c.ckpt", log_path=d / "q.sqlite", quiet=quiet
        )
        try:
            trainer.fit(chip_of(4).space.center)
        except DeviceError:
            pass
        lost = meter.ledger.queries - meter.ledger.failures - len(logs[0])
        logs[0].close()
        row = resume(d / "c.ckpt", harness.reconfigurations, d / "q.sqlite")
        row["lost_from_log"] += lost
        rows.append({"crash": f"device call {k}", **row})
    for n in (1, 2, 3) if quiet else ():  # the n-th checkpoint write fails (same process)
        d = Path(tempfile.mkdtemp(dir=workdir))
        trainer, meter, harness, logs = crash_build(ckpt=d / "c.ckpt", log_path=d / "q.sqlite")
        real = failing_save(n)
        try:
            trainer.fit(chip_of(4).space.center)
        except OSError:
            pass
        finally:
            trainer_mod.save_checkpoint = real
        if (d / "c.ckpt").exists():
            res = trainer.resume(d / "c.ckpt")
        else:  # the first checkpoint was never written: start again, same meter
            res = trainer.fit(chip_of(4).space.center)
        lost = meter.ledger.queries - meter.ledger.failures - len(logs[0])
        logs[0].close()
        rows.append(
            {
                "crash": f"checkpoint write {n} (step {3 * n})",
                "lost_from_log": lost,
                "bitwise": bool(torch.equal(res.state.theta, ref.state.theta)),
                "ledger_ge_reference": res.ledger.queries >= ref.ledger.queries,
                "charged_equals_spent": res.ledger.reconfigurations == harness.reconfigurations,
            }
        )
    rng = np.random.default_rng(seed)
    for i in range(kills):  # SIGKILL of a child process at a random device call
        d = Path(tempfile.mkdtemp(dir=workdir))
        target = int(rng.integers(3, calls - 1))  # a checkpoint exists by then
        rows.append(kill_and_resume(d, target, ref, resume, i, quiet))
    return rows, calls


def failing_save(n):
    """Make the trainer's n-th checkpoint write fail; returns the real writer."""
    real, count = trainer_mod.save_checkpoint, [0]

    def save(state, path):
        count[0] += 1
        if count[0] == n:
            raise OSError("injected: disk full")
        return real(state, path)

    trainer_mod.save_checkpoint = save
    return real


class _Announcing(MeteredDevice):
    """A meter that announces each reading it returned (the child process's progress)."""

    def query_many(self, thetas, x):
        y = super().query_many(thetas, x)
        print("returned", flush=True)
        return y


def child(ckpt, log_path, quiet=True):
    trainer, *_ = crash_build(
        ckpt=ckpt, log_path=log_path, settle=0.02, meter_cls=_Announcing, quiet=quiet
    )
    trainer.fit(chip_of(4).space.center)


def kill_and_resume(d, target, ref, resume, i, quiet=True):
    cmd = [sys.executable, __file__, "--child", str(d / "c.ckpt"), str(d / "q.sqlite")]
    cmd += [] if quiet else ["--noisy"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    returned = 0
    while returned < target:
        line = proc.stdout.readline()
        if not line:
            break
        returned += line.startswith("returned")
    time.sleep(0.005 * (i % 4))  # land at different points of the next call / save
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate(timeout=60)
    returned += sum(line.startswith("returned") for line in rest.splitlines())
    with QueryLog(d / "q.sqlite", readonly=True) as log:
        logged = len(log)
    saved = load_checkpoint(d / "c.ckpt").ledger.reconfigurations
    row = resume(d / "c.ckpt", saved, d / "q.sqlite")
    row.pop("charged_equals_spent")  # the killed process's tally died with it
    return {"crash": f"SIGKILL after {target} calls", "lost_from_log": returned - logged, **row}


# ---------------------------------------------------------------------- report
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller campaign, prints only")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--noisy", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, quiet=not args.noisy)
        return
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    steps, trials, kills = (10, 10, 2) if args.quick else (40, 50, 6)
    modes = (4,) if args.quick else (4, 6, 8)
    with tempfile.TemporaryDirectory() as work:
        faults = [
            fault_run(n, kind, 0.2, steps, seed=100 * n + i, workdir=work)
            for n in modes
            for i, kind in enumerate(FAULTS)
        ]
        clean = {n: fault_run(n, None, 0.0, steps, seed=0, workdir=work) for n in modes}
        bad, bad_outside = bad_inputs(trials, seed=1)
        crashes, calls = crash_campaign(work, kills, seed=2)
        noisy, _ = crash_campaign(work, kills, seed=3, quiet=False)
    wall = time.perf_counter() - t0
    outside = sum(r["outside_sent"] for r in faults) + bad_outside
    lost = sum(r["lost_from_log"] for r in faults + crashes + noisy)
    summary = {
        "faults_injected": sum(r["injected"] for r in faults),
        "failed_attempts_charged": sum(r["failures_charged"] for r in faults),
        "bad_inputs_tried": sum(r["tried"] for r in bad),
        "bad_inputs_reaching_device_out_of_bounds": bad_outside,
        "crashes_resumed": len(crashes) + len(noisy),
        "bitwise_resumes": sum(r["bitwise"] for r in crashes + noisy),
        "noisy_crashes_resumed": len(noisy),
        "noisy_bitwise_resumes": sum(r["bitwise"] for r in noisy),
        "queries_lost": lost,
        "out_of_bounds_settings_sent": outside,
        "ledger_equals_tally": all(r["ledger_equals_tally"] for r in faults),
        "wall_s": wall,
    }
    print(json.dumps(summary, indent=2))
    if args.quick:
        return
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "reliability.json").write_text(
        json.dumps(
            {
                "machine": machine(),
                "summary": summary,
                "faults": faults,
                "clean": clean,
                "bad_inputs": bad,
                "crashes": crashes,
                "noisy_crashes": noisy,
            },
            indent=2,
        )
    )
    write_section("reliability", report(summary, faults, clean, bad, crashes, noisy, calls, steps))
    print("wrote BENCHMARKS.md")


def report(s, faults, clean, bad, crashes, noisy, calls, steps) -> str:
    lines = [
        "## Reliability: faults, bad inputs, crashes",
        "",
        f"Command: `python benchmarks/reliability.py` (seeded; {s['wall_s']:.0f} s). "
        f"Machine: {machine()}.",
        "",
        f"**{s['faults_injected']}** faults injected, **{s['bad_inputs_tried']}** bad inputs "
        f"tried, **{s['crashes_resumed']}** crashes resumed: "
        f"**{s['out_of_bounds_settings_sent']}** out-of-bounds settings sent, "
        f"**{s['queries_lost']}** completed queries lost from the query log, "
        f"**{s['bitwise_resumes']}/{s['crashes_resumed']}** resumes bitwise identical to the "
        f"uninterrupted run, ledger = independent tally in every fault run: "
        f"**{'yes' if s['ledger_equals_tally'] else 'NO'}**.",
        "",
        f"### Faults (probability 0.2 per device call, {steps} SAT steps, zeroth-order q = 4)",
        "",
        "Meter: `RetryPolicy(max_retries=3)` (exceptions and time-outs; pauses recorded, not "
        "slept); estimator: `NonFinitePolicy(sat(...), 'skip', max_consecutive=3)` (NaN/inf/"
        "wrong-shape readings: a step is skipped; a fourth failed step in a row stops the run). "
        "Final loss: the full training split on the quiet chip; fault-free run in brackets.",
        "",
        "| modes | fault | calls | injected | failed attempts charged | retries | non-finite steps "
        "| outcome | final loss (fault-free) | outside sent | ledger = tally | lost |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: |",
    ]
    for r in faults:
        ref = clean[r["n_modes"]]["final_loss"]
        lines.append(
            f"| {r['n_modes']} | {r['fault']} | {r['calls']} | {r['injected']} | "
            f"{r['failures_charged']} | {r['retries']} | {r['skipped_steps']} | {r['outcome']} "
            f"| {r['final_loss']:.3f} ({ref:.3f}) | {r['outside_sent']} | "
            f"{'yes' if r['ledger_equals_tally'] else 'NO'} | {r['lost_from_log']} |"
        )
    lines += [
        "",
        "A stopped run met a limit on purpose: one query failed 1 + 3 times (retries "
        "exhausted) or four steps in a row were non-finite. It raises a clear error, the "
        "failed step is rolled back and the last good state is kept (checkpointed when a path "
        "is set); the limits are the policies' knobs.",
        "",
        "### Bad inputs (4-mode mesh)",
        "",
        "The mesh is declared bounded here (`space.bounded()`, a driver whose heaters cannot "
        "wrap): with its own periodic declaration an out-of-range phase names the same phase "
        "and is wrapped into range before it is sent (section 'Periodic controls').",
        "",
        "Refused: a `ValidationError` before anything was sent (the nevergrad objective "
        "instead never sends a setting holding NaN/inf and reports its loss as +inf, which is "
        "never told). Clipped: the nevergrad objective clips finite settings into the box "
        "before sending, by design. Settings outside the box that reached the device: "
        f"**{s['bad_inputs_reaching_device_out_of_bounds']}**.",
        "",
        "| bad input | path | tried | refused | clipped |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['what']} | {r['path']} | {r['tried']} | {r['refused']} | {r['clipped']} |"
        for r in bad
    ]
    dev = [r for r in crashes if r["crash"].startswith("device")]
    other = [r for r in crashes if not r["crash"].startswith("device")]
    yes = lambda v: "yes" if v else "NO"  # noqa: E731
    lines += [
        "",
        f"### Crashes (quiet 4-mode mesh, 12 SAT steps = {calls} device calls)",
        "",
        f"A device exception at each of the {calls} calls (checkpoints every 3 steps and when a "
        f"step fails), resumed with fresh objects from the checkpoint file: "
        f"{sum(r['bitwise'] for r in dev)}/{len(dev)} bitwise identical, "
        f"{sum(r['ledger_ge_reference'] for r in dev)}/{len(dev)} ledgers >= the uninterrupted "
        f"run's, {sum(r['charged_equals_spent'] for r in dev)}/{len(dev)} charging exactly what "
        f"was spent, {sum(r['lost_from_log'] for r in dev)} queries lost from the log.",
        "",
        "| crash | bitwise | ledger >= reference | charged = spent | lost from log |",
        "| --- | --- | --- | --- | ---: |",
    ]
    for r in other:
        charged = yes(r["charged_equals_spent"]) if "charged_equals_spent" in r else "n/a"
        lines.append(
            f"| {r['crash']} | {yes(r['bitwise'])} | {yes(r['ledger_ge_reference'])} | "
            f"{charged} | {r['lost_from_log']} |"
        )
    lines += [
        "",
        "Checkpoint-write failures resume in the same process (its meter still holds the whole "
        "spend). A SIGKILLed child (20 ms of simulated settling per call, a checkpoint every "
        "step) resumes from the file in a new process: its ledger is the checkpoint's plus what "
        "the resume spends; the queries answered between the last checkpoint and the kill are "
        "charged only in the query log ('charged = spent' is n/a: the child's tally died with "
        "it). 'lost from log' counts readings the child had returned that the log lacks.",
        "",
        f"**With readout noise and drift on** (the mesh's defaults), the same device crashes "
        f"at each of the {calls} calls and {len(noisy) - calls} SIGKILLs: "
        f"{s['noisy_bitwise_resumes']}/{s['noisy_crashes_resumed']} resumes bitwise identical "
        "to the uninterrupted run, "
        f"{sum(r['ledger_ge_reference'] for r in noisy)}/{len(noisy)} ledgers >= its, "
        f"{sum(r['lost_from_log'] for r in noisy)} queries lost from the log. The checkpoint "
        "holds the simulator's noise and drift streams (`MeteredDevice.rng_state()`), as they "
        "were before a step that failed; a physical device would continue with fresh noise. "
        "(Checkpoint-write failures are left out here: a run whose first checkpoint was never "
        "written starts again, and on a noisy chip that meets new noise.)",
        "",
        "Drift between the ascent and the descent of a SAT step is not corrected: each half is "
        "evaluated on the device as it is when its query goes out, and the queries per step "
        "are fixed (`tests/core/test_drift.py`).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
