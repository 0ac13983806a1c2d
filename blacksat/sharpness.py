"""Sharpness in control space: Hessian spectrum and trace of a differentiable model's loss, and a
query-only estimate for black boxes.

For a differentiable :class:`~blacksat.Model` the loss ``L(theta) = task.loss`` (mean
cross-entropy) over the given data is differentiated twice with respect to the controls ``theta``
only (the task's digital layers are held fixed), in float64:

- :func:`hessian_top_eigenvalues`: the ``k`` largest eigenvalues of ``H = d2L/dtheta2`` by Lanczos
  (:func:`scipy.sparse.linalg.eigsh`, ``which="LA"``) on Hessian-vector products (double backward);
- :func:`hutchinson_trace`: ``tr H ~ mean_i z_i^T H z_i`` over Rademacher probes ``z_i``, with
  its standard error.

For a query-only :class:`~blacksat.Device`, :func:`query_sharpness` measures the loss increase
``L(theta + delta_i) - L(theta)`` for draws ``delta_i`` from a perturbation model (an L2 ball of
radius ``rho`` by default), all settings in one ``query_many`` call.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn

from blacksat.errors import ConfigError
from blacksat.estimators import query_cost
from blacksat.meter import Ledger
from blacksat.objective import Batch
from blacksat.perturbations import L2Ball, PerturbationModel
from blacksat.validation import as_generator, check_int

#: ``Batch``, ``(features (B, f), labels (B,))``, an iterable of either, or ``None`` (the full
#: train split, in chunks)
Data = Batch | tuple[Any, Any] | Iterable[Batch | tuple[Any, Any]] | None


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class HessianEigen:
    """Top eigenpairs of the control-space Hessian.

    Attributes:
        eigenvalues: the ``k`` largest eigenvalues, descending.
        eigenvectors: ``(k, d)`` unit eigenvectors, rows in the order of ``eigenvalues``.
        loss: the loss at ``theta`` on the data used.
        hvps: Hessian-vector products spent (``d`` for the dense path).
        method: ``"lanczos"`` or ``"dense"``.
    """

    eigenvalues: tuple[float, ...]
    eigenvectors: np.ndarray
    loss: float
    hvps: int
    method: str

    @property
    def top(self) -> float:
        """The largest eigenvalue."""
        return self.eigenvalues[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (eigenvectors left out)."""
        return {
            "eigenvalues": list(self.eigenvalues),
            "loss": self.loss,
            "hvps": self.hvps,
            "method": self.method,
        }


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson estimate of ``tr H``.

    Attributes:
        mean: the estimate, ``mean_i z_i^T H z_i``.
        stderr: its standard error, ``std_i / sqrt(n)`` (sample std, ``ddof=1``).
        n_probes: number of Rademacher probes.
        loss: the loss at ``theta`` on the data used.
    """

    mean: float
    stderr: float
    n_probes: int
    loss: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fields."""
        return asdict(self)


@dataclass(frozen=True)
class QuerySharpness:
    """Query-only sharpness: loss increases under random perturbations of the controls.

    Attributes:
        loss: ``L(theta)`` on the batch.
        increases: ``L(theta + delta_i) - L(theta)`` for each draw, ``(n,)``.
        mean_increase: their mean.
        max_increase: their maximum (a lower bound on the worst case within the set).
        cost: the device cost of the single ``query_many`` call.
        radii: the distance of each setting sent from ``theta`` (``space.distance``: the short
            way round a periodic control), ``(n,)``: the radius a draw kept once projected into
            the space (clipping at a bounded control's limit shortens it; wrapping does not).
    """

    loss: float
    increases: tuple[float, ...]
    mean_increase: float
    max_increase: float
    cost: Ledger
    radii: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fields (``cost`` as a dict)."""
        out = asdict(self)
        out["increases"] = list(self.increases)
        out["radii"] = list(self.radii)
        return out


# ---------------------------------------------------------------------------- plumbing
def _float64_task(task: Any) -> Any:
    """A shallow copy of ``task`` producing float64 features, with float64 *copies* of its
    torch modules (digital layers frozen). The caller's task is never modified."""
    t = copy.copy(task)
    for name in ("front", "back", "encoder", "readout"):
        m = getattr(task, name, None)
        if isinstance(m, nn.Module):
            setattr(t, name, copy.deepcopy(m).to(torch.float64).requires_grad_(False))
    if hasattr(task, "dtype"):
        t.dtype = torch.float64
    return t


def _float64_model(model: Any) -> Any:
    """A float64 copy of a torch-module model (parameters frozen); other callables as they are."""
    if isinstance(model, nn.Module):
        return copy.deepcopy(model).to(torch.float64).requires_grad_(False)
    return model


def _as_batch(item: Any, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(item, Batch):
        feats, labels = item.features, item.labels
    elif isinstance(item, tuple) and len(item) == 2:
        feats, labels = item
    else:
        raise ConfigError(
            f"data must be a Batch, a (features, labels) pair or an iterable of them, got "
            f"{type(item).__name__}"
        )
    f = torch.as_tensor(np.asarray(feats) if not torch.is_tensor(feats) else feats)
    y = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels)
    return f.detach().to(dtype), y.detach().to(torch.int64)


def _batches(task: Any, data: Data, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The data as float64 ``(features (B, f), labels (B,))`` pairs (the full train split in
    chunks of ``batch_size`` when ``data`` is None)."""
    if data is None:
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
        return [(b.features, b.labels) for b in task.minibatches("train", int(batch_size))]
    if isinstance(data, Batch) or (
        isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], (Batch, tuple))
    ):
        items = [data]
    else:
        items = list(data)
    out = [_as_batch(item, torch.float64) for item in items]
    if not out or any(len(y) == 0 for _, y in out):
        raise ConfigError("data holds no samples")
    return out


def _theta64(theta: Any, d: int | None = None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(theta) if not torch.is_tensor(theta) else theta)
    t = t.detach().to(torch.float64).clone()
    if t.ndim != 1 or (d is not None and t.shape[0] != d):
        raise ConfigError(f"theta must have shape (d,), got {tuple(t.shape)}")
    if not torch.all(torch.isfinite(t)):
        raise ConfigError("theta holds NaN/inf")
    return t


class _Hessian:
    """Hessian-vector products of ``L(theta)`` w.r.t. ``theta (d,)`` only, float64.

    ``L = sum_b (B_b / N) task.loss(task.decode(model(theta, x_b)), y_b)`` over the batches,
    i.e. the mean loss over every sample. Inputs are encoded once. With a single batch the
    gradient graph is built once and reused by every product (double backward); with several it
    is rebuilt batch by batch for every call (bounded memory). Several products in one call share
    one vectorized backward (``is_grads_batched``).
    """

    def __init__(self, task: Any, model: Any, theta: Any, data: Data, batch_size: int) -> None:
        self.task = _float64_task(task)
        self.model = _float64_model(model)
        self.theta = _theta64(theta)
        batches = _batches(self.task, data, batch_size)
        n = sum(len(y) for _, y in batches)
        with torch.no_grad():
            self.inputs = [(self.task.encode(f), y, len(y) / n) for f, y in batches]
        self.d = int(self.theta.shape[0])
        self.count = 0
        self._cached: tuple[torch.Tensor, torch.Tensor] | None = None
        self._batched = True
        self.loss = float(sum(w * float(self._loss(self.theta, x, y)) for x, y, w in self.inputs))

    def _loss(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.task.loss(self.task.decode(self.model(theta, x)), y)

    def _grad_graph(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.theta.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self._loss(t, x, y), t, create_graph=True)
        return t, g

    def matvec(self, v: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``v (d,)`` -> ``H v (d,)`` (float64 tensor)."""
        return self.matmat(torch.as_tensor(np.asarray(v, dtype=np.float64).reshape(1, -1)))[0]

    def matmat(self, vs: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """``vs (m, d)`` -> ``(H vs^T)^T (m, d)``: ``m`` products, batched through one
        vectorized backward per ``chunk`` (a loop where the graph does not allow it)."""
        vs = torch.as_tensor(vs, dtype=torch.float64)
        self.count += int(vs.shape[0])
        if len(self.inputs) == 1:
            if self._cached is None:
                x, y, _ = self.inputs[0]
                self._cached = self._grad_graph(x, y)
            return self._products(*self._cached, vs, chunk)
        total = torch.zeros(vs.shape, dtype=torch.float64)
        for x, y, w in self.inputs:
            t, g = self._grad_graph(x, y)
            total += w * self._products(t, g, vs, chunk)
        return total

    def _products(
        self, t: torch.Tensor, g: torch.Tensor, vs: torch.Tensor, chunk: int
    ) -> torch.Tensor:
        """Double backward of ``g = dL/dt`` against each row of ``vs (m, d)``; the graph is
        kept (freed with ``g``)."""
        out = []
        for i in range(0, vs.shape[0], chunk):
            part = vs[i : i + chunk]
            if part.shape[0] > 1 and self._batched:
                try:
                    (hv,) = torch.autograd.grad(
                        g, t, part, retain_graph=True, is_grads_batched=True
                    )
                    out.append(hv.detach())
                    continue
                except RuntimeError:  # an op without a batching rule: loop instead
                    self._batched = False
            for v in part:
                (hv,) = torch.autograd.grad(g, t, v, retain_graph=True)
                out.append(hv.detach()[None])
        return torch.cat(out)

    def operator(self) -> LinearOperator:
        """The Hessian as a symmetric scipy ``LinearOperator`` ``(d, d)``."""
        return LinearOperator(
            (self.d, self.d),
            matvec=lambda v: self.matvec(v).numpy(),
            matmat=lambda m: self.matmat(torch.as_tensor(np.asarray(m).T)).numpy().T,
            dtype=np.float64,
        )

    def dense(self) -> np.ndarray:
        """The full ``(d, d)`` Hessian from ``d`` products (symmetrised)."""
        h = self.matmat(torch.eye(self.d, dtype=torch.float64)).numpy()
        return 0.5 * (h + h.T)


# ---------------------------------------------------------------------------- public API
def hessian_top_eigenvalues(
    task: Any,
    model: Any,
    theta: Any,
    data: Data = None,
    *,
    k: int = 1,
    tol: float = 1e-6,
    batch_size: int = 2048,
    rng: np.random.Generator | int = 0,
    method: str = "auto",
) -> HessianEigen:
    """The ``k`` largest eigenvalues of the control-space Hessian of a differentiable model.

    Args:
        task: the :class:`~blacksat.task.Task` (or an object with ``encode``, ``decode``,
            ``loss`` and, for ``data=None``, ``minibatches``); never modified.
        model: the differentiable :class:`~blacksat.Model`, ``model(theta (d,), x (B, *in))``;
            evaluated on a float64 copy when it is a torch module.
        theta: controls ``(d,)`` (numpy or torch); never modified.
        data: the samples the loss averages over: a ``Batch``, ``(features (B, f), labels
            (B,))``, or an iterable of either (weighted by size); ``None``: the full train split
            in chunks of ``batch_size``.
        k: number of eigenvalues (``1 <= k <= d``).
        tol: relative accuracy of the Lanczos eigenvalues (ARPACK ``tol``).
        rng: generator or seed of the Lanczos start vector (reproducibility).
        method: ``"lanczos"`` (:func:`scipy.sparse.linalg.eigsh`, ``which="LA"``), ``"dense"``
            (``d`` products, then ``numpy.linalg.eigh``), or ``"auto"`` (Lanczos unless
            ``k >= d - 1``, where ARPACK cannot run).

    Returns:
        :class:`HessianEigen` with eigenvalues descending and eigenvectors ``(k, d)``.
    """
    if method not in ("auto", "lanczos", "dense"):
        raise ConfigError(f"method must be 'auto', 'lanczos' or 'dense', got {method!r}")
    if not (np.isfinite(tol) and tol >= 0):
        raise ConfigError(f"tol must be a finite number >= 0, got {tol!r}")
    gen = as_generator(rng)
    hess = _Hessian(task, model, theta, data, batch_size)
    d = hess.d
    k = check_int("k", k, low=1, high=d)
    if method == "lanczos" and k >= d:
        raise ConfigError(f"Lanczos needs k < d = {d}; use method='dense'")
    use_dense = method == "dense" or (method == "auto" and k >= d - 1)
    if use_dense:
        vals, vecs = np.linalg.eigh(hess.dense())
    else:
        v0 = gen.standard_normal(d)
        vals, vecs = eigsh(hess.operator(), k=k, which="LA", tol=tol, v0=v0)
    order = np.argsort(vals)[::-1][:k]
    return HessianEigen(
        eigenvalues=tuple(float(v) for v in vals[order]),
        eigenvectors=np.ascontiguousarray(vecs[:, order].T),
        loss=hess.loss,
        hvps=hess.count,
        method="dense" if use_dense else "lanczos",
    )


def hutchinson_trace(
    task: Any,
    model: Any,
    theta: Any,
    data: Data = None,
    *,
    n_probes: int = 64,
    rng: np.random.Generator | int,
    batch_size: int = 2048,
) -> TraceEstimate:
    """Hutchinson estimate of ``tr H`` with Rademacher probes ``z_i in {-1, +1}^d``.

    Arguments as in :func:`hessian_top_eigenvalues`; ``n_probes >= 2`` products are spent.
    Returns the mean of ``z_i^T H z_i`` and its standard error.
    """
    check_int("n_probes", n_probes, low=2)
    gen = as_generator(rng)
    hess = _Hessian(task, model, theta, data, batch_size)
    z = gen.integers(0, 2, size=(int(n_probes), hess.d)).astype(np.float64) * 2.0 - 1.0
    hz = hess.matmat(torch.as_tensor(z)).numpy()
    quad = np.einsum("ij,ij->i", z, hz)
    return TraceEstimate(
        mean=float(quad.mean()),
        stderr=float(quad.std(ddof=1) / np.sqrt(quad.size)),
        n_probes=int(n_probes),
        loss=hess.loss,
    )


def query_sharpness(
    task: Any,
    device: Any,
    theta: Any,
    batch: Batch | tuple[Any, Any],
    *,
    rho: float | None = None,
    n: int = 16,
    rng: np.random.Generator | int,
    perturbation: PerturbationModel | None = None,
) -> QuerySharpness:
    """Query-only sharpness: ``L(theta + delta_i) - L(theta)`` for ``n`` random draws.

    ``delta_i`` are drawn with ``.sample`` from ``perturbation`` or, by default, ``L2Ball(rho)``
    (uniform on the sphere of radius ``rho``). The ``n + 1`` settings ``[theta, theta +
    delta_1, ...]`` ``(n + 1, d)`` are clipped into ``device.space`` and sent in **one**
    ``query_many`` call on the batch's inputs.

    Args:
        task: encodes the batch and decodes readings into logits; ``task.loss`` is ``L``.
        device: a query-only :class:`~blacksat.Device` (metered or not).
        theta: controls ``(d,)``; never modified.
        batch: a ``Batch`` or ``(features (B, f), labels (B,))``.
        rho: radius of the default L2 ball (give either ``rho`` or ``perturbation``).
        n: number of draws (``>= 1``).
        rng: generator or seed of the draws.
        perturbation: a control-space perturbation model (draws with nuisance values cannot
            share one device call and raise :class:`~blacksat.ConfigError`).

    Returns:
        :class:`QuerySharpness`; ``cost`` is the ledger difference on a
        :class:`~blacksat.meter.MeteredDevice` (else ``n + 1`` reconfigurations assumed).
    """
    if (rho is None) == (perturbation is None):
        raise ConfigError("give exactly one of rho (an L2 ball) or perturbation")
    check_int("n", n, low=1)
    space = getattr(device, "space", None)
    if space is None or not callable(getattr(device, "query_many", None)):
        raise ConfigError(f"device must have `space` and `query_many`, got {type(device).__name__}")
    pmodel: PerturbationModel = (
        perturbation if perturbation is not None else L2Ball(float(rho))  # type: ignore[arg-type]
    )
    gen = as_generator(rng)
    t = _theta64(theta, space.dim)
    deltas = []
    for _ in range(int(n)):
        p = pmodel.sample(t, gen)
        if p.nuisance:
            raise ConfigError(
                "query_sharpness needs control-space perturbations; this model drew nuisance "
                f"values {dict(p.nuisance)}"
            )
        deltas.append(torch.zeros_like(t) if p.delta is None else p.delta.to(torch.float64))
    thetas = torch.cat([t[None], t[None] + torch.stack(deltas)]).numpy()
    thetas = space.project(thetas)  # bounded controls clipped, periodic ones wrapped
    radii = np.atleast_1d(space.distance(thetas[1:], thetas[0]))
    dtype = getattr(task, "dtype", torch.float64)
    feats, labels = _as_batch(batch, dtype)
    with torch.no_grad():
        x = task.encode(feats).detach().to(torch.float64).numpy()
        y, cost = query_cost(
            device, thetas.shape[0], x.shape[0], lambda: device.query_many(thetas, x)
        )
        losses = task.loss(task.decode(torch.as_tensor(np.asarray(y)).to(dtype)), labels)
    losses = losses.to(torch.float64).numpy()
    inc = losses[1:] - losses[0]
    return QuerySharpness(
        loss=float(losses[0]),
        increases=tuple(float(v) for v in inc),
        mean_increase=float(inc.mean()),
        max_increase=float(inc.max()),
        cost=cost,
        radii=tuple(float(r) for r in radii),
    )


__all__ = [
    "HessianEigen",
    "QuerySharpness",
    "TraceEstimate",
    "hessian_top_eigenvalues",
    "hutchinson_trace",
    "query_sharpness",
]
