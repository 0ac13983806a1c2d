"""Tests of the numpy reference Clements mesh (convention, layout, decomposition)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import unitary_group

from blacksat.devices.clements import (
    clements_decompose,
    clements_reconstruct,
    coupler_matrix,
    crosstalk_adjacency,
    mesh_layout,
    modes_from_mzis,
    mzi_matrix,
    n_mzis,
    pack_controls,
)
from blacksat.errors import ConfigError, ShapeError


def _closed_form(theta: float, phi: float) -> np.ndarray:
    """The MZI matrix written out by hand (module docstring), independent of the product."""
    s, c = np.sin(theta / 2), np.cos(theta / 2)
    return (
        1j
        * np.exp(1j * theta / 2)
        * np.array([[np.exp(1j * phi) * s, c], [np.exp(1j * phi) * c, -s]])
    )


def _mesh_product(thetas: np.ndarray, phis: np.ndarray, n: int) -> np.ndarray:
    """Independent mesh product: columns built from the layout rule, then multiplied."""
    u = np.eye(n, dtype=complex)
    k = 0
    for col in range(n):
        layer = np.eye(n, dtype=complex)
        for m in range(col % 2, n - 1, 2):
            layer[m : m + 2, m : m + 2] = _closed_form(thetas[k], phis[k])
            k += 1
        u = layer @ u
    return u


@pytest.mark.parametrize("theta, phi", [(0.0, 0.0), (0.7, 1.3), (np.pi, 2.0), (5.9, 6.2)])
def test_mzi_matrix_matches_closed_form_and_is_unitary(theta: float, phi: float) -> None:
    t = mzi_matrix(theta, phi)
    np.testing.assert_allclose(t, _closed_form(theta, phi), atol=1e-14)
    np.testing.assert_allclose(t @ t.conj().T, np.eye(2), atol=1e-14)


def test_mzi_cross_and_bar_states() -> None:
    np.testing.assert_allclose(abs(mzi_matrix(0.0, 0.3)) ** 2, [[0, 1], [1, 0]], atol=1e-15)
    np.testing.assert_allclose(abs(mzi_matrix(np.pi, 0.3)) ** 2, [[1, 0], [0, 1]], atol=1e-15)


@pytest.mark.parametrize("e", [-0.999, -0.3, 0.0, 0.15, 0.999])
def test_coupler_split_and_unitarity_with_errors(e: float) -> None:
    bs = coupler_matrix(e)
    split = [[(1 + e) / 2, (1 - e) / 2], [(1 - e) / 2, (1 + e) / 2]]
    np.testing.assert_allclose(abs(bs) ** 2, split, atol=1e-15)
    np.testing.assert_allclose(bs @ bs.conj().T, np.eye(2), atol=1e-14)
    t = mzi_matrix(1.1, 0.4, e_in=e, e_out=-e / 2)
    np.testing.assert_allclose(t @ t.conj().T, np.eye(2), atol=1e-14)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 9, 16])
def test_layout_is_a_rectangular_clements_mesh(n: int) -> None:
    layout = mesh_layout(n)
    assert len(layout) == n_mzis(n) == n * (n - 1) // 2
    assert modes_from_mzis(len(layout)) == n
    for col in range(n):
        tops = [m for c, m in layout if c == col]
        assert tops == list(range(col % 2, n - 1, 2))  # disjoint pairs, parity of the column
    assert layout == sorted(layout)  # canonical order: column by column, top to bottom


def test_layout_and_size_errors() -> None:
    with pytest.raises(ConfigError):
        mesh_layout(1)
    with pytest.raises(ShapeError):
        modes_from_mzis(7)
    with pytest.raises(ShapeError):
        clements_reconstruct(np.zeros(3), np.zeros(4))


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 16])
def test_haar_unitary_decomposes_and_rebuilds(n: int) -> None:
    u = unitary_group.rvs(n, random_state=1000 + n)
    thetas, phis, gammas = clements_decompose(u)
    assert thetas.shape == phis.shape == (n * (n - 1) // 2,) and gammas.shape == (n,)
    assert np.all((thetas >= 0) & (thetas <= np.pi))
    assert np.all((phis >= 0) & (phis < 2 * np.pi)) and np.all((gammas >= 0) & (gammas < 2 * np.pi))
    np.testing.assert_allclose(clements_reconstruct(thetas, phis, gammas), u, atol=1e-8)
    # and against the hand-written product (independent of mzi_matrix and _embed)
    rebuilt = np.exp(1j * gammas)[:, None] * _mesh_product(thetas, phis, n)
    np.testing.assert_allclose(rebuilt, u, atol=1e-8)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 8), seed=st.integers(0, 2**31 - 1))
def test_decomposition_roundtrip_property(n: int, seed: int) -> None:
    u = unitary_group.rvs(n, random_state=seed)
    np.testing.assert_allclose(clements_reconstruct(*clements_decompose(u)), u, atol=1e-8)


@pytest.mark.parametrize(
    "u",
    [np.eye(5), np.eye(6)[[3, 1, 0, 5, 2, 4]], np.diag(np.exp(1j * np.arange(4.0)))],
    ids=["identity", "permutation", "diagonal"],
)
def test_degenerate_unitaries(u: np.ndarray) -> None:
    np.testing.assert_allclose(clements_reconstruct(*clements_decompose(u)), u, atol=1e-12)


def test_random_phases_roundtrip() -> None:
    rng = np.random.default_rng(3)
    n = 6
    thetas = rng.uniform(0, 2 * np.pi, n_mzis(n))
    phis = rng.uniform(0, 2 * np.pi, n_mzis(n))
    u = clements_reconstruct(thetas, phis)
    np.testing.assert_allclose(u, _mesh_product(thetas, phis, n), atol=1e-12)
    np.testing.assert_allclose(clements_reconstruct(*clements_decompose(u)), u, atol=1e-10)


def test_decompose_rejects_non_unitary() -> None:
    with pytest.raises(ShapeError):
        clements_decompose(np.ones((3, 3)))
    with pytest.raises(ShapeError):
        clements_decompose(np.eye(3)[:2])


def test_crosstalk_adjacency_neighbours() -> None:
    n = 5
    layout = mesh_layout(n)
    adj = crosstalk_adjacency(n)
    assert adj.shape == (2 * len(layout),) * 2
    np.testing.assert_array_equal(adj, adj.T)
    assert np.all(np.diag(adj) == 0)
    for i, (ci, mi) in enumerate(layout):
        for j, (cj, mj) in enumerate(layout):
            for hi in (0, 1):
                for hj in (0, 1):
                    same_mzi = i == j and hi != hj
                    stacked = ci == cj and abs(mi - mj) == 2 and hi == hj
                    want = 1.0 if (same_mzi or stacked) else 0.0
                    assert adj[2 * i + hi, 2 * j + hj] == want


def test_pack_controls_interleaves_and_wraps() -> None:
    out = pack_controls([0.5, 7.0], [-1.0, 2.0])
    np.testing.assert_allclose(out, [0.5, 2 * np.pi - 1.0, 7.0 - 2 * np.pi, 2.0])
    with pytest.raises(ShapeError):
        pack_controls([1.0], [1.0, 2.0])
