"""The cold tier over a month of daily partitions: 1m klines for 8 symbols, plus fills and
order events, rolled all but the last two days, on a local root and on S3. Cold rows plus hot
rows are exactly what was sent: same count, no duplicate, Decimal-equal, same UTC instants;
a reader without tickvault (pyiceberg's own scan) sees the same cold rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TestEnv
from tests.integration.test_archive import cold_rows, fill, hot_rows, kline, order, write
from tickvault.archive import roller
from tickvault.settings import Settings
from tickvault.store import Store, migrate
from tickvault.vault import Vault

pytestmark = pytest.mark.slow

DAYS = 30
SYMBOLS = tuple(f"S{i:02d}-USDT" for i in range(8))
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=DAYS)
PG = {"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0}


def minute_klines() -> Iterator[dict[str, Any]]:
    for i, s in enumerate(SYMBOLS):
        for m in range(DAYS * 1440):
            close = f"{100 + (m * 7 + i) % 97}.{(m * 13) % 100000:05d}"  # within low..high
            yield {**kline(s, T0_MS + m * 60_000, close, closed=m % 500 != 0), "interval": "1m"}


def sent() -> dict[str, list[dict[str, Any]]]:
    orders = [order(i, T0_MS + i * 600_000, "open") for i in range(DAYS * 144)]
    orders += [order(i, T0_MS + i * 600_000 + 60_000, "filled") for i in range(DAYS * 144)]
    return {
        "kline": list(minute_klines()),
        "fill": [fill(i, T0_MS + i * 300_000) for i in range(DAYS * 288)],
        "order": orders,
    }


def at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def d(text: str) -> Decimal:
    return Decimal(text).normalize()


def expected(messages: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[Any, ...]]]:
    """What each table must hold, as (key..., values...) tuples with normalised decimals."""
    klines = [
        (k["symbol"], at(k["open_time"]), d(k["open"]), d(k["high"]), d(k["low"]), d(k["close"]),
         d(k["volume"]), d(k["quote_volume"]), k["trades"], k["closed"])
        for k in messages["kline"]
    ]  # fmt: skip
    fills = [
        (f["fill_id"], f["symbol"], d(f["quantity"]), d(f["price"]), d(f["fee"]), at(f["ts"]))
        for f in messages["fill"]
    ]
    events = [(o["order_id"], o["status"], at(o["updated_at"])) for o in messages["order"]]
    return {"klines": sorted(klines), "fills": sorted(fills), "order_events": sorted(events)}


COLUMNS = {
    "klines": (
        "symbol",
        "open_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "trades",
        "closed",
    ),
    "fills": ("fill_id", "symbol", "quantity", "price", "fee", "ts"),
    "order_events": ("order_id", "status", "updated_at"),
}


def normal(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v.normalize() if isinstance(v, Decimal) else v for v in row)


async def stored(env: TestEnv, settings: Settings) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, int]]:
    """Cold + hot rows of each table (sorted, duplicates kept), and the cold row counts."""
    out, cold_counts = {}, {}
    for name, columns in COLUMNS.items():
        cold = cold_rows(settings, name).select(list(columns))
        cold_counts[name] = cold.num_rows
        names = ", ".join(f'"{c}"' for c in columns)
        rows = [*(tuple(r.values()) for r in cold.to_pylist()), *await hot_rows(env, name, names)]
        out[name] = sorted(normal(r) for r in rows)
    return out, cold_counts


@pytest.mark.parametrize("root", ["local", "s3"])
async def test_a_month_of_minute_klines_rolls_all_but_two_days_exactly(
    env: TestEnv, tmp_path: Path, root: str, request: pytest.FixtureRequest
) -> None:
    archive: dict[str, Any] = {"root": str(tmp_path / "cold"), "hot_retention": "2d"}
    if root == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        archive |= {
            "root": f"s3://tickvault-archive/{env.schema}", "s3_endpoint": endpoint, "s3_region": "us-east-1",
            "s3_access_key_id": "test", "s3_secret_access_key": "test",
        }  # fmt: skip
    settings = env.settings(postgres=PG, archive=archive)
    await migrate.upgrade(settings.postgres)
    messages = sent()
    async with Store(settings.postgres, writer=True) as store:
        for kind, items in messages.items():
            for i in range(0, len(items), 20_000):
                await write(store, kind, items[i : i + 20_000])

    older_than_s = int((dt.datetime.now(dt.UTC) - NOW).total_seconds()) + 2 * 86_400
    outcomes = await roller.roll(settings, older_than_s=older_than_s)
    assert outcomes is not None and {o.status for o in outcomes} == {"rolled"}
    assert len(outcomes) == 3 * (DAYS - 2)

    got, cold_counts = await stored(env, settings)
    want = expected(messages)
    for name in COLUMNS:
        assert len(got[name]) == len(want[name]), name
        assert got[name] == want[name], name  # no row lost, none doubled, values and instants equal
    assert cold_counts["klines"] == (DAYS - 2) * 1440 * len(SYMBOLS)
    hot = await env.fetch("SELECT min(open_time) AS first FROM {s}.klines")
    assert hot[0]["first"] == NOW - dt.timedelta(days=2)
    logged = await env.fetch("SELECT table_name, sum(rows) AS rows FROM {s}.archive_log GROUP BY 1")
    assert {r["table_name"]: r["rows"] for r in logged} == cold_counts

    # one read over the month: 28 cold data files (one span) and the hot days
    async with Vault.connect(settings) as vault:
        month = await vault.klines("okx", "S07-USDT", "1m", columns=["open_time", "close"])
    sent_s07 = [(at(k["open_time"]), d(k["close"])) for k in messages["kline"] if k["symbol"] == "S07-USDT"]
    assert [(r["open_time"], r["close"].normalize()) for r in month.to_pylist()] == sent_s07
