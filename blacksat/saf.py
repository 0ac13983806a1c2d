"""A query-free sharpness signal: the SAF trajectory loss (Du et al., NeurIPS 2022).

SAF ("Sharpness-Aware Training for Free") replaces SAM's second pass by a penalty on how far the
current outputs have moved from the outputs recorded ``lag`` epochs earlier on the same samples::

    L = CE(z, y) + lam * tau^2 * KL( softmax(z_old / tau) || softmax(z / tau) )

``z`` the current logits, ``z_old`` the logits recorded ``lag`` epochs earlier for the same sample
(``PHYSICS.md``: ``lam`` 0.3-0.8, ``tau`` 5, lag 2-3 epochs, applied after a warm-up). On a device
the recorded logits are readings the trainer has already paid for (``Estimate.logits``), so the
term costs no extra reconfiguration.

:class:`TrajectoryLoss` keeps the memory (per epoch, per sample index of the training split) and
provides the term as an :data:`~blacksat.objective.ExtraLoss` (``StepContext.extra_loss``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from blacksat.errors import ConfigError
from blacksat.objective import Batch
from blacksat.validation import check_int

_FORMAT = "blacksat.TrajectoryLoss"


class _EpochMemory:
    """The logits recorded in one epoch: a table ``(n, C)`` indexed by sample index, with a mask
    ``(n,)`` of the rows that hold a record. Grows on demand."""

    def __init__(self, table: torch.Tensor, have: torch.Tensor) -> None:
        self.table, self.have = table, have

    @classmethod
    def empty(cls, n_classes: int, dtype: torch.dtype) -> _EpochMemory:
        return cls(torch.zeros(0, n_classes, dtype=dtype), torch.zeros(0, dtype=torch.bool))

    def put(self, index: torch.Tensor, logits: torch.Tensor) -> None:
        need = int(index.max()) + 1
        if need > self.table.shape[0]:
            grow = max(need, 2 * self.table.shape[0])
            table = torch.zeros(grow, self.table.shape[1], dtype=self.table.dtype)
            have = torch.zeros(grow, dtype=torch.bool)
            table[: self.table.shape[0]] = self.table
            have[: self.have.shape[0]] = self.have
            self.table, self.have = table, have
        self.table[index] = logits.to(self.table.dtype)
        self.have[index] = True

    def get(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``index (B,)`` -> ``(logits (B, C), found (B,) bool)``; rows not found are zero."""
        n = self.have.shape[0]
        if n == 0:
            zeros = torch.zeros(index.shape[0], self.table.shape[1], dtype=self.table.dtype)
            return zeros, torch.zeros(index.shape[0], dtype=torch.bool)
        safe = index.clamp(0, n - 1)
        found = (index >= 0) & (index < n) & self.have[safe]
        return torch.where(found[:, None], self.table[safe], 0.0), found


class TrajectoryLoss:
    """The SAF trajectory loss with its memory of recorded logits.

    Args:
        lam: weight ``lambda >= 0`` of the KL term (SAF: 0.3-0.8).
        tau: softmax temperature ``> 0`` (SAF: 5).
        lag: how many epochs back the reference logits are taken (``>= 1``; SAF: 2-3).
        warmup: first epoch (0-based) at which the term is applied; it also needs a record
            ``lag`` epochs back, so it effectively starts at ``max(warmup, lag)``.

    Use: :meth:`extra` is the term (an :data:`~blacksat.objective.ExtraLoss`, given the current
    epoch), :meth:`record` stores the logits of a batch at an epoch (the trainer records
    ``Estimate.logits`` after every step: readings already paid for). Only the epochs still
    needed (``epoch - lag`` .. ``epoch``) are kept.
    """

    def __init__(self, lam: float = 0.5, tau: float = 5.0, lag: int = 2, warmup: int = 0) -> None:
        lam_f, tau_f = _finite("lam", lam), _finite("tau", tau)
        if lam_f < 0:
            raise ConfigError(f"lam must be >= 0, got {lam!r}")
        if tau_f <= 0:
            raise ConfigError(f"tau must be > 0, got {tau!r}")
        lag = check_int("lag (epochs)", lag, low=1)
        warmup = check_int("warmup (epochs)", warmup, low=0)
        self.lam, self.tau, self.lag, self.warmup = lam_f, tau_f, lag, warmup
        self._memory: dict[int, _EpochMemory] = {}
        self.epoch = 0

    # ------------------------------------------------------------------ the term
    def active(self, epoch: int) -> bool:
        """Whether the term can be non-zero at ``epoch`` (past warm-up, a record ``lag`` back)."""
        return epoch >= self.warmup and (epoch - self.lag) in self._memory

    def extra(self, logits: torch.Tensor, batch: Batch, epoch: int | None = None) -> torch.Tensor:
        """``lam * tau^2 * KL(softmax(z_old / tau) || softmax(z / tau))``, averaged over the batch.

        Args:
            logits: current logits ``z``, ``(..., B, C)`` (any leading setting axes, e.g.
                ``(K, B, C)`` for ``K`` perturbed settings), differentiable.
            batch: the minibatch (its ``index`` selects the records).
            epoch: the current epoch (default: the last epoch given to :meth:`record`).

        Returns:
            ``(...)``: the term per setting; a sample without a record ``lag`` epochs back
            contributes zero (the mean still runs over all ``B`` samples). Zero before warm-up.
        """
        e = self.epoch if epoch is None else int(epoch)
        lead = logits.shape[:-2]
        if self.lam == 0 or not self.active(e):
            return logits.new_zeros(lead)
        old, found = self._memory[e - self.lag].get(torch.as_tensor(batch.index).long())
        if not bool(found.any()):
            return logits.new_zeros(lead)
        log_q = F.log_softmax(logits / self.tau, dim=-1)  # (..., B, C)
        log_p = F.log_softmax(old.to(logits.dtype) / self.tau, dim=-1)  # (B, C)
        kl = (log_p.exp() * (log_p - log_q)).sum(-1)  # (..., B)
        kl = kl * found.to(logits.dtype)
        return self.lam * self.tau**2 * kl.mean(-1)

    __call__ = extra

    # ------------------------------------------------------------------ memory
    def record(self, batch: Batch, logits: torch.Tensor, epoch: int) -> None:
        """Remember ``logits (B, C)`` (detached, copied) for the batch's samples at ``epoch``;
        drops the epochs no longer needed (older than ``epoch - lag``)."""
        z = torch.as_tensor(logits).detach()
        if z.ndim != 2 or z.shape[0] != len(batch):
            raise ConfigError(
                f"record needs logits (B, C) with B = {len(batch)}, got {tuple(z.shape)}"
            )
        e = int(epoch)
        mem = self._memory.get(e)
        if mem is None:
            mem = self._memory[e] = _EpochMemory.empty(z.shape[1], z.dtype)
        elif mem.table.shape[1] != z.shape[1]:
            raise ConfigError(f"record got {z.shape[1]} classes, earlier {mem.table.shape[1]}")
        mem.put(torch.as_tensor(batch.index).long(), z)
        for old in [k for k in self._memory if k < e - self.lag]:
            del self._memory[old]
        self.epoch = e

    def epochs(self) -> list[int]:
        """The epochs held in memory, ascending."""
        return sorted(self._memory)

    def reset(self) -> None:
        """Forget every record."""
        self._memory.clear()
        self.epoch = 0

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and numbers (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "format": _FORMAT,
            "config": {"lam": self.lam, "tau": self.tau, "lag": self.lag, "warmup": self.warmup},
            "epoch": self.epoch,
            "memory": {
                e: {"table": m.table.clone(), "have": m.have.clone()}
                for e, m in self._memory.items()
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the memory from :meth:`state_dict`; the configuration must match."""
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ConfigError("not a TrajectoryLoss state dict")
        mine = {"lam": self.lam, "tau": self.tau, "lag": self.lag, "warmup": self.warmup}
        if state["config"] != mine:
            raise ConfigError(
                f"TrajectoryLoss state was saved with {state['config']}, this one is {mine}"
            )
        self._memory = {
            int(e): _EpochMemory(m["table"].clone(), m["have"].clone())
            for e, m in state["memory"].items()
        }
        self.epoch = int(state["epoch"])

    def __repr__(self) -> str:
        return (
            f"TrajectoryLoss(lam={self.lam}, tau={self.tau}, lag={self.lag}, warmup={self.warmup})"
        )


def _finite(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number, got {value!r}") from exc
    if v != v or v in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return v


__all__ = ["TrajectoryLoss"]
