"""argv → Settings → logging → asyncio.run(...). No pipeline logic lives here.

Every command takes `--config FILE`; every option can also come from `TICKVAULT_*`
environment variables. Errors print one line on stderr, `tickvault: error: …`, and exit 1;
usage errors (an unknown option, a missing or malformed argument) print one such line that
points at the command's `--help`, and exit 2. `query` lives in query.py, `gaps` in gaps.py,
`state` in state_command.py, `archive` in archive/command.py, `summary` in trading/command.py,
`import` in importer/command.py, `demo` in demo_command.py, `export` in export/command.py.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

import tickvault
from tickvault import app, demo_command, state_command
from tickvault import gaps as gaps_command
from tickvault import query as query_command
from tickvault.archive import command as archive_command
from tickvault.errors import SourceUnavailable, TickvaultError
from tickvault.export import command as export_command
from tickvault.importer import command as import_command
from tickvault.query import count, join, positive_int
from tickvault.record_schemas import EXAMPLES, json_schemas
from tickvault.repository import command as repository_command
from tickvault.settings import Settings, load_settings
from tickvault.sources import kafka
from tickvault.sources.redis_streams import connect as redis_connect
from tickvault.store import Store, migrate
from tickvault.store.dead_letters import StoredDeadLetter
from tickvault.trading import command as summary_command

log = logging.getLogger("tickvault")
# a person is waiting on these: fail fast instead of retrying PostgreSQL for minutes
CONNECT_RETRIES_BY_COMMAND = {
    "check": 0, "query": 2, "gaps": 2, "dlq": 2, "archive": 2, "state": 2, "summary": 2, "import": 2,
    **dict.fromkeys(repository_command.COMMANDS, 2),
    "export": 2,
}  # fmt: skip


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(settings: Settings, command: str = "run") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log.json_format:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log.level)
    if command in CONNECT_RETRIES_BY_COMMAND:
        # a person reads these: the command's one-line outcome, not the driver's retries
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))


async def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    app.tune_gc()
    return await app.run(settings)


async def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    if args.downgrade:
        await migrate.downgrade(settings.postgres, args.downgrade)
    else:
        await migrate.upgrade(settings.postgres, args.revision, settings)
    print(f"schema {settings.postgres.schema_name}: {args.downgrade or args.revision}")
    return 0


async def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    pg = settings.postgres
    try:
        async with Store(pg) as store:
            current, found, head = await store.migrations_current()
    except TickvaultError as exc:
        print(f"unhealthy: {exc}")
        return 1
    if not current:
        print(f"unhealthy: schema {pg.schema_name} is at migration {found or 'none'}, expected {head}")
        return 1
    kind = settings.source.kind
    try:
        await (kafka.ping(settings.kafka) if kind == "kafka" else _ping_redis(settings))
    except SourceUnavailable as exc:  # carries no credentials: hosts and the driver's reason
        print(f"unhealthy: {exc}")
        return 1
    except Exception as exc:  # redis-py texts may carry the URL: name the error only
        print(f"unhealthy: {kind} unreachable: {type(exc).__name__}")
        return 1
    print(f"healthy: postgres schema {pg.schema_name} at {head}, {kind} source reachable")
    return 0


async def _ping_redis(settings: Settings) -> None:
    redis = redis_connect(settings.redis)
    try:
        await redis.ping()
    finally:
        await redis.aclose()


async def cmd_dlq_list(settings: Settings, args: argparse.Namespace) -> int:
    async with Store(settings.postgres) as store:
        rows = await store.dead_letters(include_replayed=args.all, limit=args.limit)
    for row in rows:
        d = row.letter
        if args.json:
            print(json.dumps({
                "id": row.id, "received_at": row.received_at.isoformat(), "source": d.source,
                "stream": d.stream, "entry_id": d.entry_id, "kind": d.kind, "category": d.category,
                "reason": d.reason, "payload": d.payload.decode("utf-8", errors="replace"),
                "replayed_at": row.replayed_at.isoformat() if row.replayed_at else None,
            }))  # fmt: skip
        else:
            replayed = " (replayed)" if row.replayed_at else ""
            print(
                f"{row.id}\t{row.received_at:%Y-%m-%dT%H:%M:%SZ}\t{d.stream}\t{d.entry_id}\t"
                f"{d.category}\t{d.reason[:200]}\t{len(d.payload)} bytes{replayed}"
            )
    if not args.json:
        print(count(len(rows), "dead letter"), file=sys.stderr)
    return 0


async def cmd_dlq_replay(settings: Settings, args: argparse.Namespace) -> int:
    """`--all`: every dead letter of the configured source not yet replayed. `--id`: exactly
    those, replayed before or not; an unknown id or one from the other source is an error,
    and then nothing is replayed. A replay publishes new messages, newer than anything
    stored (see the README's rules per kind)."""
    kind = settings.source.kind
    async with Store(settings.postgres) as store:
        if args.ids:
            ids = sorted(set(args.ids))
            rows = await store.dead_letters(ids=ids, include_replayed=True, limit=len(ids))
            _check_named(ids, rows, kind)
        else:
            rows = await store.dead_letters(limit=args.limit)
            rows = [r for r in rows if r.letter.source == kind]
        records = [(r.letter.stream, r.letter.payload) for r in rows]
        if kind == "kafka":
            await kafka.publish(settings.kafka, records)
        else:
            await _xadd(settings, records)
        await store.mark_replayed([r.id for r in rows])
    print(f"replayed {count(len(rows), 'dead letter')}")
    return 0


def _check_named(ids: Sequence[int], rows: Sequence[StoredDeadLetter], kind: str) -> None:
    found = {r.id for r in rows}
    missing = [i for i in ids if i not in found]
    if missing:
        which = "id" if len(missing) == 1 else "ids"
        raise TickvaultError(f"no dead letter with {which} {join(missing)}; nothing replayed")
    other = [r.id for r in rows if r.letter.source != kind]
    if other:
        noun = "dead letter" if len(other) == 1 else "dead letters"
        raise TickvaultError(f"{noun} {join(other)} did not come from {kind} (source.kind); nothing replayed")


async def _xadd(settings: Settings, records: Sequence[tuple[str, bytes]]) -> None:
    redis = redis_connect(settings.redis)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for stream, payload in records:
                pipe.xadd(stream, {"data": payload})
            await pipe.execute()
    finally:
        await redis.aclose()


async def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from tickvault import dev  # imports the optional embedded servers only when asked for

    app.tune_gc()
    return await dev.run(settings, args.data_dir, args.demo, args.metrics_port)


def _port(text: str) -> int:
    """argparse type of --metrics-port: 0 (any free port) to 65535."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0-65535): {text!r}")
    return int(text)


def cmd_schemas(args: argparse.Namespace) -> int:
    out = Path(args.out)
    (out / "examples").mkdir(parents=True, exist_ok=True)
    for kind, schema in json_schemas().items():
        (out / f"{kind}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
        (out / "examples" / f"{kind}.json").write_text(json.dumps(EXAMPLES[kind], indent=2) + "\n")
    print(f"wrote {len(EXAMPLES)} schemas and examples to {out}")
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error, pointing at the command's help.

    The innermost (sub)parser that parsed the arguments is kept as `args.usage`, so errors
    found after parsing (unrecognised arguments, `query` checks) point at its help too.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"tickvault: error: {message} (see '{self.prog} --help')\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if not hasattr(parsed, "usage"):  # a sub-command's parser returns first
            parsed.usage = self
        return parsed, extras

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            parsed.usage.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def _version() -> str:
    try:
        return importlib.metadata.version("tickvault")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return tickvault.__version__


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML config file (env TICKVAULT_* overrides it)")
    parser = _Parser(prog="tickvault", description="Storage daemon for trading systems.")
    parser.add_argument("--version", action="version", version=f"tickvault {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", parents=[common], help="run the ingest daemon until SIGTERM/SIGINT")
    run.set_defaults(handler=cmd_run)
    mig = sub.add_parser("migrate", parents=[common], help="create or upgrade the database schema")
    mig.add_argument("--revision", default="head", help="target revision (default: head)")
    mig.add_argument("--downgrade", metavar="REV", help="downgrade to REV instead (e.g. base)")
    mig.set_defaults(handler=cmd_migrate)
    check = sub.add_parser("check", parents=[common], help="exit 0 if healthy, else 1 with the reason")
    check.set_defaults(handler=cmd_check)
    dlq = sub.add_parser("dlq", help="inspect and replay dead letters").add_subparsers(
        dest="dlq_command", required=True, metavar="ACTION"
    )
    lst = dlq.add_parser("list", parents=[common], help="list dead letters (not yet replayed)")
    lst.add_argument("--all", action="store_true", help="include replayed ones")
    lst.add_argument("--limit", type=positive_int, default=100, help="at most this many (default: 100)")
    lst.add_argument("--json", action="store_true", help="one JSON object per line, with payloads")
    lst.set_defaults(handler=cmd_dlq_list)
    rep = dlq.add_parser("replay", parents=[common], help="re-publish dead letters to their stream")
    which = rep.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--id", dest="ids", type=int, action="append", metavar="N", help="dead letter id (repeatable)"
    )
    which.add_argument("--all", action="store_true", help="every dead letter not yet replayed")
    rep.add_argument("--limit", type=positive_int, default=10_000, help="--all: at most this many")
    rep.set_defaults(handler=cmd_dlq_replay)
    dev = sub.add_parser(
        "dev", parents=[common], help="run with embedded PostgreSQL and Redis (pip install 'tickvault[dev]')",
        description="Embedded PostgreSQL and Redis under --data-dir, migrations, the daemon, and with --demo "
        "a synthetic market. Metrics listen on 127.0.0.1:9108 (metrics.host, if set, is kept); "
        "--metrics-port or TICKVAULT_METRICS__PORT picks another port, 0 a free one. "
        "Run as root, PostgreSQL runs as the system user embedded_postgres, created on first use.",
    )  # fmt: skip
    dev.add_argument(
        "--data-dir", type=lambda p: Path(p).absolute(), default=".tickvault", metavar="DIR",
        help="where the embedded servers keep data (default: ./.tickvault)",
    )  # fmt: skip
    dev.add_argument("--demo", action="store_true", help="also publish a synthetic market and a toy bot")
    dev.add_argument(
        "--metrics-port", type=_port, metavar="PORT",
        help="port of /metrics (overrides metrics.port and TICKVAULT_METRICS__PORT; default 9108)",
    )  # fmt: skip
    dev.set_defaults(handler=cmd_dev)
    dem = sub.add_parser(
        "demo", parents=[common], help="publish a synthetic market and a toy bot to the configured source",
        description="Publish the market of 'tickvault dev --demo' (exchange demo: 1s and 1m klines of "
        "three symbols, a grid bot's orders, fills and state) to the Redis streams or Kafka topics of "
        "source.topics, once a second, until SIGTERM/SIGINT. A restart continues from what was published "
        "last. See 'Deploying' in the README.",
    )  # fmt: skip
    demo_command.add_arguments(dem)
    dem.set_defaults(handler=demo_command.run)
    query = sub.add_parser("query", parents=[common], help="print stored klines, orders, fills or bot state")
    query_command.add_arguments(query)
    query.set_defaults(handler=query_command.run)
    gaps = sub.add_parser(
        "gaps", parents=[common], help="list the holes of a kline series in a window (hot and cold)",
        description="Print each run of missing open times of the interval grid in [--start, --end): "
        "start, end (exclusive) and the missing candles. See 'Gaps' in the README.",
    )  # fmt: skip
    gaps_command.add_arguments(gaps)
    gaps.set_defaults(handler=gaps_command.run)
    state = sub.add_parser(
        "state", help="show bot state: get BOT_ID, list, history BOT_ID",
        description="A bot's newest state (from the Redis cache, else PostgreSQL), every bot's, "
        "or a bot's history of snapshots. See 'Bot state' in the README.",
    )  # fmt: skip
    state_command.add_arguments(state, common)
    state.set_defaults(handler=state_command.run)
    arc = sub.add_parser(
        "archive", parents=[common], help="roll old partitions to the cold tier; --list, --verify",
        description="Write each partition of klines, fills and order_events that ends before now minus "
        "archive.hot_retention to the cold tier, read it back and check it, then drop it from PostgreSQL. "
        "See 'Cold tier' in the README.",
    )  # fmt: skip
    archive_command.add_arguments(arc)
    arc.set_defaults(handler=archive_command.run)
    summ = sub.add_parser(
        "summary", parents=[common], help="trading summary of fills: PnL, fees, win rate, drawdown",
        description="Fills, round trips, realized PnL, fees, win rate, average win and loss, profit factor "
        "and max drawdown of the fills matching the filters in [--start, --end), hot and cold. "
        "See 'Positions and PnL' in the README.",
    )  # fmt: skip
    summary_command.add_arguments(summ)
    summ.set_defaults(handler=summary_command.run)
    imp = sub.add_parser(
        "import", parents=[common], help="bulk-load files: JSON Lines, Binance dumps, cold-tier Parquet",
        description="Load klines and other records from files straight into the store, through the "
        "daemon's validation and idempotent writers: a re-import adds nothing twice. Bad lines go to "
        "dead letters and are counted. See 'Bulk import' in the README.",
    )  # fmt: skip
    import_command.add_arguments(imp)
    imp.set_defaults(handler=import_command.run)
    export_command.add_command(sub, common)
    repository_command.add_commands(sub, common)  # models, configs, backtests: repository/
    sch = sub.add_parser("schemas", help="write the JSON Schema and an example of every message kind")
    sch.add_argument("--out", default="schemas", help="directory (default: schemas)")
    sch.set_defaults(handler=None)
    return parser


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS): less event-loop overhead per message."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit code. Usage errors exit 2 through SystemExit, as argparse does."""
    args = _parser().parse_args(argv)
    checks = {"query": query_command.usage_problem, "export": export_command.usage_problem}
    if (check := checks.get(args.command)) and (problem := check(args)):
        args.usage.error(problem)
    try:
        if args.command == "schemas":
            return cmd_schemas(args)
        settings = load_settings(args.config)
        if args.command in CONNECT_RETRIES_BY_COMMAND:
            limit = CONNECT_RETRIES_BY_COMMAND[args.command]
            pg, kafka_settings = settings.postgres, settings.kafka
            settings = settings.model_copy(
                update={
                    "postgres": pg.model_copy(update={"connect_retries": min(pg.connect_retries, limit)}),
                    "kafka": kafka_settings.model_copy(
                        update={"connect_retries": min(kafka_settings.connect_retries, limit)}
                    ),
                }
            )
        setup_logging(settings, args.command)
        handler: Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]] = args.handler
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(handler(settings, args))
    except TickvaultError as exc:
        print(f"tickvault: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
