"""Reference (numpy, float64) Clements mesh: the MZI convention, the layout, the decomposition.

This module is the plain, loop-based oracle that the vectorized torch model in
:mod:`blacksat.devices.mzi` is tested against (cf. pycma's ``purecma``). It follows
W. R. Clements et al., "Optimal design for universal multiport interferometers", Optica 3,
1460 (2016), written in this package's MZI convention.

**MZI convention.** Two 50:50 directional couplers ``BS = [[1, i], [i, 1]] / sqrt(2)`` and two
phase shifters, both on the *top* arm: the external phase ``phi`` before the first coupler, the
internal phase ``theta`` between the couplers::

    T(theta, phi) = BS . P(theta) . BS . P(phi),        P(a) = diag(exp(i a), 1)
                  = i exp(i theta/2) [[exp(i phi) sin(theta/2),  cos(theta/2)],
                                      [exp(i phi) cos(theta/2), -sin(theta/2)]]

``theta = 0`` is the *cross* state (all power to the other port), ``theta = pi`` the *bar*
state. A coupler with splitting error ``e`` is the unitary ``[[t, i r], [i r, t]]``,
``t = sqrt((1 + e) / 2)``, ``r = sqrt((1 - e) / 2)`` (power split ``(1 +- e) / 2``).

**Mesh layout.** ``N`` modes, ``N`` columns; column ``c`` holds the MZIs acting on mode pairs
``(m, m + 1)`` with ``m = c % 2, c % 2 + 2, ... <= N - 2``; ``N (N - 1) / 2`` MZIs in all. MZIs
are numbered column by column, top to bottom (the *canonical order*), which is also the order
they act on the light. The mesh matrix is ``U = diag(exp(i gamma)) . T_{M-1} ... T_1 . T_0``
(``T_k`` embedded on its mode pair); the output phases ``gamma`` are invisible to intensity
detection.

Control layout shared with the device: ``pack_controls`` interleaves ``(theta_k, phi_k)`` per
MZI; ``crosstalk_adjacency`` lists the neighbouring heaters of the thermal-crosstalk model
(``column_neighbours`` is the same relation in O(M)).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from blacksat.errors import ShapeError
from blacksat.validation import check_int


def n_mzis(n_modes: int) -> int:
    """Number of MZIs of an ``n_modes`` Clements mesh, ``N (N - 1) / 2``."""
    return n_modes * (n_modes - 1) // 2


def modes_from_mzis(n: int) -> int:
    """Inverse of :func:`n_mzis`: the ``N`` with ``N (N - 1) / 2 == n`` (raises if none)."""
    n_modes = round(float(np.sqrt(1.0 + 8.0 * n) + 1.0) / 2.0)
    if n_mzis(n_modes) != n or n_modes < 2:
        raise ShapeError(f"{n} phases do not make a Clements mesh (need N (N - 1) / 2)")
    return n_modes


def mesh_layout(n_modes: int) -> list[tuple[int, int]]:
    """``[(column, top_mode), ...]`` of every MZI in canonical order (length ``N (N - 1) / 2``)."""
    n_modes = check_int("n_modes of a Clements mesh", n_modes, low=2)
    return [(c, m) for c in range(n_modes) for m in range(c % 2, n_modes - 1, 2)]


def column_neighbours(n_modes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(has_above (M,), has_below (M,))`` bool: whether each MZI (canonical order) has an MZI
    directly above / below it in its column. Those are the previous / next MZIs in the
    canonical order, so heater crosstalk can be applied as shifted copies of the controls."""
    layout = mesh_layout(n_modes)
    position = set(layout)
    above = np.array([(c, m - 2) in position for c, m in layout], dtype=bool)
    below = np.array([(c, m + 2) in position for c, m in layout], dtype=bool)
    return above, below


def crosstalk_adjacency(n_modes: int) -> np.ndarray:
    """Symmetric 0/1 heater-neighbour matrix ``(d, d)``, ``d = N (N - 1)``, control order
    (dense: ``d^2`` entries; the simulator applies it in O(d) from :func:`column_neighbours`).

    Neighbours: ``theta``/``phi`` of the same MZI, and the same-kind heater of the MZIs directly
    above and below in the same column.
    """
    _, below = column_neighbours(n_modes)
    d = 2 * len(below)
    adj = np.zeros((d, d))
    for k in range(len(below)):
        adj[2 * k, 2 * k + 1] = adj[2 * k + 1, 2 * k] = 1.0
        if below[k]:  # the MZI below is the next one in the canonical order
            for h in (0, 1):
                adj[2 * k + h, 2 * k + 2 + h] = adj[2 * k + 2 + h, 2 * k + h] = 1.0
    return adj


def pack_controls(thetas: ArrayLike, phis: ArrayLike) -> np.ndarray:
    """Interleave per-MZI phases ``thetas (M,)``, ``phis (M,)`` into controls ``(2M,)``,
    wrapped into ``[0, 2 pi)`` (e.g. the output of
    :func:`~blacksat.devices.clements.clements_decompose`)."""
    thetas = np.asarray(thetas, dtype=np.float64).ravel()
    phis = np.asarray(phis, dtype=np.float64).ravel()
    if thetas.shape != phis.shape:
        raise ShapeError(f"thetas {thetas.shape} and phis {phis.shape} differ in shape")
    return np.mod(np.stack([thetas, phis], axis=1).ravel(), 2.0 * np.pi)


def coupler_matrix(e: float = 0.0) -> np.ndarray:
    """2x2 unitary of a directional coupler with splitting error ``e`` (``|e| < 1``)."""
    t, r = np.sqrt((1.0 + e) / 2.0), np.sqrt((1.0 - e) / 2.0)
    return np.array([[t, 1j * r], [1j * r, t]])


def mzi_matrix(theta: float, phi: float, *, e_in: float = 0.0, e_out: float = 0.0) -> np.ndarray:
    """2x2 transfer matrix ``T = BS(e_out) . P(theta) . BS(e_in) . P(phi)`` of one MZI.

    With ``e_in = e_out = 0`` this is the ideal matrix of the module docstring.
    """
    p_theta = np.diag([np.exp(1j * theta), 1.0])
    p_phi = np.diag([np.exp(1j * phi), 1.0])
    return coupler_matrix(e_out) @ p_theta @ coupler_matrix(e_in) @ p_phi


def _embed(t: np.ndarray, m: int, n_modes: int) -> np.ndarray:
    out = np.eye(n_modes, dtype=complex)
    out[m : m + 2, m : m + 2] = t
    return out


def clements_reconstruct(
    thetas: ArrayLike, phis: ArrayLike, output_phases: ArrayLike | None = None
) -> np.ndarray:
    """The mesh matrix ``(N, N)`` from ``thetas (M,)``, ``phis (M,)`` (canonical order) and
    optional ``output_phases (N,)`` (zeros if omitted). ``M = N (N - 1) / 2``."""
    thetas = np.asarray(thetas, dtype=np.float64).ravel()
    phis = np.asarray(phis, dtype=np.float64).ravel()
    if thetas.shape != phis.shape:
        raise ShapeError(f"thetas {thetas.shape} and phis {phis.shape} differ in shape")
    n_modes = modes_from_mzis(thetas.size)
    u = np.eye(n_modes, dtype=complex)
    for k, (_, m) in enumerate(mesh_layout(n_modes)):
        u = _embed(mzi_matrix(thetas[k], phis[k]), m, n_modes) @ u
    if output_phases is not None:
        gamma = np.asarray(output_phases, dtype=np.float64).ravel()
        if gamma.shape != (n_modes,):
            raise ShapeError(f"output_phases must have shape ({n_modes},), got {gamma.shape}")
        u = np.exp(1j * gamma)[:, None] * u
    return u


def clements_decompose(u: ArrayLike, *, atol: float = 1e-8) -> tuple[np.ndarray, ...]:
    """Decompose a unitary ``U (N, N)`` into a Clements mesh in this module's convention.

    Returns ``(thetas (M,), phis (M,), output_phases (N,))`` in canonical MZI order with
    ``thetas`` in ``[0, pi]`` and the other phases in ``[0, 2 pi)``, such that
    ``clements_reconstruct(thetas, phis, output_phases) == U``.

    Algorithm (Clements et al. 2016): null the lower-left triangle of ``U`` one anti-diagonal
    at a time, alternately by inverse MZIs from the right (column operations) and MZIs from the
    left (row operations); what remains is a diagonal ``D``. Each left MZI is then moved
    through ``D`` with ``T(theta, phi)^-1 . diag(d1, d2) = diag(a, b) . T(theta, phi')``,
    ``phi' = arg d1 - arg d2``, ``a = -exp(-i (theta + phi)) d2``, ``b = -exp(-i theta) d2``.
    Finally the MZIs, in the order they act, are packed greedily into the mesh columns.

    Raises:
        ShapeError: ``U`` is not square, or not unitary within ``atol``.
    """
    u = np.array(u, dtype=complex)
    if u.ndim != 2 or u.shape[0] != u.shape[1] or u.shape[0] < 2:
        raise ShapeError(f"U must be a square (N, N) matrix with N >= 2, got {u.shape}")
    n = u.shape[0]
    if not np.allclose(u @ u.conj().T, np.eye(n), atol=atol):
        raise ShapeError("U is not unitary; the Clements decomposition needs a unitary")
    right: list[tuple[int, float, float]] = []  # applied as U <- U . T^-1, in this order
    left: list[tuple[int, float, float]] = []  # applied as U <- T . U, in this order
    for i in range(1, n):
        if i % 2 == 1:
            for j in range(i):
                row, m = n - 1 - j, i - j - 1  # null U[row, m] with columns (m, m + 1)
                a, b = u[row, m], u[row, m + 1]
                theta = 2.0 * np.arctan2(abs(b), abs(a))
                phi = np.angle(-a) - np.angle(b)
                u = u @ _embed(mzi_matrix(theta, phi), m, n).conj().T
                right.append((m, theta, phi))
        else:
            for j in range(1, i + 1):
                m, col = n + j - i - 2, j - 1  # null U[m + 1, col] with rows (m, m + 1)
                a, b = u[m, col], u[m + 1, col]
                theta = 2.0 * np.arctan2(abs(a), abs(b))
                phi = np.angle(b) - np.angle(a)
                u = _embed(mzi_matrix(theta, phi), m, n) @ u
                left.append((m, theta, phi))
    d = np.diag(u).copy()
    moved: list[tuple[int, float, float]] = []
    for m, theta, phi in reversed(left):
        d1, d2 = d[m], d[m + 1]
        moved.append((m, theta, np.angle(d1) - np.angle(d2)))
        d[m] = -np.exp(-1j * (theta + phi)) * d2
        d[m + 1] = -np.exp(-1j * theta) * d2
    # order of action on the light: the right ops, then the moved left ops (L_k first)
    sequence = right + moved
    slots = {cm: k for k, cm in enumerate(mesh_layout(n))}
    thetas, phis = np.zeros(len(slots)), np.zeros(len(slots))
    filled = np.zeros(len(slots), dtype=bool)
    depth = [0] * n
    for m, theta, phi in sequence:
        col = max(depth[m], depth[m + 1])
        col += (col - m) % 2  # column parity must match the top mode's
        k = slots.get((col, m))
        if k is None or filled[k]:
            raise RuntimeError(f"Clements packing failed at mode {m}, column {col}")
        thetas[k], phis[k], filled[k] = theta, phi, True
        depth[m] = depth[m + 1] = col + 1
    if not filled.all():
        raise RuntimeError("Clements packing left MZI slots empty")
    two_pi = 2.0 * np.pi
    return thetas, np.mod(phis, two_pi), np.mod(np.angle(d), two_pi)


__all__ = [
    "clements_decompose",
    "clements_reconstruct",
    "column_neighbours",
    "coupler_matrix",
    "crosstalk_adjacency",
    "mesh_layout",
    "modes_from_mzis",
    "mzi_matrix",
    "n_mzis",
    "pack_controls",
]
