"""Every PromQL expression of deploy/grafana's dashboards, expanded as Grafana expands it
(tests/grafana.py), run through the HTTP API of a real Prometheus (the Debian package
`prometheus`) that scrapes two running daemons: each returns data.

Daemon "a" does the normal work: it ingests good and bad messages, caches bot states and
rolls old partitions to a cold tier. Daemon "b" (a database and streams of its own) shows the
failures: its cold tier root is a file, so its rolls fail; its Redis calls for the bot-state
cache time out; and the test cancels one of its writes, which it retries. Together their
metrics hold a series for every panel; an expression with a wrong metric or label name finds
nothing and fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests import grafana
from tests.grafana import Context, TimeRange, Variable
from tests.helpers import (
    TestEnv,
    admin,
    free_port,
    scrape,
    spawn_daemon,
    stop_process,
    wait_for_port,
    wait_until,
)

pytestmark = pytest.mark.slow

SCRAPE_INTERVAL_MS = 1000
DAY_MS = 86_400_000
OLD_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: past any hot retention of a few days
MINUTE_MS = 60_000


class Prometheus:
    """A Prometheus server of the test's own on a free port, scraping `targets` every second
    into a temporary TSDB. Fails (not skips) when the binary is missing."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        binary = shutil.which("prometheus", path="/usr/bin:/usr/local/bin:" + os.environ.get("PATH", ""))
        if binary is None:
            pytest.fail(
                "the prometheus binary is missing: install the Debian package "
                "(apt-get install -y prometheus); the dashboard tests need a real Prometheus"
            )
        self.port = free_port()
        self.log_path = workdir / "prometheus.log"
        config = workdir / "prometheus.yml"
        config.write_text(
            json.dumps(  # YAML is a superset of JSON
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [{"job_name": "tickvault", "static_configs": [{"targets": targets}]}],
                }
            )
        )
        self.cmd = [
            binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc, f"prometheus (log: {self.log_path})", 60)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def get(self, path: str, **params: str | list[str]) -> Any:
        """The `data` of a GET on the HTTP API; AssertionError with Prometheus' error."""
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}?{query}", timeout=30) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query at the current time (an empty list: no data)."""
        data = self.get("/api/v1/query", query=expr, time=f"{time.time():.3f}")
        return list(data["result"]) if data["resultType"] in ("vector", "matrix") else [data["result"]]


@contextlib.contextmanager
def prometheus(workdir: Path, targets: list[str]) -> Iterator[Prometheus]:
    server = Prometheus(workdir, targets)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def daemon_sections(port: int, archive: dict[str, Any], **more: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "postgres": {"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": port, "lag_interval_s": 0.5},
        "archive": {"enabled": True, "interval_s": 1, "hot_retention": "2d", **archive},
        **more,
    }


CANDLE = {"exchange": "binance", "open": "10", "high": "11", "low": "9", "close": "10.5", "volume": "1"}


def old_klines() -> list[str]:
    """Two days of hourly candles in January 2026, for the roller."""
    return [
        json.dumps({**CANDLE, "symbol": "BTCUSDT", "interval": "1h", "open_time": OLD_MS + h * 3_600_000})
        for h in range(48)
    ]


def recent(now_ms: int) -> dict[str, list[str]]:
    start = now_ms // MINUTE_MS * MINUTE_MS - 30 * MINUTE_MS
    klines = [
        {**CANDLE, "symbol": s, "interval": "1m", "open_time": start + i * MINUTE_MS}
        for s in ("BTCUSDT", "ETHUSDT")
        for i in range(30)
    ]
    fills = [
        {"fill_id": f"f{i}", "order_id": "o1", "exchange": "binance", "symbol": "BTCUSDT", "side": "buy",
         "quantity": "0.1", "price": "87000", "bot_id": "grid-1", "ts": now_ms - i * 1000}
        for i in range(5)
    ]  # fmt: skip
    orders = [
        {"order_id": "o1", "exchange": "binance", "symbol": "BTCUSDT", "side": "buy", "type": "limit",
         "status": "open", "quantity": "1", "price": "87000", "bot_id": "grid-1", "updated_at": now_ms}
    ]  # fmt: skip
    balances = [{"account": "grid-1", "exchange": "binance", "asset": "USDT", "free": "100", "ts": now_ms}]
    # a newer snapshot, then an older one: the cache's compare-and-set keeps the newer
    states = [
        {"bot_id": "grid-1", "ts": now_ms, "seq": 2, "state": {"step": 2}},
        {"bot_id": "grid-1", "ts": now_ms - 5000, "seq": 1, "state": {"step": 1}},
    ]
    return {
        "kline": [json.dumps(k) for k in klines], "fill": [json.dumps(f) for f in fills],
        "order": [json.dumps(o) for o in orders], "balance": [json.dumps(b) for b in balances],
        "bot_state": [json.dumps(s) for s in states],
    }  # fmt: skip


BAD = [b"{oops", b"[1]", json.dumps({"exchange": "binance"}).encode()]


@contextlib.asynccontextmanager
async def failing_env(env: TestEnv) -> AsyncIterator[TestEnv]:
    """A database and streams of its own for daemon "b", removed afterwards: the roller's lock
    is one per database, and b's failing rounds must not keep a's from rolling."""
    database = f"{env.dsn.rsplit('/', 1)[1]}_{env.tag}"
    await admin(env.dsn, f'CREATE DATABASE "{database}"')
    other = TestEnv(
        dsn=f"{env.dsn.rsplit('/', 1)[0]}/{database}", schema=env.schema, tag=f"{env.tag}b",
        redis=env.redis, redis_url=env.redis_url,
    )  # fmt: skip
    try:
        yield other
    finally:
        keys = [k async for k in env.redis.scan_iter(match=f"t{other.tag}.*")]
        if keys:
            await env.redis.delete(*keys)
        await admin(env.dsn, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def publish(env: TestEnv, batches: dict[str, list[str]]) -> None:
    for kind, payloads in batches.items():
        await env.publish(kind, payloads)


def counter(port: int, name: str, **labels: str) -> float:
    """The sum of a daemon's samples of `name` whose labels include `labels`; 0 while it
    does not answer."""
    try:
        samples = scrape(port)
    except OSError:
        return 0.0
    wanted = set(labels.items())
    return sum(value for (n, got), value in samples.items() if n == name and wanted <= got)


async def wait_for_work(env: TestEnv, ports: dict[str, int], logs: dict[str, Path]) -> None:
    """Until daemon a has drained its streams and rolled, and daemon b has failed to roll
    and to cache."""

    def at_least_one(port: int, name: str, **labels: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return await asyncio.to_thread(counter, port, name, **labels) > 0

        return check

    checks = [
        ("a", "tickvault_archive_partitions_total", {"table": "klines"}),
        ("a", "tickvault_dead_letters_total", {"reason": "invalid_json"}),
        ("b", "tickvault_archive_failures_total", {"table": "klines"}),
        ("b", "tickvault_state_cache_failures_total", {}),  # refill, write: whichever comes first
    ]
    for daemon, name, labels in checks:
        what = f"{name} {labels} of daemon {daemon} (log: {logs[daemon]})"
        await wait_until(at_least_one(ports[daemon], name, **labels), 120, 0.5, what)
    await wait_until(lambda: _unsettled_is_zero(env), 120, 0.5, "daemon a to drain")


async def force_a_retry(other: TestEnv, port: int) -> None:
    """Daemon b's next kline batch meets a lock the test holds, and the test cancels what
    waits for it (SQLSTATE 57014) until b has retried a write: a retriable failure. The
    roller may wait on the lock too; cancelling it fails a roll, which b does anyway."""
    conn = await asyncpg.connect(other.dsn)
    try:
        locked = conn.transaction()
        await locked.start()
        await conn.execute(f'LOCK TABLE "{other.schema}".klines IN ACCESS EXCLUSIVE MODE')
        await other.publish("kline", recent(int(time.time() * 1000))["kline"][:1])

        async def retried() -> bool:
            await conn.execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'tickvault' AND wait_event_type = 'Lock'"
            )
            return await asyncio.to_thread(counter, port, "tickvault_store_retries_total") > 0

        await wait_until(retried, 60, 0.3, "daemon b to retry a cancelled write")
        await locked.rollback()
    finally:
        await conn.close()


async def _unsettled_is_zero(env: TestEnv) -> bool:
    return await env.unsettled() == 0


def context(dashboard: dict[str, Any]) -> Context:
    now = dt.datetime.now(dt.UTC)
    return Context(TimeRange.of(dashboard, now), scrape_interval_ms=SCRAPE_INTERVAL_MS)


def instance_variables(server: Prometheus, dashboard: dict[str, Any], ctx: Context) -> None:
    """Prometheus query variables (`label_values(metric, label)`), run as Grafana runs them
    (the label values API, matched by the metric), with "All" selected."""
    for variable in grafana.template_variables(dashboard):
        if variable["type"] != "query" or variable["datasource"]["uid"] != "prometheus":
            continue
        definition = variable["query"]["query"]
        metric, label = (p.strip() for p in definition.removeprefix("label_values(").rstrip(")").split(","))
        values = server.get(f"/api/v1/label/{label}/values", **{"match[]": metric})
        assert values, f"variable {variable['name']!r} ({definition}) found no values"
        ctx.variables[variable["name"]] = Variable(
            values, bool(variable["multi"]), bool(variable["includeAll"]), variable.get("allValue"), True
        )


async def returns_data(server: Prometheus, expr: str, timeout_s: float) -> bool:
    """Whether `expr` returns data within `timeout_s`, polled: rate windows need a few
    scrapes, and a loaded machine may scrape late. A wrong name never does."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(server.query, expr):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(1)
    return True


async def test_every_promql_expression_of_the_dashboards_returns_data(env: TestEnv, tmp_path: Path) -> None:
    ports = {"a": free_port(), "b": free_port()}
    logs = {name: tmp_path / f"daemon-{name}.log" for name in ports}
    not_a_dir = tmp_path / "not-a-directory"
    not_a_dir.write_text("the cold tier root of daemon b is a file: its rolls fail")
    async with failing_env(env) as other:
        await env.publish("kline", [*old_klines(), *BAD])
        await publish(env, recent(int(time.time() * 1000)))
        await publish(
            other, {"kline": old_klines(), "bot_state": recent(int(time.time() * 1000))["bot_state"]}
        )
        sections = {
            "a": daemon_sections(ports["a"], {"root": str(tmp_path / "cold")}),
            "b": daemon_sections(
                ports["b"], {"root": str(not_a_dir / "cold")}, state={"redis_timeout_s": 1e-6}
            ),
        }
        procs = {
            "a": spawn_daemon(env, logs["a"], **sections["a"]),
            "b": spawn_daemon(other, logs["b"], **sections["b"]),
        }
        try:
            with prometheus(tmp_path, [f"127.0.0.1:{p}" for p in ports.values()]) as server:
                await wait_for_work(env, ports, logs)
                await force_a_retry(other, ports["b"])
                await env.publish("kline", recent(int(time.time() * 1000))["kline"][:5])  # fresh traffic
                ctx = context(grafana.dashboards()["operations"])
                rate = grafana.expand_promql("rate(tickvault_messages_consumed_total[$__rate_interval])", ctx)
                assert await returns_data(server, rate, 120), f"no rates (log: {server.log_path})"
                ran, missing = [], []
                for name, dashboard in grafana.dashboards().items():
                    ctx = context(dashboard)
                    instance_variables(server, dashboard, ctx)
                    for target in grafana.targets(name, dashboard):
                        if target.datasource != "prometheus" or target.where.startswith("variable"):
                            continue
                        expr = grafana.expand_promql(target.text, ctx)
                        assert "$" not in expr, f"{name} {target.where}: left unexpanded: {expr}"
                        if not await returns_data(server, expr, 20):
                            missing.append(f"{name} {target.where}: {expr}")
                        ran.append(expr)
                assert not missing, "no data for:\n" + "\n".join(missing)
                assert len(ran) >= 30
        finally:
            codes = {}
            for name, proc in procs.items():
                try:
                    codes[name] = stop_process(proc)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait(10)
        assert codes == {"a": 0, "b": 0}
