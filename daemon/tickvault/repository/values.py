"""What the repositories accept as names and JSON, checked before anything is stored.

Names. Model names and versions, aliases, config names, strategy names, run ids and
artifact names all match NAME_PATTERN, the OCI distribution spec's tag pattern
(`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`, github.com/opencontainers/distribution-spec,
"Pulling manifests"): 1 to 128 ASCII letters, digits, `_`, `.` and `-`, not starting with
`.` or `-`. So no name is a path (`/`, `..` alone, an absolute path), carries a NUL or a
control character, or grows without bound. Blobs are stored by checksum, never by name: a
name is a registry key and, in a package, the member name after a fixed directory.

JSON (config documents, metadata, metrics). An object of str keys and JSON values: str,
int, bool, None, finite float or Decimal, lists, objects; nested at most MAX_DEPTH deep.
A Decimal's leading digit lies within 10^±MAX_EXPONENT (`1E+999999999` would otherwise be
written out as a billion digits before any size limit could refuse it).
Its canonical text (`canonical_json`) has sorted keys, no spaces and numbers in
tickvault's canonical decimal form (tickvault.decimals: floats by their shortest repr,
trailing zeros removed, positional), so equal documents have equal text and sha256.
Read back (`parse_json`), numbers are int or canonical Decimal, as in bot state.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from tickvault.decimals import canonical
from tickvault.errors import ConfigError
from tickvault.records import dump_json

NAME_PATTERN: Final = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MAX_DEPTH: Final = 64
MAX_EXPONENT: Final = 1000  # |Decimal.adjusted()|: at most ~1000 digits beyond those given
SHA256_PATTERN: Final = re.compile(r"[0-9a-f]{64}")


def check_name(value: object, what: str) -> str:
    """`value` if it matches NAME_PATTERN; else ConfigError saying what is wrong with `what`."""
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, not {type(value).__name__}")
    if NAME_PATTERN.fullmatch(value) is None:
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise ConfigError(
            f"invalid {what} {shown!r}: use 1 to 128 of a-z A-Z 0-9 _ . - not starting with . or -"
        )
    return value


def check_version(value: object) -> int:
    """A config version: an int >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"invalid config version {value!r}: must be an integer >= 1")
    return value


def _normal(node: Any, path: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise ConfigError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, Mapping):
        out = {}
        for key in sorted(node, key=lambda k: str(k)):
            if not isinstance(key, str):
                raise ConfigError(f"{path}: key {key!r} is not a string")
            out[key] = _normal(node[key], f"{path}.{key}", depth + 1)
        return out
    if isinstance(node, list | tuple):
        return [_normal(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node)]
    if isinstance(node, float | Decimal):
        return _number(node, path)
    if node is None or isinstance(node, str | int):
        return node
    raise ConfigError(f"{path}: {type(node).__name__} is not a JSON value")


def _number(node: float | Decimal, path: str) -> int | Decimal:
    """A finite number in canonical form: an int when it is whole, else a canonical Decimal."""
    finite = math.isfinite(node) if isinstance(node, float) else node.is_finite()
    if not finite:
        raise ConfigError(f"{path}: non-finite number {node} (NaN and Infinity are refused)")
    if isinstance(node, Decimal) and node and abs(node.adjusted()) > MAX_EXPONENT:
        raise ConfigError(f"{path}: number {node} is out of range (exponent beyond ±{MAX_EXPONENT})")
    value = canonical(Decimal(repr(node)) if isinstance(node, float) else node)
    return int(value) if value.as_tuple().exponent == 0 else value


def canonical_json(document: object, what: str) -> str:
    """The canonical text of a JSON object (see the module docstring). ConfigError names
    the first bad value by its path, e.g. `config.risk.stop: non-finite number nan`."""
    if not isinstance(document, Mapping):
        raise ConfigError(f"{what} must be a JSON object (a dict), not {type(document).__name__}")
    return dump_json(_normal(document, what, 1))


def canonical_metrics(metrics: object, what: str = "metrics") -> str:
    """`canonical_json` of a flat object of numbers (int, float, Decimal; not bool), e.g.
    {"sharpe": 1.9, "max_drawdown": Decimal("0.12")}."""
    text = canonical_json(metrics, what)
    assert isinstance(metrics, Mapping)
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise ConfigError(f"{what}.{key}: must be a number, not {type(value).__name__}")
    return text


def parse_json(text: str) -> Any:
    """Stored canonical JSON back to Python: numbers int or canonical Decimal."""
    return json.loads(text, parse_float=lambda t: canonical(Decimal(t)))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
