"""The device registry: built-in names, names other packages register under the entry-point
group ``blacksat.devices``, factory paths, and what ``blacksat devices`` lists."""

from __future__ import annotations

import json

import pytest
from doubles import LinearDevice

from blacksat.errors import ConfigError
from blacksat.product import device_registry as reg
from blacksat.product.cli import main
from blacksat.product.run_config import DeviceSpec


class FakeEntryPoint:
    def __init__(self, name, target, value="labdriver.bench:make"):
        self.name, self.value, self._target = name, value, target

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def _bench(seed: int = 0, n_in: int = 3):
    dev = LinearDevice(n_in, 2)
    dev.seed = seed
    return dev


@pytest.fixture
def registered(monkeypatch):
    eps = {
        "bench-7": FakeEntryPoint("bench-7", _bench),
        "broken": FakeEntryPoint("broken", ImportError("no module named labdriver")),
        "mzi": FakeEntryPoint("mzi", _bench),  # cannot take over a built-in name
    }
    monkeypatch.setattr(reg, "_entry_points", lambda: eps)
    return eps


def test_entry_point_devices_work_by_name(registered):
    dev = reg.make_device("bench-7", seed=4, kwargs={"n_in": 5})
    assert isinstance(dev, LinearDevice) and dev.seed == 4 and dev.input_shape == (5,)
    spec = DeviceSpec(name="bench-7", seed=2)
    assert spec.build().seed == 2 and not spec.builtin
    assert reg.lookup("mzi").__name__ == "MZIMesh"
    names = reg.registered()
    assert "bench-7" in names and "broken" not in names and "crossbar" in names
    with pytest.raises(ConfigError, match=r"'broken'.*does not load: ImportError"):
        reg.lookup("broken")
    with pytest.raises(ConfigError, match=r"unknown device 'nope'; known: .*'bench-7'"):
        DeviceSpec(name="nope")


def test_blacksat_devices_lists_controls_shapes_and_perturbation_models(registered, capsys):
    assert main(["devices", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bench-7"]["controls"] == 6 and info["bench-7"]["input_shape"] == [3]
    assert info["crossbar"]["reprograms_on_query"] is True
    assert set(info["crossbar"]["perturbation_models"]) == {"age", "programming", "variation"}
    assert main(["devices"]) == 0
    text = capsys.readouterr().out
    assert "bench-7" in text and "re-programs on every query" in text


def test_factories_and_instances():
    dev = LinearDevice()
    assert reg.make_device(dev) is dev
    with pytest.raises(ConfigError, match="cannot be given with a device instance"):
        reg.make_device(dev, kwargs={"n_in": 2})
    with pytest.raises(ConfigError, match="must be a Device"):
        reg.make_device(lambda: object())
    assert reg.accepts(_bench, "seed") and not reg.accepts(LinearDevice, "seed")
    with pytest.raises(ConfigError, match=r"'package\.module:callable'"):
        reg.load_factory("a:b:c")
