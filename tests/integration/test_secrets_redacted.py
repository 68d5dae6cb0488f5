"""No secret is ever printed: a password in the PostgreSQL DSN (given through a file), in the
Redis URL, Kafka's SASL password and the S3 keys appear nowhere in the daemon's log at DEBUG,
on /metrics, in `--help`, or in what the CLI prints when every connection fails."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import TestEnv, free_port, http_get, kill_process, stop_process, wait_until
from tickvault.record_schemas import EXAMPLES

pytestmark = pytest.mark.integration
SECRETS = {
    "postgres": "pg-Secret-7Hq2",
    "redis": "redis-Secret-4Kd9",
    "kafka": "sasl-Secret-2Wm5",
    "s3_id": "AKIASECRETID3NZ8",
    "s3_key": "s3-Secret-Key-9Px1",
}


def leaks(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


@pytest.fixture
async def redis_user(env: TestEnv) -> AsyncIterator[str]:
    """A Redis ACL user whose password is the Redis secret, for this test's streams only."""
    name = f"tv_{env.tag}"
    await env.redis.execute_command(
        "ACL",
        "SETUSER",
        name,
        "on",
        f">{SECRETS['redis']}",
        f"~t{env.tag}.*",
        "+@all",
        "-@dangerous",
        "+info",
    )
    yield name
    await env.redis.execute_command("ACL", "DELUSER", name)


def secret_environ(env: TestEnv, tmp_path: Path, redis_user: str, s3_endpoint: str) -> dict[str, str]:
    """The test's settings with every secret set: the DSN through a file, the rest as variables."""
    dsn_file = tmp_path / "postgres-dsn"
    dsn_file.write_text(env.dsn.replace("postgres@", f"postgres:{SECRETS['postgres']}@", 1) + "\n")
    environ = env.environ(
        metrics={"enabled": True, "port": free_port()},
        log={"level": "DEBUG"},
        redis={"url": f"redis://{redis_user}:{SECRETS['redis']}@127.0.0.1:6379/0"},
        kafka={"sasl_username": "bot", "sasl_password": SECRETS["kafka"]},
        archive={
            "enabled": True, "root": f"s3://tickvault-archive/{env.schema}", "s3_endpoint": s3_endpoint,
            "s3_region": "us-east-1", "s3_access_key_id": SECRETS["s3_id"],
            "s3_secret_access_key": SECRETS["s3_key"], "interval_s": 1,
        },
    )  # fmt: skip
    del environ["TICKVAULT_POSTGRES__DSN"]
    environ["TICKVAULT_POSTGRES__DSN_FILE"] = str(dsn_file)
    return environ


def spawn(environ: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TICKVAULT_")}
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tickvault", "run"],
            env={**base, **environ},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def run_cli(environ: dict[str, str], *args: str) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TICKVAULT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tickvault", *args], env={**base, **environ},
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout.decode() + proc.stderr.decode()


async def test_the_daemon_logs_and_metrics_hold_no_secret(
    env: TestEnv, tmp_path: Path, redis_user: str, s3_endpoint: str
) -> None:
    environ = secret_environ(env, tmp_path, redis_user, s3_endpoint)
    port = int(environ["TICKVAULT_METRICS__PORT"])
    assert run_cli(environ, "migrate")[0] == 0
    log_path = tmp_path / "daemon.log"
    proc = spawn(environ, log_path)
    try:

        async def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(log_path.read_text())
            try:
                return (await asyncio.to_thread(http_get, port, "/readyz"))[0] == 200
            except OSError:
                return False

        await wait_until(ready, 60, what="the daemon to be ready")
        old_ms = (int(time.time()) // 86_400 - 20) * 86_400_000  # rolled to S3 by the next round
        await env.publish(
            "kline",
            [
                b'{"not": "a kline"}',
                json.dumps(
                    {k: v for k, v in EXAMPLES["kline"].items() if k != "close_time"} | {"open_time": old_ms}
                ),
            ],
        )

        async def rolled() -> bool:
            return bool(await env.fetch("SELECT 1 FROM {s}.archive_log"))

        await wait_until(rolled, 60, what="a roll to S3 (archive.interval_s 1)")
        status, body = await asyncio.to_thread(http_get, port, "/metrics")
        assert status == 200 and "tickvault_ready 1.0" in body
        assert leaks(body) == []
    finally:
        code = stop_process(proc)
        kill_process(proc)
    log_text = log_path.read_text()
    assert code == 0, log_text
    assert "DEBUG" in log_text  # the most verbose level was on
    assert leaks(log_text) == [], log_text


async def test_help_and_failing_commands_print_no_secret(
    env: TestEnv, tmp_path: Path, redis_user: str, s3_endpoint: str
) -> None:
    environ = secret_environ(env, tmp_path, redis_user, s3_endpoint)
    for args in (["--help"], ["run", "--help"], ["migrate", "--help"], ["archive", "--help"]):
        code, out = await asyncio.to_thread(run_cli, environ, *args)
        assert code == 0 and leaks(out) == [], out

    closed = free_port()
    assert (await asyncio.to_thread(run_cli, environ, "migrate"))[0] == 0
    pg_down = {k: v for k, v in environ.items() if k != "TICKVAULT_POSTGRES__DSN_FILE"} | {
        # nothing listens there: connection refused, retried once, then given up
        "TICKVAULT_POSTGRES__DSN": f"postgresql://tv:{SECRETS['postgres']}@127.0.0.1:{closed}/tickvault",
        "TICKVAULT_POSTGRES__CONNECT_RETRIES": "1",
    }
    unparsable = pg_down | {"TICKVAULT_POSTGRES__DSN": f"postgresql://tv:{SECRETS['postgres']}@[::1/x"}
    # the server has no such user: AUTH fails
    redis_bad = environ | {
        "TICKVAULT_REDIS__URL": f"redis://nobody-{uuid.uuid4().hex[:6]}:{SECRETS['redis']}@127.0.0.1:6379/0",
        "TICKVAULT_REDIS__CONNECT_RETRIES": "1",
    }
    kafka_down = environ | {
        "TICKVAULT_SOURCE__KIND": "kafka", "TICKVAULT_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}",
        "TICKVAULT_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TICKVAULT_KAFKA__CONNECT_RETRIES": "1",
    }  # fmt: skip
    for environment, args, expected in (
        (pg_down, ["migrate"], "postgres unreachable"),
        (pg_down, ["check"], "postgres unreachable"),
        (pg_down, ["run"], "postgres unreachable"),
        (unparsable, ["check"], "invalid setting postgres.dsn"),
        (redis_bad, ["check"], "unhealthy: redis"),
        (redis_bad, ["run"], "redis"),
        (redis_bad, ["state", "get", "no-such-bot"], "no-such-bot"),
        (kafka_down, ["check"], "unhealthy: kafka"),
        (kafka_down, ["run"], "kafka"),
    ):
        code, out = await asyncio.to_thread(run_cli, environment, *args)
        assert leaks(out) == [], (args, out)
        assert expected in out, (args, out)
