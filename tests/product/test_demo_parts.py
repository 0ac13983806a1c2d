"""The demo's building blocks: loss-landscape slices, the budget grid, anytime iterates."""

import numpy as np
import pytest
import torch

from blacksat.data import load_iris
from blacksat.errors import ConfigError
from blacksat.landscape import common_mode, loss_slice, random_direction
from blacksat.meter import Ledger
from blacksat.product.demo import budget_grid
from blacksat.product.demo_online import OnlineRun
from blacksat.space import ParamSpace
from blacksat.task import Task


def bank_model(thetas, x):
    """``y = x @ cos(theta).T`` (a bank of modulators): ``(K, 12), (B, 4) -> (K, B, 3)``."""
    return torch.einsum("bi,koi->kbo", x, torch.cos(thetas).reshape(-1, 3, 4))


@pytest.fixture(scope="module")
def task():
    return Task(load_iris(seed=0), input_shape=(4,)).to(torch.float64)


def test_loss_slice_passes_through_the_loss_of_theta(task):
    theta = np.random.default_rng(0).normal(size=12)
    x, y = task.data.split("train")
    logits = bank_model(torch.as_tensor(theta)[None], torch.as_tensor(x))[0]
    expected = float(task.loss(logits, torch.as_tensor(y)))
    alphas = np.array([-0.5, 0.0, 0.5])
    for u in (common_mode(12), random_direction(12, 1)):
        out = loss_slice(task, bank_model, theta, u, alphas, batch_size=17)
        assert out.shape == (3,) and out[1] == pytest.approx(expected, rel=1e-12)
        assert out[0] != pytest.approx(out[1])  # the loss does change along the line


def test_loss_slice_clips_into_a_space(task):
    space = ParamSpace.box(12, -1.0, 1.0)  # cos is not periodic within it
    theta = np.zeros(12)
    far = loss_slice(task, bank_model, theta, common_mode(12), [5.0, 50.0], space=space)
    assert far[0] == pytest.approx(far[1])  # both clipped onto the same face


def test_directions_have_unit_rms_and_are_seeded():
    assert np.array_equal(common_mode(5), np.ones(5))
    u = random_direction(400, np.random.default_rng(3))
    assert np.sqrt(np.mean(u**2)) == pytest.approx(1.0)
    assert np.array_equal(random_direction(7, 11), random_direction(7, 11))
    with pytest.raises(ConfigError):
        common_mode(0)
    with pytest.raises(ConfigError, match="theta and direction"):
        loss_slice(None, bank_model, np.zeros(3), np.ones(4), [0.0])


def test_budget_grid_starts_at_zero_and_doubles_to_the_budget():
    assert budget_grid(4000, 4).tolist() == [0, 500, 1000, 2000, 4000]
    assert budget_grid(3, 5).tolist() == [0, 1, 2, 3]  # rounded, deduplicated, >= 1
    assert budget_grid(10, 1).tolist() == [0, 10]


def test_online_run_gives_the_iterate_held_at_each_spend():
    its = [(0, np.zeros(2)), (8, np.ones(2)), (16, 2 * np.ones(2)), (20, 3 * np.ones(2))]
    run = OnlineRun(its[-1][1], Ledger(20), "budget", 3, 0.1, its)
    got = run.at([0, 7, 8, 15, 16, 100])
    assert got[:, 0].tolist() == [0, 0, 1, 1, 2, 3]


def test_drift_labels_carry_units_and_read_naturally():
    from blacksat.product.demo_report import drift_label

    assert drift_label("temperature", 2.0, {"unit": "K", "value": 0.0}) == (
        "chip at temperature +2 K"
    )
    assert drift_label("scale", 0.9, {"unit": "ratio", "value": 1.0}) == (
        "chip at scale x0.9 (nominal x1)"
    )
    assert drift_label("shift_x", -2.0, {"unit": "px", "value": 0.0}).endswith("-2 px")


def test_findings_follow_the_numbers():
    from blacksat.product.demo_report import findings, stats

    def method(label, chip, drift):
        return {
            "label": label,
            "kind": "x",
            "metrics": {
                "chip": stats(chip),
                "fresh_chips": stats(chip),
                "temperature=+2": stats(drift),
            },
        }

    r = {
        "seeds": [0, 1, 2],
        "quick": False,
        "chance": 0.1,
        "device": {"nuisances": {"temperature": {"unit": "K", "value": 0.0}}},
        "summary": {
            "methods": {
                "offline_bp": method("offline BP", [0.90, 0.91, 0.92], [0.20, 0.25, 0.22]),
                "offline_sat": method("offline SAT", [0.88, 0.93, 0.90], [0.80, 0.82, 0.85]),
                "zo_sat": method("query-only SAT", [0.95, 0.96, 0.94], [0.80, 0.82, 0.85]),
                "nevergrad": method("nevergrad", [0.05, 0.06, 0.12], [0.05, 0.06, 0.07]),
            }
        },
    }
    text = "\n".join(findings(r))
    assert "offline SAT vs offline BP on the chip" in text
    line = next(x for x in text.splitlines() if "BP, chip at temperature +2 K" in x)
    assert "**helped**" in line and "3 of 3 seeds" in line and "+60.0 ± 3.0 pp" in line
    chip = next(x for x in text.splitlines() if "vs offline BP on the chip" in x)
    assert "no clear difference" in chip
    assert "Within 5 points of chance (10 %) on the chip: nevergrad" in text


@pytest.mark.parametrize(
    "device,model,zo",
    [
        ("mzi", "phase_drift", "phase_drift"),
        ("mzi-hybrid", "phase_drift", "phase_drift"),
        ("mrr", "thermal", "thermal"),
        ("diffractive", "misalignment", None),
    ],
)
def test_the_demo_trains_against_the_protective_model_of_each_device(device, model, zo):
    """Never an L2 ball by default (it does not protect against drift, BENCHMARKS.md); the
    landscape radius is tied to the rated drift; the quick preset stays light."""
    from blacksat.devices import DEVICES
    from blacksat.product.demo_config import DEMO_DEVICE_ARGS, DemoConfig
    from blacksat.product.demo_plan import offline_sat_label, plan

    chip = DEVICES[device](seed=0, **DEMO_DEVICE_ARGS[device])
    p = plan(device, chip, DemoConfig())
    assert p.offline["model"] == model and p.rho is None and p.zo_model == zo
    assert model in offline_sat_label(p) and "L2" not in offline_sat_label(p)
    if zo is not None:
        assert p.landscape_radius == pytest.approx(2 * chip.perturbation_models()[zo].radius)
    quick = DemoConfig.preset(True, device)
    assert quick.seeds == 3 and quick.budget <= 240 and quick.offline_steps <= 40
    l2 = plan(device, chip, DemoConfig(rho=0.3))
    assert l2.rho == 0.3 and "L2 ball" in offline_sat_label(l2)
