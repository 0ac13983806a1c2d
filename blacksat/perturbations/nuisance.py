"""Nuisance physical parameters as a perturbation model: the paper's worst-case finite-difference
adversary over misalignment, temperature and the like (``PHYSICS.md``).

Re-exported from :mod:`blacksat.perturbations` (this module imports only the vocabulary of
:mod:`blacksat.perturbations.base`, so the two do not import each other).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from blacksat.errors import ConfigError, ShapeError
from blacksat.perturbations.base import Perturbation, Probe, _factor, _radius
from blacksat.validation import check_choice, check_int

_MAX_CORNER_DIMS = 4


@dataclass(frozen=True)
class NuisanceModel:
    """Nuisance physical parameters in ranges (``{name: (low, high)}``, absolute values in the
    device's units; a device's ``perturbed(**values)`` / ``model_family()(**values)`` applies
    them). The perturbation carries no control shift (``delta is None``).

    ``worst`` uses only the loss ``probe``, never the gradient (PHYSICS.md, the paper's
    adversary). ``method="ascent"``: from ``center``, ``steps`` times: draw ``u_j ~ U(0, a_j]``
    (``a_j = fd * width_j``), probe ``L(phi)`` and ``L(phi + u_j e_j)`` for every parameter in
    **one** probe call (a backward difference where ``phi + u`` would leave the range), and move
    ``phi_j`` by ``step_size * width_j * sign(g_j)``, clipped to the range: ``steps * (m + 1)``
    evaluations. ``method="corners"``: probe all ``2^m`` corners in one call (``m <= 4``) and
    return the worst. Parameters with a zero-width range stay at their center and are not
    probed; when all are, ``worst`` returns the center without probing.

    Args:
        ranges: ``{name: (low, high)}``.
        steps: ascent iterations.
        step_size: ascent step, as a fraction of each range's width (``None``: 0.5).
        fd: largest finite-difference step, as a fraction of each range's width, in ``(0, 0.5]``.
        method: ``"ascent"`` or ``"corners"``.
        center: the nominal values where the ascent starts and around which :meth:`scaled`
            scales; default per name 0 if inside the range, else the range's midpoint.
        periodic: names of nuisances that are angles over a whole period (a global phase
            offset, a rotation over a full turn): their range must span one period, and the
            ascent wraps around it (forward differences everywhere, no clipping at an end)
            instead of stopping at ``low``/``high``. :meth:`scaled` keeps their whole circle for
            factors >= 1 and makes them ordinary bounded ranges (a part of the circle) below.
    """

    ranges: Mapping[str, tuple[float, float]]
    steps: int = 1
    step_size: float | None = None
    fd: float = 0.1
    method: Literal["ascent", "corners"] = "ascent"
    center: Mapping[str, float] | None = None
    periodic: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.ranges, Mapping) or not self.ranges:
            raise ConfigError("ranges must be a non-empty mapping {name: (low, high)}")
        ranges: dict[str, tuple[float, float]] = {}
        for name, rng_ in self.ranges.items():
            try:
                lo, hi = (float(v) for v in rng_)
            except (TypeError, ValueError):
                raise ConfigError(f"range of {name!r} must be (low, high), got {rng_!r}") from None
            if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
                raise ConfigError(f"range of {name!r} must be finite with low <= high: {rng_!r}")
            ranges[str(name)] = (lo, hi)
        given = dict(self.center or {})
        unknown = set(given) - set(ranges)
        if unknown:
            raise ConfigError(f"center names {sorted(unknown)} have no range")
        center = {}
        for name, (lo, hi) in ranges.items():
            c = float(given.get(name, 0.0 if lo <= 0.0 <= hi else (lo + hi) / 2))
            if not (lo <= c <= hi):
                raise ConfigError(f"center of {name!r} ({c}) lies outside its range ({lo}, {hi})")
            center[name] = c
        check_int("steps", self.steps, low=1)
        step = 0.5 if self.step_size is None else self.step_size
        if _radius("step_size", step) == 0:
            raise ConfigError("step_size must be > 0")
        fd = _radius("fd", self.fd)
        if not 0 < fd <= 0.5:
            raise ConfigError(f"fd must be in (0, 0.5], got {self.fd!r}")
        check_choice("method", self.method, ("ascent", "corners"))
        if self.method == "corners" and len(ranges) > _MAX_CORNER_DIMS:
            raise ConfigError(
                f"method='corners' probes 2^m corners: m <= {_MAX_CORNER_DIMS}, "
                f"got {len(ranges)} parameters"
            )
        periodic = tuple(str(n) for n in self.periodic)
        unknown = set(periodic) - set(ranges)
        if isinstance(self.periodic, str) or unknown:
            raise ConfigError(
                f"periodic must be a sequence of nuisance names with a range, got {self.periodic!r}"
            )
        for name in periodic:
            if ranges[name][1] <= ranges[name][0]:
                raise ConfigError(f"the periodic nuisance {name!r} needs a range of one period")
        for k, v in (
            ("periodic", periodic),
            ("ranges", ranges),
            ("center", center),
            ("steps", int(self.steps)),
            ("step_size", float(step)),
            ("fd", fd),
        ):
            object.__setattr__(self, k, v)

    # ------------------------------------------------------------------ geometry
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.ranges)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = np.array(list(self.ranges.values())).T
        center = self._center()
        return lo, hi, np.array([center[n] for n in self.ranges])

    def _center(self) -> Mapping[str, float]:
        """:attr:`center`, filled in by ``__post_init__`` (never ``None`` after it)."""
        assert self.center is not None
        return self.center

    @property
    def is_zero(self) -> bool:
        return all(lo == hi for lo, hi in self.ranges.values())

    needs_gradient = False  # the adversary probes the loss only

    @property
    def probe_evaluations(self) -> int:
        """Loss evaluations one :meth:`worst` spends (in ``steps`` probe calls, or one)."""
        m = sum(lo < hi for lo, hi in self.ranges.values())
        if m == 0:
            return 0
        return 2**m if self.method == "corners" else self.steps * (m + 1)

    def _point(self, values: np.ndarray) -> Perturbation:
        return Perturbation(None, {n: float(v) for n, v in zip(self.names, values, strict=True)})

    def _probe(self, probe: Probe, points: list[np.ndarray]) -> torch.Tensor:
        losses = torch.as_tensor(probe([self._point(p) for p in points]))
        losses = losses.detach().to(torch.float64).reshape(-1)
        if losses.numel() != len(points):
            raise ShapeError(f"probe returned {losses.numel()} losses for {len(points)} points")
        return losses

    # ------------------------------------------------------------------ protocol
    def worst(
        self,
        theta: torch.Tensor,
        grad: torch.Tensor | None,
        probe: Probe,
        rng: np.random.Generator,
    ) -> Perturbation:
        lo, hi, phi = self._arrays()
        active = np.flatnonzero(hi > lo)
        if active.size == 0:
            return self._point(phi)
        width = hi - lo
        if self.method == "corners":
            points = []
            for corner in itertools.product((0, 1), repeat=active.size):
                p = phi.copy()
                p[active] = np.where(np.array(corner) == 1, hi[active], lo[active])
                points.append(p)
            losses = torch.nan_to_num(self._probe(probe, points), nan=-np.inf)
            return self._point(points[int(torch.argmax(losses))])
        for _ in range(self.steps):
            a = self.fd * width[active]
            u = a * (1.0 - rng.uniform(0.0, 1.0, active.size))  # in (0, a]
            circ = np.array([self.names[j] in self.periodic for j in active], dtype=bool)
            h = np.where(circ | (phi[active] + u <= hi[active]), u, -u)  # backward at the edge
            points = [phi.copy()]
            for j, hj in zip(active, h, strict=True):
                p = phi.copy()
                p[j] += hj
                points.append(p)
            probed = self._probe(probe, points).numpy()
            with np.errstate(invalid="ignore"):
                g = np.nan_to_num((probed[1:] - probed[0]) / h, nan=0.0)
            phi = phi.copy()
            moved = phi[active] + self.step_size * width[active] * np.sign(g)
            wrapped = lo[active] + np.mod(moved - lo[active], width[active])
            phi[active] = np.where(circ, wrapped, np.clip(moved, lo[active], hi[active]))
        return self._point(phi)

    def sample(self, theta: torch.Tensor, rng: np.random.Generator) -> Perturbation:
        lo, hi, _ = self._arrays()
        return self._point(rng.uniform(lo, hi))

    def scaled(self, factor: float) -> NuisanceModel:
        """Ranges scaled about :attr:`center` by ``factor`` (0 collapses them to the center;
        a periodic nuisance keeps its whole circle for ``factor >= 1``)."""
        f = _factor(factor)
        ranges = {
            n: (lo, hi)  # a whole circle cannot grow
            if n in self.periodic and f >= 1
            else (c + f * (lo - c), c + f * (hi - c))
            for (n, (lo, hi)), c in zip(self.ranges.items(), self._center().values(), strict=True)
        }
        periodic = self.periodic if f >= 1 else ()  # a part of the circle is a bounded range
        return dataclasses.replace(self, ranges=ranges, periodic=periodic)


__all__ = ["NuisanceModel"]
