"""benchmarks/diffractive_aperture.py: a run builds the geometry it names, and the section
states each geometry's aperture and Fresnel number (synthetic rows, plus one tiny real run)."""

import pytest
from bench_loader import SavedRows, load_bench

M = load_bench("diffractive_aperture.py", "diffractive_aperture")


def test_a_run_trains_the_geometry_it_names():
    row = M.one_run(16, 16.0, seed=0, steps=3)
    assert row["aperture_um"] == pytest.approx(256.0)  # 16 px x 16 um: the paper's aperture
    assert row["fresnel"] == pytest.approx(128e-6**2 / (532e-9 * 2e-3))
    assert 0.0 <= row["accuracy"] <= 100.0 and 0.0 <= row["train_accuracy"] <= 100.0


def test_the_section_lists_each_geometry_with_its_aperture_and_fresnel_number():
    rows = [
        {"geometry": M.label(64, 4.0), "accuracy": a, "train_accuracy": a + 1, "wall_s": 10.0,
         "aperture_um": 256.0, "fresnel": 15.4}
        for a in (94.0, 96.0)
    ] + [
        {"geometry": M.label(64, 8.0), "accuracy": 82.0, "train_accuracy": 85.0, "wall_s": 9.0,
         "aperture_um": 512.0, "fresnel": 61.6}
    ]  # fmt: skip
    body = M.section(SavedRows(rows, "diffractive_aperture"))
    assert "| 64 | 4 | 256 | 15.4 | 1.04 | 2 | 95.0 ± 1.4 | 96.0 ± 1.4 | 10 |" in body
    assert "| 64 | 8 | 512 | 61.6 | 0.26 | 1 | 82.0 (one run) | 85.0 (one run) | 9 |" in body
    assert "| 32 | 8 |" not in body  # a geometry without runs has no row
    assert body.index("| 64 | 8 |") < body.index("| 64 | 4 |")  # sorted by the spread
