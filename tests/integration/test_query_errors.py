"""Bad input to `tickvault query`, `dlq replay` and the parser: one line on stderr each, exit 1
for errors and 2 for usage errors; unknown series and filter values named with close
matches; counts pluralised. The same checks in the Python API raise ConfigError."""

from __future__ import annotations

import json

import pytest

from tests.helpers import TestEnv
from tests.integration.test_cli import Result, tickvault
from tests.integration.test_vault import T0, loaded  # noqa: F401 - the fixture
from tickvault.errors import ConfigError
from tickvault.record_schemas import EXAMPLES
from tickvault.records import INTERVALS
from tickvault.store import Store, migrate
from tickvault.store.dead_letters import DeadLetter
from tickvault.vault import Vault

KLINES = ("query", "klines", "--exchange", "binance", "--symbol", "BTCUSDT")
QUERY_HELP = "(see 'tickvault query --help')"
SERIES = "binance BTCUSDT 1m, binance BTCUSDT 5m, binance ETHUSDT 1m, okx BTCUSDT 1m"


def error(result: Result, code: int) -> str:
    """The one stderr line of a failed command (nothing on stdout)."""
    assert result.code == code, result.lines
    assert result.out == []
    assert len(result.err) == 1, result.err
    return result.err[0]


# ---------------------------------------------------------------- usage errors (exit 2)


LIMIT = "argument --limit: must be a positive integer, got"
REPLAY_HELP = "(see 'tickvault dlq replay --help')"
COMMANDS = (
    "'run', 'migrate', 'check', 'dlq', 'dev', 'demo', 'query', 'gaps', 'state', 'archive', 'summary', "
    "'import', 'export', 'models', 'configs', 'backtests', 'schemas'"
)
USAGE_ERRORS = [
    (
        (*KLINES, "--interval", "7m"),
        "argument --interval: invalid choice: '7m' (choose from "
        + ", ".join(f"'{i}'" for i in INTERVALS)
        + f") {QUERY_HELP}",
    ),
    ((*KLINES, "--limit", "-3"), f"{LIMIT} '-3' {QUERY_HELP}"),
    ((*KLINES, "--limit", "0"), f"{LIMIT} '0' {QUERY_HELP}"),
    ((*KLINES, "--limit", "ten"), f"{LIMIT} 'ten' {QUERY_HELP}"),
    ((*KLINES, "--end", "yesterday"), f"argument --end: 'yesterday': not an ISO-8601 timestamp {QUERY_HELP}"),
    ((*KLINES, "--bogus"), f"unrecognized arguments: --bogus {QUERY_HELP}"),
    (
        (*KLINES, "--format", "xml"),
        "argument --format: invalid choice: 'xml' (choose from 'table', 'csv', 'jsonl', 'parquet') "
        f"{QUERY_HELP}",
    ),
    (("query",), f"the following arguments are required: what {QUERY_HELP}"),
    (
        ("query", "klines", "--symbol", "X"),
        f"query klines needs --exchange and --symbol (or --symbols) {QUERY_HELP}",
    ),
    ((*KLINES, "--bot-id", "grid-1"), f"--bot-id does not apply to klines {QUERY_HELP}"),
    (
        ("query", "bot_state", "--symbol", "X", "--limit", "1"),
        f"--symbol, --limit do not apply to bot_state {QUERY_HELP}",
    ),
    (("query", "fills", "--interval", "1m"), f"--interval does not apply to fills {QUERY_HELP}"),
    (
        ("qeury",),
        f"argument COMMAND: invalid choice: 'qeury' (choose from {COMMANDS}) (see 'tickvault --help')",
    ),
    ((), "the following arguments are required: COMMAND (see 'tickvault --help')"),
    (("dlq", "replay"), f"one of the arguments --id --all is required {REPLAY_HELP}"),
    (("dlq", "replay", "--id", "x"), f"argument --id: invalid int value: 'x' {REPLAY_HELP}"),
    (
        ("dlq", "replay", "--id", "1", "--all"),
        f"argument --all: not allowed with argument --id {REPLAY_HELP}",
    ),
    (("dlq", "list", "--limit", "-1"), f"{LIMIT} '-1' (see 'tickvault dlq list --help')"),
]


@pytest.mark.parametrize(("args", "line"), USAGE_ERRORS)
async def test_usage_errors_are_one_line_and_exit_2(env: TestEnv, args: tuple[str, ...], line: str) -> None:
    assert error(await tickvault(env, *args), 2) == f"tickvault: error: {line}"


async def test_version(env: TestEnv) -> None:
    result = await tickvault(env, "--version")
    assert (result.code, result.out, result.err) == (0, ["tickvault 0.1.0"], [])


# ---------------------------------------------------------------- query errors (exit 1)


async def test_start_after_end_is_an_error(loaded: TestEnv) -> None:  # noqa: F811
    result = await tickvault(loaded, *KLINES, "--start", "2026-01-01T00:05:00Z", "--end", str(T0 + 120_000))
    assert (
        error(result, 1)
        == "tickvault: error: end 2026-01-01T00:02:00Z is not after start 2026-01-01T00:05:00Z"
    )
    same = await tickvault(loaded, "query", "fills", "--start", str(T0), "--end", str(T0))
    assert (
        error(same, 1) == "tickvault: error: end 2026-01-01T00:00:00Z is not after start 2026-01-01T00:00:00Z"
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("--exchange", "binance", "--symbol", "BTCUSTD"),
            f"no klines stored for exchange binance symbol BTCUSTD interval 1m; close matches: {SERIES}",
        ),
        (
            # 1s cannot be built from the stored 1m (3m could, and would be: see test_resample)
            ("--exchange", "binance", "--symbol", "BTCUSDT", "--interval", "1s"),
            f"no klines stored for exchange binance symbol BTCUSDT interval 1s; close matches: {SERIES}",
        ),
        (
            ("--exchange", "kraken", "--symbol", "XRPEUR"),
            "no klines stored for exchange kraken symbol XRPEUR interval 1m",
        ),
    ],
)
async def test_unknown_kline_series_names_close_matches(
    loaded: TestEnv,  # noqa: F811
    args: tuple[str, ...],
    line: str,
) -> None:
    assert error(await tickvault(loaded, "query", "klines", *args), 1) == f"tickvault: error: {line}"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("fills", "--bot-id", "grid-9"), "no fills stored for bot_id grid-9; close matches: grid-1, grid-2"),
        (("fills", "--symbol", "ETHUSDT"), "no fills stored for symbol ETHUSDT; close matches: BTCUSDT"),
        (
            ("orders", "--exchange", "binanse"),
            "no orders stored for exchange binanse; close matches: binance",
        ),
        (("orders", "--symbol", "XRPEUR"), "no orders stored for symbol XRPEUR"),
        (
            ("bot_state", "--bot-id", "GRID-1"),
            "no bot states stored for bot_id GRID-1; close matches: grid-1, grid-2",
        ),
    ],
)
async def test_filter_value_with_nothing_stored_names_close_matches(
    loaded: TestEnv,  # noqa: F811
    args: tuple[str, ...],
    line: str,
) -> None:
    assert error(await tickvault(loaded, "query", *args), 1) == f"tickvault: error: {line}"


async def test_empty_window_of_a_stored_series_is_not_an_error(loaded: TestEnv) -> None:  # noqa: F811
    later = await tickvault(loaded, *KLINES, "--start", "2027-01-01T00:00:00Z")
    assert (later.code, later.out, later.err) == (0, [], ["0 klines"])
    # each filter value is stored, only not together
    apart = await tickvault(loaded, "query", "orders", "--exchange", "okx", "--bot-id", "grid-2")
    assert (apart.code, apart.out, apart.err) == (0, [], ["0 orders"])


@pytest.mark.parametrize(
    ("args", "count"),
    [
        ((*KLINES, "--limit", "1"), "1 kline"),
        (KLINES, "10 klines"),
        (("query", "orders", "--bot-id", "grid-2"), "1 order"),
        (("query", "orders"), "4 orders"),
        (("query", "fills", "--bot-id", "grid-2"), "1 fill"),
        (("query", "bot_state", "--bot-id", "grid-2"), "1 bot state"),
        (("query", "bot_state"), "2 bot states"),
    ],
)
async def test_counts_are_pluralised(loaded: TestEnv, args: tuple[str, ...], count: str) -> None:  # noqa: F811
    result = await tickvault(loaded, *args, "--format", "csv")
    assert result.code == 0, result.lines
    assert result.err == [count]
    assert len(result.out) == 1 + int(count.split()[0])  # header and rows


async def test_vault_refuses_the_same_bad_arguments(loaded: TestEnv) -> None:  # noqa: F811
    async with Vault.connect(loaded.settings()) as vault:
        with pytest.raises(
            ConfigError, match=r"^end 2026-01-01T00:00:00Z is not after start 2026-01-01T00:00:00Z$"
        ):
            await vault.klines("binance", "BTCUSDT", "1m", start=T0, end=T0)
        with pytest.raises(
            ConfigError, match=r"^end 2026-01-01T00:00:00Z is not after start 2026-01-01T00:01:00Z$"
        ):
            await vault.fills(start="2026-01-01T00:01:00Z", end=T0)
        for limit in (0, -3):
            with pytest.raises(ConfigError, match=rf"^limit must be a positive integer, got {limit}$"):
                await vault.orders(limit=limit)
        with pytest.raises(ConfigError, match=r"^interval '7m' is not one of 1s 1m 3m .* 1w 1M$"):
            await vault.klines("binance", "BTCUSDT", "7m")
        with pytest.raises(ConfigError, match=r"^start 'soon': not an ISO-8601 timestamp$"):
            await vault.klines("binance", "BTCUSDT", "1m", start="soon")
        assert len(await vault.klines("binance", "BTCUSDT", "1m", limit=1)) == 1  # still usable


async def test_vault_lists_stored_series_and_filter_values(loaded: TestEnv) -> None:  # noqa: F811
    async with Vault.connect(loaded.settings()) as vault:
        series = await vault.kline_series()
        first_two = await vault.kline_series(limit=2)
        assert await vault.stored_values("fills", "symbol") == ["BTCUSDT"]
        assert await vault.stored_values("fills", "exchange") == ["binance", "okx"]
        assert await vault.stored_values("orders", "symbol") == ["BTCUSDT", "ETHUSDT"]
        assert await vault.stored_values("orders", "bot_id") == ["grid-1", "grid-2"]
        assert await vault.stored_values("bot_state", "bot_id") == ["grid-1", "grid-2"]
        with pytest.raises(ConfigError, match="no listing of distinct symbol values in bot_state"):
            await vault.stored_values("bot_state", "symbol")
    assert series == [
        ("binance", "BTCUSDT", "1m"),
        ("binance", "BTCUSDT", "5m"),
        ("binance", "ETHUSDT", "1m"),
        ("okx", "BTCUSDT", "1m"),
    ]
    assert first_two == series[:2]


# ---------------------------------------------------------------- dlq replay --id


async def test_dlq_replay_of_unknown_ids_replays_nothing(env: TestEnv) -> None:
    await migrate.upgrade(env.settings().postgres)
    stream = env.stream("kline")
    payload = json.dumps(EXAMPLES["kline"]).encode()
    async with Store(env.settings().postgres) as store:
        await store.write_dead_letters([
            DeadLetter("redis", stream, "1-0", "kline", "db_rejected", "test", payload),
            DeadLetter("kafka", stream, "0:7", "kline", "db_rejected", "test", payload),
        ])  # fmt: skip
    [(redis_id,), (kafka_id,)] = [
        tuple(r) for r in await env.fetch("SELECT id FROM {s}.dead_letters ORDER BY id")
    ]
    missing = kafka_id + 1

    one = await tickvault(env, "dlq", "replay", "--id", str(redis_id), "--id", str(missing))
    assert error(one, 1) == f"tickvault: error: no dead letter with id {missing}; nothing replayed"
    two = await tickvault(env, "dlq", "replay", "--id", str(missing + 1), "--id", str(missing))
    assert (
        error(two, 1)
        == f"tickvault: error: no dead letter with ids {missing}, {missing + 1}; nothing replayed"
    )
    other = await tickvault(env, "dlq", "replay", "--id", str(kafka_id), "--id", str(redis_id))
    assert error(other, 1) == (
        f"tickvault: error: dead letter {kafka_id} did not come from redis (source.kind); nothing replayed"
    )
    assert await env.redis.xlen(stream) == 0
    assert [r["replayed_at"] for r in await env.fetch("SELECT replayed_at FROM {s}.dead_letters")] == [
        None
    ] * 2

    result = await tickvault(env, "dlq", "replay", "--id", str(redis_id))
    assert (result.code, result.out) == (0, ["replayed 1 dead letter"])
    again = await tickvault(env, "dlq", "replay", "--id", str(redis_id))  # named: replayed again
    assert (again.code, again.out) == (0, ["replayed 1 dead letter"])
    assert await env.redis.xlen(stream) == 2
    listed = await tickvault(env, "dlq", "list")
    assert (listed.code, listed.err) == (0, ["1 dead letter"])
