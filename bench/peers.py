"""The same klines written by other tools, for the ingest benchmark's comparison.

- cryptofeed: its PostgreSQL backend's own `CandlesPostgres.write_batch`, 5,000 candles per
  call, into the benchmark's klines table (`custom_columns` maps cryptofeed's candle fields to
  our columns; quote_volume, which cryptofeed candles lack, stays NULL). Building the batch
  tuples cryptofeed's feed would hand its backend happens outside the timed part.
- ORM: the seed-script way, a SQLAlchemy ORM object added and committed per row, on a sample.

Each leaves the klines table as it found it (TRUNCATE) and returns rows/s.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final

import asyncpg

from tickvault.records import RECORD_TYPES

BATCH_ROWS: Final = 5000
EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
CRYPTOFEED_COLUMNS: Final = {  # cryptofeed candle field → klines column
    "exchange": "exchange", "symbol": "symbol", "interval": "interval", "start": "open_time",
    "stop": "close_time", "open": "open", "high": "high", "low": "low", "close": "close",
    "volume": "volume", "trades": "trades", "closed": "closed",
}  # fmt: skip


def _seconds(ts: dt.datetime) -> float:
    return (ts - EPOCH).total_seconds()


def _candle(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A kline row as the (exchange, symbol, timestamp, receipt, data) tuple cryptofeed's
    backend queue hands `write_batch`; prices as Decimal (numeric_type=Decimal)."""
    exchange, symbol, interval, open_time, close_time, o, h, lo, c, volume, _, trades, closed = row
    data = {
        "exchange": exchange, "symbol": symbol, "interval": interval,
        "start": _seconds(open_time), "stop": _seconds(close_time),
        "open": o, "high": h, "low": lo, "close": c, "volume": volume, "trades": trades,
        "closed": closed,
    }  # fmt: skip
    return (exchange, symbol, _seconds(close_time), time.time(), data)


async def cryptofeed_write_batch(dsn: str, schema: str, kline_rows: Sequence[tuple[Any, ...]]) -> float:
    from urllib.parse import urlsplit

    from cryptofeed.backends.postgres import CandlesPostgres

    url = urlsplit(dsn)
    backend = CandlesPostgres(
        host=url.hostname or "127.0.0.1", port=url.port or 5432, user=url.username, pw=url.password,
        db=url.path.lstrip("/"), table=f"{schema}.klines", custom_columns=CRYPTOFEED_COLUMNS,
        numeric_type=Decimal,
    )  # fmt: skip
    batches = [
        [_candle(row) for row in kline_rows[i : i + BATCH_ROWS]]
        for i in range(0, len(kline_rows), BATCH_ROWS)
    ]
    await backend._connect()  # the connection is made on first use; keep it out of the timing
    try:
        started = time.perf_counter()
        for batch in batches:
            await backend.write_batch(batch)
        elapsed_s = time.perf_counter() - started
        stored = await backend.conn.fetchval(f"SELECT count(*) FROM {schema}.klines")  # noqa: S608
        await backend.conn.execute(f"TRUNCATE {schema}.klines")
    finally:
        await backend.conn.close()
    if stored != len(kline_rows):
        raise RuntimeError(f"cryptofeed stored {stored} of {len(kline_rows)} klines")
    return len(kline_rows) / elapsed_s


async def orm_per_row(dsn: str, schema: str, kline_rows: Sequence[tuple[Any, ...]]) -> float:
    """One ORM object per kline, `session.add` then `commit`, as seed scripts do."""
    from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, Numeric, String
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
    from sqlalchemy.orm import DeclarativeBase

    class Base(DeclarativeBase):
        metadata = MetaData(schema=schema)

    class KlineRow(Base):
        __tablename__ = "klines"
        exchange = Column(String, primary_key=True)
        symbol = Column(String, primary_key=True)
        interval = Column(String, primary_key=True)
        open_time = Column(DateTime(timezone=True), primary_key=True)
        close_time = Column(DateTime(timezone=True))
        open = Column(Numeric)
        high = Column(Numeric)
        low = Column(Numeric)
        close = Column(Numeric)
        volume = Column(Numeric)
        quote_volume = Column(Numeric)
        trades = Column(Integer)
        closed = Column(Boolean)

    columns = RECORD_TYPES["kline"].COLUMNS
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        async with sessions() as session:
            started = time.perf_counter()
            for row in kline_rows:
                session.add(KlineRow(**dict(zip(columns, row, strict=True))))
                await session.commit()
            elapsed_s = time.perf_counter() - started
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval(f"SELECT count(*) FROM {schema}.klines")  # noqa: S608
        await conn.execute(f"TRUNCATE {schema}.klines")
    finally:
        await conn.close()
    if stored != len(kline_rows):
        raise RuntimeError(f"the ORM stored {stored} of {len(kline_rows)} klines")
    return len(kline_rows) / elapsed_s
