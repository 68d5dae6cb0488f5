"""Decimals and timestamps round-trip exactly: published, stored, read back through `Vault`.

Each example publishes a batch of generated messages of every kind (tests/properties.py:
decimals of every scale and form within decimal(38, 18), times as epoch milliseconds or
ISO-8601 with offsets, at the edges of their window) and writes them the daemon's way (its
codec, fast path included, then `Store.write`) or through `Vault.save_*`. Read back through
`Vault`, every decimal equals the text sent and every time the instant sent:
- from PostgreSQL, with windows at both ends of the range (1970-01-01, 9999-12-31);
- from the cold tier (Parquet under Iceberg), after a roll of every partition written (each
  example rolls 1970-01-01 again, merging into the cold files of the examples before).
Each example uses an exchange (and ids) of its own, so examples share the schema; signal
metadata and bot state come back equal as JSON (numbers by value).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.helpers import TestEnv
from tests.properties import examples, published_decimal, published_time
from tests.property_messages import Message, messages
from tickvault.archive import roller
from tickvault.codecs import native
from tickvault.decimals import text
from tickvault.settings import Settings
from tickvault.store import Store, migrate
from tickvault.timestamps import EPOCH, MAX_TIME
from tickvault.vault import Vault

DAY: Final = dt.timedelta(days=1)
# PostgreSQL windows: both ends of the range, and today's neighbourhood
WINDOWS: Final = (
    (EPOCH, EPOCH + 2 * DAY),
    (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 3, tzinfo=dt.UTC)),
    (MAX_TIME - 2 * DAY, MAX_TIME),
)
TIME_KINDS: Final = ("kline", "order", "fill", "balance", "signal", "trade")
SAVE: Final = {
    "kline": "save_klines", "order": "save_orders", "fill": "save_fills", "balance": "save_balances",
    "signal": "save_signals", "trade": "save_trades",
}  # fmt: skip
_examples = itertools.count()  # each example's exchange and ids: e<n>


@dataclass
class Stores:
    settings: Settings
    store: Store
    vault: Vault


@pytest.fixture
async def stores(env: TestEnv, tmp_path: Path) -> AsyncIterator[Stores]:
    settings = env.settings(
        postgres={"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0},
        source={"min_epoch_ms": 0},
        state={"cache": False},
        archive={"root": str(tmp_path / "cold")},
    )
    await migrate.upgrade(settings.postgres)
    async with Store(settings.postgres, writer=True) as store, Vault.connect(settings) as vault:
        yield Stores(settings, store, vault)


def keyed(message: Message, n: int, i: int) -> Message:
    """The message with ids that are its own: exchange `e<n>`, symbol, ids and asset `…<i>`."""
    fields = message.fields
    ids = {"exchange": f"e{n}", "symbol": f"S{i}", "fill_id": f"F{i}", "trade_id": f"T{i}",
           "order_id": f"O{i}", "asset": f"A{i}", "bot_id": f"b{n}x{i}", "interval": "1m"}  # fmt: skip
    for name, value in ids.items():
        if name in fields or (name in ("exchange", "symbol", "bot_id") and message.kind != "bot_state"):
            fields[name] = json.dumps(value)
    if message.kind == "bot_state":
        fields.pop("exchange", None)
        fields.pop("symbol", None)
    return message


async def write(stores: Stores, batch: Sequence[Message], through_vault: bool) -> None:
    """Write `batch` the daemon's way (codec, then Store.write) or through Vault.save_*."""
    decode = native.codec(0)
    for kind in sorted({m.kind for m in batch}):
        payloads = [m.payload() for m in batch if m.kind == kind]
        if through_vault and kind in SAVE:
            items = [json.loads(p, parse_float=Decimal) for p in payloads]
            assert await getattr(stores.vault, SAVE[kind])(items) >= len(items)
            continue
        decoded = [decode(p, kind) for p in payloads]
        result = await stores.store.write(kind, decoded, [f"1\t{i}" for i in range(len(decoded))])  # type: ignore[arg-type]
        assert not result.rejected


KEYS: Final = {
    "kline": "symbol", "fill": "fill_id", "trade": "trade_id", "balance": "asset", "signal": "symbol",
    "order": "order_id", "bot_state": "bot_id",
}  # fmt: skip


async def read_back(vault: Vault, n: int, batch: Sequence[Message], cold: bool = False) -> dict[str, Any]:
    """Every row of example `n` by kind and key (the id keyed() gave it): {column: value}."""
    exchange = f"e{n}"
    symbols = [json.loads(m.fields["symbol"]) for m in batch if m.kind == "kline"]
    tables = [
        ("kline", await vault.klines(exchange, interval="1m", symbols=symbols) if symbols else None),
        ("fill", await vault.fills(exchange)),
        ("trade", await vault.trades(exchange)),
        ("balance", await vault.balances(exchange=exchange)),
        ("signal", await vault.signals(exchange=exchange)),
    ]
    orders = [json.loads(m.fields["order_id"]) for m in batch if m.kind == "order"]
    if cold:  # the orders table stays hot; their history rolls
        tables += [("order", await vault.order_history(exchange, order_id)) for order_id in orders]
    else:
        tables.append(("order", await vault.orders(exchange)))
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, table in tables:
        for row in table.to_pylist() if table is not None else []:
            rows[kind, row[KEYS[kind]]] = row
    for m in batch:
        if m.kind == "bot_state":
            bot_id = json.loads(m.fields["bot_id"])
            state = await vault.load_bot_state(bot_id)
            assert state is not None
            rows["bot_state", bot_id] = {"ts": state.ts, "state": state.state}
    return rows


def check(rows: dict[tuple[str, str], dict[str, Any]], batch: Sequence[Message]) -> None:
    """Each message's decimals equal the text sent, its times the instant sent."""
    for m in batch:
        row = rows[m.kind, json.loads(m.fields[KEYS[m.kind]])]
        for name, value in m.decimals.items():
            assert row[name] == value == published_decimal(m.fields[name]), (m.kind, name, row[name], value)
            assert text(row[name]) == text(value)
        for name, instant in m.times.items():
            assert row[name] == instant == published_time(m.fields[name]), (m.kind, name)
            assert row[name].utcoffset() == dt.timedelta(0)
        if m.kind == "bot_state":
            assert row["state"] == json.loads(m.fields["state"], parse_float=Decimal)
        if "metadata" in m.fields:  # a signal's, as JSON text: numbers equal by value
            sent = json.loads(m.fields["metadata"], parse_float=Decimal)
            assert json.loads(row["metadata"], parse_float=Decimal) == sent


@st.composite
def batches(
    draw: st.DrawFn, windows: Sequence[tuple[dt.datetime, dt.datetime]], kinds: tuple[str, ...]
) -> list[Message]:
    lowest, highest = draw(st.sampled_from(windows))
    batch = draw(st.lists(messages(kinds, lowest, highest, min_epoch_ms=0), min_size=1, max_size=30))
    return batch


# 38 digits and zeros past the 18th decimal: accepted (it fits decimal(38, 18)) and stored with
# that scale, it could not be read back (nor rolled): PostgreSQL's text of it overflowed Arrow's
# decimal128(38, 18)
LONG_ZEROS: Final = Message(
    "fill",
    {"fill_id": '"f"', "order_id": '"o"', "exchange": '"x"', "symbol": '"s"', "side": '"buy"',
     "quantity": '"1"', "price": '"99999999999999999999.9998' + "0" * 29 + '"', "ts": "1767225600000"},
    {"quantity": Decimal(1), "price": Decimal("99999999999999999999.9998")},
    {"ts": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
)  # fmt: skip


@examples(15)
@given(batches(WINDOWS, (*TIME_KINDS, "bot_state")), st.booleans())
@example(batch=[LONG_ZEROS], through_vault=False)
@example(batch=[LONG_ZEROS], through_vault=True)
async def test_decimals_and_times_round_trip_through_postgresql(
    stores: Stores, batch: list[Message], through_vault: bool
) -> None:
    n = next(_examples)
    batch = [keyed(m, n, i) for i, m in enumerate(batch)]
    await write(stores, batch, through_vault)
    check(await read_back(stores.vault, n, batch), batch)


# the cold examples' day: the first of the range, its edges included. Each example writes it
# again and rolls it, so the roll merges the new rows into the cold files of the ones before
COLD_DAY: Final = (EPOCH, EPOCH + DAY - dt.timedelta(microseconds=1))


@pytest.mark.timeout(1200)  # the long profile's 40 rolls (each sweeps a cold table that grows)
@examples(4, long=40)
@given(st.data(), st.booleans())
async def test_decimals_and_times_round_trip_through_the_cold_tier(
    env: TestEnv, stores: Stores, data: st.DataObject, through_vault: bool
) -> None:
    n, start = next(_examples), COLD_DAY[0]
    long_zeros = Message(
        "fill", {**LONG_ZEROS.fields, "ts": json.dumps(start.isoformat())}, LONG_ZEROS.decimals, {"ts": start}
    )
    batch = [long_zeros, *data.draw(batches([COLD_DAY], TIME_KINDS))]
    batch = [keyed(m, n, i) for i, m in enumerate(batch)]
    await write(stores, batch, through_vault)
    outcomes = await roller.roll(stores.settings, older_than_s=0)
    assert outcomes is not None and {o.status for o in outcomes} <= {"rolled"}
    for table in ("klines", "fills", "trades", "balances", "signals", "order_events"):
        hot = await env.fetch(f"SELECT count(*) FROM {{s}}.{table} WHERE exchange = $1", f"e{n}")  # noqa: S608
        assert hot[0][0] == 0, table  # the example's day is cold only
    check(await read_back(stores.vault, n, batch, cold=True), batch)
