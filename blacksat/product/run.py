"""``blacksat train`` and ``blacksat evaluate`` as library functions: one training run from a
:class:`~blacksat.product.run_config.RunConfig` into a run directory, and the robustness
evaluation of a finished run.

A run directory holds:

===================  ==========================================================================
``config.toml``      the resolved configuration (every default filled in)
``checkpoint.pt``    the trainer's state (written atomically; the last good state)
``log.jsonl``        a ``start`` line, one line per step, an ``end`` line (appended on resume)
``queries.sqlite``   every query the run sent to the chip (``[log] queries``), under the
                     identity ``log.device_id``; the final evaluation's queries under
                     ``<device_id>/evaluation``
``task.pt``          the state dicts of the task's digital layers (``front``, ``back``)
``plan.json``        the query-only default's plan (a device with no model and no
                     ``[estimator]``)
``handover.json``    where that plan's layered run stalled before it progressed: the
                     zeroth-order plan it handed over to and the ledger after its calibration
``handover.pt``      that zeroth-order run's checkpoint
``result.json``      ``schema`` (``"blacksat.run/1"``), ``reason`` (``"completed"``,
                     ``"budget"``, ``"plateau"`` or ``"no progress"``), ``steps``,
                     ``final_loss`` (last minibatch), ``theta``, ``query_plan`` and
                     ``handed_over_from`` (the layered plan, or null),
                     ``accuracy`` (``chip``: full test split on the chip, through an unbudgeted
                     meter; ``model``: on the model named by ``model``, ``"nominal"`` or
                     ``"exact"``), ``ledger`` (what training spent), ``evaluation_ledger``,
                     ``budget_error`` (the refusal that ended the run, or null),
                     ``wall_seconds`` (of this invocation)
``evaluation.json``  written by :func:`evaluate`: ``schema`` (``"blacksat.evaluation/1"``),
                     ``chip``, ``nominal_model``, ``fresh_chips`` (accuracies, labels = seeds,
                     mean, std, min, max), ``nuisance_sweeps`` and ``perturbation_sweeps``
                     (tables ``{"columns", "rows"}``; null without ``sweep``)
===================  ==========================================================================

Resuming (``resume=True``) loads ``checkpoint.pt`` (``handover.pt`` once a run has handed over)
and restores the meter's ledger to what the run has spent: the larger of the checkpoint's ledger
and the query log's total, so that queries sent after the last checkpoint (a crash) still count
against the budget.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blacksat.errors import ConfigError
from blacksat.estimators import QUERY_ONLY
from blacksat.evaluation import (
    accuracy,
    fresh_chip_seeds,
    markdown_table,
    nuisance_sweep,
    perturbation_sweep,
    transfer,
)
from blacksat.meter import Ledger, MeteredDevice
from blacksat.product.device_registry import device_model, device_perturbations, fresh_builder
from blacksat.product.run_config import RunConfig

RESULT_SCHEMA = "blacksat.run/1"
EVALUATION_SCHEMA = "blacksat.evaluation/1"
FILES = ("config.toml", "checkpoint.pt", "log.jsonl", "task.pt", "result.json")
#: also part of a run when present
EXTRA_FILES = ("queries.sqlite", "evaluation.json", "plan.json", "handover.json", "handover.pt")


@dataclass
class Setup:
    """Everything a run is made of (built by :func:`build`)."""

    config: RunConfig
    chip: Any
    task: Any
    model: Any
    meter: MeteredDevice
    estimator: Any
    theta0: np.ndarray
    #: the query-only default is planned when training starts (it queries the device):
    #: ``{"budget": reconfigurations, "batch_size": ..., "cost_model": ...}``, else ``None``
    query_plan: dict[str, Any] | None = None
    #: where training may go: the device's space, or the part of it a surrogate's data covers
    space: Any = None
    #: what the user is told before training (a surrogate's narrow data, a failed check)
    warnings: tuple[str, ...] = ()


def build(config: RunConfig) -> Setup:
    """The chip, task, model, metered device and (SAT-wrapped) estimator of ``config``."""
    from blacksat.builder import build_estimator
    from blacksat.devices.tasks import default_task
    from blacksat.product.device_registry import check_task_fits

    chip = config.device.build()
    task = default_task(chip, config.task.load(), seed=config.task.seed).to(torch.float64)
    check_task_fits(task, chip)
    es = config.estimator
    if es.name == "auto":
        if device_model(chip, "nominal") is not None:
            es = dataclasses.replace(es, name="autograd")
        else:
            return _query_only_setup(config, chip, task)
    if es.model in ("nominal", "exact"):
        model = device_model(chip, es.model)
        if model is None and es.name not in QUERY_ONLY:
            raise ConfigError(
                f"estimator.name {es.name!r} differentiates the device's {es.model} model, "
                f"which {type(chip).__name__} does not offer ({es.model}_model()); train it "
                "from queries alone with estimator.name = 'zeroth_order', or give a surrogate "
                "file from blacksat calibrate as estimator.model"
            )
    else:
        from blacksat.product.calibrate_cmd import load_surrogate

        model, fitted_for = load_surrogate(es.model)
        if fitted_for.get("name") != config.device.name:
            raise ConfigError(
                f"estimator.model {es.model!r} is a surrogate of a {fitted_for.get('name')!r} "
                f"device, the run's device is {config.device.name!r}"
            )
    space, notes = _surrogate_safeguards(es, model, chip.space, task)
    b = config.budget
    meter = MeteredDevice(chip, max_reconfigurations=b.reconfigurations, max_samples=b.samples)
    theta0 = np.asarray(space.project(_initial_controls(config, chip)), dtype=np.float64)
    built = build_estimator(
        es,
        config.sat,
        task=task,
        device=meter,
        chip=chip,
        model=model,
        space=space,
        dtype=torch.float64,
        perturbations=device_perturbations(chip, config.sat.perturbation),
    )
    return Setup(
        config, chip, task, model, meter, built.estimator, theta0, space=space, warnings=notes
    )


def _surrogate_safeguards(
    es: Any, model: Any, space: Any, task: Any
) -> tuple[Any, tuple[str, ...]]:
    """Where training on a surrogate may go, and what the user is told first.

    Offline training (``autograd``) on a surrogate stays inside the region its data covers
    (:meth:`~blacksat.surrogates.Coverage.region`: a trust region, since a surrogate is evidence
    about the device only where it was fitted); each warning (data from the neighbourhood of
    one trajectory, an assumption the data contradicted) is issued before training and kept in
    ``result.json``. The task's training inputs (as encoded at the start) are checked against
    the inputs the surrogate was fitted on too."""
    import warnings

    from blacksat.surrogates import input_coverage_warning, narrow_data_warning

    coverage = getattr(model, "coverage_", None)
    if coverage is None:
        return space, ()
    notes = []
    narrow = narrow_data_warning(coverage, space)
    if narrow is not None:
        notes.append(narrow)
    with torch.no_grad():
        features = torch.as_tensor(task.data.split("train")[0], dtype=task.dtype)
        inputs = task.encode(features).double().numpy()
    outside = input_coverage_warning(coverage, inputs)
    if outside is not None:
        notes.append(outside)
    contradicted = getattr(model, "contradicted", None)
    for check in contradicted() if callable(contradicted) else ():
        notes.append(f"the surrogate's data contradicted an assumption: {check}")
    covered = es.name == "autograd" and es.region == "covered"
    region = coverage.region(space) if covered else space
    if region is not space:
        notes.append(
            "training on the surrogate stays inside the range its data covers (+5 % of each "
            "control's range)"
        )
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=3)
    return region, tuple(notes)


def _initial_controls(config: RunConfig, chip: Any) -> np.ndarray:
    """``(d,)``: the device's suggestion (``task.init = "device"``) or the box centre."""
    if config.task.init == "device" and callable(getattr(chip, "initial_controls", None)):
        return np.asarray(chip.initial_controls(config.task.seed), dtype=np.float64)
    return chip.space.center.copy()


def _query_only_setup(config: RunConfig, chip: Any, task: Any) -> Setup:
    """A device without a model and ``estimator.name = "auto"``: the query-only default, its
    budget (reconfigurations, or device seconds through a cost model) fixed here, its
    calibration run when training starts."""
    from blacksat.query_plan import cost_model_of

    b = config.budget
    cm = b.cost_model() or cost_model_of(chip)
    n_train = len(task.data.split("train")[1])
    batch = cm.balanced_batch(n_train) if cm is not None else None
    budget = b.reconfigurations
    if b.seconds is not None:
        if cm is None:
            raise ConfigError(
                "budget.seconds needs a cost model: set budget.seconds_per_reconfiguration and "
                f"budget.seconds_per_sample ({type(chip).__name__} declares no cost_model)"
            )
        assert batch is not None
        by_time = cm.reconfigurations_for(float(b.seconds), batch)
        budget = by_time if budget is None else min(budget, by_time)
    if budget is None or budget < 1:
        raise ConfigError(
            f"{type(chip).__name__} offers no model, so it is trained from queries alone, and "
            "the query-only default sizes itself from the budget: set [budget] "
            "reconfigurations = N (or seconds with a cost model)"
            + ("" if budget is None else f"; {b.seconds} s buys no reconfiguration")
        )
    meter = MeteredDevice(chip, max_reconfigurations=budget, max_samples=b.samples)
    theta0 = _initial_controls(config, chip)
    plan = {"budget": int(budget), "batch_size": "auto" if batch is None else batch, "cost": cm}
    return Setup(config, chip, task, None, meter, None, theta0, plan)


def _planned_estimator(
    setup: Setup, out: Path, resume: bool, progress: bool = False
) -> tuple[Any, Any, Any]:
    """Plan (or, on resume, reload) the query-only default; its estimator and TrainConfig."""
    from blacksat.query_plan import QueryPlan, plan_query_only

    config, info = setup.config, setup.query_plan
    assert info is not None
    path = out / "plan.json"
    if resume:
        if not path.is_file():
            raise ConfigError(f"{str(out)!r} holds no plan.json to resume the query plan from")
        try:
            plan = QueryPlan.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{str(path)!r} is not a query plan: {exc}") from None
    else:
        plan = plan_query_only(
            setup.task,
            setup.meter,
            setup.theta0,
            budget=info["budget"],
            cost_model=info["cost"],
            batch_size=info["batch_size"],
            seed=[config.train.seed, 11],
            progress=progress,
        )
        text = json.dumps(plan.to_dict(), indent=2)
        _atomic_write(path, lambda p: Path(p).write_text(text))
    estimator, cfg = _plan_parts(setup, plan)
    return estimator, cfg, plan


def _plan_parts(setup: Setup, plan: Any) -> tuple[Any, Any]:
    """The estimator and TrainConfig of a query plan on ``setup``'s device."""
    from blacksat.builder import build_estimator

    config = setup.config
    built = build_estimator(
        plan.estimator_spec(),
        config.sat,
        task=setup.task,
        device=setup.meter,
        chip=setup.chip,
        space=setup.chip.space,
        dtype=torch.float64,
        perturbations=device_perturbations(setup.chip, config.sat.perturbation),
    )
    steps = built.max_steps(plan.budget, spent=plan.calibration_reconfigurations)
    return built.estimator, plan.configure(config.train, max_steps=steps)


def _hand_over(
    setup: Setup, out: Path, plan: Any, result: Any, digital0: dict[str, Any], progress: bool
) -> tuple[Any, Any]:
    """A layered run ended with ``"no progress"`` (``LAYERED_HANDOVER``): the digital layers
    back to where it started, the zeroth-order plan for what is left (``handover.json``, with
    the ledger after its calibration) and its run (``handover.pt``)."""
    from blacksat.query_plan import plan_handover

    for name, sd in digital0.items():
        if sd is not None:
            getattr(setup.task, name).load_state_dict(sd)
    zo = plan_handover(
        plan, setup.task, setup.meter, setup.theta0,
        spent=int(setup.meter.ledger.reconfigurations),
        seed=[setup.config.train.seed, 12], steps=result.steps,
    )  # fmt: skip
    saved = {"plan": zo.to_dict(), "ledger": dataclasses.asdict(setup.meter.ledger)}
    text = json.dumps(saved, indent=2)
    _atomic_write(out / "handover.json", lambda p: Path(p).write_text(text))
    return _run_handover(setup, out, zo, progress, None), zo


def _resume_handover(setup: Setup, out: Path, logged: Ledger, progress: bool) -> tuple[Any, Any]:
    """Resume a run that had handed over (``handover.json``): its zeroth-order run from
    ``handover.pt``, or from its start if it saved no checkpoint yet; the meter's ledger is the
    largest of the saved ones and the query log's total."""
    from blacksat.checkpoint import load_checkpoint
    from blacksat.query_plan import QueryPlan

    path = out / "handover.json"
    try:
        saved = json.loads(path.read_text())
        zo = QueryPlan.from_dict(saved["plan"])
        ledger = Ledger(**saved["ledger"])
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise ConfigError(f"{str(path)!r} is not a handed-over plan: {exc}") from None
    ckpt = out / "handover.pt"
    state = load_checkpoint(ckpt) if ckpt.is_file() else None
    spent = _fieldwise_max(ledger, logged)
    setup.meter.restore(spent if state is None else _fieldwise_max(state.ledger, spent))
    return _run_handover(setup, out, zo, progress, state), zo


def _run_handover(setup: Setup, out: Path, zo: Any, progress: bool, state: Any) -> Any:
    """Train (or, from ``state``, resume) the zeroth-order plan ``zo`` a layered run handed
    over to."""
    estimator, cfg = _plan_parts(setup, zo)
    trainer = _trainer(setup, estimator, cfg, out, "handover.pt", progress)
    return trainer.resume(state) if state is not None else trainer.fit(zo.initial(setup.theta0))


def _trainer(
    setup: Setup, estimator: Any, cfg: Any, out: Path, checkpoint: str, progress: bool
) -> Any:
    """The run's :class:`~blacksat.trainer.Trainer` of ``estimator`` (its log in ``log.jsonl``,
    its checkpoint ``out / checkpoint``)."""
    from blacksat.trainer import Trainer

    return Trainer(
        setup.task,
        estimator,
        setup.space if setup.space is not None else setup.chip.space,
        dataclasses.replace(cfg, progress=progress and setup.config.train.progress),
        meter=setup.meter,
        log_path=out / "log.jsonl",
        checkpoint_path=out / checkpoint,
        saf=setup.config.saf.build(),
    )


def _atomic_write(path: Path, write: Any) -> None:
    from blacksat.outputs import file_mode

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _digital_state(task: Any) -> dict[str, Any]:
    return {
        name: (None if getattr(task, name, None) is None else getattr(task, name).state_dict())
        for name in ("front", "back")
    }


def train(
    config: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    force: bool = False,
    threads: int = 1,
) -> dict[str, Any]:
    """Run ``config`` into the directory ``out`` (see the module docstring); returns the
    contents of ``result.json``.

    The directory is checked before anything is built: it must be writable, and it may hold a
    run only with ``resume`` (an unfinished run: a checkpoint and no ``result.json``; the
    results of a finished run are never changed) or ``force`` (the old run's files are removed
    first). A resumed run must have the configuration it was started with. Training uses
    ``threads`` torch threads (the process's setting is restored afterwards; these problems
    are small and one thread is the fastest on a shared machine).

    Raises:
        ConfigError: ``out`` is not a writable directory; it already holds a run and neither
            ``resume`` nor ``force`` is given; ``resume`` and there is no checkpoint, the run
            is finished, or ``config`` differs from the run's; or the configuration does not
            fit the device.
    """
    from blacksat.outputs import prepare_dir
    from blacksat.product.demo import torch_threads

    if resume and force:
        raise ConfigError("give --resume or --force, not both")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is an existing file, not a directory")
    held: list[str] = []
    if resume:
        _check_resumable(config, out)
    else:
        held = [f for f in (*FILES, *EXTRA_FILES) if (out / f).exists()]
        if held and not force:
            raise ConfigError(
                f"{str(out)!r} already holds a run ({', '.join(held[:3])}); pass --resume to "
                "continue it, --force to replace it, or another --out"
            )
    created = not out.exists()
    prepare_dir(out, force=True)  # writable: checked before anything is built
    with torch_threads(threads):
        try:
            setup = build(config)
        except BaseException:
            if created:  # the directory this call made is left as it was: absent
                with contextlib.suppress(OSError):
                    out.rmdir()
            raise
        for f in held:  # --force: the old run goes only once the new one is sure to start
            (out / f).unlink()
        return _train(setup, out, resume, progress)


def _check_resumable(config: RunConfig, out: Path) -> None:
    if not (out / "checkpoint.pt").is_file():
        raise ConfigError(f"{str(out)!r} holds no checkpoint.pt to resume from")
    if (out / "result.json").exists():
        raise ConfigError(
            f"{str(out)!r} holds a finished run (result.json); its results are kept as they "
            "are: train into another --out to continue from it"
        )
    saved_file = out / "config.toml"
    if saved_file.is_file():
        saved = RunConfig.load(saved_file).to_mapping()
        given = config.to_mapping()
        for section in saved:
            for key in sorted(set(saved[section]) | set(given[section])):
                a, b = saved[section].get(key), given[section].get(key)
                if a != b:
                    raise ConfigError(
                        f"--config differs from the run's config.toml at {section}.{key} "
                        f"({b!r} vs {a!r}); a run resumes with the configuration it started "
                        "with (omit --config to use it)"
                    )


def _train(setup: Setup, out: Path, resume: bool, progress: bool) -> dict[str, Any]:
    from blacksat.checkpoint import load_checkpoint
    from blacksat.querylog import QueryLog

    t0 = time.perf_counter()
    config = setup.config
    ckpt = out / "checkpoint.pt"
    if not resume:
        _atomic_write(out / "config.toml", lambda p: Path(p).write_text(config.to_toml()))
    ident = config.log.device_id
    qlog = QueryLog(out / "queries.sqlite", device=ident) if config.log.queries else None
    try:
        if qlog is not None:
            qlog.set_space(setup.chip.space)  # bounds, levels, periodic controls
            setup.meter.add_observer(qlog)
        estimator, train_cfg, plan = setup.estimator, config.train, None
        if setup.query_plan is not None:
            estimator, train_cfg, plan = _planned_estimator(
                setup, out, resume, progress and config.train.progress
            )
        logged = qlog.spent(device=ident) if (resume and qlog is not None) else Ledger()
        layered = plan
        if resume and plan is not None and (out / "handover.json").is_file():
            result, plan = _resume_handover(setup, out, logged, progress)
        else:
            trainer = _trainer(setup, estimator, train_cfg, out, ckpt.name, progress)
            digital0 = {
                name: None if sd is None else {k: v.clone() for k, v in sd.items()}
                for name, sd in _digital_state(setup.task).items()
            }
            if resume:
                state = load_checkpoint(ckpt)
                setup.meter.restore(_fieldwise_max(state.ledger, logged))
                result = trainer.resume(state)
            else:
                result = trainer.fit(setup.theta0 if plan is None else plan.initial(setup.theta0))
            if plan is not None and result.reason == "no progress":
                result, plan = _hand_over(setup, out, plan, result, digital0, progress)
        _atomic_write(out / "task.pt", lambda p: torch.save(_digital_state(setup.task), p))
        ev = MeteredDevice(setup.chip)
        if qlog is not None:
            ev.add_observer(_logger(qlog, f"{ident}/evaluation"))
        acc_chip = accuracy(setup.task, ev, result.theta)
        report = {
            "schema": RESULT_SCHEMA,
            "reason": result.reason,
            "steps": result.steps,
            "final_loss": result.history[-1]["loss"] if result.history else None,
            # with keep = "best": the steps completed before the returned setting was read
            "kept_step": result.best_step,
            "theta": result.theta.tolist(),
            "accuracy": {
                "chip": acc_chip,
                "model": None
                if setup.model is None
                else accuracy(setup.task, setup.model, result.theta),
            },
            "task": dict(setup.task.choices),
            "model": config.estimator.model,
            "query_plan": None if plan is None else plan.to_dict(),
            # the layered plan a run handed over from (LAYERED_HANDOVER), else null
            "handed_over_from": None if layered is plan else layered.to_dict(),
            "warnings": list(setup.warnings),
            "ledger": dataclasses.asdict(setup.meter.ledger),
            "evaluation_ledger": dataclasses.asdict(ev.ledger),
            "budget_error": None if result.error is None else str(result.error),
            "wall_seconds": time.perf_counter() - t0,
        }
    finally:
        if qlog is not None:
            qlog.close()
    text = json.dumps(report, indent=2)
    _atomic_write(out / "result.json", lambda p: Path(p).write_text(text))
    return report


def _logger(qlog: Any, device: str) -> Any:
    """An observer appending to ``qlog`` under another device identity."""

    def observe(record: Any) -> None:
        qlog.append(
            record.thetas,
            record.x,
            record.y,
            reconfigurations=record.cost.reconfigurations,
            samples=record.cost.samples,
            device=device,
        )

    return observe


def _fieldwise_max(a: Ledger, b: Ledger) -> Ledger:
    return Ledger(*(max(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)))


def result_markdown(report: dict[str, Any], out: str | Path) -> str:
    """A few lines summarising ``result.json``."""
    led = report["ledger"]
    acc_model = report["accuracy"]["model"]
    on_model = "" if acc_model is None else f", on the {report['model']} model {acc_model:.4f}"
    text = (
        f"run {str(out)!r}: {report['reason']} after {report['steps']} steps; accuracy on the "
        f"chip {report['accuracy']['chip']:.4f} (full test split){on_model}; training spent "
        f"{led['reconfigurations']} reconfigurations, {led['samples']} samples in "
        f"{led['queries']} queries"
    )
    plan = report.get("query_plan")
    return text if not plan else f"{text}\n{plan_markdown(plan)}"


def _operating_point_markdown(plan: dict[str, Any]) -> str:
    """What the plan line says of the layered response's operating-point term."""
    mode = plan.get("operating_point", "off")
    if mode == "on":
        return " (the wiring model has the hidden units' operating points)"
    if mode == "late":
        plateau = plan.get("operating_point_plateau", 0)
        return (
            " (the wiring model has the hidden units' operating points after step "
            f"{plan.get('operating_point_from', 0)}"
            + (f", or after {plateau} steps without a new low of the loss" if plateau else "")
            + ")"
        )
    return ""


def plan_markdown(plan: dict[str, Any]) -> str:
    """One line on what the query-only default chose on the device (``plan.json``): what a
    user checks first when a run on an unfamiliar device goes wrong."""
    span = float(plan["span"]) or 1.0
    batch = plan.get("batch_size")
    if plan.get("estimator") == "layered_response":
        from blacksat.layered_response import settings_per_step

        scheme = plan.get("scheme", "central")  # plans saved before the field read pairs
        return (
            f"query-only plan: {plan.get('reason')}; probes of "
            f"{100 * plan['sigma'] / span:.3g} % of the span, Adam lr "
            f"{100 * plan['lr'] / span:.3g} % (beta1 {plan.get('beta1', 0.9):g}, "
            f"{plan.get('schedule', 'cosine')}), "
            f"{plan['steps']} steps of {settings_per_step(plan['q'], scheme)} settings ("
            + (
                "one-sided probes, centred over the step"
                if scheme == "forward"
                else "antithetic pairs"
            )
            + ")"
            + (
                f" (the fit uses the probes of the last {plan['memory']} steps)"
                if plan.get("memory", 1) > 1
                else ""
            )
            + _operating_point_markdown(plan)
            + f", {plan['inputs']} probe inputs per setting"
            + (
                f" ({100 * plan['train_share']:.3g} % of them training samples)"
                if plan.get("train_share")
                else ""
            )
            + ", the loss on the full training split through the response "
            "identified at the current setting from "
            + ("training samples" if plan.get("anchor") == "batch" else "its probe inputs")
            + _keep_markdown(plan)
            + f"; the start spent {plan['calibration_reconfigurations']} of "
            f"{plan['budget']} reconfigurations" + _start_markdown(plan.get("start"))
        )
    return (
        f"query-only plan: radius {100 * plan['sigma'] / span:.3g} % of the span "
        f"({plan.get('reason') or 'calibrated'}), Adam lr {100 * plan['lr'] / span:.3g} % "
        f"(beta1 {plan.get('beta1', 0.9):g}, {plan.get('schedule', 'cosine')}), "
        f"{plan['steps']} steps of {2 * plan['q']} settings, "
        f"{'the full training split' if batch is None else f'{batch} samples'} per setting"
        + _keep_markdown(plan)
        + (
            "; the layered run and the calibration spent"
            if (plan.get("start") or {}).get("kind") == "handover"
            else "; the calibration spent"
        )
        + f" {plan['calibration_reconfigurations']} of "
        f"{plan['budget']} reconfigurations (loss noise {plan['noise']:.3g})"
        + _start_markdown(plan.get("start"))
    )


def _keep_markdown(plan: dict[str, Any]) -> str:
    """What the run returns, as a clause of :func:`plan_markdown` (nothing for the last
    setting, what plans saved before the field ran with)."""
    if plan.get("keep", "last") != "best":
        return ""
    back, stall = plan.get("backtrack"), plan.get("backtrack_patience")
    return ", keeping the best setting it measured (moving average of the step losses)" + (
        f" and going back to it at half the step when a step's loss exceeds {back:g}x its average"
        + (f" or the kept setting is {stall} steps old" if stall else "")
        if back
        else ""
    )


def _start_markdown(start: dict[str, Any] | None) -> str:
    """The surrogate start's outcome, as a clause of :func:`plan_markdown`."""
    if not start:
        return ""
    if start.get("kind") == "handover":
        return (
            f"; it continues a layered run that made no progress: {start['reason']} "
            f"({start['reconfigurations']} reconfigurations, its plan's calibration included)"
        )
    return (
        f"; {start.get('kind', 'surrogate')} start {start['outcome']}: {start['reason']} "
        f"({start['reconfigurations']} reconfigurations)"
    )


# ---------------------------------------------------------------------- evaluate
@dataclass
class LoadedRun:
    """A finished run read back from its directory."""

    config: RunConfig
    chip: Any
    task: Any
    theta: np.ndarray
    result: dict[str, Any]


def load_run(run_dir: str | Path) -> LoadedRun:
    """Rebuild the chip and task of a run directory, with its trained digital layers and final
    controls. Raises :class:`ConfigError` when ``run_dir`` is not a finished ``train`` run."""
    from blacksat.devices.tasks import default_task

    d = Path(run_dir)
    if not d.is_dir():
        raise ConfigError(f"{str(d)!r} is not a directory")
    missing = [f for f in ("config.toml", "result.json", "task.pt") if not (d / f).is_file()]
    if missing:
        raise ConfigError(f"{str(d)!r} is not a finished blacksat train run: no {missing[0]}")
    config = RunConfig.load(d / "config.toml")
    try:
        result = json.loads((d / "result.json").read_text())
        theta = np.asarray(result["theta"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{str(d / 'result.json')!r} is not a run result: {exc}") from None
    chip = config.device.build()
    if theta.shape != (chip.space.dim,):
        raise ConfigError(
            f"result.json holds controls of shape {theta.shape}, the device {chip.space.dim}"
        )
    task = default_task(chip, config.task.load(), seed=config.task.seed).to(torch.float64)
    try:
        digital = torch.load(d / "task.pt", weights_only=True)
        for name, sd in digital.items():
            if sd is not None:
                getattr(task, name).load_state_dict(sd)
    except Exception as exc:  # a damaged or foreign file: say so, never a traceback
        detail = (str(exc).splitlines() or [""])[0][:120]
        raise ConfigError(
            f"{str(d / 'task.pt')!r} cannot be loaded into this run's task "
            f"({type(exc).__name__}: {detail})"
        ) from None
    return LoadedRun(config, chip, task, theta, result)


def evaluate(
    run_dir: str | Path,
    *,
    fresh_chips: int = 3,
    sweep: bool = False,
    seed: int = 0,
    force: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Accuracy (full test split) of a finished run on its chip, on the nominal model, on
    ``fresh_chips`` fresh fabrication draws (seeds ``chip seed + 1000 + i``) and, with
    ``sweep``, under each nuisance over its rated range (5 values) and under each control-space
    perturbation model at 0.5, 1 and 2 times its rated size (10 random draws each, generator
    ``seed``). Writes ``run_dir/evaluation.json`` and returns its contents; an existing
    ``evaluation.json`` is replaced only with ``force`` (checked before any work, like the
    directory's writability). ``progress``: a bar over the evaluations on stderr."""
    from tqdm import tqdm

    from blacksat.outputs import prepare_dir

    if isinstance(fresh_chips, bool) or not isinstance(fresh_chips, int) or fresh_chips < 0:
        raise ConfigError(f"fresh_chips must be an integer >= 0, got {fresh_chips!r}")
    run = load_run(run_dir)
    target = Path(run_dir) / "evaluation.json"
    if target.exists() and not force:
        raise ConfigError(f"{str(target)!r} already exists; pass --force to overwrite it")
    prepare_dir(run_dir, what="the run directory", force=True)
    chip, task, theta = run.chip, run.task, run.theta
    nominal = device_model(chip, "nominal")
    ev = MeteredDevice(chip)
    models = {
        name: model
        for name, model in device_perturbations(chip).items()
        if sweep and not model.sample(torch.as_tensor(theta), np.random.default_rng(0)).nuisance
    }  # nuisance models are covered by the nuisance sweep
    nuisances = getattr(chip, "nuisances", ())
    grid = {n.name: np.linspace(n.rated[0], n.rated[1], 5).tolist() for n in nuisances}
    fresh = fresh_builder(run.config.device, chip)
    n_fresh = fresh_chips if fresh is not None else 0
    total = 2 + n_fresh + (int(bool(grid)) + len(models) if sweep else 0)
    with tqdm(total=total, disable=not progress, desc="evaluate", unit="eval") as bar:

        def done(what: str, n: int = 1) -> None:
            bar.set_postfix_str(what, refresh=False)
            bar.update(n)

        out: dict[str, Any] = {
            "schema": EVALUATION_SCHEMA,
            "chip": accuracy(task, ev, theta),
            "nominal_model": None,
            "fresh_chips": None,
            "nuisance_sweeps": None,
            "perturbation_sweeps": None,
        }
        done("chip")
        out["nominal_model"] = None if nominal is None else accuracy(task, nominal, theta)
        done("nominal model")
        if n_fresh and fresh is not None:
            seeds = fresh_chip_seeds(run.config.device.seed, n_fresh)
            out["fresh_chips"] = transfer(task, [fresh(s) for s in seeds], theta).to_dict()
            done("fresh chips", n_fresh)
        if sweep:
            if grid:
                out["nuisance_sweeps"] = nuisance_sweep(task, chip.perturbed, theta, grid).to_dict()
                done("nuisance sweeps")
            sweeps = {}
            for name, model in models.items():
                table = perturbation_sweep(
                    task, chip, theta, model, [0.5, 1.0, 2.0], draws=10, rng=seed
                )
                sweeps[name] = table.to_dict()
                done(name)
            out["perturbation_sweeps"] = sweeps
    out["ledger"] = dataclasses.asdict(ev.ledger)  # the evaluation's queries of the run's chip
    text = json.dumps(out, indent=2)
    _atomic_write(target, lambda p: Path(p).write_text(text))
    return out


def evaluation_markdown(ev: dict[str, Any]) -> str:
    """The evaluation as markdown tables."""
    rows = [{"evaluated on (full test split)": "the run's chip", "accuracy": ev["chip"]}]
    if ev["nominal_model"] is not None:
        rows.append(
            {"evaluated on (full test split)": "nominal model", "accuracy": ev["nominal_model"]}
        )
    if ev["fresh_chips"]:
        fc = ev["fresh_chips"]
        for label, acc in zip(fc["labels"], fc["accuracies"], strict=True):
            rows.append({"evaluated on (full test split)": f"fresh chip {label}", "accuracy": acc})
        rows.append(
            {
                "evaluated on (full test split)": f"fresh chips: mean +- std ({fc['std']:.3f})",
                "accuracy": fc["mean"],
            }
        )
    parts = [markdown_table(rows, ["evaluated on (full test split)", "accuracy"])]
    if ev["nuisance_sweeps"]:
        t = ev["nuisance_sweeps"]
        parts += ["", "Nuisance sweeps (the chip under each disturbance):", ""]
        parts.append(markdown_table(t["rows"], t["columns"]))
    for name, t in (ev["perturbation_sweeps"] or {}).items():
        parts += ["", f"Perturbation model {name!r} (x its rated size, random draws):", ""]
        parts.append(markdown_table(t["rows"], t["columns"]))
    return "\n".join(parts)


__all__ = [
    "EVALUATION_SCHEMA",
    "RESULT_SCHEMA",
    "LoadedRun",
    "Setup",
    "build",
    "evaluate",
    "evaluation_markdown",
    "load_run",
    "plan_markdown",
    "result_markdown",
    "train",
]
