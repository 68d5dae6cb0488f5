"""The cryptofeed and Binance codecs, message by message: each mapped message gives exactly
the row (or Order) that the equivalent native message gives; bad input raises RecordError
with a reason naming the feed's field.

cryptofeed payloads are made by cryptofeed itself: its types' `to_dict` and the JSON
library its Kafka backend uses (yapic), or the strings its Redis backend writes (redis-py's
encoding, then the Redis source's JSON object of the entry's fields).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from cryptofeed.types import Candle, Fill, OrderInfo, Trade
from yapic import json as yapic_json

from tickvault.codecs import binance, cryptofeed
from tickvault.codecs.native import decode as native_decode
from tickvault.errors import RecordError
from tickvault.records import Order
from tickvault.rows import Item, Row, to_item

RECEIPT = 1615927655.6


def native(**fields: Any) -> Item:
    return to_item(native_decode(json.dumps(fields).encode(), None))


def kafka_payload(obj: Any, numeric_type: Any = float) -> bytes:
    """What cryptofeed's Kafka backend sends for `obj` (BackendCallback, then json.dumpb)."""
    data = obj.to_dict(numeric_type=numeric_type, none_to=None)
    data["receipt_timestamp"] = RECEIPT
    return bytes(yapic_json.dumpb(data))


def redis_payload(obj: Any) -> bytes:
    """What the Redis source hands the codec for an entry written by cryptofeed's Redis
    Streams backend: every field as redis-py encodes it (floats and ints by repr)."""
    data = obj.to_dict(numeric_type=float, none_to="None")
    data["receipt_timestamp"] = RECEIPT
    if "closed" in data:
        data["closed"] = str(data["closed"])
    return json.dumps({k: v if isinstance(v, str) else repr(v) for k, v in data.items()}).encode()


def candle(closed: bool = True, trades: int | None = 505) -> Candle:
    return Candle(
        "BINANCE", "BTC-USDT", 1615927620.0, 1615927679.999, "1m", trades,
        Decimal("56215.99"), Decimal("56232.07"), Decimal("56238.59"), Decimal("56181.99"),
        Decimal("13.805222"), closed, 1615927655.524,
    )  # fmt: skip


CANDLE_ROW = dict(
    kind="kline", exchange="BINANCE", symbol="BTC-USDT", interval="1m", open_time="2021-03-16T20:47:00Z",
    close_time="2021-03-16T20:47:59.999Z", open="56215.99", high="56238.59", low="56181.99",
    close="56232.07", volume="13.805222", trades=505, closed=True,
)  # fmt: skip


def order_info(status: str, remaining: str, type_: str = "limit", price: str = "87000.5") -> OrderInfo:
    return OrderInfo(
        "BINANCE", "BTC-USDT", "o-1", "buy", status, type_, Decimal(price), Decimal("0.5"),
        Decimal(remaining), 1700000000.123456, client_order_id="c-1", account="acct-1",
    )  # fmt: skip


# --- cryptofeed ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["kafka", "kafka-str", "redis"])
@pytest.mark.parametrize("kind", ["kline", None])
def test_cryptofeed_candle_is_the_native_kline(form: str, kind: str | None) -> None:
    payload = {
        "kafka": lambda c: kafka_payload(c),
        "kafka-str": lambda c: kafka_payload(c, str),
        "redis": redis_payload,
    }[form](candle())
    assert cryptofeed.decode(payload, kind) == native(**CANDLE_ROW)


def test_cryptofeed_candle_open_and_without_trades() -> None:
    item = cryptofeed.decode(redis_payload(candle(closed=False, trades=None)), "kline")
    assert item == native(**{**CANDLE_ROW, "closed": False, "trades": None})


def test_cryptofeed_times_are_exact_to_the_microsecond() -> None:
    payload = b'{"exchange":"X","symbol":"A-B","start":1700000000.000001,"stop":1700000059.999999,'
    payload += b'"interval":"1m","trades":null,"open":1,"high":1,"low":1,"close":1,"volume":0,"closed":true}'
    item = cryptofeed.decode(payload, "kline")
    assert isinstance(item, Row)
    t0 = dt.datetime(2023, 11, 14, 22, 13, 20, 1, tzinfo=dt.UTC)
    assert item.time == t0
    assert "2023-11-14 22:14:19.999999+00:00" in item.text


def test_cryptofeed_fill_is_the_native_fill() -> None:
    fill = Fill(
        "BINANCE", "BTC-USDT", "sell", Decimal("0.25"), Decimal("87001.5"), Decimal("0.0001"),
        "f-1", "o-1", "limit", "maker", 1700000000.123456, account="acct-1",
    )  # fmt: skip
    expected = native(
        kind="fill", fill_id="f-1", order_id="o-1", exchange="BINANCE", symbol="BTC-USDT",
        side="sell", quantity="0.25", price="87001.5", fee="0.0001", liquidity="maker",
        bot_id="acct-1", ts="2023-11-14T22:13:20.123456Z",
    )  # fmt: skip
    assert cryptofeed.decode(kafka_payload(fill), "fill") == expected
    assert cryptofeed.decode(redis_payload(fill), None) == expected


@pytest.mark.parametrize(
    ("status", "remaining", "expected_status", "filled"),
    [
        ("open", "0.5", "open", "0"),
        ("open", "0.2", "partially_filled", "0.3"),
        ("partial", "0.2", "partially_filled", "0.3"),
        ("filled", "0", "filled", "0.5"),
        ("cancelled", "0.2", "canceled", "0.3"),
        ("closed", "0", "filled", "0.5"),
        ("closed", "0.5", "canceled", "0"),
        ("submitting", "0.5", "new", "0"),
        ("failed", "0.5", "rejected", "0"),
        ("TRADE", "0", "filled", "0.5"),  # cryptofeed's Binance feed passes execution types
        ("CANCELED", "0.5", "canceled", "0"),
    ],
)
def test_cryptofeed_order_info_statuses(
    status: str, remaining: str, expected_status: str, filled: str
) -> None:
    info = order_info(status, remaining)
    for payload in (kafka_payload(info), redis_payload(info)):
        item = cryptofeed.decode(payload, "order")
        assert isinstance(item, Order)
        assert item == native_decode(
            json.dumps({
                "kind": "order", "order_id": "o-1", "client_order_id": "c-1", "exchange": "BINANCE",
                "symbol": "BTC-USDT", "side": "buy", "type": "limit", "status": expected_status,
                "quantity": "0.5", "price": "87000.5", "filled_quantity": filled, "bot_id": "acct-1",
                "updated_at": "2023-11-14T22:13:20.123456Z",
            }).encode(),
            None,
        )  # fmt: skip


def test_cryptofeed_market_order_without_price() -> None:
    item = cryptofeed.decode(kafka_payload(order_info("filled", "0", "market", "0")), "order")
    assert isinstance(item, Order)
    assert (item.type, item.price, item.status) == ("market", None, "filled")


def test_cryptofeed_trade_is_the_native_trade() -> None:
    trade = Trade("BINANCE", "BTC-USDT", "buy", Decimal("0.01"), Decimal("87000.1"), 1700000000.5, id="t-9")
    expected = native(
        kind="trade", exchange="BINANCE", symbol="BTC-USDT", trade_id="t-9", price="87000.1",
        quantity="0.01", side="buy", ts="2023-11-14T22:13:20.5Z",
    )  # fmt: skip
    assert cryptofeed.decode(kafka_payload(trade), None) == expected
    assert cryptofeed.decode(redis_payload(trade), None) == expected


def _candle_json(**changes: Any) -> bytes:
    data = json.loads(redis_payload(candle()))
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("payload", "kind", "category", "words"),
    [
        (b"not json", "kline", "invalid_json", "invalid JSON"),
        (b'["candles"]', "kline", "not_object", "not an object"),
        (b"\xff", "kline", "not_utf8", "UTF-8"),
        (_candle_json(start=...), "kline", "invalid", "cryptofeed candles: start: missing"),
        (_candle_json(start="None"), "kline", "invalid", "start"),
        (_candle_json(start="yesterday"), "kline", "invalid", "start: 'yesterday' is not a number"),
        (_candle_json(stop="1615927679999.0"), "kline", "invalid", "stop: epoch seconds outside"),
        (_candle_json(closed="maybe"), "kline", "invalid", "closed: 'maybe' is not true or false"),
        (_candle_json(trades="-3"), "kline", "invalid", "trades: '-3' is not a count"),
        (_candle_json(open="abc"), "kline", "invalid", "open: not a decimal number"),
        (_candle_json(low="56220"), "kline", "invalid", "open and close must lie between low and high"),
        (_candle_json(interval="7m"), "kline", "invalid", "interval"),
        (_candle_json(), "bot_state", "unknown_kind", "no mapping onto kind 'bot_state'"),
        (b'{"exchange": "X", "symbol": "Y"}', None, "unknown_kind", "not candles, trades, fills"),
        (kafka_payload(order_info("open", "0.5", "stop-limit")), "order", "invalid", "stop price"),
        (kafka_payload(order_info("dreaming", "0.5")), "order", "invalid", "status: 'dreaming'"),
        (kafka_payload(order_info("open", "0.7")), "order", "invalid", "filled_quantity"),
    ],
)
def test_cryptofeed_bad_input(payload: bytes, kind: str | None, category: str, words: str) -> None:
    with pytest.raises(RecordError) as caught:
        cryptofeed.decode(payload, kind)
    assert caught.value.category == category
    assert words in caught.value.reason


# --- binance ------------------------------------------------------------------------------

KLINE_EVENT: dict[str, Any] = {
    "e": "kline", "E": 1615927655524, "s": "BTCUSDT",
    "k": {
        "t": 1615927620000, "T": 1615927679999, "s": "BTCUSDT", "i": "1m", "f": 710917276,
        "L": 710917780, "o": "56215.99000000", "c": "56232.07000000", "h": "56238.59000000",
        "l": "56181.99000000", "v": "13.80522200", "n": 505, "x": False, "q": "775978.37383076",
        "V": "7.19660600", "Q": "404521.60814919", "B": "0",
    },
}  # fmt: skip
BINANCE_KLINE = dict(
    kind="kline", exchange="binance", symbol="BTCUSDT", interval="1m", open_time=1615927620000,
    close_time=1615927679999, open="56215.99000000", high="56238.59000000", low="56181.99000000",
    close="56232.07000000", volume="13.80522200", quote_volume="775978.37383076", trades=505,
    closed=False,
)  # fmt: skip
REPORT: dict[str, Any] = {
    "e": "executionReport", "E": 1499405658658, "s": "ETHBTC", "c": "mUvoqJxFIILMdfAW5iGSOW",
    "S": "BUY", "o": "LIMIT", "f": "GTC", "q": "1.00000000", "p": "0.10264410", "P": "0.00000000",
    "F": "0.00000000", "g": -1, "C": "", "x": "NEW", "X": "NEW", "r": "NONE", "i": 4293153,
    "l": "0.00000000", "z": "0.00000000", "L": "0.00000000", "n": "0", "N": None,
    "T": 1499405658657, "t": -1, "I": 8641984, "w": True, "m": False, "M": False,
    "O": 1499405658657, "Z": "0.00000000", "Y": "0.00000000", "Q": "0.00000000",
}  # fmt: skip
ORDER_BASE = dict(
    kind="order", order_id="4293153", client_order_id="mUvoqJxFIILMdfAW5iGSOW", exchange="binance",
    symbol="ETHBTC", side="buy", type="limit", quantity="1.00000000", price="0.10264410",
    created_at=1499405658657,
)  # fmt: skip


def encoded(event: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps({**event, **changes}).encode()


def test_binance_kline_open_update_and_combined_stream() -> None:
    assert binance.decode(encoded(KLINE_EVENT)) == native(**BINANCE_KLINE)
    wrapped = json.dumps({"stream": "btcusdt@kline_1m", "data": KLINE_EVENT}).encode()
    assert binance.decode(wrapped) == native(**BINANCE_KLINE)
    final = {**KLINE_EVENT, "k": {**KLINE_EVENT["k"], "x": True}}
    assert binance.decode(encoded(final)) == native(**{**BINANCE_KLINE, "closed": True})


def test_binance_execution_report_new_is_an_order() -> None:
    item = binance.decode(encoded(REPORT))
    assert item == native(**ORDER_BASE, status="new", filled_quantity="0", updated_at=1499405658657)


def test_binance_execution_report_trade_is_an_order_and_a_fill() -> None:
    report = encoded(
        REPORT, x="TRADE", X="PARTIALLY_FILLED", l="0.30000000", z="0.30000000", L="0.10264410",
        n="0.00007500", N="BNB", T=1499405660000, t=77, m=True, Z="0.03079323",
    )  # fmt: skip
    items = binance.decode(report)
    assert isinstance(items, list)
    assert items == [
        native(
            **ORDER_BASE, status="partially_filled", filled_quantity="0.30000000",
            avg_fill_price="0.1026441", updated_at=1499405660000,
        ),
        native(
            kind="fill", fill_id="77", order_id="4293153", exchange="binance", symbol="ETHBTC",
            side="buy", quantity="0.30000000", price="0.10264410", fee="0.00007500", fee_asset="BNB",
            liquidity="maker", ts=1499405660000,
        ),
    ]  # fmt: skip


def test_binance_average_price_is_rounded_to_the_cold_scale() -> None:
    report = encoded(REPORT, x="TRADE", X="PARTIALLY_FILLED", q="4", l="3", z="3", L="1", t=1, Z="1")
    order = binance.decode(report)[0]  # type: ignore[index]
    assert order.avg_fill_price == Decimal("0.333333333333333333")


def test_binance_cancel_keeps_the_original_client_order_id() -> None:
    item = binance.decode(encoded(REPORT, x="CANCELED", X="CANCELED", c="cancel-req-1", C="orig-1"))
    assert isinstance(item, Order)
    assert (item.status, item.client_order_id) == ("canceled", "orig-1")


def test_binance_stop_loss_limit_keeps_its_stop_price() -> None:
    item = binance.decode(encoded(REPORT, o="STOP_LOSS_LIMIT", P="0.10000000"))
    assert isinstance(item, Order)
    assert (item.type, item.stop_price) == ("stop_limit", Decimal("0.10000000"))


@pytest.mark.parametrize(("event", "id_field"), [("trade", "t"), ("aggTrade", "a")])
def test_binance_trades(event: str, id_field: str) -> None:
    payload = {"e": event, "E": 1, "s": "BNBBTC", id_field: 12345, "p": "0.001", "q": "100",
               "T": 1499405658657, "m": True, "M": True}  # fmt: skip
    expected = native(
        kind="trade", exchange="binance", symbol="BNBBTC", trade_id="12345", price="0.001",
        quantity="100", side="sell", ts=1499405658657,
    )  # fmt: skip
    assert binance.decode(encoded(payload)) == expected


@pytest.mark.parametrize(
    ("payload", "category", "words"),
    [
        (b"{", "invalid_json", "invalid JSON"),
        (b"[1, 2]", "not_object", "not an object"),
        (encoded({"e": "depthUpdate", "s": "BTCUSDT"}), "unknown_event", "'depthUpdate' is not stored"),
        (b'{"result": null, "id": 1}', "unknown_event", "event type None"),
        (encoded({"stream": "x@kline_1m", "data": [1]}), "unknown_event", "event type None"),
        (encoded({**KLINE_EVENT, "k": {**KLINE_EVENT["k"], "o": None}}), "invalid", "kline: o: missing"),
        (encoded({**KLINE_EVENT, "k": "candle"}), "invalid", "k: not an object"),
        (encoded({**KLINE_EVENT, "k": {**KLINE_EVENT["k"], "x": "yes"}}), "invalid", "x: 'yes' is not true"),
        (encoded({**KLINE_EVENT, "k": {**KLINE_EVENT["k"], "t": 1615927620}}), "invalid", "epoch seconds"),
        (encoded({**KLINE_EVENT, "k": {**KLINE_EVENT["k"], "n": "505"}}), "invalid", "trades"),
        (encoded(REPORT, i="4293153"), "invalid", "i: '4293153' is not an integer"),
        (encoded(REPORT, z="lots"), "invalid", "z: 'lots' is not a decimal string"),
        (encoded(REPORT, o="OCO"), "invalid", "o: 'OCO' is not an order type"),
        (encoded(REPORT, X="DREAMING"), "invalid", "X: 'DREAMING'"),
        (encoded(REPORT, x="TRADE", X="FILLED", t="77"), "invalid", "t: '77' is not an integer"),
        (encoded(REPORT, q="0"), "invalid", "quantity"),
    ],
)
def test_binance_bad_input(payload: bytes, category: str, words: str) -> None:
    with pytest.raises(RecordError) as caught:
        binance.decode(payload)
    assert caught.value.category == category
    assert words in caught.value.reason
