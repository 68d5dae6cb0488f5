"""The importer's pure parts: Binance file names and columns, and epoch ms or µs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tickvault.errors import ConfigError, RecordError
from tickvault.importer import binance
from tickvault.timestamps import parse_epoch_ms_or_us

UTC = dt.UTC


def test_epoch_milliseconds_and_microseconds_are_told_apart_per_value() -> None:
    assert parse_epoch_ms_or_us(1_704_067_259_999) == dt.datetime(2024, 1, 1, 0, 0, 59, 999_000, tzinfo=UTC)
    assert parse_epoch_ms_or_us(1_704_067_259_999_999) == dt.datetime(
        2024, 1, 1, 0, 0, 59, 999_999, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="nanoseconds"):
        parse_epoch_ms_or_us(1_704_067_259_999_999_000)
    with pytest.raises(ValueError, match="epoch seconds"):
        parse_epoch_ms_or_us(1_704_067_259, 100_000_000_000)


def test_binance_file_names() -> None:
    assert binance.parse_name("BTCUSDT-1m-2024-01.zip") == ("BTCUSDT", "1m")
    assert binance.parse_name("BTCUSDT-1m-2024-01-15.csv") == ("BTCUSDT", "1m")
    assert binance.parse_name("ETHBTC-1mo-2023-12.zip") == ("ETHBTC", "1M")
    assert binance.parse_name("BTCUSDT-trades-2024-01.zip") == ("BTCUSDT", "trades")
    assert binance.parse_name("BTCUSDT-aggTrades-2024-01-02.csv.zip") == ("BTCUSDT", "aggtrades")
    assert binance.parse_name("klines.csv") is None


def test_series_from_name_or_options() -> None:
    named = binance.series_of(Path("d/BTCUSDT-5m-2024-01.zip"), "binance", "binance", None, None)
    assert named == binance.Series("klines", "binance", "BTCUSDT", "5m")
    given = binance.series_of(Path("x.csv"), "binance-klines", "bybit", "ETHUSDT", "1h")
    assert given == binance.Series("klines", "bybit", "ETHUSDT", "1h")
    with pytest.raises(ConfigError, match="give --interval"):
        binance.series_of(Path("x.csv"), "binance-klines", "binance", "ETHUSDT", None)
    with pytest.raises(ConfigError, match="give --symbol"):
        binance.series_of(Path("x.csv"), "binance-klines", "binance", None, "1m")


def test_trade_and_agg_trade_rows_map_to_trade_messages() -> None:
    trades = binance.Series("trades", "binance", "BTCUSDT")
    row = ["4321", "42000.10", "0.5", "21000.05", "1704067200123456", "True", "True"]
    assert binance.trade_message(row, trades, 0) == {
        "exchange": "binance", "symbol": "BTCUSDT", "trade_id": "4321", "price": "42000.10",
        "quantity": "0.5", "side": "sell", "quote_quantity": "21000.05",
        "ts": dt.datetime(2024, 1, 1, 0, 0, 0, 123_456, tzinfo=UTC),
    }  # fmt: skip
    agg = binance.Series("aggtrades", "binance", "BTCUSDT")
    message = binance.trade_message(["77", "42000.10", "0.5", "100", "102", "1704067200123", "false"], agg, 0)
    assert (message["trade_id"], message["side"], message["quote_quantity"]) == ("77", "buy", None)
    assert message["ts"] == dt.datetime(2024, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC)
    with pytest.raises(RecordError, match="6 columns, expected at least 7"):
        binance.trade_message(["77", "1", "1", "1", "1", "1704067200123"], agg, 0)
