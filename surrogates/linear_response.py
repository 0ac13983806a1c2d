"""A physics-free surrogate from structure a lab can state without equations.

:class:`LinearResponse` assumes three things, checks each against the data and says which one
the data contradicted (:attr:`LinearResponse.checks_`):

1. **Linear response**: for a fixed setting the device is a linear map of its inputs,
   ``y = W(theta) x + b(theta)`` (``response="linear"``), or the detected intensity of one,
   ``|T(theta) x|^2``: a quadratic form in the inputs, ``y_o = x' Q_o(theta) x + ...``
   (``response="intensity"``; ``"auto"`` picks whichever explains inputs held out from each
   setting better). One reconfiguration read with enough inputs (at least the number of
   coefficients ``p``) identifies the response at that setting by least squares.
2. **Locality**: each coefficient of the response depends on a few controls (a weight on its
   ring, a conductance pair on its two cells). Which ones is discovered from the recorded
   settings, never declared: greedy screening adds the control whose tuning curve explains most
   of what is left, while it explains at least ``min_gain`` of the coefficient's variance and
   more of the remainder than the best of ``d`` controls would explain of pure noise.
3. **Tuning curves**: each control acts through a smooth response, learned per control as a
   cubic B-spline over the range the data covers (the way labs calibrate heaters and memristors);
   the effects of a coefficient's few controls add. The check ``"additive tuning curves"`` says
   how far any such sum can go: the share of the coefficients' variance that every control's own
   tuning curve explains, all of them summed (first-order effects, chance removed; meaningful
   for a space-filling design, whose controls vary independently). Where it is small, the
   coefficients are interactions of many controls (interference), and no surrogate of this
   structure, with however many controls per coefficient, can fit them.

The fit is closed-form (least squares and ridge regression, no gradient steps): seconds for
thousands of controls. The model is differentiable in ``theta`` and in ``x``:
``surrogate(thetas (K, d), x (B, n_in)) -> (K, B, n_out)``. A B-spline is zero two knots beyond
the data, so the surrogate says nothing outside the settings it was fitted on:
:attr:`~blacksat.surrogates.base.Surrogate.coverage_` says where that is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from blacksat.errors import ConfigError, ShapeError
from blacksat.surrogates.base import Group, Surrogate
from blacksat.validation import check_choice, check_int, check_real

RESPONSES = ("auto", "linear", "intensity")
#: share of the readings (of inputs held out from each setting) a response must explain
RESPONSE_R2 = 0.95
#: share of the coefficients' variance on held-out settings the tuning curves must explain
LOCALITY_R2 = 0.9


@dataclass(frozen=True)
class StructureCheck:
    """One assumption tested against the data.

    Attributes:
        assumption: ``"linear response"``, ``"intensity response"`` or
            ``"locality + tuning curves"``.
        r2: the share of variance it explains on data it was not fitted on.
        threshold: the share below which the data contradicts it.
        detail: how it was measured.
    """

    assumption: str
    r2: float
    threshold: float
    detail: str

    @property
    def holds(self) -> bool:
        return bool(self.r2 >= self.threshold)

    def __str__(self) -> str:
        verdict = "holds" if self.holds else "CONTRADICTED by the data"
        return (
            f"{self.assumption}: {verdict} (R^2 {self.r2:.3f}, needs {self.threshold}; "
            f"{self.detail})"
        )


def response_features(x: torch.Tensor, response: str) -> torch.Tensor:
    """``x (B, n)`` -> ``(B, p)``: ``[x, 1]`` (linear, ``p = n + 1``) or
    ``[x_i x_j (i <= j), x, 1]`` (intensity, ``p = n (n + 1) / 2 + n + 1``)."""
    one = torch.ones(x.shape[0], 1, dtype=x.dtype)
    if response == "linear":
        return torch.cat([x, one], dim=1)
    i, j = torch.triu_indices(x.shape[1], x.shape[1])
    return torch.cat([x[:, i] * x[:, j], x, one], dim=1)


def n_features(n_in: int, response: str) -> int:
    """``p`` of :func:`response_features`."""
    return n_in + 1 if response == "linear" else n_in * (n_in + 1) // 2 + n_in + 1


def bspline(u: torch.Tensor, n_basis: int) -> torch.Tensor:
    """Cubic B-spline basis on uniform knots: ``u (...)`` in knot units (the data range is
    ``[0, n_basis - 3]``) -> ``(..., n_basis)``; basis ``j`` is centred at ``j - 1``. C2-smooth,
    differentiable, zero two knots beyond the range."""
    f, weights = _local_bspline(u, n_basis)
    idx = (f.long() + 4)[..., None] + torch.arange(4, device=u.device)
    padded = torch.zeros(*u.shape, n_basis + 8, dtype=u.dtype, device=u.device)
    return padded.scatter(-1, idx, torch.stack(weights, -1))[..., 4 : n_basis + 4]


def _local_bspline(u: torch.Tensor, n_basis: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The four cubic B-splines that can be non-zero at each ``u``: ``(f, weights)`` with basis
    ``f + k`` weighted ``weights[k]`` (``k = 0..3``). ``f = floor(u)`` clamped to
    ``[-4, n_basis]``: beyond that every one of the four lies outside ``0..n_basis - 1``. A NaN
    ``u`` gets NaN weights on bases 0..3, so it comes out NaN rather than raising."""
    f = torch.nan_to_num(torch.floor(u), nan=0.0).clamp(-4.0, float(n_basis))
    t = u - f
    s = 1.0 - t
    return f, (
        s**3 / 6.0,
        2.0 / 3.0 - t * t + 0.5 * t**3,
        2.0 / 3.0 - s * s + 0.5 * s**3,
        t**3 / 6.0,
    )


def bspline_combine(u: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """``sum_j bspline(u, nb)[..., j] * coef[..., j]`` from the four basis functions that are
    non-zero at each ``u``: ``u (K, *S)``, ``coef (*S, nb)`` -> ``(K, *S)``.

    The same values and gradients (in ``u`` and ``coef``) as the dense basis, at a fraction of
    its cost: four gathered coefficients per point instead of ``nb`` basis functions."""
    nb = coef.shape[-1]
    pad = torch.nn.functional.pad(coef, (4, 4)).reshape(-1)  # zeros two knots beyond, and more
    f, weights = _local_bspline(u, nb)
    rows = torch.arange(pad.numel() // (nb + 8), device=u.device).reshape(coef.shape[:-1])
    base = rows * (nb + 8) + f.long() + 4  # (K, *S): basis f sits at f + 4 of its padded row
    out = torch.zeros_like(u)
    for k, w in enumerate(weights):
        out = out + w * pad[base + k]
    return out


class LinearResponse(Surrogate):
    """Physics-free surrogate: linear (or intensity) response, local controls, tuning curves.

    Args:
        response: ``"linear"``, ``"intensity"`` or ``"auto"`` (see the module docstring).
        max_controls: at most this many controls per response coefficient (locality).
        knots: knot intervals of each tuning curve (``n_basis = knots + 3``); ``"auto"``:
            about one per 12 settings, between 4 and 24.
        min_gain: a control joins a coefficient when its tuning curve explains at least this
            share of the coefficient's variance.
        ridge: ridge penalty of the tuning-curve fits (relative to the data's scale).
        held_out: share of the settings kept apart for the fit report and the locality check.
        seed: seeds the split.
        dtype: ``torch.float64`` (default) or ``torch.float32``.

    Fitted attributes: ``response_`` (the chosen response), ``checks_`` (one
    :class:`StructureCheck` per assumption tested), ``report_`` and ``coverage_``.
    """

    def __init__(
        self,
        *,
        response: str = "auto",
        max_controls: int = 3,
        knots: int | str = "auto",
        min_gain: float = 0.02,
        ridge: float = 1e-6,
        held_out: float = 0.2,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(steps=0, held_out=held_out, seed=seed, dtype=dtype)
        self.response = check_choice("response", response, RESPONSES)
        self.max_controls = int(check_int("max_controls", max_controls, low=1))
        if knots != "auto":
            check_int("knots", knots, low=1)
        self.knots = knots
        self.min_gain = float(check_real("min_gain", min_gain, low=0.0, high=1.0))
        self.ridge = float(check_real("ridge", ridge, low=0.0))
        self.checks_: list[StructureCheck] = []
        self.response_: str | None = None

    # ------------------------------------------------------------------ model
    def forward_many(self, thetas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.response_ is None:
            raise ConfigError("LinearResponse is not fitted: call fit(data) first")
        thetas = torch.as_tensor(thetas).to(self.dtype)
        x = torch.as_tensor(x).to(self.dtype)
        if thetas.ndim != 2 or thetas.shape[1] != self.lo_.numel():
            raise ShapeError(f"thetas must be (K, {self.lo_.numel()}), got {tuple(thetas.shape)}")
        if tuple(x.shape[1:]) != self.in_shape_:
            raise ShapeError(
                f"x must be (B, {', '.join(map(str, self.in_shape_))}), got {tuple(x.shape)}"
            )
        coef = self.coefficients(thetas)  # (K, p, n_out)
        y = torch.einsum(
            "bp,kpo->kbo", response_features(x.reshape(len(x), -1), self.response_), coef
        )
        return y.reshape(len(thetas), len(x), *self.out_shape_)

    def coefficients(self, thetas: torch.Tensor) -> torch.Tensor:
        """The response coefficients at ``thetas (K, d)``: ``(K, p, n_out)`` (``W'`` and ``b``
        for a linear response)."""
        u = (thetas[:, self.controls_] - self.lo_[self.controls_]) / self.step_[self.controls_]
        c = self.intercept_ + bspline_combine(u, self.coef_).sum(-1)  # (K, P, m) -> (K, P)
        return c.reshape(len(thetas), self.p_, self.n_out_)

    # ------------------------------------------------------------------ fit
    def fit(self, data: Any) -> LinearResponse:
        super().fit(data)
        return self

    def _prepare(self, groups: list[Group]) -> None:
        in_shape, out_shape = list(groups[0][1].shape[1:]), list(groups[0][2].shape[2:])
        groups = [self._flat(g) for g in groups]
        n_in = groups[0][1].shape[1]
        response, coefs, thetas, resp_checks = self._identify(groups, n_in)
        self.response_ = response
        self.checks_ = resp_checks
        p = n_features(n_in, response)
        knots = self._n_knots(len(thetas))
        lo, hi = thetas.min(0), thetas.max(0)
        step = np.maximum(hi - lo, 1e-12) / knots
        self.allocate(
            {"d": thetas.shape[1], "in_shape": in_shape, "out_shape": out_shape, "p": p,
             "m": self.max_controls, "n_basis": knots + 3, "response": response}
        )  # fmt: skip
        fitter = _TuningCurves(thetas, lo, step, knots + 3, self.ridge)
        controls, mask, coef, intercept = fitter.fit(
            coefs, self.max_controls, self.min_gain, progress=self.progress
        )
        if math.isfinite(fitter.additive):
            self.checks_ = [
                *self.checks_,
                StructureCheck(
                    "additive tuning curves",
                    fitter.additive,
                    LOCALITY_R2,
                    "share of the response coefficients' variance over the fitted settings "
                    "that the controls' own tuning curves explain, each on its own and summed "
                    "(first-order effects, chance removed): the most that any sum of per-control "
                    "tuning curves can explain",
                ),
            ]
        with torch.no_grad():
            self.lo_.copy_(torch.as_tensor(lo))
            self.step_.copy_(torch.as_tensor(step))
            self.controls_.copy_(torch.as_tensor(controls))
            self.coef_.copy_(torch.as_tensor(coef * mask[..., None]))
            self.intercept_.copy_(torch.as_tensor(intercept))

    def _flat(self, g: Group) -> Group:
        thetas, x, y = g
        if x.ndim != 2 or y.ndim != 3:
            x = x.reshape(len(x), -1)
            y = y.reshape(y.shape[0], y.shape[1], -1)
        return thetas, x, y

    def _n_knots(self, n_settings: int) -> int:
        if self.knots != "auto":
            return int(self.knots)
        return int(min(24, max(4, n_settings // 12)))

    def _identify(
        self, groups: list[Group], n_in: int
    ) -> tuple[str, np.ndarray, np.ndarray, list[StructureCheck]]:
        """The response per setting: ``(response, coefficients (N, p * n_out), thetas (N, d),
        checks)``."""
        candidates = ["linear", "intensity"] if self.response == "auto" else [self.response]
        b_max = max(len(g[1]) for g in groups)
        results: dict[str, tuple[np.ndarray, float]] = {}
        checks: list[StructureCheck] = []
        for response in candidates:
            p = n_features(n_in, response)
            if b_max < p + max(2, p // 4):
                if self.response != "auto" or response == "linear":
                    raise ConfigError(
                        f"a {response} response has {p} coefficients per output: each setting "
                        f"must be read with at least {p + max(2, p // 4)} inputs (the data has "
                        f"at most {b_max})"
                    )
                continue
            coefs, r2 = _per_setting(groups, response, p)
            results[response] = (coefs, r2)
            checks.append(
                StructureCheck(
                    f"{response} response",
                    r2,
                    RESPONSE_R2,
                    "readings of inputs held out from each setting's least-squares fit",
                )
            )
        best = max(results, key=lambda r: results[r][1] - (0.01 if r == "intensity" else 0.0))
        thetas = np.concatenate([g[0] for g in groups if len(g[1]) >= n_features(n_in, best)])
        return best, results[best][0], thetas, checks

    def _report(self, train: list[Group], test: list[Group], steps: int, secs: float):
        rep = super()._report(train, test, steps, secs)
        if test:
            tests = [self._flat(g) for g in test]
            p = n_features(tests[0][1].shape[1], str(self.response_))
            usable = [g for g in tests if len(g[1]) >= p]
            if usable:
                coefs, _ = _per_setting(usable, str(self.response_), p, check=False)
                thetas = np.concatenate([g[0] for g in usable])
                with torch.no_grad():
                    pred = self.coefficients(torch.as_tensor(thetas, dtype=self.dtype))
                pred = pred.reshape(len(thetas), -1).double().numpy()
                var = float(np.var(coefs - coefs.mean(0), axis=0).sum())
                r2 = 1.0 - float(np.sum((pred - coefs) ** 2)) / (len(coefs) * var) if var else 1.0
                self.checks_ = [
                    *[c for c in self.checks_ if not c.assumption.startswith("locality")],
                    StructureCheck(
                        "locality + tuning curves",
                        r2,
                        LOCALITY_R2,
                        f"response coefficients at {len(thetas)} held-out settings, at most "
                        f"{self.max_controls} controls each",
                    ),
                ]
        return rep

    def contradicted(self) -> list[StructureCheck]:
        """The assumptions the data contradicted (empty: every check held)."""
        return [c for c in self.checks_ if not c.holds and c.assumption.split()[0]
                in ("locality", str(self.response_))]  # fmt: skip

    # ------------------------------------------------------------------ persistence
    def fitted_shapes(self) -> dict[str, Any]:
        if self.response_ is None:
            return {}
        return {"d": int(self.lo_.numel()), "in_shape": list(self.in_shape_),
                "out_shape": list(self.out_shape_), "p": self.p_, "m": int(self.controls_.shape[1]),
                "n_basis": int(self.coef_.shape[-1]), "response": self.response_}  # fmt: skip

    def allocate(self, shapes: dict[str, Any]) -> None:
        if not shapes:
            return
        d, p = int(shapes["d"]), int(shapes["p"])
        m, nb = int(shapes["m"]), int(shapes["n_basis"])
        self.response_ = str(shapes["response"])
        self.in_shape_ = tuple(int(v) for v in shapes["in_shape"])
        self.out_shape_ = tuple(int(v) for v in shapes["out_shape"])
        n_out = int(np.prod(self.out_shape_))
        self.n_out_, self.p_ = n_out, p
        big_p = p * n_out
        for name, value in (
            ("lo_", torch.zeros(d, dtype=self.dtype)),
            ("step_", torch.ones(d, dtype=self.dtype)),
            ("controls_", torch.zeros(big_p, m, dtype=torch.int64)),
            ("coef_", torch.zeros(big_p, m, nb, dtype=self.dtype)),
            ("intercept_", torch.zeros(big_p, dtype=self.dtype)),
        ):
            self.register_buffer(name, value)

    def __repr__(self) -> str:
        return (
            f"LinearResponse(response={self.response!r}, max_controls={self.max_controls}, "
            f"knots={self.knots!r})"
        )


def _per_setting(
    groups: list[Group], response: str, p: int, *, check: bool = True
) -> tuple[np.ndarray, float]:
    """Least-squares response of every setting with at least ``p`` inputs:
    ``(coefficients (N, p * n_out), R^2 of readings of inputs held out from the fit)``. The
    held-out inputs (every fifth) measure the check; the coefficients use every input."""
    out: list[np.ndarray] = []
    num = den = 0.0
    for thetas, x, y in groups:
        if len(x) < p:
            continue
        phi = response_features(torch.from_numpy(np.array(x)), response).numpy()
        coef = np.linalg.lstsq(phi, y.transpose(1, 0, 2).reshape(len(x), -1), rcond=None)[0]
        out.append(coef.reshape(p, len(thetas), -1).transpose(1, 0, 2).reshape(len(thetas), -1))
        if check:
            held = np.arange(len(x)) % 5 == 4
            if (~held).sum() >= p:
                fit = np.linalg.lstsq(
                    phi[~held],
                    y[:, ~held].transpose(1, 0, 2).reshape(int((~held).sum()), -1),
                    rcond=None,
                )[0]
                pred = (phi[held] @ fit).reshape(int(held.sum()), len(thetas), -1)
                truth = y[:, held].transpose(1, 0, 2)
                num += float(np.sum((pred - truth) ** 2))
                den += float(np.sum((truth - truth.mean(axis=(0, 1))) ** 2))
    r2 = 1.0 - num / den if den > 0 else (1.0 if check else math.nan)
    return np.concatenate(out), r2


def response_coefficients(x: np.ndarray, y: np.ndarray, response: str) -> np.ndarray:
    """Each setting's least-squares response: ``x (B, *input_shape)`` read at ``K`` settings,
    ``y (K, B, *output_shape)`` -> coefficients ``(K, p * n_out)`` (the layout of
    :attr:`LinearResponse.coefficients`' flattened rows). Needs ``B >= p``."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64)
    y = y.reshape(y.shape[0], y.shape[1], -1)
    p = n_features(x.shape[1], response)
    if len(x) < p:
        raise ShapeError(f"a {response} response has {p} coefficients: needs >= {p} inputs")
    return _per_setting([(np.zeros((len(y), 0)), x, y)], response, p, check=False)[0]


def _orthonormal(basis: torch.Tensor) -> np.ndarray:
    """An orthonormal basis of each control's centred tuning-curve space: ``basis (d, N, nb)``
    -> ``(d, N, nb)`` numpy, a zero column for each direction the data does not span (the
    centred B-splines of a control sum to zero, so at least one).

    From the eigenvectors of each control's ``nb x nb`` Gram matrix, batched: the same span as
    a QR of each ``N x nb`` block, at a small fraction of its cost for thousands of controls."""
    centred = basis - basis.mean(1, keepdim=True)
    gram = centred.transpose(1, 2) @ centred  # (d, nb, nb)
    lam, vec = torch.linalg.eigh(gram)
    keep = lam > 1e-10 * lam.amax(-1, keepdim=True).clamp_min(1e-300)
    scale = torch.where(keep, lam.clamp_min(1e-300).rsqrt(), torch.zeros_like(lam))
    return (centred @ (vec * scale[:, None, :])).numpy()


class _TuningCurves:
    """Greedy discovery of each coefficient's controls and ridge fits of their tuning curves."""

    def __init__(
        self, thetas: np.ndarray, lo: np.ndarray, step: np.ndarray, n_basis: int, ridge: float
    ) -> None:
        self.n, self.d = thetas.shape
        u = torch.as_tensor((thetas - lo) / step)
        # each control's tuning-curve basis at the recorded settings, (d, N, nb): one control's
        # block is contiguous for the ridge fits
        self.basis = bspline(u.T.contiguous(), n_basis).numpy()
        self.nb = n_basis
        self.ridge = ridge
        self.q = _orthonormal(torch.from_numpy(self.basis))  # (d, N, nb)
        # the dimension of each control's centred tuning-curve space (nb - 1 where the data
        # spans it): what a pure-noise coefficient's projection on it explains by chance
        self.ranks = (np.abs(self.q).sum(axis=1) > 0).sum(axis=1)
        self.additive = math.nan
        self.qt = np.ascontiguousarray(self.q.transpose(0, 2, 1))  # (d, nb, N): for BLAS
        # the share of a pure-noise residual the best of d controls explains by chance (the
        # typical largest of d chi-square(nb) / N draws): a control joins only when it
        # explains more of what is left than that
        log_d = math.log(max(self.d, 2))
        self.chance = (n_basis + 2 * math.sqrt(n_basis * log_d) + log_d) / self.n

    def fit(
        self, coefs: np.ndarray, m: int, min_gain: float, *, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``coefs (N, P)`` -> ``controls (P, m)``, ``mask (P, m)``, ``coef (P, m, nb)``,
        ``intercept (P,)``; ``progress``: a bar (stderr) over the screening and the fits."""
        from tqdm import tqdm

        big_p = coefs.shape[1]
        # screening reads the controls in blocks of ``chunk``: one matrix product per block
        # (large enough to run at BLAS speed) and a bounded projection, chunk x nb x P values
        chunk = max(1, int(4e6 // max(1, self.nb * big_p)))
        n_chunks = -(-self.d // chunk)
        self.bar = tqdm(total=m * n_chunks + big_p, disable=not progress, desc="fit LinearResponse")
        with self.bar:
            return self._fit(coefs, m, min_gain, chunk)

    def _fit(
        self, coefs: np.ndarray, m: int, min_gain: float, chunk: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        big_p = coefs.shape[1]
        resid = coefs - coefs.mean(0)
        total = np.sum(resid**2, axis=0)
        controls = np.zeros((big_p, m), dtype=np.int64)
        mask = np.zeros((big_p, m), dtype=bool)
        active = total > 1e-12 * max(float(total.max()), 1e-300)
        for s in range(m):
            energy = np.empty((self.d, big_p))
            for k0 in range(0, self.d, chunk):  # bounded memory: d x nb x P per chunk
                block = self.qt[k0 : k0 + chunk]
                proj = (block.reshape(-1, self.n) @ resid).reshape(len(block), self.nb, -1)
                energy[k0 : k0 + chunk] = np.sum(proj**2, axis=1)
                self.bar.update(1)
            if s == 0 and active.any():
                # the first-order share: every control's own tuning curve on its own, summed
                # (the controls of a space-filling design are independent, so these parts of a
                # coefficient's variance are orthogonal), less what they explain by chance
                # E[share of control j] = S_j + c_j (1 - S_j), c_j = rank_j / (N - 1) the share
                # of what j does not explain that its curve picks up by chance
                explained = float(energy[:, active].sum()) / float(total[active].sum())
                chance = self.ranks / (self.n - 1)
                estimate = (explained - float(chance.sum())) / (1.0 - float(chance.mean()))
                self.additive = min(estimate, 1.0)  # sampling noise can carry it past 1
            for t in range(s):  # a control is chosen once per coefficient
                energy[controls[:, t], np.arange(big_p)] = np.where(
                    mask[:, t], -np.inf, energy[controls[:, t], np.arange(big_p)]
                )
            best = np.argmax(energy, axis=0)
            top = energy[best, np.arange(big_p)]
            gain = top / np.maximum(total, 1e-300)
            left = np.sum(resid**2, axis=0)
            take = active & (gain >= min_gain) & (top >= self.chance * left)
            if not take.any():
                break
            controls[:, s] = np.where(take, best, 0)
            mask[:, s] = take
            qb = self.q[best]  # (P, N, nb)
            coeff = np.einsum("pnb,np->pb", qb, resid)
            resid = resid - np.where(take, np.einsum("pnb,pb->np", qb, coeff), 0.0)
            active &= take
        return self._ridge(coefs, controls, mask)

    def _ridge(
        self, coefs: np.ndarray, controls: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Joint ridge fit of each coefficient on its chosen controls' tuning curves."""
        big_p, m = controls.shape
        coef = np.zeros((big_p, m, self.nb))
        intercept = coefs.mean(0).copy()
        for j in range(big_p):
            self.bar.update(1)
            chosen = controls[j][mask[j]]
            if len(chosen) == 0:
                continue
            design = np.concatenate([np.ones((self.n, 1)), *[self.basis[k] for k in chosen]], 1)
            gram = design.T @ design
            reg = self.ridge * np.trace(gram) / len(gram) * np.eye(len(gram))
            reg[0, 0] = 0.0
            sol = np.linalg.solve(gram + reg, design.T @ coefs[:, j])
            intercept[j] = sol[0]
            coef[j, : len(chosen)] = sol[1:].reshape(len(chosen), self.nb)
        return controls, mask, coef, intercept


__all__ = [
    "RESPONSES",
    "LinearResponse",
    "StructureCheck",
    "bspline",
    "bspline_combine",
    "response_coefficients",
    "response_features",
]
