"""The arguments of reads: time bounds, windows, limits and symbol lists, checked once for
`Vault`, the sync facade and the CLI. Bad values raise ConfigError with the reason."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Final

from tickvault.errors import ConfigError
from tickvault.timestamps import parse_timestamp

DEFAULT_LIMIT: Final = 10_000


def parse_time(value: dt.datetime | int | str) -> dt.datetime:
    """A bound as UTC: an aware datetime, epoch ms (int or digits) or ISO-8601 with an offset.

    Raises ValueError with the reason.
    """
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)  # epoch milliseconds, as the CLI passes them
    return parse_timestamp(value)


def bound(value: dt.datetime | int | str | None, name: str) -> dt.datetime | None:
    """`parse_time` of an optional bound; ConfigError naming the bound (`name`) if bad."""
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        shown = f" {value!r}" if isinstance(value, str | int) else ""
        raise ConfigError(f"{name}{shown}: {exc}") from None


def window(
    start: dt.datetime | int | str | None, end: dt.datetime | int | str | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """[start, end) as UTC datetimes; ConfigError if one is bad or end is not after start."""
    lower, upper = bound(start, "start"), bound(end, "end")
    if lower is not None and upper is not None and upper <= lower:
        raise ConfigError(f"end {iso(upper)} is not after start {iso(lower)}")
    return lower, upper


def iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def limit_of(limit: int | None) -> int:
    """A positive integer limit (None: DEFAULT_LIMIT); ConfigError otherwise."""
    if limit is None:
        return DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a positive integer, got {limit!r}")
    return limit


def symbols_of(symbol: str | None, symbols: Sequence[str] | None) -> str | list[str]:
    """One symbol, or a non-empty list of them; ConfigError when both or neither is given."""
    if symbols is None:
        if not symbol:
            raise ConfigError("give a symbol, or symbols=[...]")
        return symbol
    if symbol:
        raise ConfigError("give either symbol or symbols=[...], not both")
    if isinstance(symbols, str) or not symbols or not all(isinstance(x, str) and x for x in symbols):
        raise ConfigError(f"symbols must be a non-empty list of symbols, got {symbols!r}")
    return list(dict.fromkeys(symbols))
