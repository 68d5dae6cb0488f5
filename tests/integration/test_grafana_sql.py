"""Every SQL query of deploy/grafana's dashboards — panels, annotations, template variables —
expanded as Grafana's PostgreSQL datasource expands it (tests/grafana.py) and run against a
freshly migrated schema that a daemon has filled: each returns at least one row.

The data is recent (the last two hours), published through the daemon like a bot's, so the
dashboards' default ranges ("now-6h") hold it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import asyncpg

from tests import grafana
from tests.grafana import Context, TimeRange, Variable
from tests.helpers import Daemon, TestEnv
from tickvault.vault import Vault

MINUTE_MS = 60_000
BOTS = ("grid-1", "trend-2")


def klines(now_ms: int) -> Iterator[dict[str, Any]]:
    start = now_ms // MINUTE_MS * MINUTE_MS - 120 * MINUTE_MS
    for symbol, base in (("BTCUSDT", 87000), ("ETHUSDT", 3100)):
        for i in range(120):
            price = base + (i % 7) * 3
            yield {
                "exchange": "binance", "symbol": symbol, "interval": "1m", "open_time": start + i * MINUTE_MS,
                "open": str(price), "high": str(price + 5), "low": str(price - 4), "close": str(price + 1),
                "volume": "1.5",
            }  # fmt: skip
    for i in range(3):
        yield {
            "exchange": "binance", "symbol": "BTCUSDT", "interval": "1h",
            "open_time": start + i * 60 * MINUTE_MS, "open": "87000", "high": "87050", "low": "86990",
            "close": "87010", "volume": "90",
        }  # fmt: skip


def fills(now_ms: int) -> list[dict[str, Any]]:
    """grid-1 buys and sells 0.5 BTC (flat, fees in USDT and BNB); trend-2 holds 0.25."""
    t = now_ms - 90 * MINUTE_MS
    rows = [
        ("f1", "grid-1", "buy", "0.3", "87000", "0.5", "USDT", t),
        ("f2", "grid-1", "buy", "0.2", "87010", "0.01", "BNB", t + MINUTE_MS),
        ("f3", "grid-1", "sell", "0.5", "87030", "0.7", None, t + 30 * MINUTE_MS),
        ("f4", "trend-2", "buy", "0.25", "87005", "0.4", "USDT", t + 40 * MINUTE_MS),
    ]
    keys = ("fill_id", "bot_id", "side", "quantity", "price", "fee", "fee_asset", "ts")
    market = {"exchange": "binance", "symbol": "BTCUSDT"}
    return [{**market, **dict(zip(keys, row, strict=True)), "order_id": f"o-{row[0]}"} for row in rows]


OPEN_ORDER = {
    "exchange": "binance", "symbol": "BTCUSDT", "side": "sell", "type": "limit", "status": "open",
    "quantity": "0.1", "price": "88000", "filled_quantity": "0",
}  # fmt: skip


def orders(now_ms: int) -> list[dict[str, Any]]:
    updated_at = now_ms - 10 * MINUTE_MS
    return [
        {**OPEN_ORDER, "order_id": f"open-{bot}", "bot_id": bot, "updated_at": updated_at} for bot in BOTS
    ]


def balances(now_ms: int) -> list[dict[str, Any]]:
    out = []
    for i in range(4):
        ts = now_ms - (100 - i * 20) * MINUTE_MS
        out.append({"account": "grid-1", "exchange": "binance", "asset": "USDT", "free": str(10000 + i),
                    "locked": "0", "ts": ts})  # fmt: skip
        out.append({"account": "grid-1", "exchange": "binance", "asset": "BTC", "free": "0.1",
                    "locked": "0.05", "ts": ts})  # fmt: skip
    return out


def bot_states(now_ms: int) -> list[dict[str, Any]]:
    return [{"bot_id": bot, "ts": now_ms - MINUTE_MS, "state": {"paused": False}} for bot in BOTS]


async def load(env: TestEnv, daemon: Daemon) -> None:
    """Publish everything through a daemon, with bad messages for dead letters."""
    now_ms = int(time.time() * 1000)
    await daemon.start()
    batches = {
        "kline": list(klines(now_ms)), "fill": fills(now_ms), "order": orders(now_ms),
        "balance": balances(now_ms), "bot_state": bot_states(now_ms),
    }  # fmt: skip
    for kind, messages in batches.items():
        await env.publish(kind, [json.dumps(m) for m in messages])
    await env.publish("kline", [b"{oops", json.dumps({"exchange": "binance"})])
    await daemon.drain()
    await daemon.stop_all()
    assert await env.count("dead_letters") == 2


async def variables(conn: asyncpg.Connection, dashboard: dict[str, Any], ctx: Context) -> None:
    """Each template variable in order, as Grafana settles them: a query variable runs (it must
    find values) and keeps its saved value when found, else takes the first; a multi-value one
    takes all ("All" selected)."""
    for variable in grafana.template_variables(dashboard):
        name, kind = variable["name"], variable["type"]
        if kind == "constant" or variable.get("datasource", {}).get("uid") == "prometheus":
            continue  # the schema is the test's; Prometheus variables are not used in SQL
        if kind == "textbox":
            ctx.variables[name] = Variable([variable["query"]])
            continue
        assert kind == "query", f"{name}: a variable of type {kind} is not covered"
        sql = grafana.expand_sql(variable["query"], ctx)
        values = [str(row[0]) for row in await conn.fetch(sql)]
        assert values, f"variable {name!r} found no values:\n{sql}"
        multi = bool(variable["multi"])
        saved = variable.get("current", {}).get("value")
        chosen = values if multi else [saved] if saved in values else values[:1]
        ctx.variables[name] = Variable(
            chosen, multi, bool(variable["includeAll"]), variable.get("allValue"), all_selected=multi
        )


def context(env: TestEnv, dashboard: dict[str, Any]) -> Context:
    source = grafana.datasources()["postgres"]["jsonData"]
    now = dt.datetime.now(dt.UTC)
    return Context(
        TimeRange.of(dashboard, now),
        {"schema": Variable([env.schema])},
        min_interval_ms=grafana.parse_interval_ms(source.get("timeInterval", "1ms")),
        timescaledb=bool(source.get("timescaledb", False)),
    )


async def test_every_sql_query_of_the_dashboards_returns_rows(env: TestEnv, daemon: Daemon) -> None:
    await load(env, daemon)
    conn = await asyncpg.connect(env.dsn, server_settings={"timezone": "UTC"})
    try:
        ran = []
        for name, dashboard in grafana.dashboards().items():
            ctx = context(env, dashboard)
            await variables(conn, dashboard, ctx)
            for target in grafana.targets(name, dashboard):
                if target.datasource != "postgres":
                    continue
                sql = grafana.expand_sql(target.text, ctx)
                assert "$" not in sql, f"{name} {target.where}: left unexpanded:\n{sql}"
                rows = await conn.fetch(sql)
                assert rows, f"{name} {target.where} returned no rows:\n{sql}"
                ran.append(target.where)
        assert len(ran) >= 10
    finally:
        await conn.close()


async def test_the_positions_panel_agrees_with_vault_positions(env: TestEnv, daemon: Daemon) -> None:
    """quantity always, and net PnL of a flat position, are what Vault.positions computes."""
    await load(env, daemon)
    dashboard = grafana.dashboards()["markets"]
    panel = next(p for p in grafana.panels(dashboard) if p["title"] == "Positions")
    ctx = context(env, dashboard)
    conn = await asyncpg.connect(env.dsn, server_settings={"timezone": "UTC"})
    try:
        await variables(conn, dashboard, ctx)
        rows = await conn.fetch(grafana.expand_sql(panel["targets"][0]["rawSql"], ctx))
    finally:
        await conn.close()
    async with Vault.connect(env.settings()) as vault:
        expected = (await vault.positions()).to_pylist()
    by_bot = {r["bot_id"]: r for r in rows}
    assert set(by_bot) == set(BOTS)
    for position in expected:
        row = by_bot[position["bot_id"]]
        assert row["quantity"] == position["quantity"]
        if position["quantity"] == 0:
            assert row["realized_pnl"] == position["realized_pnl"]
            assert row["net_pnl"] == position["net_pnl"]
        else:
            assert row["net_pnl"] is None
    assert by_bot["grid-1"]["net_pnl"] == Decimal("11.8")  # 0.5 x 87030 - (0.3 x 87000 + 0.2 x 87010) - 1.2
    assert by_bot["trend-2"]["quantity"] == Decimal("0.25")
