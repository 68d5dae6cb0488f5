"""The `tickvault` CLI, run as a subprocess with TICKVAULT_* settings from the environment."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import Daemon, TestEnv, free_port
from tickvault.record_schemas import EXAMPLES
from tickvault.store import migrate

TABLES = {"klines", "orders", "order_events", "fills", "bot_state", "bot_state_history", "dead_letters"}
TABLES |= {"models", "model_aliases", "strategy_configs", "backtests", "backtest_artifacts"}


@dataclass
class Result:
    code: int
    out: list[str]  # stdout lines
    err: list[str]  # stderr lines, blank ones dropped

    @property
    def lines(self) -> list[str]:
        return self.out + self.err


def _run(args: list[str], environ: dict[str, str]) -> Result:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TICKVAULT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tickvault", *args],
        env={**base, **environ},
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = [line for line in proc.stdout.decode().splitlines() if line.strip()]
    err = [line for line in proc.stderr.decode().splitlines() if line.strip()]
    return Result(proc.returncode, out, err)


async def tickvault(env: TestEnv, *args: str, **sections: dict[str, Any]) -> Result:
    return await asyncio.to_thread(_run, list(args), env.environ(**sections))


async def tables(env: TestEnv) -> set[str]:
    rows = await env.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", env.schema
    )
    return {r["table_name"] for r in rows}


async def test_help_lists_every_command(env: TestEnv) -> None:
    result = await tickvault(env, "--help")
    assert result.code == 0
    text = "\n".join(result.out)
    for command in ("run", "migrate", "check", "dlq", "schemas", "summary", "import", "models", "configs"):
        assert f"    {command} " in text, command


async def test_migrate_check_and_downgrade(env: TestEnv) -> None:
    result = await tickvault(env, "check")
    assert result.code == 1
    assert len(result.lines) == 1, result.lines
    assert "migration" in result.out[0]
    assert env.schema in result.out[0]

    result = await tickvault(env, "migrate")
    assert result.code == 0, result.lines
    assert TABLES | {"alembic_version"} <= await tables(env)

    result = await tickvault(env, "check")
    assert result.code == 0, result.lines
    assert len(result.lines) == 1, result.lines
    assert result.out[0].startswith("healthy")

    result = await tickvault(env, "migrate", "--downgrade", "base")
    assert result.code == 0, result.lines
    assert await tables(env) <= {"alembic_version"}

    result = await tickvault(env, "check")
    assert result.code == 1
    assert len(result.lines) == 1, result.lines
    assert "migration" in result.out[0]


async def test_check_fails_in_one_line_without_the_password_when_postgres_is_down(env: TestEnv) -> None:
    dsn = f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/x"
    # retries configured as for the daemon: check tries once (the image's HEALTHCHECK gives it
    # 20 s), so no "retries left" line is logged
    postgres = {"dsn": dsn, "connect_timeout_s": 5, "connect_retries": 30}
    result = await tickvault(env, "check", postgres=postgres)
    assert result.code == 1
    assert len(result.lines) == 1, result.lines
    assert "postgres" in result.lines[0]
    assert "s3cret" not in result.lines[0]


async def test_check_fails_in_one_line_without_the_password_when_redis_is_down(env: TestEnv) -> None:
    await migrate.upgrade(env.settings().postgres)
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    result = await tickvault(env, "check", redis={"url": url})
    assert result.code == 1
    assert len(result.lines) == 1, result.lines
    assert "redis" in result.lines[0]
    assert "hunter2" not in result.lines[0]


async def test_missing_config_file_is_one_line(env: TestEnv, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = await tickvault(env, "check", "--config", str(missing))
    assert result.code == 1
    assert result.out == []
    assert len(result.err) == 1, result.err
    assert str(missing) in result.err[0]


async def test_dlq_list_and_replay(env: TestEnv, daemon: Daemon) -> None:
    stream = env.stream("kline")
    bad = [b"{not json", b"\xff\xfe not utf-8", json.dumps({**EXAMPLES["kline"], "interval": "7m"}).encode()]
    await daemon.start()
    await env.publish("kline", [json.dumps(EXAMPLES["kline"]), *bad])
    await daemon.drain()
    assert await daemon.stop_all() == [0]
    letters = await env.fetch("SELECT id, entry_id, category, payload FROM {s}.dead_letters ORDER BY id")
    assert [bytes(r["payload"]) for r in letters] == bad
    ids = [r["id"] for r in letters]

    result = await tickvault(env, "dlq", "list")
    assert result.code == 0, result.lines
    assert [line.split("\t")[0] for line in result.out] == [str(i) for i in ids]
    for line, letter in zip(result.out, letters, strict=True):
        assert f"\t{stream}\t{letter['entry_id']}\t{letter['category']}\t" in line
    assert result.err == ["3 dead letters"]

    result = await tickvault(env, "dlq", "list", "--json")
    assert result.code == 0, result.lines
    listed = [json.loads(line) for line in result.out]
    assert [(d["id"], d["stream"], d["entry_id"], d["category"]) for d in listed] == [
        (r["id"], stream, r["entry_id"], r["category"]) for r in letters
    ]
    assert listed[0]["payload"] == "{not json"
    assert all(d["replayed_at"] is None and d["source"] == "redis" and d["reason"] for d in listed)

    result = await tickvault(env, "dlq", "replay")
    assert result.code != 0
    assert result.out == []
    assert len(result.err) == 1, result.err
    assert "--id" in result.err[0]

    length = await env.redis.xlen(stream)
    not_utf8 = letters[1]
    result = await tickvault(env, "dlq", "replay", "--id", str(not_utf8["id"]))
    assert result.code == 0, result.lines
    assert result.out == ["replayed 1 dead letter"]
    assert await env.redis.xlen(stream) == length + 1
    [(_, fields)] = await env.redis.xrevrange(stream, count=1)
    assert fields == {b"data": bad[1]}

    result = await tickvault(env, "dlq", "list")
    assert [int(line.split("\t")[0]) for line in result.out] == [ids[0], ids[2]]
    result = await tickvault(env, "dlq", "list", "--all")
    assert [int(line.split("\t")[0]) for line in result.out] == ids
    assert result.out[1].endswith("(replayed)")
    assert not result.out[0].endswith("(replayed)")

    # the replayed entry goes through the pipeline again, as a new stream entry
    await daemon.start()
    await daemon.drain()
    assert await daemon.stop_all() == [0]
    rows = await env.fetch("SELECT category, payload, replayed_at FROM {s}.dead_letters ORDER BY id")
    assert len(rows) == 4
    assert (rows[3]["category"], bytes(rows[3]["payload"]), rows[3]["replayed_at"]) == (
        "not_utf8",
        bad[1],
        None,
    )


async def test_run_on_a_busy_metrics_port_is_one_line_naming_the_port_and_the_setting(env: TestEnv) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = await tickvault(env, "run", metrics={"enabled": True, "host": "127.0.0.1", "port": port})
    assert result.code == 1
    assert result.lines == [
        f"tickvault: error: cannot serve metrics on 127.0.0.1:{port}: the port is in use "
        "(another tickvault?); choose another port with metrics.port (TICKVAULT_METRICS__PORT)"
    ]
    assert "alembic_version" not in await tables(env)  # it failed before touching the database


async def test_postgres_unreachable_names_host_and_port_never_the_password(env: TestEnv) -> None:
    port = free_port()
    tcp = f"postgresql://postgres:s3cret@127.0.0.1:{port}/x"
    socket_dir = "/nonexistent/pg"
    unix = f"postgresql://postgres:s3cret@/x?host={socket_dir}&port={port}"
    for dsn, where in ((tcp, f"127.0.0.1:{port}"), (unix, f"socket {socket_dir}/.s.PGSQL.{port}")):
        pg = {"dsn": dsn, "connect_timeout_s": 5, "connect_retries": 0}
        for command in (["run"], ["query", "orders"], ["check"]):
            result = await tickvault(env, *command, postgres=pg)
            assert result.code == 1, (command, result.lines)
            text = "\n".join(result.lines)
            assert f"postgres unreachable at {where}: " in text, (command, result.lines)
            assert "s3cret" not in text
            if command != ["run"]:  # run also logs its state changes; the others print one line
                assert len(result.lines) == 1, (command, result.lines)
