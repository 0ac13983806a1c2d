"""The package's dependency rules, read from the source with ``ast``: no import cycles among
blacksat's modules (every import counts, also one inside a function; ``if TYPE_CHECKING:``
blocks do not), and only the product layer imports a concrete device."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import blacksat
import blacksat.devices
import blacksat.surrogates

#: the product layer (CLI, demo, compare, run files, calibrate and serve commands, the device
#: registry): the only package that knows the names of concrete devices
PRODUCT = "blacksat.product"
#: the layers on top of the core: they may import the core, the core never imports them, and
#: only the product imports the product
LAYERS = ("blacksat.product", "blacksat.ng", "blacksat.baselines", "blacksat.remote")
#: modules of blacksat.devices that are infrastructure, not a concrete device
DEVICE_INFRASTRUCTURE = ("blacksat.devices", "blacksat.devices.base", "blacksat.devices.tasks")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in (blacksat, blacksat.devices, blacksat.surrogates):
        root = Path(pkg.__file__).parent
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg.__name__, *parts])] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path) -> set[str]:
    """The blacksat modules ``name`` imports (at any depth, TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:  # `from pkg import module` depends on the module only
                sub = f"{base}.{a.name}"
                found.add(sub if sub in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out = set()
    for mod in found:
        while mod and mod not in MODULES:
            mod = mod.rpartition(".")[0]
        if mod and mod != name:
            out.add(mod)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_module_list_is_complete():
    assert "blacksat.sat" in MODULES and "blacksat.devices.mzi" in MODULES
    assert "blacksat.surrogates.base" in MODULES
    assert "blacksat.product.cli" in MODULES and "blacksat.ng.adapter" in MODULES


def test_there_are_no_import_cycles():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    cycles = _cycles(graph)
    assert cycles == [], "modules importing each other: " + "; ".join(map(str, cycles))


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]] and _cycles({"a": {"b"}, "b": set()}) == []


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_only_the_product_layer_imports_a_device():
    """Outside the product, nothing in blacksat imports blacksat.devices (its registry names
    every concrete device) or a concrete device; surrogates and devices import no device but
    their own family's infrastructure."""
    concrete = {
        m for m in MODULES if m.startswith("blacksat.devices.") and m not in DEVICE_INFRASTRUCTURE
    }
    offenders = {}
    for name, path in MODULES.items():
        if _in(name, PRODUCT):
            continue
        imports = _imports(name, path)
        if _in(name, "blacksat.devices") or _in(name, "blacksat.surrogates"):
            bad = imports & concrete if _in(name, "blacksat.surrogates") else set()
        else:
            bad = {m for m in imports if _in(m, "blacksat.devices")}
        if bad:
            offenders[name] = sorted(bad)
    assert offenders == {}


def test_the_core_imports_no_layer_and_no_layer_imports_the_product():
    offenders = {}
    for name, path in MODULES.items():
        imports = _imports(name, path)
        if _in(name, PRODUCT):
            continue
        own = next((layer for layer in LAYERS if _in(name, layer)), None)
        banned = LAYERS if own is None else (PRODUCT,)
        bad = {m for m in imports if any(_in(m, b) for b in banned) and not _in(m, own or "-")}
        if bad:
            offenders[name] = sorted(bad)
    assert offenders == {}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from blacksat.sat import sat\n", {"blacksat.sat"}),
        ("if TYPE_CHECKING:\n    from blacksat.sat import sat\n", set()),
        ("def f():\n    import blacksat.devices.mzi\n", {"blacksat.devices.mzi"}),
    ],
)
def test_the_import_reader(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert _imports("blacksat.somewhere", path) == expected
