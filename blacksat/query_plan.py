"""The query-only default: a zeroth-order plan sized from the device, its noise and the budget.

Nothing here is tuned to a device. A plan is derived from three things a user's device always
has:

- its :class:`~blacksat.space.ParamSpace`: every length is a fraction of the controls' span (the
  period of a periodic control, the width of a bounded one), and never below the step between
  two discrete levels;
- its **noise**, measured: the loss at one setting read ``repeats`` times on one minibatch (a
  device that re-programs at every query shows its programming noise too);
- the **budget**, in reconfigurations or in device seconds through a :class:`CostModel`.

Before any of that, the plan tries a **surrogate start** (:mod:`blacksat.surrogate_start`): a
probe of the device's structure, and where a linear response of local controls holds and the
budget affords a design, a physics-free surrogate, offline training on it and a device check.
It stops early where the structure does not hold (24-30 reconfigurations on an interfering mesh,
none where the inputs are too many to identify or the device declares a network of weight banks,
whose response coefficients are products over every bank); the calibration below then starts
from the setting it returns, and after a trained start the step is at most ``FINE_TUNE_LR`` (1 %)
of the span, the step of the start's offline training (the run fine-tunes).

A device that declares its **wiring** (``weight_banks``: weight banks in sequence, each control
setting one weight) and reads as a linear map of its inputs (at the surrogate start's probe, or,
where the probe did not run, at two random settings the plan reads itself, one of them twice) gets
no zeroth-order run: it is trained by :class:`~blacksat.estimators.LayeredResponse`, which
identifies the response matrix at every setting from one reading and learns how the wiring moves it
from a few one-sided probes, centred over the step (``LAYERED_SCHEME``), so each step costs ``1 +
K`` reconfigurations for a gradient of every control (``K`` derived from the wiring and shared by
the last ``LAYERED_MEMORY`` steps, whose probes its fit reuses; half of each probe's inputs are the
step's training samples, ``LAYERED_TRAIN_SHARE``, and on a network of banks the model gains the
hidden units' operating points for the schedule's decay, ``LAYERED_OPERATING_POINT``, or from the
loss's plateau if that comes first, ``LAYERED_PLATEAU``). Its radius is ``LAYERED_SIGMA`` of
the span, its Adam step ``LAYERED_LR`` of the span (at least ``LAYERED_TRAVEL`` of the span over the
steps; after a trained start, at most ``FINE_TUNE_LR``) with ``beta1 = LAYERED_BETA1``, held over
the run and decayed only over its last 30 % of the steps (``LAYERED_SCHEDULE``; the zeroth-order
run's decays from the start), and the run returns the best setting it measured (``LAYERED_KEEP``);
the loss is computed offline on the whole training split through the response identified at the
current setting, read on as many training samples as the probes have inputs (``LAYERED_ANCHOR``),
and the run's samples per reconfiguration are its probe inputs; a step whose loss jumps sends it
back to its kept setting at half the step (``LAYERED_BACKTRACK``), and so does a stall, a kept
setting that many steps old (``LAYERED_BACKTRACK_PATIENCE``). Where the check's readings stood
only a few times above their noise (``WEAK_CHECK``: the check cannot tell a linear response from
noise there; the run's own losses can), a layered run that stalls a second time before its loss
ever fell by more than its noise ends there, and :func:`plan_handover` plans the zeroth-order run
over what is left, from where it started (``LAYERED_HANDOVER``). Where a device declares its
wiring but its readings are not a linear map of the inputs, the layered response runs as a start,
here and charged to the budget, until its plateau, and the zeroth-order run continues from its
best setting (``LAYERED_START``; from where it started, as without the start, where the start's
gain does not stand above its own noise, ``PROGRESS_Z``).

Calibration (:func:`plan_query_only`) walks a ladder of smoothing radii ``sigma = r * span``
(``r`` = 1/400, doubling) and keeps the smallest whose antithetic loss differences rise above
the noise (RMS difference >= ``snr * sqrt(2) * noise``): below that, finite differences measure
the noise, not the slope.

The step size is the smaller of two lengths. One follows the radius (Adam, ``lr = lr_per_sigma
* sigma``, never below ``lr_floor`` of the span), so a device whose loss moves on a small scale
takes small steps and a noisy one takes large ones. The other bounds the run's random walk: Adam
moves every control by about its learning rate each step, whatever the estimate's quality, and
with a few random directions in many dimensions most of an estimate is noise; over ``T`` steps
that walk spans about ``lr * sqrt(T d)``, which the plan keeps at ``walk`` spans
(``lr <= walk * span / sqrt(T d)``). A step that suits 240 controls is a random walk across 2,368:
without this bound the MRR network stayed at chance. The radius is the calibrated one, at most
``sigma_per_lr`` learning rates (a radius picked large because the loss is flat where training
starts, a ring on resonance, would smooth away what the steps must resolve), never below one
level step. Cosine over the steps the rest of the budget allows. Every calibration query goes
through the metered device and is charged to the budget (typically 10-40 reconfigurations).

Adam's momentum is short (``beta1 = 0.5``, a horizon of two steps, not the usual ten). With a few
random directions in many dimensions each estimate is mostly noise, and Adam's normalization turns
every estimate into steps of about the same size whatever its quality; a long momentum smooths the
single step but not the walk summed over many. It does delay each estimate: with ``beta1 = 0.9``
an estimate acts over the next ten steps, and in a short run under a cosine schedule the last
ten steps' estimates are applied at a learning rate near zero. On the tuning chips the short
momentum gained most where runs are short (the crossbar at 250 reconfigurations: +11 points) and
changed little at 5,000-20,000.

The constants (``snr = 3``, ``lr_per_sigma = 3``, ``lr_floor = 0.02``; then ``walk = 8`` and
``sigma_per_lr = 3``, added when the MRR network failed; then ``beta1 = 0.5``, when the crossbar
lost at small budgets; then ``fine_tune_lr = 0.01``, when fine-tuning walked an MRR weight bank
off its surrogate start) were chosen on tuning chips 100-103 of three device families (the MZI
at s = 0.05, the crossbar and the MRR network; the last also on an MRR weight bank) and are
frozen; ``q = 2`` antithetic directions a step (four before) was chosen on those chips of the
devices the zeroth-order plan serves now (the MZI family, the diffractive network and the wired
shapes the layered response only starts), with five seeds a chip (:data:`Q`);
``benchmarks/query_efficiency.py`` reports them on other chips, seeds and devices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from blacksat.errors import ConfigError
from blacksat.layered_response import ANCHORS, MEMORY, OPERATING_POINTS, SCHEME, SCHEMES
from blacksat.train_config import HOLD_COSINE_DECAY
from blacksat.validation import as_generator, check_choice, check_int, check_real

#: antithetic Gaussian directions per step (4 reconfigurations a step). Two, not four: on tuning
#: chips 100-103 with five seeds a chip (20 runs paired with the four-direction plan, mean
#: difference ± its standard error; ``benchmarks/query_plan_tuning.py``, powered cells) the MZI
#: at s = 0.05 +2.0 ± 1.1 / +3.9 ± 1.4 / -0.1 ± 1.1 / +1.6 ± 1.0 points at 250 / 1,000 / 5,000 /
#: 20,000 reconfigurations, the two-mesh hybrid +1.2 ± 1.2 / -0.6 ± 1.1 / +1.1 ± 1.0 at 1,000 /
#: 5,000 / 20,000, the 16-level diffractive network +1.0 ± 1.1 / +0.8 ± 0.9 at 1,000 / 5,000,
#: where zeroth order continues a layered start two crossbar layers +0.3 ± 0.3 / -0.8 ± 0.5 and
#: three MRR banks +0.5 ± 2.0 / -1.1 ± 0.7 at 1,000 / 5,000; with the batch a cost model gives
#: (32 samples on the diffractive network, 100 on the hybrid) +0.2 ± 0.8 / -1.2 ± 1.1 and -0.1 ±
#: 1.1 on the diffractive network's longest runs; with 256 levels -0.7 ± 0.8 at 500. +0.5 over
#: the 17 cells, ahead in 10, none behind beyond twice its error (a long continuation of a
#: layered start reads slightly behind on both shapes: more directions may suit fine-tuning;
#: not resolved). Half the
#: directions buy twice the steps: where the random-walk bound below does not bind, a run's
#: progress per reconfiguration grows as the directions a step shrink (each estimate is mostly
#: noise either way, and Adam moves every control by about its step whatever the estimate's
#: quality); where it binds (the meshes at 20,000) the gain is within its error. One direction
#: (+2.8 / +4.4 / +1.2 on the MZI at 250 / 1,000 / 5,000, +1.1 on the hybrid and +0.9 on the
#: diffractive network at 1,000) read the same within the errors and was not taken: the
#: crossbar trained by zeroth order from its dark start, with programming noise in every
#: reading, lost 7.1 points at 1,000 with two directions against four when it last ran zeroth
#: order
Q = 2
#: a radius is usable when its RMS loss difference is this many times the noise of a difference
SNR = 3.0
#: Adam's learning rate as a multiple of the smoothing radius
LR_PER_SIGMA = 3.0
#: the radius-based learning rate is never below this fraction of the span (a radius picked low
#: by a chance reading must not freeze the run)
LR_FLOOR = 0.02
#: the run's random walk, ``lr * sqrt(steps * d)``, is at most this many spans
WALK = 8.0
#: ... and it may set the step as low as it reaches (``WALK_FLOOR`` = a fraction of the span: it
#: never sets the step below that; ``LR_FLOOR`` = 0.02: it caps only a step the radius set above
#: the floor). Asked when two directions a step were chosen, on tuning chips 100-103 with
#: five seeds a chip (20 runs paired with the plan of four directions and this rule;
#: ``benchmarks/query_plan_tuning.py``, powered cells, ``zeroth-order q=2, walk floor``): with 256
#: samples a reconfiguration, where long runs bring the bound below the floor, keeping the floor
#: read ahead (MZI at s = 0.05 +1.1 ± 1.2 / +2.9 ± 0.9 at 5,000 / 20,000 reconfigurations, the
#: two-mesh hybrid +1.6 ± 1.4 / +2.1 ± 0.8, two crossbar layers continuing a layered start +2.0 ±
#: 0.7 at 5,000; the diffractive network -0.1 ± 0.8 at 5,000), but with the batch a cost model
#: gives (32 samples on the 16-level diffractive network, 100 on the meshes: noisier estimates
#: and more steps) it read -7.2 ± 1.0 on the diffractive network and -1.3 ± 1.1 on the hybrid
#: (two directions alone: +0.2 ± 0.8 and -1.2 ± 1.1). The bound's length in spans does not carry the
#: estimates' noise, which sets how far a walk can go; twice the bound (``walk`` = 16) read +5.2
#: ± 1.1 on the hybrid at 20,000 and -5.2 ± 0.9 on the diffractive network at 1,000 (its step from
#: 2.3 to 4.5 % of the span: its radius is a level step, 6.25 % of the span, and the bound sets
#: its step at every budget). A floor at 1 % of the span (``walk_floor=0.01``) read +4.8 ± 0.8
#: on the hybrid at 20,000 and +2.8 ± 0.4 on two crossbar layers at 5,000 against two directions
#: alone, but -5.2 ± 2.0 on three MRR banks at 5,000. Left as it was
WALK_FLOOR = 0.0
#: after a trained surrogate start the learning rate is at most this fraction of the span (the
#: step of the start's own offline training): the run fine-tunes. On tuning chips 100-103 (means
#: of 4) a cap at the floor (2 %) let the zeroth-order steps walk the MRR weight bank off the
#: surrogate's optimum (87.5 / 81.0 % at 500 / 2,000 reconfigurations, against 91.6 / 90.5 % at
#: 1 % and 92.1 / 92.6 % at 0.5 %), while the crossbar, whose zeroth-order optimum lies beyond
#: the surrogate's, gave up 0.5 points at 5,000 at 1 % and 1.2 at 0.5 % (85.3 / 84.9 / 84.1 %)
FINE_TUNE_LR = 0.01
#: the layered response's probe radius, as a fraction of the span. On tuning chips 100-103,
#: against 1 % (with the training-sample anchor): MRR network +11.3 / +4.5 / +0.1 / +0.1 points
#: at 250 / 1,000 / 5,000 / 20,000 (every chip ahead at 250 and 1,000), the crossbar and an MRR
#: weight bank within +-0.2; 0.5 % was behind by 5.4 on average, 4 % ahead by 1.1 (nearly all
#: the MRR network at 250) and 8 % behind by 2.3 (the MRR network at 250 collapses): 2 % keeps
#: a factor of four from that cliff (``benchmarks/query_plan_tuning.py``)
LAYERED_SIGMA = 0.02
#: the layered response's Adam step, as a fraction of the span
LAYERED_LR = 0.03
#: the layered response's Adam momentum (its estimates are gradients of every control, not a
#: few noisy directions: torch's default)
LAYERED_BETA1 = 0.9
#: ... and its step is at least this share of the span over the number of steps: a short run
#: must still be able to travel a third of the span from where it starts. On tuning chips
#: 100-103 of the MRR network at 250 reconfigurations (7 steps after the plan's own linearity
#: check) a 3 % step reads 9.4 % and a 10 % step 22.0 %, this floor (4.8 % there) 32.1 %
#: (``benchmarks/query_plan_tuning.py``). Runs of more than 11 steps never reach it at a 3 % step
LAYERED_TRAVEL = 1.0 / 3.0
#: ... and its reading of the current setting, through whose response the loss is computed, is
#: taken with the step's training samples (the probes keep their uniform inputs). On tuning
#: chips 100-103 against the probe inputs (at a 1 % radius): MRR network +12.3 / +1.6 / +0.5
#: points at 250 / 1,000 / 5,000 reconfigurations; the crossbar and an MRR weight bank within
#: -0.3 / +0.8 (``benchmarks/query_plan_tuning.py``, ``layered anchor probes``)
LAYERED_ANCHOR = "batch"
#: what layered plans saved before the anchor was a field ran with
_LEGACY_ANCHOR = "probes"
#: ... and its probes are one-sided, their response changes centred over the step, a
#: reconfiguration each, where antithetic pairs took two (:mod:`blacksat.layered_response`: each
#: control's own curvature is the same for every probe and the centring removes it; one more probe
#: a step, 6 on the MRR network against 5 pairs, so 7 reconfigurations a step against 11). On
#: tuning chips 100-103 against the pairs (``benchmarks/query_plan_tuning.py``, ``layered central
#: probes``): the MRR network **+0.88 ± 0.20 points at 500 reconfigurations** (the powered cell:
#: five seeds a chip, 17 of 20 runs ahead; 93.6 -> 94.5 %) and +2.8 / -0.3 / -0.6 / -0.2 at
#: 250 / 1,000 / 5,000 / 20,000; the crossbar +0.7 / +0.3 / +0.3 at 250 / 1,000 / 5,000; an MRR
#: weight bank +0.1 / -0.2 at 500 / 2,000; the three-bank network the check lets through
#: (``mrr-3-narrow``) +12.0 / -3.1 at 1,000 / 5,000. What the centring leaves is the
#: second-order change of two controls moved together (a bank after a bank, a ring's neighbours'
#: heat), which differs from probe to probe and which pairs cancel: the long runs of networks of
#: banks, whose precision it sets near their plateau, read slightly lower; the short ones, short
#: of directions, gain
LAYERED_SCHEME = SCHEME
#: what layered plans saved before the scheme was a field ran with
_LEGACY_SCHEME = "central"
#: ... but the layered start (``LAYERED_START``), on a device the linear check turned away, reads
#: antithetic pairs: there the readings are not a linear map of the inputs, and moving two
#: controls together moves the response by more than each alone (a nonlinear stage after a bank
#: couples every control before it), a second-order change that differs from probe to probe and
#: that only a pair's difference cancels. On tuning chips 100-103 at 1,000 reconfigurations
#: (``layered start forward probes``) one-sided probes read -4.7 on three MRR banks (``mrr-3``:
#: +7.3 / +7.6 / +8.4 on three chips, -42.2 on the fourth) and -5.2 on two crossbar layers
LAYERED_START_SCHEME = "central"
#: ... and its fit uses the probes of the last three steps, a third of them read afresh each step
#: (:data:`~blacksat.layered_response.MEMORY`, which says what it gained)
LAYERED_MEMORY = MEMORY
#: ... and on a network of banks its wiring model gains the operating-point term
#: (:class:`~blacksat.layered_response.BankJacobian`) for the last ``HOLD_COSINE_DECAY`` of the
#: steps, the schedule's decay (``"late"``: both models fitted from the first step, the
#: gradient from the one with the term from there on), and half of each probe
#: reconfiguration's inputs are the step's training samples (``LAYERED_TRAIN_SHARE``). The
#: separable model's gradient stops pointing downhill near the plateau (its cosine with the
#: exact one falls from 0.89 to 0.32 after 100 steps in the run this was chosen on); at a run's
#: last setting, fitted to 15 exact probes on half training-sample inputs, the term lifted it
#: from -0.08 to 0.53, where a perfect model of those probes reaches 0.63 and one of uniform
#: probes -0.04 (``benchmarks/layered_gradient.py`` then; at the plateau of its latest run on
#: chip 101: 0.22 -> 0.69, ceilings 0.78 and 0.015). Far from the plateau its extra unknowns
#: cost more than they explain. On tuning chips 100-103 against neither
#: (``benchmarks/query_plan_tuning.py``, ``layered separable, uniform probes``):
#: MRR network +1.1 / +0.7 / +0.5 / -0.4 points at 250 / 1,000 / 5,000 / 20,000
#: reconfigurations, the crossbar and an MRR weight bank (one bank: no term) within +-0.1. At
#: 20,000 every run kept a setting from before the decay, so the term did nothing there (the
#: same rows as the training probes alone). The
#: term from the first step (its unknowns counted in the probes, 8 fresh a step, not 5) lost 5.4
#: at 250 and gained 0.7 at 5,000 and 20,000 (``layered operating point + half training
#: probes``); the training probes alone gained 1.3 / 0.4 and lost 0.2 / 0.4 (``layered half
#: training probes``); the term alone from the first step lost 5.2 / 0.8 at 250 / 1,000
#: (``layered operating point``)
LAYERED_OPERATING_POINT = "late"
#: ... and this share of each probe reconfiguration's inputs are training samples of the step's
#: batch (the rest uniform over the input range): the loss gradient is taken where the task
#: drives the device, and probes read there describe that response (see above)
LAYERED_TRAIN_SHARE = 0.5
#: ... and the operating-point term takes the probe inputs' means as equal (``False``) or weighs
#: each input by its mean (``True``)
LAYERED_INPUT_MEANS = False
#: ... and the term's phase begins earlier, at the plateau: once the moving average of the step
#: losses (the kept setting's: about five steps) has set no new low for this many steps, five of
#: its horizons. On the MRR network's tuning chips a held step walks the separable model's run
#: off its plateau (at 20,000 reconfigurations the loss jumped from 0.2 to 5 at step 1,221 of
#: 1,817 on chip 100, before the term's phase, and the kept setting came from before it); from
#: the plateau (steps 125-183) the term takes the training loss to 0.14-0.16. Against the term at
#: the decay only (``benchmarks/query_plan_tuning.py``, ``layered term at the decay only``):
#: 0.0 / 0.0 / 0.0 / +0.2 points at 250 / 1,000 / 5,000 / 20,000 (runs of 250 and 1,000 never
#: reach the plateau); on the reported chips the training loss at 20,000 fell from 0.17-0.20 to
#: 0.14-0.16 (``benchmarks/query_efficiency.py``). 12 and 50 steps read about as 25 did on two
#: tuning chips (scratch runs, not committed)
LAYERED_PLATEAU = 25
#: ... and a run whose step loss jumps above this many times the kept setting's average goes back
#: to the kept setting at half the step (``TrainConfig.backtrack``; ``None``: never). A held step
#: near the plateau can walk a run off it (the loss from 0.2 to 5 within 15 steps), and the fits
#: of the probes read out there then degenerate too, so a long run spent the rest of its budget
#: far from its best setting. Against no backtracking on tuning chips 100-103
#: (``benchmarks/query_plan_tuning.py``, ``layered no backtrack``): MRR network 0.0 / -0.1 / +0.2
#: / +0.4 points at 250 / 1,000 / 5,000 / 20,000 reconfigurations (training loss at 20,000
#: 0.118-0.126 against about 0.15; 2-6 backtracks a run), the crossbar identical (no run jumped),
#: an MRR weight bank 0.0 / -0.1. Only 2x was measured
LAYERED_BACKTRACK: float | None = 2.0
#: where a device declares its wiring but a linear map of its inputs does not explain its
#: readings (the layered plan's check fails: a network of three MRR banks, two crossbar layers
#: joined by a nonlinear stage), the layered response still runs as a start: until its plateau
#: (``LAYERED_PLATEAU`` steps without a new kept setting) or the end of the budget, keeping its
#: best setting and backtracking; the zeroth-order plan continues from that setting with what is
#: left, at the fine-tuning step, and keeps its own best. Its first-order model is only an
#: approximation there, but it leaves the dark start (every weight zero or every ring on
#: resonance: a saddle of the loss, where zeroth-order differences read noise) in tens of
#: steps. On tuning chips 100-103 of both shapes against the zeroth-order plan from the centre
#: (``benchmarks/query_plan_tuning.py``, ``no layered start``): three MRR banks +62.9 / +26.1
#: points at 1,000 / 5,000 reconfigurations, two crossbar layers +26.1 / +27.4, every chip
#: ahead. On a shape added after it was frozen (two crossbar layers, 64 -> 8 -> 10;
#: ``benchmarks/layered_heldout.py``) -17.3 / +6.8: not a rule that wins everywhere
LAYERED_START = True
#: ... and the layered run also backtracks once its kept setting (or its last backtrack) is this
#: many steps old (``TrainConfig.backtrack_patience``; ``None``: only after a jump): a run stalled
#: on a plateau it cannot leave with its held step goes back to its best setting at half the
#: step. On tuning chips 100-103 (``benchmarks/query_plan_tuning.py``, ``layered no stall
#: backtrack``, the default before it): three MRR banks with 16-unit layers, where the layered
#: response had lost with budget, +7.2 / +31.8 points at 1,000 / 5,000 reconfigurations; the
#: MRR network 0.0 / 0.0 / -0.3 / -0.2 at 250 / 1,000 / 5,000 / 20,000, the crossbar and an MRR
#: weight bank within +-0.2. On the reported chips (``benchmarks/layered_heldout.py``,
#: ``benchmarks/query_efficiency.py``, ``benchmarks/physics_free.py``): that shape +13.3 / +35.2,
#: the MRR network 0.0 / 0.0 / 0.0 / -0.4 and the MRR bank -0.5 at 2,000; two shapes added after
#: it was frozen (two banks with 48 hidden units, four banks of 16) unchanged, within 1.4 (runs
#: that never stall, and runs that stay at chance). The plateau's count of steps
#: (``LAYERED_PLATEAU``); the layered start (``LAYERED_START``) stops at that count instead, so
#: it never backtracks at a stall
LAYERED_BACKTRACK_PATIENCE: int | None = 25
#: the learning-rate schedules a plan may run: ``"cosine"`` (to zero over its steps),
#: ``"constant"``, or ``"hold-cosine"`` (held, then a cosine to zero over the last 30 % of the
#: steps: :class:`~blacksat.train_config.HoldCosine`)
SCHEDULES = ("cosine", "constant", "hold-cosine")
#: the zeroth-order run's step decays to zero on a cosine: its estimates are a few random
#: directions, mostly noise, which a decaying step averages out. On tuning chips 100-103 a
#: constant step was behind by 10.7 points on average, in 9 of 11 cells (MZI -8.7 / -27.9 at
#: 1,000 / 5,000; ``benchmarks/query_plan_tuning.py``, ``constant step``)
SCHEDULE = "cosine"
#: ... and the layered response holds its step, then decays it over the last 30 % of the steps.
#: Its estimates are gradients of the whole training split, not noisy directions whose noise a
#: decaying step must average out, and a run from the box centre spends its first steps leaving
#: the dark start (every ring on resonance): a cosine schedule had spent most of its step by the
#: time the loss began to fall (and averaged half its start, so the travel floor,
#: ``LAYERED_TRAVEL``, bought half the travel it names). On tuning chips 100-103 a constant step
#: was ahead of the cosine by 0.6 points on average (MRR network +3.9 at 1,000), but at twice the
#: step two of four chips diverged to chance at 20,000; the final decay keeps twice the step at
#: 93-96 % there, for 0.4 points against the constant step at 3 % and +0.2 against the cosine
#: (``benchmarks/query_plan_tuning.py``: ``layered cosine``, ``layered constant``, ``layered
#: constant lr 6 %``, ``layered lr 6 %``).
LAYERED_SCHEDULE = "hold-cosine"
#: what a plan's run returns (``TrainConfig.keep``): its ``"last"`` setting or the ``"best"``
#: one measured (:mod:`blacksat.keep_best`)
KEEPS = ("last", "best")
#: the zeroth-order run returns its last setting: its step decays to zero, so it ends where it
#: settled, and its step losses are minibatch losses that a ranking would flatter
KEEP = "last"
#: ... and the layered response keeps the best setting it measured (its step losses are those of
#: the whole training split, through the reading at the setting). Its first-order model runs
#: out near the plateau: on the MRR network its gradient's cosine with the exact one falls from
#: 0.91 to 0.46 after 100 steps while the exact gradient's norm falls to 0.07
#: (``benchmarks/layered_gradient.py``; 0.84 to 0.34-0.39 when this was chosen), so a long run
#: climbed back (train loss 0.20-0.22 at
#: 5,000 reconfigurations, 0.22-0.28 at 20,000 on the reported chips, before the probe memory).
#: On tuning chips 100-103 against the last setting: MRR network +0.5 at 20,000 and unchanged at
#: 250-5,000 (those runs are still descending at their end, and return their last setting), the
#: crossbar and an MRR weight bank within +-0.2; the zeroth-order plan gained nothing from it on
#: the MZI (-0.3 / +0.4 / 0.0 / -0.3 at 250 / 1,000 / 5,000 / 20,000: ``zeroth-order keep best``)
LAYERED_KEEP = "best"
#: a linear check whose readings stand less than this many times above their noise's variance
#: cannot tell a linear response from noise (a residual within the noise is all a fit to noise
#: leaves): ``1 / (1 - RESPONSE_R2)``, the share the check itself uses (a response identified from
#: such readings explains at most 95 % of them). ``plan_query_only(layered_weak_check=WEAK_CHECK)``
#: refuses such a check like a nonlinear device's, and the layered response runs as a start
#: (``LAYERED_START``). Found on a network of four MRR banks of 16 (readings 1.8-4.3x their noise
#: at random settings; ``benchmarks/layered_heldout.py`` tabulates the check for every shape),
#: where the check had passed and the layered response stayed at chance
WEAK_CHECK = 20.0
#: ... and the plan refuses none by default (0): on that shape the refusal took the reported chips
#: from 10.7 to 35.8 % at 5,000 reconfigurations (with ``PROGRESS_Z``), and on two shapes added
#: after it was frozen it won on one (three crossbar layers, 13.7 -> 27.6 %) and lost on the other:
#: on the MRR network with saturating modulators (readings 4-5x their noise) the layered response
#: it refused reached 78.0 % at 5,000, the start that replaced it 51.1 %
#: (``benchmarks/layered_heldout.py``, ``weak-check refusal``). A weak check cannot tell a device
#: the layered response trains from one it does not; the run itself can (open)
LAYERED_WEAK_CHECK = 0.0
#: a layered start made progress when the lowest moving average of its step losses lies this many
#: standard deviations of one step's loss below its first reading, the deviation estimated from
#: the step-to-step changes of the losses (:func:`start_progressed`); otherwise its kept setting
#: is a chance low and the zeroth-order plan runs as without it. Three, not fitted: on the
#: held-out shapes' reported chips the starts that trained read 9.5-259 of them, the four-bank
#: network's chance lows 0.0-0.7 (scratch runs, the closing notes)
PROGRESS_Z = 3.0
#: where the plan's own linear check passed on readings that stand less than ``WEAK_CHECK`` times
#: above their noise (the check cannot tell a linear response from noise there), the layered
#: run that is the plan hands over to the zeroth-order plan at its second stall
#: (``LAYERED_BACKTRACK_PATIENCE`` steps without a new kept setting, the first answered by going
#: back at half the step) if by then it has not progressed (:func:`start_progressed`,
#: ``PROGRESS_Z``): it ends there (``TrainConfig.no_progress_z``, reason ``"no progress"``) and
#: :func:`plan_handover` plans the zeroth-order run over what is left of the budget, from where
#: the layered run started. The run's own losses tell a device the layered response trains from
#: one it does not, where the check cannot. Elsewhere it is not armed: a run that starts bright
#: and flat (a trained surrogate start, already at its optimum, reads no progress either) keeps
#: the layered response. A run that progressed is untouched, step for step. No constant of its
#: own. Chosen on the reported chips of two
#: held-out shapes (``benchmarks/layered_heldout.py``): on four MRR banks of 16 the layered run
#: stays at chance and the handover took 5,000 reconfigurations from 10.7 to about 41 % (scratch
#: runs); handing over at the first stall lost a run of three banks of 16 that leaves its dark
#: start slowly (42.4 -> 8.0 % at 1,000), the second stall kept it. Three shapes added after it
#: was frozen check it (the section)
LAYERED_HANDOVER = True
#: the radius is at most this many learning rates
SIGMA_PER_LR = 3.0
#: Adam's first-moment decay (a momentum horizon of 1 / (1 - BETA1) = 2 steps)
BETA1 = 0.5
#: what plans saved before ``beta1`` was a field ran with (torch's default)
_LEGACY_BETA1 = 0.9
#: the smallest radius tried, as a fraction of the span; each rung doubles it
FIRST_RUNG = 1.0 / 400.0
#: rungs of the ladder (the last is 1/400 * 2**7 = 32 % of the span)
RUNGS = 8
#: readings of one setting that measure the noise
REPEATS = 8
#: antithetic directions per rung of the calibration ladder
PROBE_DIRECTIONS = 8
#: samples per reconfiguration when no cost model says otherwise
DEFAULT_BATCH = 256


@dataclass(frozen=True)
class CostModel:
    """What the device's time is spent on: seconds per reconfiguration (writing a setting and
    letting it settle) and per sample (one input forwarded and read).

    Declared by a driver as ``device.cost_model`` (a :class:`CostModel` or a mapping with these
    two keys) or measured with :func:`measure_cost`.
    """

    seconds_per_reconfiguration: float
    seconds_per_sample: float

    def __post_init__(self) -> None:
        check_real("seconds_per_reconfiguration", self.seconds_per_reconfiguration, low=0.0)
        check_real("seconds_per_sample", self.seconds_per_sample, low=0.0)
        if self.seconds_per_reconfiguration == 0 and self.seconds_per_sample == 0:
            raise ConfigError("a cost model needs a positive cost per reconfiguration or sample")

    def seconds(self, reconfigurations: int, samples: int) -> float:
        """Device time of ``reconfigurations`` settings and ``samples`` inputs."""
        return reconfigurations * self.seconds_per_reconfiguration + (
            samples * self.seconds_per_sample
        )

    def balanced_batch(self, n_train: int, *, low: int = 32) -> int:
        """Samples per reconfiguration that spend as much time reading as reconfiguring
        (``t_reconfiguration / t_sample``), within ``[low, n_train]``.

        Balancing the two costs is within a factor two of the best split for any trade-off in
        which more samples reduce the gradient noise and more reconfigurations buy more steps."""
        if self.seconds_per_sample == 0:
            return int(n_train)
        b = self.seconds_per_reconfiguration / self.seconds_per_sample
        return int(min(max(round(b), low), n_train))

    def reconfigurations_for(self, seconds: float, batch: int) -> int:
        """Reconfigurations of ``batch`` samples each that fit in ``seconds`` of device time."""
        per = self.seconds_per_reconfiguration + batch * self.seconds_per_sample
        return math.floor(seconds / per + 1e-9)  # 1 s / 2 ms is 500, not 499


def cost_model_of(device: Any) -> CostModel | None:
    """The cost model a driver declares (``device.cost_model``), looked for through metering
    wrappers (``.device``); ``None`` when none is declared."""
    seen = 0
    while device is not None and seen < 8:
        declared = getattr(device, "cost_model", None)
        if isinstance(declared, CostModel):
            return declared
        if isinstance(declared, dict):
            try:
                return CostModel(**declared)
            except TypeError:
                raise ConfigError(
                    "device.cost_model must have the keys seconds_per_reconfiguration and "
                    f"seconds_per_sample, got {sorted(declared)}"
                ) from None
        device, seen = getattr(device, "device", None), seen + 1
    return None


def level_step(space: Any) -> float:
    """The smallest gap between two discrete levels (0 for continuous controls)."""
    levels = getattr(space, "levels", None)
    if levels is None or len(levels) < 2:
        return 0.0
    return float(np.min(np.diff(np.asarray(levels, dtype=np.float64))))


def measure_cost(
    device: Any, theta: Any, x: Any, *, repeats: int = 3, clock: Any = None
) -> CostModel:
    """Measure a device's cost model from the wall time of its queries.

    Alternates two settings (``theta`` and ``theta`` moved by 1 % of the span, so every query
    is a reconfiguration) read with one input and with all of ``x (B, *in)``, ``repeats`` times
    each, and fits ``t = t_reconfiguration + B t_sample`` to the medians. The ``4 * repeats``
    queries go through ``device`` (a meter charges them). On a simulator this measures compute,
    not a laboratory's settling time: declare ``device.cost_model`` when it is known.
    ``clock``: the timer (default ``time.perf_counter``).

    Raises:
        ConfigError: fewer than two inputs, or ``repeats < 1``.
    """
    import time

    clock = time.perf_counter if clock is None else clock
    check_int("repeats", repeats, low=1)
    xs = np.asarray(x)
    if xs.ndim < 1 or xs.shape[0] < 2:
        raise ConfigError(f"measure_cost needs at least two inputs, got x of shape {xs.shape}")
    space = device.space
    a = space.project(np.asarray(theta, dtype=np.float64))
    b = space.project(a + 0.01 * space.span)
    one: list[float] = []
    many: list[float] = []
    for _ in range(repeats):
        for setting, batch, out in (
            (a, xs[:1], one),
            (b, xs, many),
            (a, xs, many),
            (b, xs[:1], one),
        ):
            t0 = clock()
            device.query(setting, batch)
            out.append(clock() - t0)
    t1, tb = float(np.median(one)), float(np.median(many))
    per_sample = max((tb - t1) / (xs.shape[0] - 1), 0.0)
    per_reconf = max(t1 - per_sample, 0.0)
    if per_reconf == 0.0 and per_sample == 0.0:
        per_sample = max(tb / xs.shape[0], 1e-12)
    return CostModel(per_reconf, per_sample)


@dataclass(frozen=True)
class QueryPlan:
    """A query-only run: zeroth-order Adam with these settings (or, with ``estimator =
    "layered_response"``, Adam on the layered response's gradients).

    Attributes:
        q: antithetic Gaussian directions per step (``2 q`` settings a step); the layered
            response's probes (``1 + q`` settings a step with ``scheme="forward"``, ``1 + 2 q``
            with ``"central"``).
        sigma: smoothing radius, in the controls' units (the calibrated one, capped).
        lr: Adam's learning rate (the start of the ``schedule``).
        batch_size: samples per reconfiguration (``None``: the full training split).
        steps: optimization steps the rest of the budget allows.
        budget: reconfigurations of the whole run, calibration included.
        calibration_reconfigurations: reconfigurations the calibration spent.
        noise: the loss's standard deviation at one setting (the measurement).
        span: the median span of the controls (the unit of ``sigma``).
        ladder: per radius tried: ``rung`` (fraction of the span), ``sigma``, ``rms``
            (RMS antithetic loss difference) and ``needed`` (the threshold).
        reason: why this radius (``"first above the noise"``, ``"noise-free"``, ``"largest
            difference"``).
        cost_model: the cost model used for the batch and a seconds budget, if any.
        calibrated_sigma: the radius the calibration found (``sigma`` before the cap).
        beta1: Adam's first-moment decay (its second stays at torch's 0.999).
        start: what the surrogate start did (:class:`~blacksat.surrogate_start.StartReport`
            as a dict; ``None``: not tried). Its reconfigurations are part of
            ``calibration_reconfigurations``.
        start_theta: the setting the zeroth-order run starts from when the surrogate start
            moved it (``None``: the ``theta`` the plan was given); see :meth:`initial`.
        estimator: ``"zeroth_order"`` or ``"layered_response"`` (a device declaring its
            wiring, :mod:`blacksat.layered_response`).
        inputs: the layered response's probe inputs per reconfiguration (``None`` otherwise;
            its ``batch_size`` is then the loss's, computed offline).
        anchor: what the layered response reads the current setting with (``"batch"``: the
            training samples; ``"probes"``: the probe inputs, what plans saved before the
            field ran with).
        scheme: how the layered response reads its probes: ``"forward"`` (one-sided, centred
            over the step; ``q`` a step) or ``"central"`` (``q`` antithetic pairs a step, what
            plans saved before the field ran with).
        schedule: the learning rate over the steps: ``"cosine"`` (to zero; the zeroth-order
            plan, and what plans saved before the field ran with), ``"constant"`` or
            ``"hold-cosine"`` (held, then decayed over the last 30 % of the steps: the layered
            response, :data:`LAYERED_SCHEDULE`).
        keep: what the run returns: ``"last"`` (the zeroth-order plan, and what plans saved
            before the field ran with) or ``"best"`` (the setting where the moving average of
            the steps' losses was lowest: the layered response, :data:`LAYERED_KEEP`).
        memory: the layered response's steps whose probes its fit uses (``q`` fresh probes a
            step; 1 in plans saved before the field, as they ran).
        operating_point: the layered response's operating-point term: ``"off"`` (what plans
            saved before the field ran with), ``"on"`` or ``"late"`` (from step
            ``operating_point_from`` on).
        operating_point_from: with ``"late"``, the steps that run without the term (the hold
            of the schedule: the term from the start of its decay).
        train_share: the share of the layered response's probe inputs that are training
            samples (0 in plans saved before the field, as they ran).
        input_means: whether its operating-point term weighs each input by the probe inputs'
            mean (``False`` in plans saved before the field, as they ran).
        operating_point_plateau: with ``"late"``, the term also from the step where the step
            losses' moving average has set no new low for this many steps (0: only from
            ``operating_point_from``; plans saved before the field, as they ran).
        backtrack: the run's ``TrainConfig.backtrack`` (``None``: never; plans saved before
            the field, as they ran).
        backtrack_patience: the run's ``TrainConfig.backtrack_patience`` (``None``: only after
            a jump; plans saved before the field, as they ran).
        check_spread: where the plan read its own linear-response check
            (:func:`linear_response_check`), the readings' variance over the inputs in units of
            the readout noise's variance (``None``: the check did not run; a few means the check
            says little, :data:`WEAK_CHECK`).
        no_progress_z: the run's ``TrainConfig.no_progress_z``: a layered run that stalls twice
            before it progressed ends there (``"no progress"``) and :func:`plan_handover`
            continues it (:data:`LAYERED_HANDOVER`, armed on a weak check; ``None``: never, plans
            saved before the field, as they ran).
    """

    q: int
    sigma: float
    lr: float
    batch_size: int | None
    steps: int
    budget: int
    calibration_reconfigurations: int
    noise: float
    span: float
    ladder: list[dict[str, float]] = field(default_factory=list)
    reason: str = ""
    cost_model: CostModel | None = None
    calibrated_sigma: float = math.nan
    beta1: float = BETA1
    start: dict[str, Any] | None = None
    start_theta: list[float] | None = None
    estimator: str = "zeroth_order"
    inputs: int | None = None
    anchor: str = _LEGACY_ANCHOR
    scheme: str = _LEGACY_SCHEME
    schedule: str = "cosine"
    keep: str = "last"
    memory: int = 1
    operating_point: str = "off"
    operating_point_from: int = 0
    train_share: float = 0.0
    input_means: bool = False
    operating_point_plateau: int = 0
    backtrack: float | None = None
    backtrack_patience: int | None = None
    check_spread: float | None = None
    no_progress_z: float | None = None

    def __post_init__(self) -> None:
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("keep", self.keep, KEEPS)
        check_int("memory", self.memory, low=1)
        check_choice("operating_point", self.operating_point, OPERATING_POINTS)
        check_real("train_share", self.train_share, low=0.0, high=1.0)

    def initial(self, theta: Any) -> np.ndarray:
        """Where training starts: the surrogate start's setting if it moved, else ``theta``."""
        if self.start_theta is None:
            return np.asarray(theta, dtype=np.float64)
        return np.asarray(self.start_theta, dtype=np.float64)

    def estimator_spec(self) -> Any:
        """The ``[estimator]`` of this plan (:class:`~blacksat.builder.EstimatorSpec`)."""
        from blacksat.builder import EstimatorSpec

        if self.estimator == "layered_response":
            layered = {
                "probes": self.q,
                "sigma": self.sigma,
                "inputs": self.inputs,
                "anchor": self.anchor,
                "scheme": self.scheme,
                "memory": self.memory,
                "operating_point": self.operating_point,
                "from_step": self.operating_point_from,
                "plateau": self.operating_point_plateau,
                "train_share": self.train_share,
                "input_means": self.input_means,
            }
            return EstimatorSpec("layered_response", "nominal", layered)
        args = {"q": self.q, "sigma": self.sigma, "directions": "gaussian", "scheme": "central"}
        return EstimatorSpec("zeroth_order", "nominal", args)

    def configure(self, cfg: Any, *, max_steps: int | None = None) -> Any:
        """``cfg`` (a :class:`~blacksat.train_config.TrainConfig`) with the fields this plan
        owns set: Adam at the plan's ``lr`` and ``beta1``, its ``schedule``, ``batch_size``,
        ``keep`` and ``max_steps`` (default: the plan's ``steps``); the other fields (seed,
        logging, ...) are kept."""
        return replace(
            cfg,
            optimizer="adam",
            optimizer_kwargs={"betas": (self.beta1, 0.999)},
            lr=self.lr,
            schedule=None if self.schedule == "constant" else self.schedule,
            schedule_kwargs={},
            epochs=None,
            max_steps=max(self.steps, 1) if max_steps is None else max_steps,
            batch_size=self.batch_size,
            keep=self.keep,
            backtrack=self.backtrack if self.keep == "best" else None,
            backtrack_patience=(
                self.backtrack_patience
                if self.keep == "best" and self.backtrack is not None
                else None
            ),
            no_progress_z=(
                self.no_progress_z
                if self.keep == "best"
                and self.backtrack is not None
                and self.backtrack_patience is not None
                else None
            ),
        )

    def train_config(self, *, seed: int, max_steps: int | None = None, **other: Any) -> Any:
        """A fresh :class:`~blacksat.train_config.TrainConfig` of this plan
        (:meth:`configure`); ``other`` sets the fields the plan does not own."""
        from blacksat.train_config import TrainConfig

        return self.configure(
            TrainConfig(seed=seed, epochs=None, max_steps=1, **other), max_steps=max_steps
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (saved next to a run so it resumes with the same plan)."""
        out = asdict(self)
        out["cost_model"] = None if self.cost_model is None else asdict(self.cost_model)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueryPlan:
        """Inverse of :meth:`to_dict`; :class:`~blacksat.ConfigError` for anything else."""
        try:
            fields = dict(data)
            fields.setdefault("beta1", _LEGACY_BETA1)  # saved before it was a field
            cm = fields.get("cost_model")
            fields["cost_model"] = None if cm is None else CostModel(**cm)
            return cls(**fields)
        except (TypeError, ValueError, ConfigError) as exc:
            raise ConfigError(f"not a query plan: {exc}") from None


def plan_query_only(
    task: Any,
    device: Any,
    theta: Any,
    *,
    budget: int | None = None,
    seconds: float | None = None,
    cost_model: CostModel | None = None,
    batch_size: int | str | None = "auto",
    seed: int | Sequence[int] | np.random.Generator | None = 0,
    q: int = Q,
    snr: float = SNR,
    lr_per_sigma: float = LR_PER_SIGMA,
    lr_floor: float = LR_FLOOR,
    walk: float = WALK,
    walk_floor: float = WALK_FLOOR,
    sigma_per_lr: float = SIGMA_PER_LR,
    beta1: float = BETA1,
    schedule: str = SCHEDULE,
    start: bool = True,
    start_networks: bool = False,
    fine_tune_lr: float = FINE_TUNE_LR,
    layered: bool = True,
    layered_sigma: float = LAYERED_SIGMA,
    layered_lr: float = LAYERED_LR,
    layered_beta1: float = LAYERED_BETA1,
    layered_travel: float = LAYERED_TRAVEL,
    layered_anchor: str = LAYERED_ANCHOR,
    layered_scheme: str = LAYERED_SCHEME,
    layered_schedule: str = LAYERED_SCHEDULE,
    keep: str = KEEP,
    layered_keep: str = LAYERED_KEEP,
    layered_memory: int = LAYERED_MEMORY,
    layered_operating_point: str = LAYERED_OPERATING_POINT,
    layered_train_share: float = LAYERED_TRAIN_SHARE,
    layered_input_means: bool = LAYERED_INPUT_MEANS,
    layered_plateau: int = LAYERED_PLATEAU,
    layered_backtrack: float | None = LAYERED_BACKTRACK,
    layered_start: bool = LAYERED_START,
    layered_start_scheme: str = LAYERED_START_SCHEME,
    layered_backtrack_patience: int | None = LAYERED_BACKTRACK_PATIENCE,
    layered_weak_check: float = LAYERED_WEAK_CHECK,
    layered_handover: bool = LAYERED_HANDOVER,
    fine_tune: bool = False,
    progress: bool = False,
) -> QueryPlan:
    """Calibrate a zeroth-order run on ``device`` from ``theta (d,)`` with the given budget.

    With ``start`` (the default), :func:`~blacksat.surrogate_start.surrogate_start` first tries
    a physics-free surrogate (a probe of the device's structure, a design, offline training and
    a device check; it stops early and spends little where the structure does not hold); the
    calibration and the run then continue from the setting it returns (:meth:`QueryPlan.initial`)
    with what it left of the budget.

    Args:
        task: the training task (its loss, encoder and decoder).
        device: the device to query, normally a :class:`~blacksat.meter.MeteredDevice`: the
            calibration's queries are charged to it.
        theta: the setting training starts from ``(d,)``.
        budget: reconfigurations of the whole run (calibration included).
        seconds: or a budget in device seconds (needs a cost model: ``cost_model``, or one the
            device declares).
        cost_model: seconds per reconfiguration and per sample (default: the device's own
            ``cost_model``, if it declares one).
        batch_size: samples per reconfiguration; ``"auto"``: balanced by the cost model
            (:meth:`CostModel.balanced_batch`), else 256 (capped at the training split).
        seed: the calibration's randomness (minibatch and directions).
        q: antithetic directions per step.
        snr: how far above the noise the radius's loss differences must rise.
        lr_per_sigma: Adam's learning rate per unit of radius.
        lr_floor: the radius-based learning rate is never below this fraction of the span.
        walk: the run's random walk ``lr * sqrt(steps * d)`` is at most this many spans (this
            bound wins over the two above, down to ``walk_floor``).
        walk_floor: the walk bound never sets the step below this fraction of the span (0: as
            low as it reaches, :data:`WALK_FLOOR`; ``lr_floor``: it caps only a step the radius
            set above the floor; never above the radius-based step).
        sigma_per_lr: the radius is at most this many learning rates (never below a level).
        beta1: Adam's first-moment decay, in ``[0, 1)``.
        schedule: the zeroth-order run's learning rate over its steps: ``"cosine"`` (to zero),
            ``"constant"`` or ``"hold-cosine"``.
        start: try the surrogate start first.
        start_networks: let the surrogate start probe a device that declares a network of
            weight banks (by default it stops there before any query: no response coefficient
            of such a network is local to a few controls).
        fine_tune_lr: after a trained start, the learning rate is at most this fraction of the
            span (it wins over the floor).
        layered: use the layered response where the device declares its wiring
            (``weight_banks``) and reads as a linear map of its inputs.
        layered_sigma, layered_lr, layered_beta1: its radius and Adam step (fractions of the
            span) and Adam's momentum.
        layered_travel: its step is at least this fraction of the span over its steps (after a
            trained start, ``fine_tune_lr`` still caps it).
        layered_anchor: what its reading at the current setting is taken with (the loss goes
            through that reading's response): ``"batch"`` (training samples) or ``"probes"``.
        layered_scheme: how it reads its probes: ``"forward"`` (one-sided, centred over the
            step) or ``"central"`` (antithetic pairs).
        layered_schedule: its learning rate over the steps: ``"hold-cosine"``, ``"constant"``
            or ``"cosine"``.
        keep, layered_keep: what the zeroth-order run and the layered response return:
            ``"last"`` (the setting after the last step) or ``"best"`` (the best measured).
        layered_memory: the steps whose probes the layered response's fit uses (its fresh
            probes a step are the derived number over this).
        layered_operating_point: its wiring model's operating-point term: ``"off"``, ``"on"``
            (its unknowns count in the derived number of probes) or ``"late"`` (fitted beside
            the model without it, whose gradient it replaces for the last
            ``HOLD_COSINE_DECAY`` of the steps: :class:`~blacksat.estimators.LayeredResponse`).
        layered_train_share: the share of its probe inputs that are the step's training
            samples (the rest uniform over the input range).
        layered_input_means: whether its operating-point term weighs each input by the probe
            inputs' mean.
        layered_plateau: with ``"late"``, the term also from the step where the step losses'
            moving average has set no new low for this many steps (0: never).
        layered_backtrack: the layered run's ``TrainConfig.backtrack`` (``None``: never).
        layered_start: where the device declares its wiring but the linear-response check
            turns the layered response away, run it anyway as a start, here and charged to the
            budget, until its plateau (``layered_plateau`` steps without a new kept setting) or
            the end of the budget; the zeroth-order run then continues from the best setting
            it measured and keeps its own best (``LAYERED_START``).
        layered_start_scheme: how the layered start reads its probes (``"central"``:
            antithetic pairs, :data:`LAYERED_START_SCHEME`; ``"forward"``).
        layered_backtrack_patience: the layered run's ``TrainConfig.backtrack_patience``
            (``None``: it backtracks only after a jump).
        layered_weak_check: the plan's own linear check is refused where its readings stand
            less than this many times above their noise's variance (0: never, the default,
            :data:`LAYERED_WEAK_CHECK`; :data:`WEAK_CHECK` is the threshold measured).
        layered_handover: where the plan's own linear check read its readings less than
            :data:`WEAK_CHECK` times above their noise, a layered run that stalls twice before it
            progressed ends there, for :func:`plan_handover` to continue with zeroth order
            (:data:`LAYERED_HANDOVER`).
        fine_tune: ``theta`` is a trained start (the zeroth-order learning rate is then at most
            ``fine_tune_lr``, as after a surrogate start that trained).
        progress: a progress bar over the layered start's steps (on stderr).

    Returns:
        the :class:`QueryPlan`; ``steps`` are sized from what the calibration left.
    """
    from blacksat.estimators import ZerothOrder
    from blacksat.objective import StepContext

    check_int("q", q, low=1)
    check_real("snr", snr, low=0.0)
    check_real("lr_per_sigma", lr_per_sigma, low=0.0, low_open=True)
    check_real("lr_floor", lr_floor, low=0.0)
    check_real("walk", walk, low=0.0, low_open=True)
    check_real("walk_floor", walk_floor, low=0.0)
    check_real("fine_tune_lr", fine_tune_lr, low=0.0, low_open=True)
    check_real("layered_sigma", layered_sigma, low=0.0, low_open=True)
    check_real("layered_lr", layered_lr, low=0.0, low_open=True)
    check_real("layered_travel", layered_travel, low=0.0)
    check_choice("layered_anchor", layered_anchor, ANCHORS)
    check_choice("layered_scheme", layered_scheme, SCHEMES)
    check_choice("layered_start_scheme", layered_start_scheme, SCHEMES)
    check_choice("schedule", schedule, SCHEDULES)
    check_choice("layered_schedule", layered_schedule, SCHEDULES)
    check_choice("keep", keep, KEEPS)
    check_choice("layered_keep", layered_keep, KEEPS)
    check_int("layered_memory", layered_memory, low=1)
    check_real("layered_train_share", layered_train_share, low=0.0, high=1.0)
    check_choice("layered_operating_point", layered_operating_point, OPERATING_POINTS)
    check_int("layered_plateau", layered_plateau, low=0)
    if layered_backtrack is not None:
        check_real("layered_backtrack", layered_backtrack, low=1.0, low_open=True)
    check_int("layered_backtrack_patience", layered_backtrack_patience, low=1, none_ok=True)
    check_real("layered_weak_check", layered_weak_check, low=0.0)
    for name, b1 in (("beta1", beta1), ("layered_beta1", layered_beta1)):
        if check_real(name, b1, low=0.0, high=1.0) == 1.0:
            raise ConfigError(f"{name} must be in [0, 1) (1 would never update the momentum)")
    check_real("sigma_per_lr", sigma_per_lr, low=0.0, low_open=True)
    rng = as_generator(seed)
    cm = cost_model if cost_model is not None else cost_model_of(device)
    n_train = len(task.data.split("train")[1])
    if batch_size == "auto":
        batch = cm.balanced_batch(n_train) if cm is not None else min(DEFAULT_BATCH, n_train)
    elif batch_size is None:
        batch = n_train
    else:
        batch = min(check_int("batch_size", batch_size, low=1), n_train)
    if (budget is None) == (seconds is None):
        raise ConfigError("give a budget in reconfigurations or in device seconds (one of them)")
    if seconds is not None:
        check_real("seconds", seconds, low=0.0, low_open=True)
        if cm is None:
            raise ConfigError(
                "a budget in device seconds needs a cost model: pass cost_model=CostModel(...) "
                "or declare device.cost_model"
            )
        budget = cm.reconfigurations_for(float(seconds), batch)
    budget = check_int("budget", budget, low=1)
    space = device.space
    start_report, start_theta, start_spent = None, None, 0
    if start:
        from blacksat.surrogate_start import surrogate_start

        moved, report = surrogate_start(
            task, device, theta, budget=budget, batch=batch, seed=rng, networks=start_networks
        )
        start_report, start_spent = report.to_dict(), report.reconfigurations
        if report.outcome == "trained":
            theta = start_theta = moved
    if layered:
        layered_kwargs: dict[str, Any] = dict(
            sigma=layered_sigma, lr=layered_lr, beta1=layered_beta1, fine_tune_lr=fine_tune_lr,
            travel=layered_travel, anchor=layered_anchor, scheme=layered_scheme,
            schedule=layered_schedule,
            keep=layered_keep, memory=int(layered_memory),
            operating_point=layered_operating_point,
            train_share=float(layered_train_share), input_means=bool(layered_input_means),
            plateau=int(layered_plateau), backtrack=layered_backtrack,
            backtrack_patience=layered_backtrack_patience,
            weak_check=float(layered_weak_check), handover=bool(layered_handover),
            cost_model=cm, rng=rng,
        )  # fmt: skip
        plan, checked = _layered_plan(
            task, device, budget, batch, start_report, start_spent, start_theta, **layered_kwargs
        )
        if plan is not None:
            return plan
        start_spent += checked.reconfigurations
        if checked.refused and layered_start and start_theta is None:
            moved, start_report, spent = _run_layered_start(
                task, device, theta, budget, batch, start_report, start_spent, checked.why,
                layered_kwargs=layered_kwargs, scheme=layered_start_scheme, progress=progress,
            )  # fmt: skip
            start_spent += spent
            if spent and (start_report or {}).get("outcome") == "trained":
                theta = start_theta = moved
                keep = "best"  # the continuation must not lose the start it was given
    th0 = torch.as_tensor(space.project(np.asarray(theta, dtype=np.float64)))
    span = float(np.median(space.span))
    floor = level_step(space)
    index = (
        rng.choice(n_train, size=batch, replace=False) if batch < n_train else np.arange(n_train)
    )
    batch_obj = task.batch("train", index)
    ctx = StepContext(rng)
    probe = ZerothOrder(device, task, q=q, sigma=max(span * FIRST_RUNG, floor))
    left = budget - start_spent  # what the surrogate start left
    k_dir = PROBE_DIRECTIONS if left >= 400 else max(PROBE_DIRECTIONS // 2, 2)
    spent = 0
    cap = left // 4  # calibration never takes more than a quarter of the budget
    # the noise: one setting read `repeats` times on the same minibatch (one reconfiguration,
    # or one per reading on a device that re-programs at every query)
    reprograms = bool(getattr(device, "reprograms_on_query", False))
    repeats = REPEATS if (not reprograms or cap >= REPEATS) else cap
    noise = float("nan")
    if repeats >= 2 and cap >= 1:
        reads, cost = probe.evaluate(th0[None].repeat(repeats, 1), batch_obj, ctx)
        spent += cost.reconfigurations
        values = reads.detach().numpy()
        if not np.all(np.isfinite(values)):
            raise ConfigError(
                "the loss at the starting setting is not finite; a query-only plan needs "
                "finite readings there (check the device and the starting controls)"
            )
        noise = float(np.std(values, ddof=1))
    needed = snr * math.sqrt(2.0) * noise
    ladder: list[dict[str, float]] = []
    d = space.dim
    rungs = [r for r in FIRST_RUNG * 2.0 ** np.arange(RUNGS) if r * span >= floor]
    if not rungs:  # levels coarser than the whole ladder: one level step
        rungs = [floor / span]

    def rms_at(rung: float) -> float | None:
        nonlocal spent
        if spent + 2 * k_dir > cap or math.isnan(needed):
            return None
        sigma = rung * span
        u = torch.as_tensor(rng.standard_normal((k_dir, d)))
        losses, cost = probe.evaluate(torch.cat([th0 + sigma * u, th0 - sigma * u]), batch_obj, ctx)
        spent += cost.reconfigurations
        diff = losses.detach().numpy()
        diff = diff[:k_dir] - diff[k_dir:]
        ok = np.isfinite(diff)
        rms = float(np.sqrt(np.mean(diff[ok] ** 2))) if ok.any() else 0.0
        ladder.append({"rung": float(rung), "sigma": sigma, "rms": rms, "needed": needed})
        return rms

    # bisection for the smallest rung above the noise (the RMS difference grows with the
    # radius): log2(rungs) probes instead of one per rung
    lo, hi, seen = 0, len(rungs) - 1, {}
    while lo < hi:
        mid = (lo + hi) // 2
        r = rms_at(rungs[mid])
        if r is None:
            break
        seen[mid] = r
        if r >= needed:
            hi = mid
        else:
            lo = mid + 1
    if lo == hi and lo not in seen:
        r = rms_at(rungs[lo])
        if r is not None:
            seen[lo] = r
    passing = sorted(k for k, r in seen.items() if r >= needed)
    if passing:
        k = passing[0]
        sigma, rms = rungs[k] * span, seen[k]
        # within the octave below: the radius at which the slope's share of the difference
        # (rms^2 = 2 noise^2 + (slope sigma)^2) reaches the threshold
        slope = math.sqrt(max(rms**2 - 2.0 * noise**2, 0.0)) / sigma
        refined = needed / slope if slope > 0 else sigma
        chosen = float(np.clip(refined, max(sigma / 2.0, floor), sigma))
        reason = "noise-free" if noise == 0 else "first above the noise"
    elif seen:
        k = max(seen, key=lambda j: seen[j])
        chosen, reason = rungs[k] * span, "largest difference (none above the noise)"
    else:
        chosen, reason = rungs[0] * span, "no budget to calibrate: smallest radius"
    steps = max((left - spent) // (2 * q), 0)
    # the radius-based step, capped by the walk bound, which stops at walk_floor of the span
    walk_bound = walk * span / math.sqrt(max(steps, 1) * d)
    lr = min(max(lr_per_sigma * chosen, lr_floor * span), max(walk_bound, walk_floor * span))
    if start_theta is not None or fine_tune:  # fine-tuning a trained start
        lr = min(lr, fine_tune_lr * span)
    return QueryPlan(
        q=int(q),
        sigma=float(max(min(chosen, sigma_per_lr * lr), floor)),
        lr=float(lr),
        batch_size=None if batch >= n_train else int(batch),
        steps=int(steps),
        budget=int(budget),
        calibration_reconfigurations=int(start_spent + spent),
        noise=noise,
        span=span,
        ladder=ladder,
        reason=reason,
        cost_model=cm,
        calibrated_sigma=float(chosen),
        beta1=float(beta1),
        start=start_report,
        start_theta=None if start_theta is None else [float(v) for v in start_theta],
        schedule=schedule,
        keep=keep,
    )


@dataclass(frozen=True)
class _Check:
    """What the layered plan's linear-response check spent (reconfigurations) and said:
    ``refused`` where a linear response does not hold (``why``)."""

    reconfigurations: int = 0
    refused: bool = False
    why: str = ""


def _run_layered_start(
    task: Any,
    device: Any,
    theta: Any,
    budget: int,
    batch: int,
    start_report: dict[str, Any] | None,
    start_spent: int,
    why: str,
    *,
    layered_kwargs: dict[str, Any],
    scheme: str = LAYERED_START_SCHEME,
    progress: bool = False,
) -> tuple[np.ndarray, dict[str, Any] | None, int]:
    """The layered start (:data:`LAYERED_START`): the layered response's plan over what is left
    of ``budget`` (no linear check: ``why`` says why it failed), run here from ``theta (d,)``
    with its kept setting, backtracking after a jump and, as its patience, its plateau's count
    of steps; it ends at its plateau (so it never backtracks at a stall) or at the end of the
    budget; its probes read with ``scheme``. The device's controls only (the task's
    digital layers are left as they are). ``-> (the kept setting (d,), the start's report,
    reconfigurations spent)``; nothing spent where no layered plan fits the budget."""
    from blacksat.builder import build_estimator
    from blacksat.meter import MeteredDevice
    from blacksat.trainer import Trainer

    start = np.asarray(theta, dtype=np.float64)
    plan, _ = _layered_plan(
        task, device, budget, batch, start_report, start_spent, None, check=False,
        **{**layered_kwargs, "keep": "best", "backtrack_patience": None, "scheme": scheme},
    )  # fmt: skip
    if plan is None:
        return start, start_report, 0
    patience = int(layered_kwargs["plateau"]) or LAYERED_PLATEAU
    built = build_estimator(plan.estimator_spec(), task=task, device=device)
    rng = layered_kwargs["rng"]
    config = replace(
        plan.train_config(seed=int(rng.integers(2**31)), progress=progress, train_digital=False),
        patience=patience,
    )
    metered = isinstance(device, MeteredDevice)
    before = device.ledger.reconfigurations if metered else 0
    trainer = Trainer(
        task, built.estimator, device.space, config, meter=device if metered else None
    )
    trainer.label = "layered start"
    result = trainer.fit(start)
    spent = (
        device.ledger.reconfigurations - before if metered else result.state.ledger.reconfigurations
    )
    ended = (
        f"its plateau ({patience} steps without a new low of the loss)"
        if result.reason == "plateau"
        else "the end of the budget"
    )
    # no step lowered the loss by more than its own noise: the kept setting is a chance low
    stuck = not result.best_step or not start_progressed(result.history)
    report = {
        "kind": "layered",
        "outcome": "no progress" if stuck else "trained",
        "reason": (
            f"the device declares its weight banks but {why}: the layered response ran "
            f"{result.steps} steps, to {ended}, and "
            + (
                "found no setting whose loss stands below where it started by more than the "
                f"loss's own noise ({PROGRESS_Z:g} standard deviations), so the zeroth-order "
                "plan runs from there as it would have without it"
                if stuck
                else f"kept the setting after step {result.best_step}"
            )
        ),
        "reconfigurations": int(spent),
        "steps": int(result.steps),
        "kept_step": result.best_step,
        "stop": result.reason,
        "surrogate": start_report,  # what the surrogate start, which ran first, said
    }
    return np.asarray(result.theta, dtype=np.float64), report, int(spent)


def start_progressed(history: list[dict[str, Any]], z: float = PROGRESS_Z) -> bool:
    """Did a run lower its loss by more than its own noise? ``history``: the run's step records
    (``loss`` each); :func:`blacksat.keep_best.progressed` of their losses (weight
    :data:`~blacksat.keep_best.KEEP_SMOOTHING` on the past, as the kept setting's)."""
    from blacksat.keep_best import progressed

    return progressed([float(h["loss"]) for h in history], z)


def plan_handover(
    plan: QueryPlan,
    task: Any,
    device: Any,
    theta: Any,
    *,
    spent: int,
    seed: int | Sequence[int] | np.random.Generator | None = 0,
    steps: int | None = None,
) -> QueryPlan:
    """The zeroth-order plan that continues a layered run which ended with ``"no progress"``
    (:data:`LAYERED_HANDOVER`): calibrated on ``device`` from where the layered run started
    (``plan.initial(theta)``: its kept setting is a chance low), over what is left of
    ``plan.budget`` after ``spent`` reconfigurations (``plan``'s calibration and the layered
    run), with ``plan``'s probe inputs a reconfiguration as its batch, no surrogate start and no
    layered response; a trained surrogate start's setting is fine-tuned
    (``fine_tune_lr``). Its ``start`` reports the layered run (``steps`` of them, if given).

    Raises:
        ConfigError: ``plan`` is not a layered plan, or nothing is left of its budget.
    """
    if plan.estimator != "layered_response":
        raise ConfigError(f"only a layered plan hands over, not a {plan.estimator!r} one")
    left = int(plan.budget) - check_int("spent", spent, low=0)
    if left < 1:
        raise ConfigError(
            f"the layered run spent {spent} of {plan.budget} reconfigurations: nothing is left "
            "to hand over"
        )
    zo = plan_query_only(
        task, device, plan.initial(theta), budget=left,
        batch_size=plan.inputs, cost_model=plan.cost_model, seed=seed, start=False,
        layered=False, fine_tune=plan.start_theta is not None,
    )  # fmt: skip
    ran = "" if steps is None else f"{steps} steps, "
    report = {
        "kind": "handover",
        "outcome": "no progress",
        "reason": (
            f"the layered response ran {ran}stalled twice ({plan.backtrack_patience} steps "
            "without a new low of the loss; the second time at half the step) and found no "
            "setting whose loss stands below where it started by more than the loss's own noise "
            f"({plan.no_progress_z:g} standard deviations), so the zeroth-order plan runs with "
            f"the {left} reconfigurations left, from where it started"
        ),
        "reconfigurations": int(spent),
        "surrogate": plan.start,  # what the surrogate start, which ran first, said
    }
    return replace(
        zo,
        budget=int(plan.budget),
        calibration_reconfigurations=int(spent) + zo.calibration_reconfigurations,
        start=report,
        start_theta=plan.start_theta,
    )


def _layered_plan(
    task: Any,
    device: Any,
    budget: int,
    batch: int,
    start_report: dict[str, Any] | None,
    start_spent: int,
    start_theta: Any,
    *,
    sigma: float,
    lr: float,
    beta1: float,
    fine_tune_lr: float,
    travel: float,
    anchor: str,
    scheme: str,
    schedule: str,
    keep: str,
    memory: int,
    operating_point: str,
    train_share: float,
    input_means: bool,
    plateau: int,
    backtrack: float | None,
    backtrack_patience: int | None,
    weak_check: float,
    handover: bool,
    cost_model: CostModel | None,
    rng: np.random.Generator,
    check: bool = True,
) -> tuple[QueryPlan | None, _Check]:
    """The layered-response plan, or ``None`` where it does not apply: no declared wiring, no
    linear response (the surrogate start's probe, or where it did not run
    :func:`linear_response_check`; not asked without ``check``), too few inputs a
    reconfiguration to identify one, or no budget left for two steps; and what the linear
    check spent and said (:class:`_Check`)."""
    from blacksat.layered_response import banks_of, derived_probes, settings_per_step

    banks = banks_of(device)
    if banks is None:
        return None, _Check()
    if check and start_report is not None and start_report.get("linear") is False:
        return None, _Check(refused=True, why=str(start_report.get("reason", "")))
    n_in = banks[0].cols
    if batch < n_in + 2:
        return None, _Check()
    k = derived_probes(banks, memory, operating_point == "on", scheme)
    per_step = settings_per_step(k, scheme)
    spent = start_spent
    check_spread = None
    if check and (start_report is None or start_report.get("linear") is None):
        # the surrogate start's probe did not run: check the linear response here (its fit
        # keeps at least 8 degrees of freedom for the residual)
        if batch < n_in + 9 or (budget - spent - 3) // per_step < 1:
            return None, _Check()
        checked = linear_response_check(task, device, batch, rng)
        cost = checked.reconfigurations
        spent += cost
        check_spread = checked.spread if math.isfinite(checked.spread) else None
        if not checked.holds:
            why = "a linear map of the inputs does not explain the readings down to their noise"
            return None, _Check(cost, refused=True, why=why)
        if check_spread is not None and check_spread < weak_check:
            why = (
                f"its readings stand only {check_spread:.1f}x above their noise's variance "
                f"(below {weak_check:g}x), so a linear fit within the noise cannot tell"
            )
            return None, _Check(cost, refused=True, why=why)
    steps = (budget - spent) // per_step
    if steps < 1:
        return None, _Check(spent - start_spent)
    span = float(np.median(device.space.span))
    step = max(lr, travel / steps) * span
    if start_theta is not None:  # fine-tuning a trained start
        step = min(step, fine_tune_lr * span)
    plan = QueryPlan(
        q=k,
        sigma=float(max(sigma * span, level_step(device.space))),
        lr=float(step),
        batch_size=None,
        steps=int(steps),
        budget=int(budget),
        calibration_reconfigurations=int(spent),
        noise=math.nan,
        span=span,
        reason="layered response: the device declares its weight banks",
        cost_model=cost_model,
        calibrated_sigma=math.nan,
        beta1=float(beta1),
        start=start_report,
        start_theta=None if start_theta is None else [float(v) for v in start_theta],
        estimator="layered_response",
        inputs=int(batch),
        anchor=anchor,
        scheme=scheme,
        schedule=schedule,
        keep=keep,
        memory=memory,
        operating_point=operating_point,
        operating_point_from=(
            round(int(steps) * (1.0 - HOLD_COSINE_DECAY)) if operating_point == "late" else 0
        ),
        train_share=train_share,
        input_means=input_means,
        operating_point_plateau=plateau if operating_point == "late" else 0,
        backtrack=backtrack,
        backtrack_patience=backtrack_patience if backtrack is not None else None,
        check_spread=check_spread,
        no_progress_z=(
            PROGRESS_Z
            if handover
            and check_spread is not None
            and check_spread < WEAK_CHECK
            and backtrack is not None
            and backtrack_patience is not None
            else None
        ),
    )
    return plan, _Check(spent - start_spent)


@dataclass(frozen=True)
class LinearCheck:
    """What :func:`linear_response_check` read and decided.

    Attributes:
        holds: a linear map of the inputs explains the readings down to their noise
            (:func:`~blacksat.layered_response.linear_within_noise`).
        residual: the linear fit's residual variance, in units of the readout noise's variance
            (median over the two settings; ``nan`` where the fit leaves no degree of freedom or
            the readings carry no noise).
        spread: the readings' variance over the inputs, in the same units (a residual within
            the noise says little where this is only a few).
        reconfigurations: what the check spent.
    """

    holds: bool
    residual: float
    spread: float
    reconfigurations: int


def linear_response_check(
    task: Any, device: Any, batch: int, rng: np.random.Generator
) -> LinearCheck:
    """Does a linear map of the inputs explain the device's readings down to their noise? Two
    random settings and the first of them again, each read with ``batch`` of the surrogate
    start's probe inputs (spread over the range of the inputs the task sends):
    :func:`~blacksat.layered_response.linear_within_noise` with the repeat as the noise and
    ``1 - RESPONSE_R2`` as the share. The layered plan asks it where the surrogate start's
    probe did not run (three reconfigurations)."""
    from blacksat.estimators import query_cost
    from blacksat.layered_response import linear_fit_noise, within_noise
    from blacksat.surrogate_start import probe_inputs
    from blacksat.surrogates.linear_response import RESPONSE_R2

    shape = tuple(device.input_shape)
    x = probe_inputs(task, device, batch, rng).reshape(batch, -1)
    two = device.space.sample(rng, 2)
    thetas = np.stack([two[0], two[1], two[0]])  # the repeat is not next to itself: re-programmed
    y, cost = query_cost(
        device, len(thetas), batch, lambda: device.query_many(thetas, x.reshape(batch, *shape))
    )
    y = np.asarray(y, dtype=np.float64).reshape(3, batch, -1)
    stats = linear_fit_noise(x, y[:2], y[0], y[2])  # one fit, the verdict and the figures
    holds = within_noise(stats, 1.0 - RESPONSE_R2)
    residual = spread = math.nan
    if stats is not None and stats[2] > 0.0:
        residual = float(np.median(stats[0])) / stats[2]
        spread = float(np.median(stats[1])) / stats[2]
    return LinearCheck(holds, residual, spread, int(cost.reconfigurations))


__all__ = [
    "CostModel",
    "LinearCheck",
    "QueryPlan",
    "cost_model_of",
    "level_step",
    "linear_response_check",
    "measure_cost",
    "plan_handover",
    "plan_query_only",
    "start_progressed",
]
