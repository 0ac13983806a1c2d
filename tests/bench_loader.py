"""Load a benchmark script (``benchmarks/<file>``) as a module for its tests."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load_bench(filename: str, name: str) -> ModuleType:
    """``benchmarks/<filename>`` imported under ``name`` (registered in ``sys.modules``, so its
    dataclasses and pickled callables resolve), with ``benchmarks/`` on the path for its
    ``_report`` / ``_study`` imports."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / filename)
    assert spec is not None and spec.loader is not None, filename
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class SavedRows:
    """A stand-in for a study in a section test: its saved ``rows()`` and a plain header."""

    def __init__(self, rows: list[dict], name: str = "study") -> None:
        self._rows, self.name = rows, name

    def rows(self) -> list[dict]:
        return self._rows

    def header(self, command: str, what: str = "") -> str:
        return f"Command: `{command}`. {what}"
