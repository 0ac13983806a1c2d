"""TOML in and out for configuration files: reading with clear errors, writing plain tables, and
checking the keys and value types of a table against a dataclass's fields.

Every problem is a :class:`~blacksat.errors.ConfigError` that names the key (``section.key``)
and says what was expected and what came.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from blacksat.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


# ---------------------------------------------------------------------- TOML in and out
def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a missing file or a syntax error is a :class:`ConfigError`."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file not found: {str(p)!r}")
    if not p.is_file():
        raise ConfigError(f"{str(p)!r} is not a config file (a directory?)")
    try:
        with open(p, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{str(p)!r} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{str(p)!r} is not valid TOML (not UTF-8 text): {exc}") from None


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, everything
    else (any Unicode) written as is."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    if isinstance(value, Mapping):
        items = [
            f"{_toml_key(str(k))} = {_toml_value(v, f'{where}.{k}')}"
            for k, v in value.items()
            if v is not None
        ]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise ConfigError(f"{where}: {type(value).__name__} values cannot be written to TOML")


def dump_toml(data: Mapping[str, Mapping[str, Any]]) -> str:
    """Tables of plain values (numbers, strings, booleans, lists, nested tables) as TOML text;
    ``None`` values are left out (TOML has no null: a missing key means the default)."""
    lines: list[str] = []
    for section, table in data.items():
        if lines:
            lines.append("")
        lines.append(f"[{_toml_key(section)}]")
        for key, value in table.items():
            if value is not None:
                lines.append(f"{_toml_key(key)} = {_toml_value(value, f'{section}.{key}')}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- typed mappings
def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (Mapping, dict) or hint in (Mapping, dict):
        return isinstance(value, Mapping)
    if origin is Callable or hint is Callable:
        return callable(value)
    return isinstance(hint, type) and isinstance(value, hint)


def _expected(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_expected(a) for a in typing.get_args(hint) if a is not type(None)]
        parts = [p for p in parts if p]
        return " or ".join(dict.fromkeys(parts))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is Callable or hint is Callable:
        return ""  # never from a file
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if origin in (Mapping, dict) or hint in (Mapping, dict):
        return "a table"
    return getattr(hint, "__name__", str(hint))


def _wants_float(hint: Any) -> bool:
    if hint is float:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        return float in args and int not in args
    return False


def typed_fields(cls: type, data: Any, section: str) -> dict[str, Any]:
    """Check a mapping read from a file against the fields of dataclass ``cls``: unknown keys
    and values of the wrong type raise :class:`ConfigError` naming ``section.key``; integers
    given for float fields become floats. Returns the keyword arguments of ``cls``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{section} must be a table, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"unknown key {section}.{key}; expected one of {names}")
        hint = hints[key]
        if not _matches(value, hint):
            raise ConfigError(
                f"{section}.{key} must be {_expected(hint)}, got {type(value).__name__} {value!r}"
            )
        out[key] = float(value) if _wants_float(hint) and not isinstance(value, bool) else value
    return out


__all__ = ["dump_toml", "load_toml", "typed_fields"]
