"""The backtest methods of `Vault` (a mixin): store runs, list and filter them, load one,
compare their metrics.

A run (run_id) holds its strategy, metadata (JSON object), metrics (name → number), its
lineage — the model version (name, version, and its sha256 at save time), the config
version (name, version, sha256) and the data range (exchange, symbols, interval, start,
end) — and its trades and equity curve as Parquet (zstd; the Arrow table as given, so
decimal128 columns stay exact decimals) plus artifacts (plots, reports: any bytes or files,
named by NAME_PATTERN). Trades, equity and artifacts are blobs (tickvault.repository.blobs,
area `backtests`), all complete before the run's rows are inserted in one transaction.
Lineage names versions that existed at save time; deleting that model version later does
not touch the run, whose stored sha256 still identifies the content it used.

Runs are immutable: saving a stored run_id again with the same content (its
`content_sha256`, over every field and blob checksum) returns it; other content raises
VersionConflict.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq

from tickvault.errors import ConfigError, NotFound, VersionConflict
from tickvault.reads.args import bound, limit_of, window
from tickvault.records import INTERVALS, dump_json
from tickvault.repository.base import json_column
from tickvault.repository.blobs import Blob
from tickvault.repository.configs import Configs
from tickvault.repository.upkeep import ModelUpkeep
from tickvault.repository.values import (
    canonical_json,
    canonical_metrics,
    check_name,
    check_version,
    sha256_text,
)

Rows: TypeAlias = pa.Table | Sequence[Mapping[str, Any]]
_SELECT: Final = """SELECT b.*, coalesce((SELECT array_agg(ARRAY[a.name, a.sha256, a.size_bytes::text]
    ORDER BY a.name) FROM {schema}.backtest_artifacts a WHERE a.run_id = b.run_id), '{{}}') AS artifacts
    FROM {schema}.backtests b WHERE {where} ORDER BY b.created_at DESC, b.run_id"""


@dataclass(frozen=True)
class DataRange:
    """The market data a run used: `exchange`, `symbols`, kline `interval` (or None) and
    [start, end) in UTC."""

    exchange: str
    symbols: tuple[str, ...]
    interval: str | None
    start: dt.datetime
    end: dt.datetime


@dataclass(frozen=True)
class Artifact:
    name: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class BacktestRun:
    """A stored run without its tables: lineage as (name, version) pairs with the sha256 of
    the content at save time, `trades_rows`/`equity_rows` None when not given."""

    run_id: str
    strategy: str
    metadata: dict[str, Any]
    metrics: dict[str, Any]
    model: tuple[str, str] | None
    model_sha256: str | None
    config: tuple[str, int] | None
    config_sha256: str | None
    data: DataRange | None
    trades_rows: int | None
    equity_rows: int | None
    artifacts: tuple[Artifact, ...]
    content_sha256: str
    created_at: dt.datetime
    blobs: dict[str, Blob]  # "trades", "equity" → their Parquet blobs


@dataclass(frozen=True)
class BacktestResult:
    """A run with its trades and equity curve (None where the run has none)."""

    run: BacktestRun
    trades: pa.Table | None
    equity: pa.Table | None


def _run(row: asyncpg.Record) -> BacktestRun:
    model = None if row["model_name"] is None else (row["model_name"], row["model_version"])
    config = None if row["config_name"] is None else (row["config_name"], row["config_version"])
    data = None
    if row["exchange"] is not None:
        data = DataRange(
            row["exchange"], tuple(row["symbols"]), row["interval"], row["data_start"], row["data_end"]
        )
    blobs = {
        kind: Blob(row[f"{kind}_sha256"], row[f"{kind}_bytes"])
        for kind in ("trades", "equity") if row[f"{kind}_sha256"] is not None
    }  # fmt: skip
    artifacts = tuple(Artifact(n, s, int(b)) for n, s, b in row["artifacts"])
    return BacktestRun(
        row["run_id"], row["strategy"], json_column(row["metadata"]), json_column(row["metrics"]), model,
        row["model_sha256"], config, row["config_sha256"], data, row["trades_rows"], row["equity_rows"],
        artifacts, row["content_sha256"], row["created_at"], blobs,
    )  # fmt: skip


def _data_range(data: DataRange | Mapping[str, Any]) -> DataRange:
    if isinstance(data, DataRange):
        data = vars(data)
    unknown = set(data) - {"exchange", "symbols", "symbol", "interval", "start", "end"}
    if unknown:
        raise ConfigError(f"data range: unknown fields {', '.join(sorted(unknown))}")
    symbols = data.get("symbols", data.get("symbol"))
    symbols = (symbols,) if isinstance(symbols, str) else tuple(symbols or ())
    interval = data.get("interval")
    if interval is not None and interval not in INTERVALS:
        raise ConfigError(f"data range: interval {interval!r} is not one of {' '.join(INTERVALS)}")
    if not isinstance(data.get("exchange"), str) or not data["exchange"] or not symbols:
        raise ConfigError("data range needs an exchange and at least one symbol")
    if not all(isinstance(s, str) and s for s in symbols):
        raise ConfigError("data range: symbols must be non-empty strings")
    start, end = window(data.get("start"), data.get("end"))
    if start is None or end is None:
        raise ConfigError("data range needs a start and an end")
    return DataRange(data["exchange"], symbols, interval, start, end)


def _parquet(rows: Rows, what: str) -> tuple[bytes, int]:
    try:
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: not a table: {exc}") from None
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue(), table.num_rows


def _default_run_id() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


class Backtests(Configs, ModelUpkeep):
    """`Vault`'s backtest methods (lineage is checked against the model and config registries)."""

    async def save_backtest(
        self,
        strategy: str,
        *,
        run_id: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        trades: Rows | None = None,
        equity: Rows | None = None,
        artifacts: Mapping[str, bytes | str | os.PathLike[str]] | None = None,
        model: tuple[str, str] | None = None,
        config: tuple[str, int] | None = None,
        data: DataRange | Mapping[str, Any] | None = None,
    ) -> BacktestRun:
        """Store a backtest run and return it. `run_id` defaults to `<UTC time>-<8 hex>`;
        `trades`/`equity` are Arrow tables (or lists of dicts, typed by Arrow's inference);
        `artifacts` name → bytes or file path; `model` (name, version) and `config`
        (name, version) must be stored; `data` a DataRange or a dict of its fields (start,
        end as aware datetimes, epoch ms or ISO-8601). Raises ConfigError for invalid names
        or values, NotFound for an unknown model or config version, BlobTooLarge,
        VersionConflict when run_id is stored with other content, RepositoryError."""
        check_name(strategy, "strategy")
        run_id = _default_run_id() if run_id is None else check_name(run_id, "run id")
        meta = self._sized(canonical_json({} if metadata is None else metadata, "metadata"), "metadata")
        scores = self._sized(canonical_metrics({} if metrics is None else metrics), "metrics")
        lineage: dict[str, Any] = {}
        if model is not None:
            found = await self.model(*model)
            lineage["model"] = (found.name, found.version, found.sha256)
        if config is not None:
            if not isinstance(config, tuple | list) or len(config) != 2:
                raise ConfigError("config must be (name, version)")
            cfg = await self.load_strategy_config(config[0], check_version(config[1]))
            lineage["config"] = (cfg.name, cfg.version, cfg.sha256)
        span = None if data is None else _data_range(data)
        files: dict[str, bytes | Path] = {}
        counts: dict[str, int] = {}
        for kind, rows in (("trades", trades), ("equity", equity)):
            if rows is not None:
                files[kind], counts[kind] = await self._thread(_parquet, rows, kind)
        named = {
            check_name(n, "artifact name"): v if isinstance(v, bytes) else Path(v)
            for n, v in (artifacts or {}).items()
        }
        return await self._store_run(run_id, strategy, meta, scores, lineage, span, files, counts, named)

    async def _store_run(
        self,
        run_id: str,
        strategy: str,
        meta: str,
        scores: str,
        lineage: dict[str, Any],
        span: DataRange | None,
        tables: dict[str, bytes | Path],
        counts: dict[str, int],
        artifacts: dict[str, bytes | Path],
    ) -> BacktestRun:
        blobs = self._blobs("backtests")
        schema = self._schema

        async def save(conn: asyncpg.Connection) -> None:
            stored = {k: await self._thread(blobs.put, v) for k, v in tables.items()}
            kept = {k: await self._thread(blobs.put, v) for k, v in artifacts.items()}
            model = lineage.get("model", (None, None, None))
            config = lineage.get("config", (None, None, None))
            data = (
                (None,) * 5
                if span is None
                else (span.exchange, list(span.symbols), span.interval, span.start, span.end)
            )
            trades, equity = stored.get("trades"), stored.get("equity")
            fields = [
                run_id, strategy, *model, *config, *data, meta, scores,
                trades and trades.sha256, trades and trades.size_bytes, counts.get("trades"),
                equity and equity.sha256, equity and equity.size_bytes, counts.get("equity"),
            ]  # fmt: skip
            listing = sorted((n, b.sha256, b.size_bytes) for n, b in kept.items())
            fields.append(sha256_text(dump_json([_plain(f) for f in fields] + [list(a) for a in listing])))
            async with conn.transaction():
                existing = await conn.fetchval(
                    f"SELECT content_sha256 FROM {schema}.backtests WHERE run_id = $1",  # noqa: S608 - identifiers are ours
                    run_id,
                )
                if existing is not None:
                    if existing != fields[-1]:
                        raise VersionConflict(
                            f"backtest run {run_id} is already stored with other content; runs are immutable"
                        )
                    return
                await conn.execute(
                    f"INSERT INTO {schema}.backtests (run_id, strategy, model_name, model_version, "  # noqa: S608 - identifiers are ours
                    "model_sha256, config_name, config_version, config_sha256, exchange, symbols, "
                    '"interval", data_start, data_end, metadata, metrics, trades_sha256, trades_bytes, '
                    "trades_rows, equity_sha256, "
                    "equity_bytes, equity_rows, content_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
                    "$10, $11, $12, $13, $14::jsonb, $15::jsonb, $16, $17, $18, $19, $20, $21, $22)",
                    *fields,
                )
                await conn.executemany(
                    f"INSERT INTO {schema}.backtest_artifacts (run_id, name, sha256, size_bytes) "  # noqa: S608 - identifiers are ours
                    "VALUES ($1, $2, $3, $4)",
                    [(run_id, *a) for a in listing],
                )

        await self._locked(False, save)
        return await self.backtest(run_id)

    async def backtest(self, run_id: str) -> BacktestRun:
        """One run, without its tables. Raises ConfigError for an invalid run id, NotFound."""
        check_name(run_id, "run id")
        rows = await self._store.fetch(_SELECT.format(schema=self._schema, where="b.run_id = $1"), run_id)
        if not rows:
            raise NotFound(f"no backtest run {run_id}")
        return _run(rows[0])

    async def load_backtest(self, run_id: str) -> BacktestResult:
        """A run with its trades and equity curve read back from Parquet (checked against
        their sha256 first: CorruptBlob otherwise). Raises as `backtest`."""
        run = await self.backtest(run_id)
        tables: dict[str, pa.Table] = {}
        for kind, blob in run.blobs.items():
            data = await self._thread(self._blobs("backtests").read, blob, f"backtest run {run_id} {kind}")
            tables[kind] = await self._thread(pq.read_table, pa.BufferReader(data))
        return BacktestResult(run, tables.get("trades"), tables.get("equity"))

    async def load_backtest_artifact(self, run_id: str, name: str) -> bytes:
        """The bytes of one artifact of a run, checked against its sha256 (CorruptBlob
        otherwise). Raises NotFound naming the run's artifacts when there is no such one."""
        run = await self.backtest(run_id)
        check_name(name, "artifact name")
        found = {a.name: a for a in run.artifacts}
        if name not in found:
            listed = ", ".join(found) or "none"
            raise NotFound(f"no artifact {name} in backtest run {run_id}; artifacts: {listed}")
        artifact = found[name]
        blob = Blob(artifact.sha256, artifact.size_bytes)
        return await self._thread(
            self._blobs("backtests").read, blob, f"backtest run {run_id} artifact {name}"
        )

    async def backtests(
        self,
        strategy: str | None = None,
        *,
        model: str | tuple[str, str] | None = None,
        config: str | tuple[str, int] | None = None,
        since: dt.datetime | int | str | None = None,
        until: dt.datetime | int | str | None = None,
        limit: int | None = None,
    ) -> list[BacktestRun]:
        """Stored runs, newest first: of `strategy`, using `model` (a name, or (name,
        version)), using `config` (a name, or (name, version)), saved in [since, until);
        at most `limit`. Raises ConfigError for bad filters."""
        model_name, model_version = (model, None) if isinstance(model, str) or model is None else model
        config_name, config_version = (config, None) if isinstance(config, str) or config is None else config
        for value, what in (
            (strategy, "strategy"),
            (model_name, "model name"),
            (model_version, "model version"),
            (config_name, "config name"),
        ):
            if value is not None:
                check_name(value, what)
        if config_version is not None:
            check_version(config_version)
        lower, upper = window(bound(since, "since"), bound(until, "until"))
        where = (
            "($1::text IS NULL OR b.strategy = $1) AND ($2::text IS NULL OR b.model_name = $2) "
            "AND ($3::text IS NULL OR b.model_version = $3) AND ($4::text IS NULL OR b.config_name = $4) "
            "AND ($5::integer IS NULL OR b.config_version = $5) "
            "AND ($6::timestamptz IS NULL OR b.created_at >= $6) "
            "AND ($7::timestamptz IS NULL OR b.created_at < $7)"
        )
        sql = _SELECT.format(schema=self._schema, where=where)
        if limit is not None:
            sql += f" LIMIT {limit_of(limit)}"
        args = (strategy, model_name, model_version, config_name, config_version, lower, upper)
        return [_run(row) for row in await self._store.fetch(sql, *args)]

    async def compare_backtests(self, run_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Metrics side by side: one dict per metric name (sorted), {"metric": name,
        <run_id>: value, ...}, the value None where a run lacks that metric. Raises
        ConfigError for fewer than one run id, NotFound for an unknown run."""
        if isinstance(run_ids, str) or not run_ids:
            raise ConfigError("compare needs a list of run ids")
        runs = [await self.backtest(r) for r in dict.fromkeys(run_ids)]
        names = sorted({m for run in runs for m in run.metrics})
        return [{"metric": m, **{run.run_id: run.metrics.get(m) for run in runs}} for m in names]


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value
