"""The query-only default's tuning sweep: its constants against alternatives, on tuning chips.

    python benchmarks/query_plan_tuning.py                    # run what is missing, write it
    python benchmarks/query_plan_tuning.py --report-only      # re-render from the saved runs
    python benchmarks/query_plan_tuning.py --only variant=beta1=0.9   # this process's share
    python benchmarks/query_plan_tuning.py --quick            # one chip, small budgets; prints
    python benchmarks/query_plan_tuning.py --only repeat=0,1,2,3,4   # the powered cells only

Where the constants of :mod:`blacksat.query_plan` come from. Each run is ``compare``'s method
``blacksat`` (:func:`blacksat.product.compare.run_one`, 256 samples per reconfiguration, the
same scenarios as ``benchmarks/query_efficiency.py``) with :func:`~blacksat.query_plan.
plan_query_only` given one variant's keyword arguments; seed ``c`` on chip ``c`` for the
tuning chips 100-103, never the reported chips 0-2. A variant is chosen here, frozen, and only
then reported by ``query_efficiency.py`` on other chips.

- ``default``: the plan as it ships, surrogate start included, and on a device that declares its
  wiring (the crossbar, the MRR network, the MRR weight bank) the layered response
  (:mod:`blacksat.layered_response`), but with four antithetic directions a step in its
  zeroth-order plan (``RECORD``: every run here was made with them; the plan takes two since,
  chosen from the powered cells below, where it is ``zeroth-order q=2 (now)``);
- ``no layered response``: ``layered=False``, the zeroth-order plan after the surrogate start
  (the default before the layered response; its rows are those the ``default`` had then, the
  same code path, checked to the digit on the crossbar at 250, chip 100);
- ``layered separable, uniform probes``: the layered response without the operating-point term
  and with uniform probe inputs (the default before ``LAYERED_OPERATING_POINT`` = late and
  ``LAYERED_TRAIN_SHARE`` = 0.5: its rows, the same code path); ``layered operating point``: the
  term from the first step (its unknowns counted in the probes: 8 fresh a step on the MRR
  network, not 5), ``layered half training probes``: half of each probe reconfiguration's inputs
  the step's training samples, and ``layered operating point + half training probes``: both,
  each against it (the default's rows are those of the variant it was chosen as, the term from
  the schedule's decay on, with half training probes); every older ``layered ...`` variant pins
  neither; ``layered input means``: the term weighing each input by the probe inputs' mean,
  against the default;
- ``layered memory 1``: the layered response's fit uses the current step's probes alone (all
  the derived number read every step; the default before ``LAYERED_MEMORY`` = 3: the rows the
  ``default`` had then, the same code path, checked to the digit on the MRR network at 1,000,
  chip 100); ``layered memory 2`` and ``layered memory 5``: a window of 2 and 5 steps, against
  the default's 3; every other ``layered ...`` variant ran before the window and pins 1;
- ``layered keep last``: the layered response returns its last setting, not the best it measured
  (the default before ``LAYERED_KEEP`` = best: its rows, the same code path, checked to the digit
  on the MRR network at 1,000, chip 100; the variants below ran before it and pin it);
  ``zeroth-order keep best``: the zeroth-order plan keeping its best setting (run on the MZI,
  where the default is that plan);
- ``layered constant``: the layered response's step held over the whole run, with no final
  decay (the default before ``LAYERED_SCHEDULE`` = hold-cosine: the rows the ``default`` had
  then, the same code path, checked to the digit on the MRR network at 1,000, chip 100);
- ``layered cosine``: its step decaying to zero over the whole run (cosine, as the zeroth-order
  plan's does; the default before the constant step: the rows the ``default`` had then, the
  same code path, checked to the digit on the MRR network at 1,000, chip 100);
- ``layered constant lr 1.5 %`` and ``layered constant lr 6 %``: the Adam step at half and
  twice 3 % with the constant step (3 % was chosen with the cosine, whose steps average half
  their start), against ``layered constant``; ``layered lr 6 %``: twice the step with the
  default's final decay, against the default;
- ``layered sigma 1 %``: the layered response's radius at 1 % of the span (the default before
  ``LAYERED_SIGMA`` = 2 %, with the training-sample anchor; the rows it had then, the same code
  path);
- ``layered sigma 0.5 %``, ``4 %`` and ``8 %``: other radii, against ``layered cosine`` (every
  ``layered ...`` variant below ran with the cosine schedule and pins it);
- ``layered anchor probes``: the layered response reading the current setting on its uniform
  probe inputs, not on the training samples (the default before ``layered_anchor``, the same
  code path, checked to the digit on the MRR network at 1,000, chip 100);
- ``layered lr 1 %`` / ``10 %``, ``layered beta1=0.5``: the layered response's Adam step and
  momentum against 3 % and 0.9; ``layered travel 0``: no floor on its step (the step is at
  least a third of the span over its steps), run where the floor binds (250). These and
  ``layered anchor probes`` ran at the 1 % radius, so each pins it and is compared with
  ``layered sigma 1 %`` (one argument changed);
- ``no surrogate start``: ``start=False``, the zeroth-order plan alone (the default before the
  surrogate start of :mod:`blacksat.surrogate_start`);
- ``fine-tune at 2 %`` and ``fine-tune at 0.5 %``: the step after a trained surrogate start
  capped at 2 % of the span (the floor: the plan before ``fine_tune_lr``) or 0.5 %, against
  the zeroth-order plan's 1 %; run only where the start trains (the crossbar and an MRR weight
  bank, the ``mrr-bank`` of ``benchmarks/physics_free.py``): elsewhere the cap is never used;
- the variants of the zeroth-order plan (``layered=False``), measured before the surrogate start
  existed and so compared with ``no surrogate start`` (each is that plan with one argument
  changed):
  ``beta1=0.9`` (Adam's momentum at torch's default, the plan before ``beta1 = 0.5``),
  ``beta1=0.7`` (in between), ``q=2`` (two antithetic directions a step instead of four, twice
  the steps), ``no walk bound`` (``walk`` = 1e9, so the step follows the radius alone, as
  before the random-walk bound was added, with today's momentum) and ``constant step`` (no
  decay, measured for the zeroth-order run when the layered response's step stopped decaying
  from the start);
- ``layered no backtrack``: the layered run never going back to its kept setting (the default
  before ``LAYERED_BACKTRACK`` = 2: its rows, the same code path; the default's rows are those
  it ran as ``layered backtrack 2x``, checked to the digit on the MRR network at 5,000, chip
  100); every variant above pins it;
- ``no layered start``: on a wired device the linear check turns away (``mrr-3`` and
  ``crossbar-2``, the held-out study's three MRR banks and two crossbar layers, on their tuning
  chips), the zeroth-order plan from the centre (the default before ``LAYERED_START``);
- ``layered no stall backtrack``: the layered run going back to its kept setting only after a
  jump of its loss, not also once that setting, or its last backtrack, is 25 steps old (the
  default before ``LAYERED_BACKTRACK_PATIENCE`` = 25: its rows; the default's rows are those it
  ran as ``layered backtrack at a stall``, checked to the digit on ``mrr-3-narrow`` and the
  crossbar at 1,000, chip 100), on the wired devices and on ``mrr-3-narrow`` (the held-out
  study's three MRR banks with 16-unit layers, where it was found that the layered response
  lost with budget; only the default and this variant ran there). ``layered no backtrack`` is
  compared with it;
- ``reseeded default``: the default with every seed but the chip's moved (the plan's and the
  run's randomness, the task's frozen digital initialisation), on every configuration: what a
  variant's difference must exceed to say anything.

Powered cells (``POWERED``): where a decision turns on a cell, the default and variants of it
that change one argument of the plan (``POWERED_VARIANTS``; the ``zeroth-order q=2, ...``
ones two) run on every tuning chip with ``POWERED_REPEATS`` seeds a chip, paired run by run; their
table gives each mean difference with its standard error.
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import Study, summary
from _study import main as run_study

from blacksat.evaluation import standard_error

#: variant -> keyword arguments of plan_query_only
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "no layered response": {"layered": False},
    "layered constant": {"layered_schedule": "constant"},
    "layered cosine": {"layered_schedule": "cosine"},
    "layered constant lr 1.5 %": {"layered_lr": 0.015, "layered_schedule": "constant"},
    "layered constant lr 6 %": {"layered_lr": 0.06, "layered_schedule": "constant"},
    "layered lr 6 %": {"layered_lr": 0.06},
    "layered sigma 1 %": {"layered_sigma": 0.01, "layered_schedule": "cosine"},
    "layered anchor probes": {
        "layered_anchor": "probes",
        "layered_sigma": 0.01,
        "layered_schedule": "cosine",
    },
    "layered sigma 0.5 %": {"layered_sigma": 0.005, "layered_schedule": "cosine"},
    "layered sigma 4 %": {"layered_sigma": 0.04, "layered_schedule": "cosine"},
    "layered sigma 8 %": {"layered_sigma": 0.08, "layered_schedule": "cosine"},
    "layered lr 1 %": {"layered_lr": 0.01, "layered_sigma": 0.01, "layered_schedule": "cosine"},
    "layered lr 10 %": {"layered_lr": 0.1, "layered_sigma": 0.01, "layered_schedule": "cosine"},
    "layered beta1=0.5": {
        "layered_beta1": 0.5,
        "layered_sigma": 0.01,
        "layered_schedule": "cosine",
    },
    "layered travel 0": {
        "layered_travel": 0.0,
        "layered_sigma": 0.01,
        "layered_schedule": "cosine",
    },
    "no surrogate start": {"start": False, "layered": False},
    "beta1=0.9": {"beta1": 0.9, "start": False, "layered": False},
    "beta1=0.7": {"beta1": 0.7, "start": False, "layered": False},
    "q=2": {"q": 2, "start": False, "layered": False},
    "no walk bound": {"walk": 1e9, "start": False, "layered": False},
    "constant step": {"schedule": "constant", "start": False, "layered": False},
    "fine-tune at 2 %": {"fine_tune_lr": 0.02, "layered": False},
    "fine-tune at 0.5 %": {"fine_tune_lr": 0.005, "layered": False},
    "layered keep last": {"layered_keep": "last"},
    "zeroth-order keep best": {"keep": "best"},
    "layered memory 1": {"layered_memory": 1},
}
# every layered variant above ran while the layered response returned its last setting (before
# LAYERED_KEEP = "best"), and pins it; and all of them, that one too, fitted each step's probes
# alone (before LAYERED_MEMORY = 3)
for _name, _args in VARIANTS.items():
    if _name.startswith("layered ") and _name not in ("layered keep last", "layered memory 1"):
        _args.setdefault("layered_keep", "last")
    if _name.startswith("layered "):
        _args.setdefault("layered_memory", 1)
# ... and these ran beside the default of that last change (a window of 2 and 5 steps, against 3)
VARIANTS["layered memory 2"] = {"layered_memory": 2}
VARIANTS["layered memory 5"] = {"layered_memory": 5}
# ... and these beside the default of the probe memory (its rows now those of `layered
# separable, uniform probes`, which pins what came after it): the wiring model's operating-point
# term from the first step (its unknowns counted in the probes), probe inputs half training
# samples, and both
VARIANTS["layered separable, uniform probes"] = {
    "layered_operating_point": "off",
    "layered_train_share": 0.0,
}
VARIANTS["layered operating point"] = {"layered_operating_point": "on"}
VARIANTS["layered half training probes"] = {"layered_train_share": 0.5}
VARIANTS["layered operating point + half training probes"] = {
    "layered_operating_point": "on",
    "layered_train_share": 0.5,
}
# every layered variant ran before the operating-point term and the training-sample probes
for _name, _args in VARIANTS.items():
    if _name.startswith("layered "):
        _args.setdefault("layered_operating_point", "off")
        _args.setdefault("layered_train_share", 0.0)
# ... and beside the default of the operating-point term: the term weighing each input by the
# probe inputs' mean
VARIANTS["layered input means"] = {"layered_input_means": True}
# ... and a probe radius of 3 % of the span (against 2 %)
VARIANTS["layered sigma 3 %"] = {"layered_sigma": 0.03}
# the default before the surrogate start stopped at a declared network of banks (the rows of
# that default, relabelled: only a network of banks runs differently; checked to the digit on
# the MRR network at 1,000, chip 100)
VARIANTS["start probes networks"] = {"start_networks": True}
# every variant above ran while the start probed a network of banks
for _name, _args in VARIANTS.items():
    if _name != "default":
        _args.setdefault("start_networks", True)
# the default before the operating-point term's phase could begin at the loss's plateau (its
# rows, relabelled: the term only over the schedule's decay)
VARIANTS["layered term at the decay only"] = {"layered_plateau": 0}
# every variant above ran before the plateau switch
for _name, _args in VARIANTS.items():
    if _name != "default":
        _args.setdefault("layered_plateau", 0)
# every variant above ran before the layered run backtracked
for _name, _args in VARIANTS.items():
    if _name != "default":
        _args.setdefault("layered_backtrack", None)
# the default before a layered run went back to its kept setting at half the step when its loss
# jumped above twice the kept setting's average (its rows, relabelled; the default's rows are
# those that ran as the variant ``layered backtrack 2x`` beside it, the same code path)
VARIANTS["layered no backtrack"] = {"layered_backtrack": None}
# ... and where the device declares its wiring but the linear check turns the layered response
# away (the held-out shapes of ``benchmarks/layered_heldout.py``, on their tuning chips): the
# default before its layered start (the zeroth-order plan from the centre)
VARIANTS["no layered start"] = {"layered_start": False}
# the default before a layered run also went back to its kept setting at half the step once that
# setting (or its last backtrack) was 25 steps old, the plateau's count (its rows, relabelled;
# the default's rows are those that ran as the variant ``layered backtrack at a stall``)
VARIANTS["layered no stall backtrack"] = {"layered_backtrack_patience": None}
# every variant above ran while the layered response read antithetic probe pairs (before
# LAYERED_SCHEME = "forward")
for _name, _args in VARIANTS.items():
    if _name != "default":
        _args.setdefault("layered_scheme", "central")
# the default before the layered response's probes became one-sided and centred over the step
# (its rows, relabelled: only where the layered plan itself runs does anything read differently,
# the wired devices and the three-bank network the check lets through; antithetic pairs draw
# their signs as before, so these are the same runs, checked to the digit on the MRR network at
# 250 and 1,000 and the crossbar at 250, chips 100 and 101); and, where the check
# turns the layered response away, the layered start reading one-sided probes (against its
# pairs, ``LAYERED_START_SCHEME``)
VARIANTS["layered central probes"] = {"layered_scheme": "central"}
VARIANTS["layered start forward probes"] = {"layered_start_scheme": "forward"}
# the default once more with every seed but the chip's moved (the plan's and the run's
# randomness, the task's digital initialisation): the differences a variant must beat to be
# told from the default on four chips
RESEED = "reseeded default"
#: what RESEED adds to the run's seed (the chip stays the tuning chip)
RESEED_OFFSET = 1000
VARIANTS[RESEED] = {}
#: the reseeded runs of the default of antithetic probe pairs where the layered plan runs (its
#: rows, relabelled; the reseeded one-sided default ran there again)
RESEED_CENTRAL = "reseeded central probes"
VARIANTS[RESEED_CENTRAL] = {"layered_scheme": "central"}
#: seeds a chip in a powered cell (seed = chip + RESEED_OFFSET * repeat): four chips resolve a
#: few points on the zeroth-order devices at best, so a cell that a decision turns on is run
#: again with these many seeds a chip, the default and each variant on the same ones
POWERED_REPEATS = 5
#: variants of the shipped default measured only in powered cells (one argument changed each)
POWERED_VARIANTS: dict[str, dict[str, Any]] = {
    "layered lr 2.5 %": {"layered_lr": 0.025},
    "layered lr 4 %": {"layered_lr": 0.04},
    "layered memory 2 (now)": {"layered_memory": 2},
    "layered memory 5 (now)": {"layered_memory": 5},
    "layered beta1=0.8": {"layered_beta1": 0.8},
    "layered operating point off": {"layered_operating_point": "off"},
    "layered operating point on (now)": {"layered_operating_point": "on"},
    "zeroth-order q=2 (now)": {"q": 2},
    "zeroth-order beta1=0.9 (now)": {"beta1": 0.9},
    "no surrogate start (now)": {"start": False},
    "zeroth-order q=1 (now)": {"q": 1},
    "zeroth-order walk 16 (now)": {"walk": 16.0},
    "zeroth-order q=2, walk 16 (now)": {"q": 2, "walk": 16.0},
    "zeroth-order q=2, walk floor (now)": {"q": 2, "walk_floor": 0.02},
    "zeroth-order q=2, walk floor 1 % (now)": {"q": 2, "walk_floor": 0.01},
}
# the layered ones ran beside the default of antithetic probe pairs (now ``layered central
# probes``, whose powered rows are that default's, relabelled) and pin them
for _name, _args in POWERED_VARIANTS.items():
    if _name.startswith("layered "):
        _args.setdefault("layered_scheme", "central")
#: powered cells: (configuration, budget) -> the variants run there beside the default. The
#: MRR network at 500 reconfigurations is where the physics-free study's target for local
#: devices is missed by 0.2 points (``physics_free.py``): do the layered response's constants
#: leave anything there?
#: The MZI at 1,000 and 5,000: the zeroth-order plan's directions a step and momentum were
#: chosen when the crossbar and the MRR network also ran it (they now run the layered response),
#: and its surrogate start spends 30 reconfigurations there before it stops
_ZEROTH_ORDER = (
    "zeroth-order q=2 (now)",
    "zeroth-order beta1=0.9 (now)",
    "no surrogate start (now)",
)
#: what a powered variant is compared with, run by run (else the default): the layered ones at
#: 500 ran beside the default of antithetic probe pairs
POWERED_REFERENCE: dict[str, str] = {
    v: "layered central probes" for v in POWERED_VARIANTS if v.startswith("layered ")
}
#: configurations of benchmarks/physics_free.py run here (the MRR weight bank; the diffractive
#: network with 256 phase levels, where two directions a step lost at 500 on the reported pairs)
PHYSICS_FREE = ("mrr-bank", "diffractive")
#: a configuration name with this suffix runs query_efficiency.py's regime 2: the batch from the
#: device's cost model (32 samples a reconfiguration on the diffractive network, 100 on the
#: meshes), the budget the reconfigurations a regime-1 budget's device seconds buy
SECONDS = " (device seconds)"
_CANDIDATE = "zeroth-order q=2, walk 16 (now)"
_FLOOR = "zeroth-order q=2, walk floor (now)"
_FLOOR_1 = "zeroth-order q=2, walk floor 1 % (now)"
POWERED: dict[tuple[str, int], tuple[str, ...]] = {
    ("mrr", 500): (
        *(v for v in POWERED_VARIANTS if v.startswith("layered ")),
        "layered central probes",
    ),
    ("mzi-0.05", 1000): (*_ZEROTH_ORDER, "zeroth-order q=1 (now)", _CANDIDATE, _FLOOR),
    ("mzi-0.05", 5000): (
        *_ZEROTH_ORDER,
        "zeroth-order q=1 (now)",
        "zeroth-order walk 16 (now)",
        _CANDIDATE,
        _FLOOR,
    ),
    # where two directions a step read ahead at 1,000: the MZI's other budgets and the other
    # zeroth-order devices of the reports, on their tuning chips
    ("mzi-0.05", 250): (*_ZEROTH_ORDER[:1], "zeroth-order q=1 (now)", _CANDIDATE, _FLOOR),
    ("mzi-0.05", 20000): (
        *_ZEROTH_ORDER[:1],
        "zeroth-order walk 16 (now)",
        _CANDIDATE,
        _FLOOR,
        _FLOOR_1,
    ),
    ("mzi-hybrid", 1000): (*_ZEROTH_ORDER[:1], "zeroth-order q=1 (now)", _CANDIDATE, _FLOOR),
    ("diffractive-q16", 1000): (*_ZEROTH_ORDER[:1], "zeroth-order q=1 (now)", _CANDIDATE, _FLOOR),
    ("mzi-hybrid", 5000): (*_ZEROTH_ORDER[:1], _CANDIDATE, _FLOOR),
    ("mzi-hybrid", 20000): (
        *_ZEROTH_ORDER[:1],
        "zeroth-order walk 16 (now)",
        _CANDIDATE,
        _FLOOR,
        _FLOOR_1,
    ),
    ("diffractive-q16", 5000): (*_ZEROTH_ORDER[:1], _CANDIDATE, _FLOOR),
    # ... and where zeroth order continues a layered start (the held-out study's shapes the
    # linear check turns away, on their tuning chips)
    ("crossbar-2", 1000): (*_ZEROTH_ORDER[:1], "zeroth-order q=1 (now)", _CANDIDATE, _FLOOR),
    ("crossbar-2", 5000): (*_ZEROTH_ORDER[:1], _CANDIDATE, _FLOOR, _FLOOR_1),
    ("mrr-3", 1000): (*_ZEROTH_ORDER[:1], _CANDIDATE, _FLOOR),
    # ... and regime 2 of the query-efficiency study, where small batches buy long runs: the
    # reconfigurations the device seconds of 1,000 at 256 samples buy
    ("diffractive-q16" + SECONDS, 5602): (*_ZEROTH_ORDER[:1], _FLOOR),
    ("mzi-hybrid" + SECONDS, 1780): (*_ZEROTH_ORDER[:1], _FLOOR),
    # ... and the physics-free study's diffractive network (256 levels) at 500
    ("diffractive", 500): _ZEROTH_ORDER[:1],
    # ... and a long continuation of a layered start, where the held-out study's 5,000 cells
    # read two directions level or behind
    ("mrr-3", 5000): (*_ZEROTH_ORDER[:1], _FLOOR_1),
    # a walk bound that stops at 1 % of the span, where the bound sets the step below it: the
    # meshes at 20,000, the continuations at 5,000, and regime 2's longest diffractive runs
    # (the device seconds of 5,000 at 256 samples: 28,013 reconfigurations of 32 samples)
    ("diffractive-q16" + SECONDS, 28013): (_FLOOR_1, *_ZEROTH_ORDER[:1]),
}
#: variants that run another variant's code path, query for query, on some configurations (that
#: variant's rows stand for theirs there): the start probes a network of banks only on ``mrr``,
#: and the zeroth-order plan (``mzi-0.05``) never backtracks
SAME_AS: dict[str, dict[str, str]] = {
    "start probes networks": {
        "crossbar": "layered no backtrack",
        "mzi-0.05": "default",
        "mrr-bank": "layered no backtrack",
    },
    "layered term at the decay only": {
        "crossbar": "layered no backtrack",
        "mzi-0.05": "default",
        "mrr-bank": "layered no backtrack",
    },
    "layered no backtrack": {"mzi-0.05": "default"},
}
#: the wired devices the linear check turns away (only the default and ``no layered start`` run
#: there: nothing else differs on them)
NOT_LINEAR = ("mrr-3", "crossbar-2")
#: a three-bank network the check lets through (the held-out study's ``mrr-3-narrow``, where the
#: layered response read 31.8 % at 1,000 reconfigurations and 24.7 % at 5,000 on the reported
#: chips before it backtracked at a stall): only the default and ``layered no stall backtrack``
#: run there
THREE_BANKS = ("mrr-3-narrow",)
#: the devices that declare their wiring (the layered response applies)
WIRED = ("crossbar", "mrr", "mrr-bank")
#: variants run only on some configurations (where what they change is used)
ONLY: dict[str, tuple[str, ...]] = {
    "fine-tune at 2 %": ("crossbar", "mrr-bank"),
    "fine-tune at 0.5 %": ("crossbar", "mrr-bank"),
    # the zeroth-order plan's own configuration (on the wired devices the layered plan runs)
    "zeroth-order keep best": ("mzi-0.05",),
    **{v: WIRED for v in VARIANTS if v.startswith("layered ") or v == "no layered response"},
}
# the operating-point term exists only on a network of banks
ONLY["layered input means"] = ("mrr",)
# ... and the start's probe of a network of banks only on the network, and the term's phase
ONLY["start probes networks"] = ("mrr",)
ONLY["layered term at the decay only"] = ("mrr",)
ONLY["layered no backtrack"] = WIRED
ONLY["no layered start"] = NOT_LINEAR
ONLY["layered no stall backtrack"] = (*WIRED, *THREE_BANKS)
ONLY["layered central probes"] = (*WIRED, *THREE_BANKS)
ONLY[RESEED_CENTRAL] = (*WIRED, *THREE_BANKS)
ONLY["layered start forward probes"] = NOT_LINEAR
#: variants run only at some budgets: the travel floor binds only where a run has few steps
BUDGETS_ONLY: dict[str, tuple[int, ...]] = {
    "layered travel 0": (250,),
    # the layered start stops at its plateau: the longer budget adds the zeroth-order run's
    "layered start forward probes": (1000,),
}
#: what each variant is compared with: the plan it changes one thing of
REFERENCE: dict[str, str] = {
    v: (
        "no surrogate start"
        if args.get("start") is False and v != "no surrogate start"
        else "no layered response"
        if args.get("layered") is False and v != "no layered response"
        else "layered sigma 1 %"
        if args.get("layered_sigma") == 0.01 and v != "layered sigma 1 %"
        else "layered cosine"
        if args.get("layered_schedule") == "cosine" and v != "layered cosine"
        else "layered constant"
        if args.get("layered_schedule") == "constant" and v != "layered constant"
        else "layered keep last"
        if args.get("layered_keep") == "last" and v != "layered keep last"
        else "layered memory 1"
        if args.get("layered_memory") == 1 and v != "layered memory 1"
        else "default"
    )
    for v, args in VARIANTS.items()
}
# the variants that ran beside the default of the probe memory, against its rows (and the
# default before it)
for _name in (
    "layered memory 1",
    "layered memory 2",
    "layered memory 5",
    "layered operating point",
    "layered half training probes",
    "layered operating point + half training probes",
):
    REFERENCE[_name] = "layered separable, uniform probes"
# the variants that ran beside the default of the operating-point term, against its rows (and the
# default before it)
for _name in ("layered input means", "layered sigma 3 %", "layered separable, uniform probes"):
    REFERENCE[_name] = "start probes networks"
# ... and beside the default of the start's stop at a network of banks
REFERENCE["start probes networks"] = "layered term at the decay only"
# ... and beside the default of the plateau switch
REFERENCE["layered term at the decay only"] = "layered no backtrack"
# ... and beside the default of backtracking after a jump
REFERENCE["layered no backtrack"] = "layered no stall backtrack"
# ... and beside the default of backtracking at a stall
REFERENCE["layered no stall backtrack"] = "layered central probes"
REFERENCE[RESEED_CENTRAL] = "layered central probes"
#: every run of this study takes these plan arguments unless its variant sets them: its runs
#: were made while the zeroth-order plan took four antithetic directions a step (``Q`` = 4 until
#: the powered cells put two ahead; the walk bound below the floor, as it still is), so the
#: default's column and every variant, the powered cells' included, stay one consistent record
#: of that plan; the shipped default since is the powered variant ``zeroth-order q=2 (now)``,
#: and the reports
#: (``query_efficiency.py``, ``physics_free.py``, ``layered_heldout.py``,
#: ``scaling_training.py``) run it
RECORD: dict[str, Any] = {"q": 4, "walk_floor": 0.0}
#: configuration of query_efficiency.py -> budgets (reconfigurations)
CELLS: dict[str, tuple[int, ...]] = {
    "crossbar": (250, 1000, 5000),
    "mzi-0.05": (250, 1000, 5000, 20000),
    "mrr": (250, 1000, 5000, 20000),
    "mrr-bank": (500, 2000),
    "mrr-3": (1000, 5000),
    "crossbar-2": (1000, 5000),
    "mrr-3-narrow": (1000, 5000),
}
#: the tuning chips (seed = chip); the reported ones are 0, 1, 2
CHIPS = (100, 101, 102, 103)


def tuning_run(
    variant: str, config: str, budget: int, chip: int, repeat: int = 0
) -> dict[str, Any]:
    """One run of the default with ``variant``'s plan arguments: its test accuracy (%).
    ``repeat`` moves every seed but the chip's by ``RESEED_OFFSET`` that many times (the
    powered cells)."""
    import layered_heldout as lh
    import physics_free as pf
    import query_efficiency as qe

    import blacksat.query_plan as qp
    from blacksat.product.compare import run_one
    from blacksat.product.compare_methods import Method

    original = qp.plan_query_only
    args = {**RECORD, **(VARIANTS[variant] if variant in VARIANTS else POWERED_VARIANTS[variant])}
    qp.plan_query_only = functools.partial(original, **args)
    method: Method | str = "blacksat"
    if config.endswith(SECONDS):  # regime 2: the batch from the device's cost model
        config = config.removesuffix(SECONDS)
        method = qe.seconds_method(config)
    sc = (
        pf.scenario(config)
        if config in PHYSICS_FREE
        else lh.scenario(config)
        if config in (*NOT_LINEAR, *THREE_BANKS)
        else qe.scenario(config)
    )
    seed = chip + RESEED_OFFSET * (repeat + (variant in (RESEED, RESEED_CENTRAL)))
    try:
        row = run_one(method, sc, seed, chip, budget)
    finally:
        qp.plan_query_only = original
    return {
        "accuracy": 100 * row["test_accuracy"],
        "train_loss": row.get("train_loss", math.nan),
        "reconfigurations": row["reconfigurations"],
        "wall_s": row["wall_s"],
    }


def run(study: Study, quick: bool) -> None:
    chips = CHIPS[:1] if quick else CHIPS
    for variant in VARIANTS:
        for config, budgets in CELLS.items():
            for budget in (b // 10 for b in budgets[:2]) if quick else budgets:
                if study.skips(variant=variant, config=config):
                    continue
                if config not in ONLY.get(variant, (config,)):
                    continue
                if config == "mrr-bank" and variant not in ("default", RESEED, *ONLY):
                    continue  # added with the fine-tuning cap: the default and its variants
                if config in NOT_LINEAR and variant not in (
                    "default",
                    RESEED,
                    "no layered start",
                    "layered start forward probes",
                ):
                    continue  # added with the layered start
                if config in THREE_BANKS and variant not in (
                    "default",
                    RESEED,
                    "layered no stall backtrack",
                    "layered central probes",
                    RESEED_CENTRAL,
                ):
                    continue  # added with the backtrack at a stall
                if budget not in BUDGETS_ONLY.get(variant, (budget,)):
                    continue
                for chip in chips:
                    row = study.run(
                        lambda v=variant, c=config, b=budget, ch=chip: tuning_run(v, c, b, ch),
                        variant=variant, config=config, budget=budget, chip=chip,
                    )  # fmt: skip
                    print(f"{variant:>10} {config:>9} {budget:>6} chip {chip}: "
                          f"{row['accuracy']:.1f} %", flush=True)  # fmt: skip
    if quick:
        return
    for (config, budget), variants in POWERED.items():
        for variant in ("default", *variants):
            if study.skips(variant=variant, config=config):
                continue
            for chip in chips:
                for repeat in range(POWERED_REPEATS):
                    if study.skips(chip=chip, repeat=repeat):
                        continue
                    row = study.run(
                        lambda v=variant, c=config, b=budget, ch=chip, k=repeat: tuning_run(
                            v, c, b, ch, k
                        ),
                        variant=variant, config=config, budget=budget, chip=chip, repeat=repeat,
                    )  # fmt: skip
                    print(f"{variant:>10} {config:>9} {budget:>6} chip {chip} repeat {repeat}: "
                          f"{row['accuracy']:.1f} %", flush=True)  # fmt: skip


def section(study: Study) -> str:
    every = study.rows()
    rows = [r for r in every if "repeat" not in r]  # the powered cells have a table of their own
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    order = list(CELLS)
    cells = sorted(
        {(r["config"], r["budget"]) for r in rows}, key=lambda cb: (order.index(cb[0]), cb[1])
    )

    def accs(variant: str, config: str, budget: int) -> dict[int, float]:
        variant = SAME_AS.get(variant, {}).get(config, variant)
        return {
            r["chip"]: r["accuracy"]
            for r in rows
            if r["variant"] == variant and r["config"] == config and r["budget"] == budget
        }

    lines = [
        "## Query-only default: the tuning sweep behind its constants (tuning chips only)",
        "",
        study.header(
            "python benchmarks/query_plan_tuning.py",
            "The default (`compare` method `blacksat`, 256 samples per reconfiguration) with "
            "`plan_query_only` given each variant's arguments; seed = chip = "
            f"{', '.join(map(str, CHIPS))} (tuning chips; `query_efficiency` reports chips 0-2). "
            "Every run here, the default's included, takes the zeroth-order plan's four "
            "directions a step (`RECORD`; the shipped default takes two since, chosen in the "
            "powered cells below), so the table stays one record. "
            "Accuracy on the full test split (%), mean ± sample std over the chips; in "
            "brackets, the mean of the per-chip differences from the plan the variant changes "
            "one argument of (named for each variant in the list under the table: `REFERENCE`; "
            "a variant measured before a later default pins that default's other arguments "
            "and is compared with the plan it ran beside). The default uses the "
            "layered response on the devices that declare their wiring (crossbar, MRR network, MRR "
            "bank); elsewhere it is the zeroth-order plan, and `no layered response` was not "
            "run. The default and the layered response's variants on the wired devices ran on "
            "one machine. `mrr-bank`: one MRR weight bank (64 -> "
            "10, 640 rings, `benchmarks/physics_free.py`), added with the fine-tuning cap, so "
            "only the default and the variants of the caps and the layered response ran there. "
            "`mrr-3` and `crossbar-2`: three MRR banks and two crossbar layers "
            "(`benchmarks/layered_heldout.py`), wired devices the linear check turns away, added "
            "with the layered start: only the default and `no layered start` ran there. "
            "`mrr-3-narrow`: three MRR banks with 16-unit layers, which the check lets through, "
            "added with the backtrack at a stall: only the default and `layered no stall "
            "backtrack` ran there. `reseeded default`: the default with every seed but the "
            f"chip's moved by {RESEED_OFFSET:,} (what a variant's difference must exceed), on "
            "every configuration (where the layered plan runs, re-run with the one-sided probes; "
            "the pairs' reseeded runs there are `reseeded central probes`, against `layered "
            "central probes`). "
            "`layered central probes`: that default (its rows, relabelled); `layered start "
            "forward probes`: one-sided probes in the layered start too, on the shapes the "
            "check turns away, at 1,000.",
        ),
        "",
        "| configuration | budget | " + " | ".join(variants) + " |",
        "| --- | ---: |" + " ---: |" * len(variants),
    ]
    for config, budget in cells:
        out = []
        for v in variants:
            a, base = accs(v, config, budget), accs(REFERENCE[v], config, budget)
            m, s, n = summary(list(a.values()))
            text = "—" if n == 0 else f"{m:.1f} ± {s:.1f}" if n > 1 else f"{m:.1f}"
            paired = [a[c] - base[c] for c in a if c in base]
            if v != "default" and paired:
                text += f" ({np.mean(paired):+.1f})"
            out.append(text)
        lines.append(f"| {config} | {budget:,} | " + " | ".join(out) + " |")
    lines += ["", "Mean difference from the plan each variant changes, over the cells where both "
              "ran (points):", ""]  # fmt: skip
    for v in variants:
        if v == "default":
            continue
        diffs, resolved = [], 0
        for config, budget in cells:
            if config in SAME_AS.get(v, {}):  # another variant's own rows
                continue
            a, base = accs(v, config, budget), accs(REFERENCE[v], config, budget)
            paired = [a[c] - base[c] for c in a if c in base]
            if paired:
                diffs.append(float(np.mean(paired)))
                resolved += int(_resolved(paired))
        if diffs:
            lines.append(
                f"- `{v}` against `{REFERENCE[v]}`: {np.mean(diffs):+.1f} over {len(diffs)} "
                f"cells (ahead in {sum(d > 0 for d in diffs)}, behind in "
                f"{sum(d < 0 for d in diffs)}; beyond twice its standard error over the chips "
                f"in {resolved})"
            )
    return "\n".join(lines + powered_table(every))


def powered_table(rows: list[dict[str, Any]]) -> list[str]:
    """The powered cells: each variant against the default (or its ``POWERED_REFERENCE``) on the
    same chips and seeds, the mean paired difference with its standard error (none before such
    runs exist)."""
    runs = [r for r in rows if "repeat" in r]
    if not runs:
        return []
    acc = {(r["variant"], r["config"], r["budget"], r["chip"], r["repeat"]): r for r in runs}
    lines = [
        "",
        f"Powered cells: the default (four directions a step in its zeroth-order plan, as "
        f"everywhere in this study: the default since is `zeroth-order q=2 (now)`) and one "
        f"change of it on every tuning chip with "
        f"{POWERED_REPEATS} seeds a chip (seed = chip + {RESEED_OFFSET:,} x repeat), paired run "
        "by run. Accuracy (%) and training loss on the chip, means over the runs; the "
        "difference's standard error is over the paired runs (ddof 1). *Against*: the plan the "
        "variant changes one argument of (the default, or the default it ran beside).",
        "",
        "| configuration | budget | variant | against | runs | against | variant | difference | "
        "ahead | training loss, against / variant |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (config, budget), variants in POWERED.items():
        for v in variants:
            ref = POWERED_REFERENCE.get(v, "default")
            pairs = [
                (acc[k], acc[(ref, *k[1:])])
                for k in acc
                if k[:3] == (v, config, budget) and (ref, *k[1:]) in acc
            ]
            if not pairs:
                continue
            diffs = [a["accuracy"] - b["accuracy"] for a, b in pairs]
            se = standard_error(diffs)
            lines.append(
                f"| {config} | {budget:,} | {v} | {ref} | {len(pairs)} | "
                f"{np.mean([b['accuracy'] for _, b in pairs]):.2f} | "
                f"{np.mean([a['accuracy'] for a, _ in pairs]):.2f} | "
                f"{np.mean(diffs):+.2f} ± {se:.2f} | {sum(d > 0 for d in diffs)} of {len(diffs)} | "
                f"{np.mean([b['train_loss'] for _, b in pairs]):.3f} / "
                f"{np.mean([a['train_loss'] for a, _ in pairs]):.3f} |"
            )
    return lines


def _resolved(paired: list[float]) -> bool:
    """Whether a cell's mean paired difference stands beyond twice its standard error over the
    chips (``std / sqrt(n)``, ddof 1; needs two chips)."""
    se = standard_error(paired)
    return not math.isnan(se) and abs(float(np.mean(paired))) > 2.0 * se


def main(argv: list[str] | None = None) -> None:
    run_study(__doc__, "query_plan_tuning", run, section, argv)


if __name__ == "__main__":
    main()
