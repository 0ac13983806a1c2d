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
