"""argv → Settings → logging → asyncio.run(...). No pipeline logic lives here.

Every command takes `--config FILE`; every option can also come from `TICKVAULT_*`
environment variables. Errors print one line on stderr and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from tickvault import app
from tickvault.errors import SourceUnavailable, TickvaultError
from tickvault.records import EXAMPLES, Record, dump_json, json_schemas
from tickvault.settings import Settings, load_settings
from tickvault.sources import kafka
from tickvault.sources.redis_streams import connect as redis_connect
from tickvault.store import Store, migrate
from tickvault.vault import Vault

log = logging.getLogger("tickvault")
# a person is waiting on these: fail fast instead of retrying PostgreSQL for minutes
CONNECT_RETRIES_BY_COMMAND = {"check": 0, "query": 2, "dlq": 2}


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
        await migrate.upgrade(settings.postgres, args.revision)
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
        print(f"{len(rows)} dead letters", file=sys.stderr)
    return 0


async def cmd_dlq_replay(settings: Settings, args: argparse.Namespace) -> int:
    if not args.ids and not args.all:
        raise TickvaultError("name dead letters with --id, or pass --all")
    kind = settings.source.kind
    async with Store(settings.postgres) as store:
        rows = await store.dead_letters(ids=args.ids or (), limit=args.limit)
        rows = [r for r in rows if r.letter.source == kind]
        records = [(r.letter.stream, r.letter.payload) for r in rows]
        if kind == "kafka":
            await kafka.publish(settings.kafka, records)
        else:
            await _xadd(settings, records)
        await store.mark_replayed([r.id for r in rows])
    print(f"replayed {len(rows)} dead letters")
    return 0


async def _xadd(settings: Settings, records: Sequence[tuple[str, bytes]]) -> None:
    redis = redis_connect(settings.redis)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for stream, payload in records:
                pipe.xadd(stream, {"data": payload})
            await pipe.execute()
    finally:
        await redis.aclose()


def _text(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return dump_json(value)
    return "" if value is None else str(value)


def print_records(records: Sequence[Record], fmt: str) -> None:
    if not records:
        return
    columns = list(type(records[0]).COLUMNS)
    if fmt == "jsonl":
        for r in records:
            values = {c: getattr(r, c) for c in columns}
            print(dump_json({c: _text(v) if isinstance(v, dt.datetime) else v for c, v in values.items()}))
        return
    rows = [[_text(getattr(r, c)) for c in columns] for r in records]
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        for row in rows:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


async def cmd_query(settings: Settings, args: argparse.Namespace) -> int:
    window = {"start": args.start, "end": args.end, "limit": args.limit}
    async with Vault.connect(settings) as vault:
        records: Sequence[Record]
        if args.what == "klines":
            if not (args.exchange and args.symbol):
                raise TickvaultError("query klines needs --exchange and --symbol")
            records = await vault.klines(args.exchange, args.symbol, args.interval, **window)
        elif args.what == "orders":
            records = await vault.orders(args.exchange, args.symbol, args.bot_id, **window)
        elif args.what == "fills":
            records = await vault.fills(args.exchange, args.symbol, args.bot_id, **window)
        else:
            records = await vault.bot_states(args.bot_id)
    print_records(records, args.format)
    print(f"{len(records)} {args.what}", file=sys.stderr)
    return 0


async def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from tickvault import dev  # imports the optional embedded servers only when asked for

    app.tune_gc()
    return await dev.run(settings, args.data_dir, args.demo, args.metrics_port)


def _port(text: str) -> int:
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


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML config file (env TICKVAULT_* overrides it)")
    parser = argparse.ArgumentParser(prog="tickvault", description="Storage daemon for trading systems.")
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
    lst.add_argument("--limit", type=int, default=100)
    lst.add_argument("--json", action="store_true", help="one JSON object per line, with payloads")
    lst.set_defaults(handler=cmd_dlq_list)
    rep = dlq.add_parser("replay", parents=[common], help="re-publish dead letters to their stream")
    rep.add_argument("--id", dest="ids", type=int, action="append", help="dead letter id (repeatable)")
    rep.add_argument("--all", action="store_true", help="every dead letter not yet replayed")
    rep.add_argument("--limit", type=int, default=10_000)
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
    query = sub.add_parser("query", parents=[common], help="print stored klines, orders, fills or bot state")
    query.add_argument("what", choices=["klines", "orders", "fills", "bot_state"])
    query.add_argument("--exchange")
    query.add_argument("--symbol")
    query.add_argument("--interval", default="1m", help="klines only (default: 1m)")
    query.add_argument("--bot-id")
    query.add_argument("--start", help="inclusive; ISO-8601 with offset or epoch ms")
    query.add_argument("--end", help="exclusive; ISO-8601 with offset or epoch ms")
    query.add_argument("--limit", type=int, help="at most this many rows (klines: the latest ones)")
    query.add_argument("--format", choices=["table", "csv", "jsonl"], default="table")
    query.set_defaults(handler=cmd_query)
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
    args = _parser().parse_args(argv)
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
