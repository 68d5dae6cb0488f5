"""The cold tier's row checksum: independent of order and chunking, recomputable without
tickvault from its documented definition, and the old format still computed for old log rows."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from decimal import Decimal
from typing import Any

import pyarrow as pa

from tickvault.archive import table

COLUMNS = (
    table.Column("symbol", "text"),
    table.Column("open_time", "time"),
    table.Column("close", "decimal"),
    table.Column("trades", "bigint"),
    table.Column("closed", "bool"),
)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def rows(n: int) -> pa.Table:
    rng = random.Random(3)
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    data: dict[str, list[Any]] = {
        "symbol": [f"S{i % 7}\x1fé" if i % 11 else None for i in range(n)],
        "open_time": [at + dt.timedelta(minutes=i) for i in range(n)],
        "close": [Decimal(rng.randint(0, 10**12)).scaleb(-rng.randint(0, 18)) for _ in range(n)],
        "trades": [rng.randint(-(2**40), 2**40) if i % 5 else None for i in range(n)],
        "closed": [i % 3 == 0 for i in range(n)],
    }
    return pa.table(data, schema=table.arrow_schema(COLUMNS))


def old_text(value: Any) -> str:
    """A value's canonical text in the format before sha256."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return str((value - EPOCH) // dt.timedelta(microseconds=1))
    if isinstance(value, Decimal):
        return str(pa.array([value], pa.decimal128(38, 18)).cast(pa.string())[0])
    return str(value)


def column_bytes(values: list[Any], kind: pa.DataType) -> bytes:
    """One column as the checksum's docstring describes it, in plain Python."""
    out = bytes(0 if v is None else 1 for v in values)
    if pa.types.is_string(kind):
        texts = [(v or "").encode() for v in values]
        return out + b"".join(len(t).to_bytes(8, "little") for t in texts) + b"".join(texts)
    for v in values:
        if pa.types.is_boolean(kind):
            out += bytes([1 if v else 0])
        elif pa.types.is_decimal(kind):
            out += (0 if v is None else int(v.scaleb(18))).to_bytes(16, "little", signed=True)
        elif pa.types.is_timestamp(kind):
            out += (0 if v is None else (v - EPOCH) // dt.timedelta(microseconds=1)).to_bytes(
                8, "little", signed=True
            )
        else:
            out += (v or 0).to_bytes(8, "little", signed=True)
    return out


def test_checksum_is_the_documented_sha256_of_the_sorted_columns() -> None:
    data = rows(500)
    names = data.column_names
    ordered = sorted(
        data.to_pylist(), key=lambda r: tuple((r[n] is None, 0 if r[n] is None else r[n]) for n in names)
    )
    digest = hashlib.sha256()
    for field in data.schema:
        digest.update(column_bytes([r[field.name] for r in ordered], field.type))
    assert table.checksum(data) == "sha256:" + digest.hexdigest()


def test_checksum_ignores_order_chunks_and_slices_but_not_content() -> None:
    data = rows(2000)
    want = table.checksum(data)
    order = list(range(data.num_rows))
    random.Random(5).shuffle(order)
    shuffled = data.take(pa.array(order))
    assert table.checksum(pa.Table.from_batches(shuffled.to_batches(max_chunksize=97))) == want
    assert table.checksum(pa.concat_tables([data.slice(1500), data.slice(3, 1497), data.slice(0, 3)])) == want
    assert table.checksum(data.slice(1)) != want
    assert table.checksum(pa.concat_tables([data, data.slice(7, 1)])) != want  # a duplicate counts
    changed = data.set_column(3, "trades", pa.array([1] * data.num_rows, pa.int64()))
    assert table.checksum(changed) != want
    assert table.checksum(data.slice(0, 0)) == "sha256:" + hashlib.sha256(b"").hexdigest()


def test_checksum_like_keeps_the_old_format_for_ranges_rolled_before_it() -> None:
    data = rows(300)
    total = sum(
        int.from_bytes(hashlib.blake2b(t, digest_size=8).digest(), "big")
        for t in ("\x1f".join(old_text(v) for v in r.values()).encode() for r in data.to_pylist())
    )
    old = f"{total % 2**64:016x}"
    assert table.checksum_like(data, old) == old
    assert table.checksum_like(data, table.checksum(data)) == table.checksum(data)
    assert table.checksum_like(data.slice(1), old) != old
