"""What the feed codecs (cryptofeed, binance) share: a message mapped onto tickvault's field
names is validated by the same pydantic models as a native message. No I/O.

A mapping function reads the feed's fields and raises `Unmappable` (a ValueError) naming the
feed's field when one is missing or cannot be read; `record` turns the mapped fields into an
Item, or a RecordError whose reason starts with what was decoded (e.g. "cryptofeed candles").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Final

from tickvault.codecs.native import to_record
from tickvault.errors import RecordError
from tickvault.records import RECORD_TYPES
from tickvault.rows import Item, to_item
from tickvault.timestamps import EPOCH, MAX_TIME, TIME_RANGE

_MICROSECOND: Final = Decimal("0.000001")
_MAX_EPOCH_US: Final = (MAX_TIME - EPOCH) // dt.timedelta(microseconds=1)  # exact, unlike total_seconds()


class Unmappable(ValueError):
    """A feed field is missing or of a form the mapping cannot read; the message names it."""


def required(data: Mapping[str, Any], name: str) -> Any:
    """`data[name]`; Unmappable when it is missing or null."""
    value = data.get(name)
    if value is None:
        raise Unmappable(f"{name}: missing")
    return value


def epoch_seconds(value: Any, name: str) -> dt.datetime:
    """Epoch seconds (an int, a Decimal parsed from a JSON number, or a string holding a
    number) → aware UTC datetime, rounded half-even to the microsecond PostgreSQL keeps.
    Exact: the number's decimal text is never turned into a float."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise Unmappable(f"{name}: epoch seconds must be a number, not {type(value).__name__}")
    try:
        seconds = value if isinstance(value, Decimal) else Decimal(value)
    except InvalidOperation:
        raise Unmappable(f"{name}: {value!r} is not a number of epoch seconds") from None
    # the range is checked on the rounded value: 253402300799.9999995 rounds past the end
    micros = None
    if seconds.is_finite() and 0 <= seconds <= _MAX_EPOCH_US:  # a coarse bound before quantize
        micros = int(seconds.quantize(_MICROSECOND, rounding=ROUND_HALF_EVEN).scaleb(6))
    if micros is None or micros > _MAX_EPOCH_US:
        raise Unmappable(f"{name}: epoch seconds outside {TIME_RANGE}")
    return EPOCH + dt.timedelta(microseconds=micros)


def record(fields: dict[str, Any], kind: str, min_epoch_ms: int, what: str) -> Item:
    """Validate mapped `fields` as a record of `kind`. RecordError: the reason is prefixed
    with `what`; `unknown_kind` when this tickvault has no such kind."""
    if kind not in RECORD_TYPES:
        raise RecordError(f"{what}: this tickvault has no {kind!r} kind to store it as", "unknown_kind")
    fields["kind"] = kind
    try:
        return to_item(to_record(fields, None, min_epoch_ms))
    except RecordError as exc:
        raise RecordError(f"{what}: {exc.reason}", exc.category) from None
