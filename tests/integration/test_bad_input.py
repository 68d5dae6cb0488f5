"""Bad input ends in dead_letters with a clear reason; the good messages around it land.

Every bad message is published between good ones, on the per-kind streams and on the
"mixed" stream whose messages carry "kind". Each dead letter is checked by its stream
entry id: category, reason, raw payload bytes, stream and kind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.helpers import SOURCES, Daemon, TestEnv, free_port, sample, scrape
from tickvault.record_schemas import EXAMPLES
from tickvault.settings import Settings
from tickvault.store import DeadLetter, Store, migrate

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MAX_MESSAGE_BYTES = 1_048_576
TEN_MB = 10 * 1024 * 1024


BOTH_SOURCES = pytest.mark.parametrize("source", SOURCES, indirect=True)


# --- message builders -------------------------------------------------------------------


def kline(i: int, **changes: Any) -> dict[str, Any]:
    open_ms = T0_MS + i * 60_000
    return {
        **EXAMPLES["kline"],
        "open_time": open_ms,
        "close_time": open_ms + 59_999,
        "close": f"87055.{i:02d}",
        "volume": f"1.{i:03d}",
        **changes,
    }


def order(i: int, **changes: Any) -> dict[str, Any]:
    return {**EXAMPLES["order"], "order_id": f"o-{i}", "client_order_id": f"c-{i}", **changes}


def fill(i: int, **changes: Any) -> dict[str, Any]:
    return {**EXAMPLES["fill"], "fill_id": f"f-{i}", "ts": T0_MS + i, **changes}


def bot_state(i: int, **changes: Any) -> dict[str, Any]:
    return {"bot_id": f"bot-{i}", "ts": T0_MS + i, "seq": i, "state": {"i": i, "note": f"n{i}"}, **changes}


def without(obj: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != key}


def js(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def padded_kline(size: int) -> bytes:
    """A valid kline, padded with an unknown field to exactly `size` bytes."""
    head = js(kline(99))[:-1] + b', "pad": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


@dataclass(frozen=True)
class Bad:
    stream: str  # test stream suffix: kline, order, fill, bot_state, mixed
    payload: bytes
    category: str
    reason: tuple[str, ...]  # fragments the reason must contain


BAD: tuple[Bad, ...] = (
    # kline stream
    Bad("kline", b'{"exchange": "binance", "symbol": ', "invalid_json", ("invalid JSON",)),
    Bad("kline", b"", "invalid_json", ("invalid JSON",)),
    Bad("kline", js(kline(0)).replace(b"binance", b"binanc\xe9"), "not_utf8", ("UTF-8", "byte 20")),
    Bad("kline", b"\xff\xfe\x00\x01", "not_utf8", ("UTF-8", "byte 0")),
    Bad("kline", js(kline(0, closed="yes")), "invalid", ("closed", "boolean")),
    Bad("kline", js(kline(0, trades="many")), "invalid", ("trades",)),
    Bad("kline", js(kline(0, open=[1])), "invalid", ("open",)),
    Bad("kline", js(without(kline(0), "volume")), "invalid", ("volume", "Field required")),
    Bad("kline", js(without(kline(0), "open_time")), "invalid", ("open_time", "Field required")),
    Bad("kline", js(kline(0)).replace(b'"1.000"', b"NaN"), "invalid_json", ("NaN",)),
    Bad("kline", js(kline(0)).replace(b'"87100.00"', b"Infinity"), "invalid_json", ("Infinity",)),
    Bad("kline", js(kline(0)).replace(b'"1.000"', b"-Infinity"), "invalid_json", ("-Infinity",)),
    Bad("kline", js(kline(0, high="Infinity")), "invalid", ("high", "finite")),
    Bad("kline", js(kline(0, volume="NaN")), "invalid", ("volume", "finite")),
    Bad("kline", js(kline(0, volume="-1")), "invalid", ("volume", "negative")),
    Bad("kline", js(kline(0, high="1", low="2", open="1.5", close="1.5")), "invalid", ("high < low",)),
    Bad("kline", js(kline(0, open_time="2026-01-01T00:00:00")), "invalid", ("open_time", "offset")),
    Bad("kline", js(kline(0, interval="7m")), "invalid", ("interval",)),
    Bad("kline", js(kline(0, kind="quote")), "unknown_kind", ("unknown kind 'quote'",)),
    Bad("kline", b"[1, 2, 3]", "not_object", ("list", "not an object")),
    Bad("kline", b'"kline"', "not_object", ("str", "not an object")),
    Bad("kline", b"42", "not_object", ("not an object",)),
    Bad("kline", b"null", "not_object", ("not an object",)),
    # order stream
    Bad("order", js(order(0, quantity="-0.5")), "invalid", ("quantity", "greater than zero")),
    Bad("order", js(order(0, side="hold")), "invalid", ("side",)),
    Bad("order", js(without(order(0), "price")), "invalid", ("needs a price",)),
    Bad("order", js(order(0, filled_quantity="1")), "invalid", ("filled_quantity exceeds quantity",)),
    Bad("order", js(without(order(0), "updated_at")), "invalid", ("updated_at", "Field required")),
    Bad("order", js(order(0, updated_at="2026-01-01 00:00:03")), "invalid", ("updated_at", "offset")),
    # fill stream
    Bad("fill", js(without(fill(0), "fill_id")), "invalid", ("fill_id", "Field required")),
    Bad("fill", js(fill(0, price="abc")), "invalid", ("price", "not a decimal")),
    Bad("fill", js(fill(0, quantity="-0.02")), "invalid", ("quantity",)),
    Bad("fill", b'{"fill_id": "x", "ts": 1767225603500.5}', "invalid", ("ts",)),
    # bot_state stream
    Bad("bot_state", js(bot_state(0, state=[1, 2])), "invalid", ("state",)),
    Bad("bot_state", js(bot_state(0, ts="2026-01-01T00:00:04")), "invalid", ("ts", "offset")),
    Bad("bot_state", js(bot_state(0, bot_id="bad id")), "invalid", ("bot_id",)),
    # mixed stream: each message names its kind
    Bad("mixed", js(kline(0)), "unknown_kind", ("no 'kind'",)),
    Bad("mixed", js(kline(0, kind="quote")), "unknown_kind", ("unknown kind 'quote'",)),
    Bad("mixed", js(kline(0, kind=5)), "unknown_kind", ("unknown kind 5",)),
    Bad("mixed", js(kline(0, kind="kline", high="1", low="2")), "invalid", ("high < low",)),
    Bad("mixed", js(order(0, kind="order", side="hold")), "invalid", ("side",)),
    Bad("mixed", b'{"kind": "fill", \xc3\x28}', "not_utf8", ("UTF-8",)),
    Bad("mixed", b"[]", "not_object", ("not an object",)),
)
# (max_message_bytes, size of the too-large message): Kafka brokers refuse 10 MB records
LIMITS = {"redis": (MAX_MESSAGE_BYTES, TEN_MB), "kafka": (65_536, 100_000)}


def bad_messages(source: str) -> tuple[Bad, ...]:
    limit, size = LIMITS[source]
    too_large = Bad("kline", padded_kline(size), "too_large", ("exceeds", str(size), str(limit)))
    return (*BAD, too_large)


KIND_OF_STREAM = {"kline": "kline", "order": "order", "fill": "fill", "bot_state": "bot_state", "mixed": None}


def good_for(stream: str, i: int) -> dict[str, Any]:
    """The i-th good message published on `stream`; distinct keys so every one lands."""
    if stream == "mixed":
        builders: list[Callable[[int], dict[str, Any]]] = [
            lambda n: kline(n, symbol="ETHUSDT"), lambda n: order(1000 + n),
            lambda n: fill(1000 + n), lambda n: bot_state(1000 + n),
        ]  # fmt: skip
        kinds = ["kline", "order", "fill", "bot_state"]
        return {**builders[i % 4](i), "kind": kinds[i % 4]}
    return {"kline": kline, "order": order, "fill": fill, "bot_state": bot_state}[stream](i)


# --- helpers ------------------------------------------------------------------------------


def registry_value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def letters_by_entry(env: TestEnv) -> dict[tuple[str, str], Any]:
    rows = await env.fetch("SELECT * FROM {s}.dead_letters ORDER BY id")
    by_entry = {(r["stream"], r["entry_id"]): r for r in rows}
    assert len(by_entry) == len(rows), "one dead letter per stream entry"
    return by_entry


async def settle(env: TestEnv, task: asyncio.Task[int], timeout_s: float) -> bool:
    """Wait until nothing is undelivered or pending, or the daemon exits; True if settled."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not task.done():
        if await env.unsettled() == 0:
            return True
        await asyncio.sleep(0.1)
    return False


async def stop_daemons(daemon: Daemon) -> list[object]:
    """Stop every daemon the fixture started; exit codes, or the exception a daemon died of."""
    outcomes: list[object] = []
    for stop, _ in daemon.running:
        stop.set()
    for _, task in daemon.running:
        try:
            outcomes.append(await asyncio.wait_for(task, 60))
        except Exception as exc:
            outcomes.append(exc)
    daemon.running.clear()
    return outcomes


def metrics_settings(env: TestEnv, port: int) -> Settings:
    return env.settings(
        metrics={"enabled": True, "port": port, "host": "127.0.0.1"},
        source={"max_message_bytes": LIMITS[env.source][0]},
    )


# --- tests --------------------------------------------------------------------------------


@BOTH_SOURCES
async def test_every_bad_message_is_dead_lettered_and_the_good_ones_land(
    env: TestEnv, daemon: Daemon
) -> None:
    port = free_port()
    await daemon.start(metrics_settings(env, port))
    before = await asyncio.to_thread(scrape, port)

    published: dict[tuple[str, str], Bad] = {}
    goods: dict[str, list[dict[str, Any]]] = {s: [] for s in KIND_OF_STREAM}

    async def publish_good(stream: str) -> None:
        message = good_for(stream, len(goods[stream]))
        goods[stream].append(message)
        await env.add(stream, js(message))

    bads = bad_messages(env.source)
    for bad in bads:
        await publish_good(bad.stream)
        published[(env.stream(bad.stream), await env.add(bad.stream, bad.payload))] = bad
        await publish_good(bad.stream)
    # a malformed entry: a stream entry without the `data` field, or a Kafka record without a value
    if env.source == "redis":
        no_data_id = (await env.redis.xadd(env.stream("kline"), {"payload": js(kline(98))})).decode()
    else:
        [no_data_id] = await env.send("kline", [None])
    await publish_good("kline")

    await daemon.drain(timeout_s=60)
    after = await asyncio.to_thread(scrape, port)
    assert await daemon.stop_all() == [0]
    assert await env.unsettled() == 0

    # every good message landed, with its exact values
    good_klines = goods["kline"] + [m for m in goods["mixed"] if m["kind"] == "kline"]
    rows = await env.fetch(
        "SELECT symbol, open_time, close, volume, high, low FROM {s}.klines ORDER BY symbol, open_time"
    )
    expected = sorted(
        (m["symbol"], m["open_time"], Decimal(m["close"]), Decimal(m["volume"])) for m in good_klines
    )
    got = [(r["symbol"], _ms(r["open_time"]), r["close"], r["volume"]) for r in rows]
    assert got == expected
    assert {(r["high"], r["low"]) for r in rows} == {(Decimal("87100.00"), Decimal("86990.10"))}

    good_orders = goods["order"] + [m for m in goods["mixed"] if m["kind"] == "order"]
    rows = await env.fetch("SELECT order_id, client_order_id, quantity, price FROM {s}.orders")
    assert {r["order_id"]: (r["client_order_id"], r["quantity"], r["price"]) for r in rows} == {
        m["order_id"]: (m["client_order_id"], Decimal("0.050"), Decimal("87000.00")) for m in good_orders
    }
    assert await env.count("order_events") == len(good_orders)

    good_fills = goods["fill"] + [m for m in goods["mixed"] if m["kind"] == "fill"]
    rows = await env.fetch("SELECT fill_id, ts, fee FROM {s}.fills")
    assert {r["fill_id"]: (_ms(r["ts"]), r["fee"]) for r in rows} == {
        m["fill_id"]: (m["ts"], Decimal("0.0000200")) for m in good_fills
    }

    good_states = goods["bot_state"] + [m for m in goods["mixed"] if m["kind"] == "bot_state"]
    rows = await env.fetch("SELECT bot_id, seq, state FROM {s}.bot_state")
    assert {r["bot_id"]: (r["seq"], json.loads(r["state"])) for r in rows} == {
        m["bot_id"]: (m["seq"], m["state"]) for m in good_states
    }

    # exactly one dead letter per bad message, each with the right category, reason and bytes
    letters = await letters_by_entry(env)
    assert len(letters) == len(bads) + 1
    for key, bad in published.items():
        row = letters[key]
        assert (row["source"], row["category"], row["kind"]) == (
            env.source,
            bad.category,
            KIND_OF_STREAM[bad.stream],
        )
        for fragment in bad.reason:
            assert fragment in row["reason"], (bad.payload[:80], row["reason"])
        assert "\n" not in row["reason"]
        assert bytes(row["payload"]) == bad.payload, (bad.payload[:80], bytes(row["payload"][:80]))
        assert row["replayed_at"] is None

    no_data = letters[(env.stream("kline"), no_data_id)]
    assert (no_data["category"], no_data["kind"]) == ("malformed_entry", "kline")
    if env.source == "redis":
        assert "'data'" in no_data["reason"]
        assert json.loads(bytes(no_data["payload"])) == {"payload": json.dumps(kline(98))}
    else:
        assert "no value" in no_data["reason"]
        assert bytes(no_data["payload"]) == b""

    # the counters moved by exactly what was published
    by_category: dict[str, int] = {}
    for bad in bads:
        by_category[bad.category] = by_category.get(bad.category, 0) + 1
    by_category["malformed_entry"] = 1
    for category, n in by_category.items():
        moved = sample(after, "tickvault_dead_letters_total", reason=category) - sample(
            before, "tickvault_dead_letters_total", reason=category
        )
        assert moved == n, category
    kline_invalid = sum(1 for b in bads if b.stream == "kline" and b.category == "invalid")
    moved = sample(after, "tickvault_messages_rejected_total", kind="kline", reason="invalid") - sample(
        before, "tickvault_messages_rejected_total", kind="kline", reason="invalid"
    )
    assert moved == kline_invalid
    moved = sample(after, "tickvault_messages_consumed_total", kind="mixed") - sample(
        before, "tickvault_messages_consumed_total", kind="mixed"
    )
    assert moved == len(goods["mixed"]) + sum(1 for b in bads if b.stream == "mixed")
    moved = sample(after, "tickvault_messages_accepted_total", kind="kline") - sample(
        before, "tickvault_messages_accepted_total", kind="kline"
    )
    assert moved == len(good_klines)


def _ms(ts: dt.datetime) -> int:
    return int((ts - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds() * 1000)


@BOTH_SOURCES
async def test_database_rejected_bot_state_does_not_sink_its_batch(env: TestEnv, daemon: Daemon) -> None:
    """A NUL inside a JSON string passes validation, but PostgreSQL jsonb refuses it."""
    nul = b'{"bot_id": "bot-nul", "ts": 1767225604000, "seq": 1, "state": {"note": "a\\u0000b"}}'
    goods = [bot_state(i) for i in range(6)]
    ids = [await env.add("bot_state", js(m)) for m in goods[:3]]
    nul_id = await env.add("bot_state", nul)
    ids += [await env.add("bot_state", js(m)) for m in goods[3:]]
    before = registry_value("tickvault_dead_letters_total", reason="db_rejected")
    rejected_before = registry_value(
        "tickvault_messages_rejected_total", kind="bot_state", source=env.source, reason="db_rejected"
    )

    # published before start, so the first read puts all seven in one batch
    await daemon.start(env.settings(batch={"max_rows": 2000, "max_age_s": 0.5}))
    await daemon.drain(timeout_s=30)
    assert await daemon.stop_all() == [0]

    rows = await env.fetch("SELECT bot_id, ts, seq, state FROM {s}.bot_state ORDER BY bot_id")
    assert [(r["bot_id"], _ms(r["ts"]), r["seq"], json.loads(r["state"])) for r in rows] == [
        (m["bot_id"], m["ts"], m["seq"], m["state"]) for m in goods
    ]
    letters = await letters_by_entry(env)
    assert list(letters) == [(env.stream("bot_state"), nul_id)]
    row = letters[(env.stream("bot_state"), nul_id)]
    assert (row["category"], row["kind"], row["source"]) == ("db_rejected", "bot_state", env.source)
    assert "database rejected the row" in row["reason"]
    assert "\\u0000" in row["reason"] or "Unicode" in row["reason"], row["reason"]
    assert bytes(row["payload"]) == nul
    assert await env.unsettled() == 0
    assert registry_value("tickvault_dead_letters_total", reason="db_rejected") - before == 1
    rejected_after = registry_value(
        "tickvault_messages_rejected_total", kind="bot_state", source=env.source, reason="db_rejected"
    )
    assert rejected_after - rejected_before == 1


async def test_a_redelivered_dead_letter_is_recorded_once(env: TestEnv) -> None:
    settings = env.settings()
    await migrate.upgrade(settings.postgres)
    stream = env.stream("kline")
    letters = [
        DeadLetter("redis", stream, "1-0", "kline", "invalid_json", "invalid JSON: x", b"{"),
        DeadLetter("redis", stream, "2-0", "kline", "not_utf8", "payload is not valid UTF-8", b"\xff"),
    ]
    async with Store(settings.postgres) as store:
        assert await store.write_dead_letters(letters) == 2
        assert await store.write_dead_letters(letters) == 0
        # the same entry id on another stream is another message
        other = DeadLetter(
            "redis", env.stream("order"), "1-0", "order", "invalid_json", "invalid JSON: y", b"["
        )
        assert await store.write_dead_letters([letters[0], other]) == 1
        stored = await store.dead_letters(limit=10)
    assert [(s.letter.stream, s.letter.entry_id, s.letter.payload) for s in stored] == [
        (stream, "1-0", b"{"),
        (stream, "2-0", b"\xff"),
        (env.stream("order"), "1-0", b"["),
    ]


# --- inputs that must not take the daemon down (each isolated: one poison message) -----


async def _poison_pill(
    env: TestEnv, daemon: Daemon, stream: str, payload: bytes, goods: list[dict[str, Any]]
) -> list[Any]:
    """Publish good, poison, good. The daemon must stay up and leave nothing pending; returns
    the dead letters of the poison entry."""
    await daemon.start(env.settings(run={"drain_grace_s": 5}))
    await env.add(stream, js(goods[0]))
    poison_id = await env.add(stream, payload)
    await env.add(stream, js(goods[1]))
    settled = await settle(env, daemon.running[0][1], timeout_s=6)
    letters = await env.fetch("SELECT entry_id, category, reason FROM {s}.dead_letters")
    outcomes = await stop_daemons(daemon)
    assert outcomes == [0], f"daemon died: {outcomes!r}"
    assert settled, "messages stayed pending"
    assert all(r["entry_id"] == poison_id for r in letters), letters
    return letters


@BOTH_SOURCES
async def test_timestamp_that_overflows_utc_is_dead_lettered(env: TestEnv, daemon: Daemon) -> None:
    # year 1 at +01:00 is valid ISO-8601, but converting it to UTC leaves datetime's range
    payload = js(kline(0, open_time="0001-01-01T00:00:00+01:00", close_time=None))
    letters = await _poison_pill(env, daemon, "kline", payload, [kline(1), kline(2)])
    assert [r["category"] for r in letters] == ["invalid"]
    assert "open_time" in letters[0]["reason"]
    assert await env.count("klines") == 2


@BOTH_SOURCES
async def test_deeply_nested_json_is_dead_lettered(env: TestEnv, daemon: Daemon) -> None:
    payload = b"[" * 100_000 + b"]" * 100_000  # 200 kB, within the size limit
    letters = await _poison_pill(env, daemon, "kline", payload, [kline(1), kline(2)])
    assert [r["category"] for r in letters] in (["invalid_json"], ["not_object"])
    assert await env.count("klines") == 2


@BOTH_SOURCES
async def test_decimal_beyond_postgres_numeric_range_is_dead_lettered(env: TestEnv, daemon: Daemon) -> None:
    # finite and valid for Decimal, but PostgreSQL's numeric cannot hold the exponent
    payload = js(kline(0, volume="1e-20000"))
    letters = await _poison_pill(env, daemon, "kline", payload, [kline(1), kline(2)])
    assert [r["category"] for r in letters] in (["invalid"], ["db_rejected"])
    assert "volume" in letters[0]["reason"] or "numeric" in letters[0]["reason"]
    assert await env.count("klines") == 2


@BOTH_SOURCES
async def test_deeply_nested_bot_state_does_not_stop_the_daemon(env: TestEnv, daemon: Daemon) -> None:
    depth = 600  # parses (below json's recursion guard); it must then be stored or dead-lettered
    payload = (
        js(without(bot_state(0), "state"))[:-1]
        + b', "state": {"deep": '
        + b"[" * depth
        + b"]" * depth
        + b"}}"
    )
    letters = await _poison_pill(env, daemon, "bot_state", payload, [bot_state(1), bot_state(2)])
    stored = await env.fetch("SELECT bot_id FROM {s}.bot_state ORDER BY bot_id")
    assert [r["bot_id"] for r in stored] in (["bot-0", "bot-1", "bot-2"], ["bot-1", "bot-2"])
    assert len(stored) + len(letters) == 3
