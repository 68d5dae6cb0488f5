"""Pure parts of the sources and routing: Kafka offset bookkeeping, the subscription regex,
driver options built from settings (credentials reach the driver and nothing else), routes."""

from __future__ import annotations

import datetime as dt
import re
import ssl

import pytest

from tickvault.app import build_routes
from tickvault.codecs import CODECS
from tickvault.errors import ConfigError, RecordError
from tickvault.pipeline import Route, Routes
from tickvault.settings import load_settings
from tickvault.sources import kafka_version, redis_version
from tickvault.sources.kafka import _Offsets, client_options, subscription_pattern
from tickvault.sources.redis_streams import connect
from tickvault.timestamps import MIN_EPOCH_MS


def test_commit_position_stops_at_the_first_unacknowledged_offset() -> None:
    offsets = _Offsets()
    assert offsets.position() is None  # nothing read: nothing to commit
    offsets.read_all([10, 11, 12, 13])
    assert offsets.position() == 10
    offsets.ack_all([11, 13])
    assert offsets.position() == 10  # 10 is still in flight: never commit past it
    offsets.ack_all([10])
    assert offsets.position() == 12
    offsets.ack_all([12])
    assert offsets.position() == 14  # all done: one past the last read
    offsets.ack_all([99])  # an offset never read here (read before a rebalance) changes nothing
    offsets.read_all([20])  # a gap (compaction, transaction markers) is fine
    assert offsets.position() == 20
    offsets.ack_all([20])
    assert offsets.position() == 21


def test_subscription_pattern_matches_topics_and_patterns_whole() -> None:
    pattern = re.compile(subscription_pattern(["tickvault.klines"], [r"candles-[A-Z]+-.*"]))
    assert pattern.match("tickvault.klines")
    assert not pattern.match("tickvaultXklines")  # the dot is literal
    assert not pattern.match("tickvault.klines.old")
    assert pattern.match("candles-BINANCE-BTC-USDT")
    assert not pattern.match("x-candles-BINANCE-BTC-USDT")


def test_kafka_sasl_ssl_options_reach_the_driver_and_not_the_repr() -> None:
    settings = load_settings(
        source={"kind": "kafka"},
        kafka={
            "bootstrap_servers": "k1:9093,k2:9093",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "ingest",
            "sasl_password": "s3cret-pw",
            "ssl_check_hostname": False,
        },
    )
    options = client_options(settings.kafka)
    assert options["bootstrap_servers"] == ["k1:9093", "k2:9093"]
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == ("SCRAM-SHA-512", "ingest")
    assert options["sasl_plain_password"] == "s3cret-pw"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].check_hostname is False
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(settings.model_dump())


def test_kafka_plaintext_has_no_tls_or_sasl_options() -> None:
    options = client_options(load_settings().kafka)
    assert options["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in options and "sasl_mechanism" not in options


def test_kafka_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs sasl_username and sasl_password"):
        load_settings(kafka={"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"})


def test_patterns_need_kafka_and_must_compile() -> None:
    with pytest.raises(ConfigError, match="patterns need kind = 'kafka'"):
        load_settings(source={"patterns": {"candles-.*": "kline"}})
    with pytest.raises(ConfigError, match="not a regular expression"):
        load_settings(source={"kind": "kafka", "patterns": {"candles-(": "kline"}})
    with pytest.raises(ConfigError, match="at least one topic or pattern"):
        load_settings(source={"kind": "kafka", "topics": {}})


def test_redis_credentials_and_tls_files_reach_the_driver() -> None:
    settings = load_settings(
        redis={
            "url": "rediss://redis.internal:6380/0",
            "username": "ingest",
            "password": "pw-123",
            "ssl_ca_certs": "/etc/ssl/ca.pem",
        }
    )
    client = connect(settings.redis)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("ingest", "pw-123")
    assert kwargs["ssl_ca_certs"] == "/etc/ssl/ca.pem"
    assert "pw-123" not in repr(settings)


def test_redis_tls_files_need_a_rediss_url() -> None:
    with pytest.raises(ConfigError, match="rediss://"):
        load_settings(redis={"ssl_ca_certs": "/etc/ssl/ca.pem"})


def test_routes_exact_names_first_then_the_first_matching_pattern() -> None:
    native = CODECS["native"](MIN_EPOCH_MS)
    routes = Routes(
        {"md.candles-X": Route("order", native)},
        {r"md\.candles-.*": Route("kline", native), r"md\..*": Route(None, native)},
    )
    assert routes.get("md.candles-X") == Route("order", native)
    assert routes.get("md.candles-BINANCE-BTC-USDT") == Route("kline", native)
    assert routes.get("md.other") == Route(None, native)
    assert routes.get("xmd.candles-A") is None  # patterns match the whole name


def test_routes_refuse_integer_timestamps_below_the_configured_floor() -> None:
    seconds = b'{"fill_id": "1", "order_id": "1", "exchange": "x", "symbol": "S", "side": "buy", '
    seconds += b'"quantity": "1", "price": "1", "ts": 1735689600}'
    strict = build_routes(load_settings()).get("tickvault.fills")
    assert strict is not None
    with pytest.raises(RecordError, match="ts: looks like epoch seconds"):
        strict.codec(seconds, strict.kind)
    lowered = build_routes(load_settings(source={"min_epoch_ms": 0})).get("tickvault.fills")
    assert lowered is not None
    row = lowered.codec(seconds, lowered.kind)
    assert row.time == dt.datetime(1970, 1, 21, 2, 8, 9, 600000, tzinfo=dt.UTC)


@pytest.mark.parametrize("value", [-1, 100_000_000_001])
def test_the_floor_stays_between_the_epoch_and_its_default(value: int) -> None:
    with pytest.raises(ConfigError, match=r"source\.min_epoch_ms"):
        load_settings(source={"min_epoch_ms": value})


@pytest.mark.parametrize(
    ("entry_id", "version"),
    [
        ("1767225600000-0", "1767225600000\t0"),
        ("0-1", "0\t1"),
        ("999999999999999999-999999999999999999", "999999999999999999\t999999999999999999"),
        ("9223372036854775807-5", "9223372036854775807\t5"),  # 19 digits, still a bigint
        ("9223372036854775808-5", "9223372036854775807\t5"),  # past a bigint: clamped
        ("18446744073709551615-18446744073709551615", "9223372036854775807\t9223372036854775807"),
        ("5-9223372036854775808", "5\t9223372036854775807"),
    ],
)
def test_a_redis_entry_id_is_a_version_of_two_bigints(entry_id: str, version: str) -> None:
    assert redis_version(entry_id) == version


def test_a_kafka_record_without_a_timestamp_counts_as_zero() -> None:
    assert kafka_version(1767225600000, 42) == "1767225600000\t42"
    assert kafka_version(-1, 7) == "0\t7"
