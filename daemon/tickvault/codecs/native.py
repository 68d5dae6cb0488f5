"""The native codec: one JSON object per message, as described in DESIGN.md.

`decode` validates with the pydantic models; `decode_item`, the pipeline's entry, first
tries the hand-written hot path in `fast` for klines and fills. `min_epoch_ms` is the floor
below which an integer timestamp is refused as likely epoch seconds (`source.min_epoch_ms`;
see `records.parse_timestamp`); `codec(min_epoch_ms)` gives a `decode_item` with it bound.

JSON numbers are parsed as `Decimal` (never float) so quantities round-trip exactly;
NaN and Infinity literals are refused at parse time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from pydantic import ValidationError

from tickvault.codecs import fast
from tickvault.errors import ConfigError, RecordError
from tickvault.records import KINDS, MAX_STATE_BYTES, RECORD_TYPES, Record
from tickvault.rows import Item, to_item
from tickvault.timestamps import MIN_EPOCH_MS


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not allowed")


def parse_json(payload: bytes) -> Any:
    """Parse JSON bytes exactly: UTF-8 only, numbers as Decimal, no NaN/Infinity."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(
            f"payload is not valid UTF-8 ({exc.reason} at byte {exc.start})", "not_utf8"
        ) from None
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise RecordError(f"invalid JSON: {exc}", "invalid_json") from None
    except RecursionError:
        raise RecordError("invalid JSON: nested too deeply", "invalid_json") from None


def validation_reason(exc: ValidationError) -> str:
    """One line naming each failing field and why, without echoing the input."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(p) for p in error["loc"]) or "message"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


def to_record(
    obj: Any,
    default_kind: str | None,
    min_epoch_ms: int = MIN_EPOCH_MS,
    max_state_bytes: int = MAX_STATE_BYTES,
) -> Record:
    """Validate one decoded JSON value as the record its `kind` (or the topic's kind) names;
    a bot state's JSON text may take at most `max_state_bytes` (state.max_bytes)."""
    if not isinstance(obj, dict):
        raise RecordError(f"message is a JSON {type(obj).__name__}, not an object", "not_object")
    kind = obj.get("kind", default_kind)
    if kind is None:
        raise RecordError("message has no 'kind' and its topic has no kind configured", "unknown_kind")
    record_type = RECORD_TYPES.get(kind) if isinstance(kind, str) else None
    if record_type is None:
        raise RecordError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})", "unknown_kind")
    try:
        context = {"min_epoch_ms": min_epoch_ms, "max_state_bytes": max_state_bytes}
        return record_type.model_validate(obj, context=context)
    except ValidationError as exc:
        raise RecordError(f"invalid {kind}: {validation_reason(exc)}", "invalid") from None


def decode(
    payload: bytes,
    default_kind: str | None,
    min_epoch_ms: int = MIN_EPOCH_MS,
    max_state_bytes: int = MAX_STATE_BYTES,
) -> Record:
    """The record a payload holds, validated by its pydantic model."""
    return to_record(parse_json(payload), default_kind, min_epoch_ms, max_state_bytes)


def codec(
    min_epoch_ms: int = MIN_EPOCH_MS, max_state_bytes: int = MAX_STATE_BYTES
) -> Callable[[bytes, str | None], Item]:
    """The pipeline's decoder, `decode_item`, with its floor of integer timestamps and its
    limit on bot states bound (a closure rather than a wrapper: one call less per message)."""

    def decode_item(payload: bytes, default_kind: str | None) -> Item:
        """What the pipeline batches: the fast path's row, else the model's (see `fast`)."""
        row = fast.decode(payload, default_kind, min_epoch_ms)
        if row is not None:
            return row
        return to_item(decode(payload, default_kind, min_epoch_ms, max_state_bytes))

    return decode_item


decode_item: Final = codec()  # with the default floor


def to_records(
    kind: str, items: Iterable[Mapping[str, Any] | Record], min_epoch_ms: int = MIN_EPOCH_MS
) -> list[Record]:
    """Items a caller hands over (dicts shaped like messages, or records) as records of
    `kind`, validated as messages are. Raises RecordError naming the first bad item's index
    (`item 1: invalid kline: …`), ConfigError for an unknown kind."""
    if kind not in RECORD_TYPES:
        raise ConfigError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    record_type = RECORD_TYPES[kind]
    records: list[Record] = []
    for i, item in enumerate(items):
        if isinstance(item, record_type):
            records.append(item)
            continue
        if not isinstance(item, Mapping):
            raise RecordError(f"item {i}: a {type(item).__name__}, not a {kind} or a mapping", "invalid")
        try:
            record = to_record(dict(item), kind, min_epoch_ms)
        except RecordError as exc:
            raise RecordError(f"item {i}: {exc.reason}", exc.category) from None
        if kind != record.KIND:
            raise RecordError(f"item {i}: a {record.KIND}, not a {kind}", "unknown_kind")
        records.append(record)
    return records
