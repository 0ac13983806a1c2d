"""Layered response: gradients from a device's response matrix and the wiring of its weight banks.

A device built from **weight banks** (micro-ring banks, crossbar arrays, in sequence, each
control setting one weight) often has a *linear response*: at a fixed setting its readings are a
linear map of its inputs, ``y = A x + b``. One reconfiguration read with a few more inputs than
it has (``B > n_in + 1``) then identifies the whole map ``A (n_out, n_in + 1)`` (the bias as the
last column), and the task's loss over any batch of training samples can be computed offline
through that map: one reading gives the loss *and its gradient with respect to A*, ``G``. What
the device hides is how ``A`` moves with the controls. The wiring constrains it, with no physics:
a control of bank ``l`` moves one weight ``W_l[r, c]``, so to first order

    dA = sum_l  L_l (S_l * dtheta_l) R_l,

with ``S_l (rows, cols)`` the weights' slopes (one per control, unknown), ``L_l (n_out, rows)``
what the banks after it make of its output rows and ``R_l (cols, n_in + 1)`` what the banks
before it feed its input columns (``L = I`` for the last bank, ``R = [I | 0]`` for the first;
a bank whose weights are set by a differential pair of controls has one ``S`` per control block).
``K`` probes ``theta + sigma r_k`` (``r_k`` random signs on every control) give ``K`` matrices
``dA_k``; alternating least squares fits ``S``, ``L`` and ``R`` to them (warm-started from the
previous step), and the gradient is ``S_l * (L_l^T G R_l^T)`` for every control at once. Where
zeroth-order differences learn one number a probe, a probe here gives ``n_out (n_in + 1)``.

How a probe's ``dA`` is read (``scheme``): ``"forward"`` (the default) reads each probe once and
centres the step's probes, ``dA_k = A_k - mean_j A_j`` against ``delta_k = sigma (r_k - mean_j
r_j)``. To second order ``A_k = A + J delta_k + c + (cross terms)``, where ``c`` collects each
control's own curvature times ``delta_i^2``; with random signs ``delta_i^2 = sigma^2`` for every
probe, so ``c`` is the same for all of them and the centring removes it exactly, together with the
response at ``theta`` (which the probes therefore never need read). A probe costs one
reconfiguration and the step's ``K`` probes give ``K - 1`` directions (:func:`derived_probes` adds
the one). ``"central"`` reads antithetic pairs ``theta +- sigma r_k`` and takes ``dA_k = (A_k^+ -
A_k^-)``: every second-order term cancels, at two reconfigurations a direction. Per reconfiguration
both carry the same signal over noise (one reading against the pair's difference of two at twice the
signal), but the fit's unknowns outnumber what one step's probes give, so what a short run runs
short of is directions, and one-sided probes give twice as many. What the centring leaves, the
change of two controls moved together (a bank after a bank, a nonlinear stage), differs from probe
to probe; where a run is long, or each reading noisy, the fit's precision matters more and pairs
read better (:data:`blacksat.query_plan.LAYERED_SCHEME` says where it was measured).

``K`` is derived from the structure: twice the model's unknowns over the numbers one direction gives
(:func:`derived_probes`), spread over the last ``MEMORY`` steps: each step reads a third of them
afresh and the fit also uses the probes of the two steps before (the model moves slowly as training
goes; it is warm-started from step to step for the same reason).

Between the banks the O/E/O stages are nonlinear, so the model is an approximation: moving a ring of
an inner bank moves its hidden unit's operating point, which reaches every column of ``A``, not only
the ring's own; it is worst where the hidden units sit at their kink (an MRR network with every ring
on resonance) and improves as training moves away. :class:`BankJacobian` can model that too
(``operating_point=True``): for the first bank, the change of each hidden unit's operating point
is the change of its weights' sum, and it moves the response along one direction per unit that
the fit learns. Far from a run's plateau its extra unknowns cost more than they explain (from the
first step the MRR network lost 5.4 points at 250 reconfigurations), so the estimator can fit
both models and take its gradient from the one with the term late in the run only
(``operating_point="late"``, from the step ``from_step``, or, given ``plateau``, from the step
where the step losses' moving average has set no new low for that many steps). The probes'
inputs can also be partly
the step's own training samples (``train_share``): the loss gradient is taken where the task
drives the device, and probes read there describe the response that matters.

The estimator is :class:`~blacksat.estimators.LayeredResponse` (registered as
``"layered_response"``); this module holds the wiring and the model it fits. Declare the wiring
on the device (``weight_banks``: a sequence of ``(rows, cols)`` or ``(rows,
cols, blocks)``, in control order, each bank's blocks row-major) or pass ``banks=``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from blacksat import circle
from blacksat.errors import ConfigError

#: ridge added to every least-squares solve of the fit (relative to the system's scale)
RIDGE = 1e-6
#: alternating sweeps of the first fit (later fits start from the previous step's)
FIRST_SWEEPS = 50

#: steps whose probes the layered response's fit uses: this step's and the last ``MEMORY - 1``
#: steps' (``derived_probes(banks, MEMORY)`` fresh probes a step, so the fit sees about as many
#: probes as one step of ``derived_probes(banks)`` gave). The wiring model changes slowly as
#: training moves (it is warm-started from step to step for that reason), so recent probes still
#: describe it, and a step costs about a third of the reconfigurations. On tuning chips 100-103
#: against every probe from the current step (``benchmarks/query_plan_tuning.py``, ``layered
#: memory 1``): MRR network +34.2 / +1.7 / +0.3 / +0.6 points at 250 / 1,000 / 5,000 / 20,000
#: reconfigurations (15 probes a step there, now 5), an MRR weight bank +0.3 / +0.3, the
#: crossbar -0.1 / -0.4 / -0.4 (about what its programming noise moves one chip's evaluation)
MEMORY = 3

#: what the layered response reads the current setting with: the step's own training samples
#: (``"batch"``, the default) or its uniform probe inputs (``"probes"``, the estimator before
#: the choice)
ANCHORS = ("batch", "probes")

#: how the layered response reads a probe's response change: one-sided probes centred over the
#: step (``"forward"``: a reconfiguration a probe) or antithetic pairs (``"central"``: two)
SCHEMES = ("forward", "central")

#: the layered response's scheme by default: one-sided probes centred over the step (what it
#: gained and where it reads lower: :data:`blacksat.query_plan.LAYERED_SCHEME`)
SCHEME = "forward"

#: whether the layered response's wiring model has the operating-point term
#: (:class:`BankJacobian`): ``"off"``, ``"on"``, or ``"late"`` (both models are fitted from the
#: first step, and the gradient comes from the one with the term from a given step on)
OPERATING_POINTS = ("off", "on", "late")


@dataclass(frozen=True)
class Bank:
    """One weight bank: ``rows x cols`` weights, each set by ``blocks`` controls (1; 2 for a
    differential pair such as ``G+ - G-``). Its controls are ``blocks`` row-major
    ``(rows, cols)`` blocks in a row."""

    rows: int
    cols: int
    blocks: int = 1

    @property
    def size(self) -> int:
        """Controls of the bank."""
        return self.rows * self.cols * self.blocks


def parse_banks(raw: Any, dim: int) -> tuple[Bank, ...]:
    """``raw`` (``Bank`` s or ``(rows, cols[, blocks])`` tuples, in control order) checked
    against ``dim`` controls: consecutive banks must chain (a bank's ``cols`` are the previous
    bank's ``rows``) and the sizes must sum to ``dim``."""
    try:
        banks = tuple(b if isinstance(b, Bank) else Bank(*(int(v) for v in b)) for b in raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"weight banks must be a sequence of (rows, cols) or (rows, cols, blocks), got {raw!r}"
        ) from None
    if not banks or any(min(b.rows, b.cols, b.blocks) < 1 for b in banks):
        raise ConfigError(f"weight banks must be non-empty with positive sizes, got {raw!r}")
    for a, b in itertools.pairwise(banks):
        if b.cols != a.rows:
            raise ConfigError(
                f"weight banks do not chain: a bank of {a.rows} rows feeds one of {b.cols} columns"
            )
    total = sum(b.size for b in banks)
    if total != dim:
        raise ConfigError(f"the weight banks hold {total} controls, the device has {dim}")
    return banks


def banks_of(device: Any) -> tuple[Bank, ...] | None:
    """The device's declared ``weight_banks`` (checked), or ``None`` when it declares none."""
    raw = getattr(device, "weight_banks", None)
    return None if raw is None else parse_banks(raw, device.space.dim)


def linear_fit_noise(
    x: np.ndarray, ys: np.ndarray, first: np.ndarray, again: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """What :func:`linear_within_noise` weighs: ``(residual (K,), spread (K,), noise)``, the
    residual variance of a linear fit to each setting's readings (corrected for its
    ``n_in + 1`` coefficients), the readings' variance over the inputs, and the readout noise's
    variance (half the mean squared difference of ``first`` and ``again``, readings of the same
    setting(s) taken twice); ``None`` where the fit leaves no degree of freedom.
    ``x (n, n_in)``, ``ys (K, n, n_out)`` (``K`` settings read with the same inputs). Where the
    spread is only a few times the noise, a residual within the noise says nothing about the
    response (a network that passes almost no light)."""
    noise_var = float(np.mean((np.asarray(again) - np.asarray(first)) ** 2)) / 2.0
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    ys = np.asarray(ys, dtype=np.float64).reshape(len(ys), len(x), -1)
    design = np.c_[x, np.ones(len(x))]
    dof = len(x) - np.linalg.matrix_rank(design)
    if dof < 1:
        return None
    coef = np.linalg.lstsq(design, ys.transpose(1, 0, 2).reshape(len(x), -1), rcond=None)[0]
    fit = (design @ coef).reshape(len(x), len(ys), -1).transpose(1, 0, 2)
    resid = ((ys - fit) ** 2).sum(axis=1).mean(axis=1) / dof  # (K,)
    spread = ys.var(axis=1).mean(axis=1)  # (K,)
    return resid, spread, noise_var


def linear_within_noise(
    x: np.ndarray, ys: np.ndarray, first: np.ndarray, again: np.ndarray, max_share: float
) -> bool:
    """Does a linear map of the inputs explain each setting's readings down to their noise?
    ``x (n, n_in)``, ``ys (K, n, n_out)`` (``K`` settings read with the same inputs); ``first``
    and ``again``: readings of the same setting(s) taken twice, whose difference is the readout
    noise. The linear fit's residual variance (corrected for its ``n_in + 1`` coefficients),
    median over the settings, must stay within twice the noise's variance or within
    ``max_share`` of the readings' variance (:func:`linear_fit_noise`). This is stricter than a
    held-out share of the readings' variance across settings: a network of three MRR banks
    explains 0.36-0.89 of each setting's readings and fails it, where the differences between
    settings made it look linear."""
    return within_noise(linear_fit_noise(x, ys, first, again), max_share)


def within_noise(stats: tuple[np.ndarray, np.ndarray, float] | None, max_share: float) -> bool:
    """:func:`linear_within_noise`'s verdict from :func:`linear_fit_noise`'s ``stats`` (``None``,
    no degree of freedom left: ``False``), for a caller that also wants the statistics."""
    if stats is None:
        return False
    resid, spread, noise_var = stats
    ok = resid <= np.maximum(2.0 * noise_var, max_share * spread)
    return bool(np.median(ok.astype(float)) >= 0.5)


def derived_probes(
    banks: Sequence[Bank],
    memory: int = 1,
    operating_point: bool = False,
    scheme: str = "central",
) -> int:
    """Fresh probes a step: twice the model's unknowns over the numbers one direction gives
    (``n_out (n_in + 1)``), shared by the ``memory`` steps whose probes the fit uses; at least
    one; with ``scheme="forward"`` one more, which the step's centring spends (at least two).
    ``operating_point``: count the operating-point terms' unknowns too (:class:`BankJacobian`)."""
    n_in, n_out = banks[0].cols, banks[-1].rows
    unknowns = sum(b.size for b in banks)
    unknowns += sum(n_out * b.rows for b in banks[:-1])  # L of every bank but the last
    unknowns += sum(b.cols * (n_in + 1) for b in banks[1:])  # R of every bank but the first
    if operating_point and len(banks) > 1:  # V of the first bank
        unknowns += banks[0].rows * (n_in + 1)
    total = max(1, math.ceil(2 * unknowns / (n_out * (n_in + 1))))
    directions = max(1, math.ceil(total / max(1, int(memory))))
    return directions + 1 if scheme == "forward" else directions


def probe_changes(
    a: torch.Tensor, sent: torch.Tensor, theta: torch.Tensor, scheme: str, period: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's probes as the fit takes them, ``(dA (k, n_out, n_in + 1), delta (k, d))``,
    from the probes' responses ``a`` and the settings ``sent`` (as clipped) around ``theta
    (d,)``: with ``"forward"`` (``a (k, ...)``, ``sent (k, d)``) each probe's change from
    ``theta``, centred over the step (``theta``'s own response cancels, and with it the
    controls' curvature, the same for every probe); with ``"central"`` (``a (2k, ...)``, ``sent
    (2k, d)``: the ``+`` probes, then the ``-``) each pair's difference. Differences of settings
    go the short way round on a circle of ``period`` (:func:`blacksat.circle.difference`;
    ``None``: no control is periodic)."""

    def diff(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x - y if period is None else circle.difference(x, y, period)

    if scheme == "forward":
        delta = diff(sent, theta.expand_as(sent))
        return a - a.mean(0, keepdim=True), delta - delta.mean(0, keepdim=True)
    k = len(sent) // 2
    return a[:k] - a[k:], diff(sent[:k], sent[k:])


def probe_signs(k: int, d: int, scheme: str, rng: np.random.Generator) -> torch.Tensor:
    """The step's probe directions ``(k, d)``, random signs. With ``"forward"`` every control
    is probed both ways in the step (each column a random arrangement of ``ceil(k / 2)`` and
    ``floor(k / 2)`` signs, which way the extra one goes at random): a control whose ``k`` signs
    all agreed would centre to no change and go unidentified by the step (a quarter of them at
    ``k = 3`` with independent signs). With ``"central"``, independent signs."""
    if scheme != "forward":
        return torch.as_tensor(rng.choice(np.array([-1.0, 1.0]), size=(k, d)))
    base = np.where(np.arange(k) < (k + 1) // 2, 1.0, -1.0)
    signs = rng.permuted(np.broadcast_to(base[:, None], (k, d)), axis=0)
    flip = rng.choice(np.array([-1.0, 1.0]), size=d)  # which way the odd one out goes
    return torch.as_tensor(signs * flip if k % 2 else signs)


def settings_per_step(probes: int, scheme: str) -> int:
    """Reconfigurations one layered-response step sends: the current setting and ``probes``
    one-sided probes (``"forward"``) or antithetic pairs (``"central"``)."""
    return 1 + (probes if scheme == "forward" else 2 * probes)


class BankJacobian:
    """The first-order model ``dA = sum_l L_l (S_l * dtheta_l) R_l`` (module docstring), fitted
    by alternating least squares.

    Shapes: ``S_l (blocks, rows, cols)``, ``L_l (n_out, rows)`` (``None``: the identity, last
    bank), ``R_l (cols, n_in + 1)`` (``None``: ``[I | 0]``, first bank); response-matrix changes
    ``dA (K, n_out, n_in + 1)`` for control changes ``delta (K, d)``.

    ``operating_point=True`` adds, for the first bank of a network of several, the term the
    separable form misses. A first-bank control moves its weight ``W[j, c]``, and with it the
    operating point of hidden unit ``j``; through the nonlinearity after the bank that changes
    how the unit passes *every* input, not only column ``c``. For inputs drawn independently
    with one mean (the probe inputs), to first order in the nonlinearity's curvature the change
    of unit ``j``'s operating point is the change of its weights' sum, ``w_kj = sum_c (S *
    dtheta_k)[j, c]`` (summed over blocks), and it moves the response along one direction per
    unit, ``V[j] (n_in + 1)``:

        first bank's share = L [ (S * dtheta_k) [I | 0] + diag(w_k) V ],

    ``rows * (n_in + 1)`` more unknowns. The alternating fit gains a linear step for ``V``
    (``rows`` unknowns a column, the rest fixed; the slopes' step holds ``w`` at the slopes it
    starts from). At the plateau of a run on an MRR network's two banks (tuning chip 101), fitted
    to 15 exact probes read half on training samples, the gradient it returns has a cosine of
    0.69 with the exact one, where the separable form's has 0.22 and a perfect model of those
    probes 0.78 (``benchmarks/layered_gradient.py``; when the term was built, at the last
    setting of a run before it: 0.53, -0.08 and 0.63). Where the inputs are centred on zero the
    term vanishes to first order, and the fit loses nothing with it
    (``tests/core/test_layered_response.py``).
    """

    def __init__(self, banks: Sequence[Bank], seed: int = 0, operating_point: bool = False) -> None:
        self.banks = tuple(banks)
        self.n_in, self.n_out = self.banks[0].cols, self.banks[-1].rows
        self.operating_point = bool(operating_point)
        gen = torch.Generator().manual_seed(int(seed))
        last = len(self.banks) - 1
        dt = torch.float64
        self.S = [torch.zeros(b.blocks, b.rows, b.cols, dtype=dt) for b in self.banks]
        self.L: list[torch.Tensor | None] = [
            None if i == last else torch.randn(self.n_out, b.rows, generator=gen, dtype=dt)
            for i, b in enumerate(self.banks)
        ]
        self.R: list[torch.Tensor | None] = [
            None if i == 0 else torch.randn(b.cols, self.n_in + 1, generator=gen, dtype=dt)
            for i, b in enumerate(self.banks)
        ]
        #: the operating-point directions ``V (rows, n_in + 1)`` of the first bank (``None``:
        #: no such term)
        self.V: list[torch.Tensor | None] = [None] * len(self.banks)
        #: the probe inputs' mean ``(n_in,)``: where set, a unit's operating-point shift weighs
        #: each input's weight change by it, ``w_kj = sum_c (S * dtheta_k)[j, c] mu_c`` (the
        #: first-order form for inputs of unequal means); ``None``: equal means
        self.input_mean: torch.Tensor | None = None
        if self.operating_point and len(self.banks) > 1:
            self.V[0] = torch.zeros(self.banks[0].rows, self.n_in + 1, dtype=dt)
        self.fitted = False

    # ------------------------------------------------------------------ pieces
    def split(self, delta: torch.Tensor) -> list[torch.Tensor]:
        """``delta (K, d)`` -> per bank ``(K, blocks, rows, cols)``."""
        out, start = [], 0
        for b in self.banks:
            out.append(delta[:, start : start + b.size].reshape(-1, b.blocks, b.rows, b.cols))
            start += b.size
        return out

    def _right(self, i: int, m: torch.Tensor) -> torch.Tensor:
        """``m (..., n_out, cols)`` times ``R_i`` -> ``(..., n_out, n_in + 1)``."""
        r = self.R[i]
        if r is None:  # [I | 0]
            return torch.cat([m, m.new_zeros(*m.shape[:-1], 1)], dim=-1)
        return m @ r

    def _left(self, i: int, m: torch.Tensor) -> torch.Tensor:
        left = self.L[i]
        return m if left is None else left @ m

    def _shift(self, i: int, p: torch.Tensor) -> torch.Tensor | None:
        """The operating-point term of bank ``i`` before ``L_i``: ``diag(w_k) V_i`` ``(K, rows,
        n_in + 1)`` for ``p (K, blocks, rows, cols)``; ``None`` without one."""
        v = self.V[i]
        if v is None:
            return None
        return self._w(i, p)[..., None] * v

    def _w(self, i: int, p: torch.Tensor) -> torch.Tensor:
        """``(K, rows)``: the change of each unit's weights' sum (weighted by ``input_mean``)."""
        change = p * self.S[i]
        if self.input_mean is not None:
            change = change * self.input_mean.to(change.dtype)
        return change.sum((1, 3))

    def _inner(self, i: int, p: torch.Tensor) -> torch.Tensor:
        """Bank ``i``'s share before ``L_i``: ``(K, rows, n_in + 1)``."""
        n = self._right(i, (self.S[i] * p).sum(1))
        extra = self._shift(i, p)
        return n if extra is None else n + extra

    def _bank(self, i: int, parts: list[torch.Tensor]) -> torch.Tensor:
        """Bank ``i``'s share of ``dA``: ``(K, n_out, n_in + 1)``."""
        return self._left(i, self._inner(i, parts[i]))

    def _shift_share(self, i: int, p: torch.Tensor) -> torch.Tensor | float:
        """The operating-point term's share of ``dA`` ``(K, n_out, n_in + 1)`` (0 without)."""
        extra = self._shift(i, p)
        return 0.0 if extra is None else self._left(i, extra)

    def predict(self, delta: torch.Tensor) -> torch.Tensor:
        """``delta (K, d)`` -> ``dA (K, n_out, n_in + 1)``."""
        parts = self.split(delta)
        return sum((self._bank(i, parts) for i in range(len(self.banks))), torch.zeros(()))

    # ------------------------------------------------------------------ fit
    def fit(self, dA: torch.Tensor, delta: torch.Tensor, sweeps: int | None = None) -> float:
        """Fit to ``dA (K, n_out, n_in + 1)`` at ``delta (K, d)``; returns the fit's R² (the
        share of ``dA`` it explains; ``nan`` for ``dA = 0``). ``sweeps``: default
        ``FIRST_SWEEPS`` for the first fit, 10 after."""
        dA, delta = dA.to(torch.float64), delta.to(torch.float64)
        if not (torch.isfinite(dA).all() and torch.isfinite(delta).all()):
            raise ConfigError("the layered response's fit needs finite response changes")
        before = self.state_dict()
        parts = self.split(delta)
        n_sweeps = (FIRST_SWEEPS if not self.fitted else 10) if sweeps is None else int(sweeps)
        shares = [self._bank(i, parts) for i in range(len(self.banks))]
        for _ in range(n_sweeps):
            for i in range(len(self.banks)):
                rest = dA - (sum(shares, torch.zeros(())) - shares[i])
                p = parts[i]
                self._fit_slopes(i, rest - self._shift_share(i, p), p)
                if self.V[i] is not None:
                    base = self._left(i, self._right(i, (self.S[i] * p).sum(1)))
                    self._fit_shift(i, rest - base, p)
                if self.L[i] is not None:
                    self._fit_left(i, rest, p)
                if self.R[i] is not None:
                    self._fit_right(i, rest - self._shift_share(i, p), p)
                self._gauge(i)
                shares[i] = self._bank(i, parts)
        if not all(torch.isfinite(t).all() for t in self._tensors()):
            self.load_state_dict(before)  # a degenerate solve: keep the last good model
            return math.nan
        self.fitted = True
        res = dA - sum(shares, torch.zeros(()))
        total = float((dA**2).sum())
        return 1.0 - float((res**2).sum()) / total if total > 0 else math.nan

    @staticmethod
    def _solve(gram: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        """Ridge-regularized ``gram x = rhs`` (batched); ``gram (..., n, n)``."""
        n = gram.shape[-1]
        scale = gram.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-300)
        eye = torch.eye(n, dtype=gram.dtype)
        return torch.linalg.solve(gram + RIDGE * scale[..., None, None] * eye, rhs)

    def _fit_slopes(self, i: int, e: torch.Tensor, p: torch.Tensor) -> None:
        """``S_i`` given ``L_i``, ``R_i`` and the residual ``e (K, n_out, n_in + 1)`` left to
        bank ``i``; ``p (K, blocks, rows, cols)``."""
        b = self.banks[i]
        left, right = self.L[i], self.R[i]
        if right is None:  # first bank: separable by column c
            ll = torch.eye(b.rows, dtype=e.dtype) if left is None else left.T @ left
            lt = e[..., : b.cols] if left is None else left.T @ e[..., : b.cols]  # (K, rows, cols)
            gram = torch.einsum("kahc,kbgc,hg->cahbg", p, p, ll)
            rhs = torch.einsum("kahc,khc->cah", p, lt)
        elif left is None:  # last bank: separable by row r
            rr = right @ right.T  # (cols, cols)
            er = e @ right.T  # (K, rows, cols)
            gram = torch.einsum("karc,kbrd,cd->racbd", p, p, rr)
            rhs = torch.einsum("karc,krc->rac", p, er)
        else:  # a middle bank: every slope at once
            ll, rr = left.T @ left, right @ right.T
            lr = left.T @ e @ right.T  # (K, rows, cols)
            n = b.size
            gram = torch.einsum("kahc,kbgd,hg,cd->ahcbgd", p, p, ll, rr).reshape(n, n)
            rhs = torch.einsum("kahc,khc->ahc", p, lr).reshape(n)
            self.S[i] = self._solve(gram, rhs[:, None])[:, 0].reshape(b.blocks, b.rows, b.cols)
            return
        k = gram.shape[0]
        m = gram.shape[1] * gram.shape[2]
        sol = self._solve(gram.reshape(k, m, m), rhs.reshape(k, m, 1))[..., 0]
        if right is None:  # (cols, blocks, rows)
            self.S[i] = sol.reshape(k, b.blocks, b.rows).permute(1, 2, 0).contiguous()
        else:  # (rows, blocks, cols)
            self.S[i] = sol.reshape(k, b.blocks, b.cols).permute(1, 0, 2).contiguous()

    def _fit_left(self, i: int, e: torch.Tensor, p: torch.Tensor) -> None:
        """``L_i`` given the rest of bank ``i``: ``e_k = L_i M_k``, ``M_k = (S_i * p_k) R_i``
        (plus the operating-point term)."""
        m = self._inner(i, p)  # (K, rows, n_in + 1)
        gram = torch.einsum("kra,ksa->rs", m, m)
        rhs = torch.einsum("kra,koa->ro", m, e)
        self.L[i] = self._solve(gram, rhs).T

    def _fit_right(self, i: int, e: torch.Tensor, p: torch.Tensor) -> None:
        """``R_i`` given ``L_i``, ``S_i``: ``e_k = P_k R_i``, ``P_k = L_i (S_i * p_k)``."""
        pk = self._left(i, (self.S[i] * p).sum(1))  # (K, n_out, cols)
        gram = torch.einsum("koc,kod->cd", pk, pk)
        rhs = torch.einsum("koc,koa->ca", pk, e)
        self.R[i] = self._solve(gram, rhs)

    def _fit_shift(self, i: int, e: torch.Tensor, p: torch.Tensor) -> None:
        """``V_i`` given ``L_i`` and ``S_i``, to the residual ``e (K, n_out, n_in + 1)`` left to
        the operating-point term: column ``a`` of ``V`` solves ``(L^T L o sum_k w_k w_k^T)
        V[:, a] = sum_k w_k o (L^T e_k)[:, a]``; ``p (K, blocks, rows, cols)``."""
        left = self.L[i]
        w = self._w(i, p)  # (K, rows)
        ll = torch.eye(w.shape[1], dtype=e.dtype) if left is None else left.T @ left
        le = e if left is None else torch.einsum("oj,koa->kja", left, e)  # (K, rows, n_in + 1)
        self.V[i] = self._solve(ll * (w.T @ w), torch.einsum("kj,kja->ja", w, le))

    def _gauge(self, i: int) -> None:
        """Unit columns of ``L_i`` and unit rows of ``R_i``, their scale moved into ``S_i`` (the
        operating-point term, ``L diag(w) V`` with ``w`` the rows' sums of ``S * dtheta``, is
        unchanged by the first: no bank with ``R_i`` has one)."""
        left, right = self.L[i], self.R[i]
        if left is not None:
            c = left.norm(dim=0).clamp_min(1e-300)
            self.L[i] = left / c
            self.S[i] = self.S[i] * c[None, :, None]
        if right is not None:
            c = right.norm(dim=1).clamp_min(1e-300)
            self.R[i] = right / c[:, None]
            self.S[i] = self.S[i] * c[None, None, :]

    def _tensors(self) -> list[torch.Tensor]:
        return [
            *self.S,
            *(v for v in self.L if v is not None),
            *(v for v in self.R if v is not None),
            *(v for v in self.V if v is not None),
        ]

    # ------------------------------------------------------------------ use
    def grad(self, g_a: torch.Tensor) -> torch.Tensor:
        """The loss gradient in the controls ``(d,)`` from ``g_a = dloss/dA (n_out, n_in + 1)``."""
        g_a = g_a.to(torch.float64)
        out = []
        for i in range(len(self.banks)):
            left, right = self.L[i], self.R[i]
            m = g_a if left is None else left.T @ g_a  # (rows, n_in + 1)
            g_i = self.S[i] * (m[:, : self.banks[i].cols] if right is None else m @ right.T)
            v = self.V[i]
            if v is not None:  # d<G, L diag(w) V>/d dtheta[b, j, c] = S[b, j, c] (L^T G V^T)_jj
                s_i = self.S[i]
                if self.input_mean is not None:  # ... times mu_c
                    s_i = s_i * self.input_mean.to(s_i.dtype)
                g_i = g_i + s_i * (m * v).sum(1)[None, :, None]
            out.append(g_i.reshape(-1))
        return torch.cat(out)

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "banks": [[b.rows, b.cols, b.blocks] for b in self.banks],
            "fitted": self.fitted,
            "S": [s.clone() for s in self.S],
            "L": [None if v is None else v.clone() for v in self.L],
            "R": [None if v is None else v.clone() for v in self.R],
            "operating_point": self.operating_point,
            "V": [None if v is None else v.clone() for v in self.V],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`; the banks must match."""
        mine = [[b.rows, b.cols, b.blocks] for b in self.banks]
        if not isinstance(state, dict) or state.get("banks") != mine:
            got = state.get("banks") if isinstance(state, dict) else state
            raise ConfigError(f"the saved layered-response state has banks {got}, these are {mine}")
        if bool(state.get("operating_point", False)) != self.operating_point:
            raise ConfigError(
                "the saved layered-response state "
                f"{'has' if state.get('operating_point') else 'has no'} operating-point terms, "
                f"this model {'has' if self.operating_point else 'has none'}"
            )
        self.fitted = bool(state["fitted"])
        self.S = [torch.as_tensor(s, dtype=torch.float64).clone() for s in state["S"]]
        self.L = [None if v is None else torch.as_tensor(v).clone() for v in state["L"]]
        self.R = [None if v is None else torch.as_tensor(v).clone() for v in state["R"]]
        if self.operating_point:
            self.V = [
                None if v is None else torch.as_tensor(v, dtype=torch.float64).clone()
                for v in state["V"]
            ]


__all__ = [
    "OPERATING_POINTS",
    "SCHEME",
    "SCHEMES",
    "Bank",
    "BankJacobian",
    "banks_of",
    "derived_probes",
    "parse_banks",
    "probe_changes",
    "probe_signs",
    "settings_per_step",
]
