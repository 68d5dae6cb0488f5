"""Properties of the feed codecs (cryptofeed, binance) on generated messages:

- a valid message gives the record holding what was published: decimals equal to the text
  sent, epoch seconds (cryptofeed) rounded half-even to the microsecond, epoch milliseconds
  (Binance) exact, derived values exact (an order's filled quantity is amount - remaining;
  Binance's average price is cumulative quote / quantity, rounded half-even to 18 places);
- a time past the end of the range, or any field set to an odd value, gives a RecordError,
  never another exception.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final

from hypothesis import example, given
from hypothesis import strategies as st

from tests.properties import IDENTIFIERS, cold_decimals, examples
from tests.property_messages import ODD_VALUES
from tests.unit.test_codec_properties import outcome
from tickvault.codecs import binance, cryptofeed
from tickvault.errors import RecordError
from tickvault.records import Fill, Kline, Order, Trade
from tickvault.timestamps import EPOCH, MAX_EPOCH_MS, MAX_TIME, MIN_EPOCH_MS

ZERO: Final = Decimal(0)
MAX_US: Final = (MAX_TIME - EPOCH) // dt.timedelta(microseconds=1)
SYMBOLS: Final = IDENTIFIERS["symbol"]


def instant_of_seconds(text: str) -> dt.datetime | None:
    """Epoch seconds → the instant to the microsecond, half-even; None past the range."""
    micros = round(Fraction(text) * 10**6)
    return EPOCH + dt.timedelta(microseconds=micros) if 0 <= micros <= MAX_US else None


@st.composite
def epoch_seconds(draw: st.DrawFn) -> str:
    """Epoch seconds with up to nine decimals, often within a microsecond of the range's ends."""
    near = Decimal(draw(st.integers(-999, 999))).scaleb(-9)  # within a microsecond
    edges = st.sampled_from([near, Decimal(MAX_US).scaleb(-6) + near])
    value = draw(st.one_of(edges, st.decimals(0, Decimal(MAX_US + 1).scaleb(-6), places=9)))
    return str(abs(value)) if draw(st.booleans()) else format(abs(value), "f")


def as_published(value: Decimal | str | int | bool | None, redis: bool) -> Any:
    """A value as cryptofeed's Redis backend (strings, None as "None") or Kafka backend
    (numbers as JSON numbers) writes it; JSON numbers are raw text wrapped by `Raw`."""
    if redis:
        return "None" if value is None else str(value)
    return Raw(str(value)) if isinstance(value, Decimal) else value


class Raw(str):
    """Raw JSON number text."""


def dumps(obj: dict[str, Any]) -> bytes:
    parts = [f"{json.dumps(k)}: {v if isinstance(v, Raw) else json.dumps(v)}" for k, v in obj.items()]
    return ("{" + ", ".join(parts) + "}").encode()


def changed(data: st.DataObject, obj: dict[str, Any]) -> bytes:
    """`obj` with up to three fields (or an unknown one) set to odd values (ODD_VALUES)."""
    fields = dict(obj)
    names = st.sampled_from([*sorted(obj), "unknown"])
    for name, value in data.draw(st.lists(st.tuples(names, st.sampled_from(ODD_VALUES)), max_size=3)):
        fields[name] = Raw(value)
    return dumps(fields)


@examples(150)
@given(st.sampled_from(["candles", "trades", "fills", "order_info"]), st.booleans(), st.data())
def test_cryptofeed_messages_hold_what_was_published(
    data_type: str, redis: bool, data: st.DataObject
) -> None:
    seconds = data.draw(epoch_seconds())
    p = lambda value: as_published(value, redis)  # noqa: E731
    obj: dict[str, Any] = {"exchange": "BINANCE", "symbol": data.draw(SYMBOLS), "timestamp": p(Raw(seconds))}
    if data_type == "candles":
        values = sorted(data.draw(cold_decimals(ZERO)) for _ in range(4))
        obj |= {
            "start": p(Raw(seconds)), "stop": p(Raw(seconds)), "interval": "1m", "trades": p(None),
            "open": p(values[1]), "close": p(values[2]), "high": p(values[3]), "low": p(values[0]),
            "volume": p(data.draw(cold_decimals(ZERO))), "closed": "True" if redis else True,
        }  # fmt: skip
    else:
        amount = data.draw(cold_decimals(ZERO, positive=True))
        price = data.draw(cold_decimals(ZERO, positive=True))
        obj |= {"side": "buy", "amount": p(amount), "price": p(price), "id": "x1"}
        if data_type == "fills":
            obj |= {"order_id": "o1", "fee": p(data.draw(cold_decimals())), "liquidity": "maker"}
        if data_type == "order_info":
            remaining = data.draw(st.one_of(cold_decimals(ZERO), st.just(ZERO)).filter(lambda r: r <= amount))
            obj |= {"status": "open", "type": "limit", "remaining": p(remaining)}
    if redis:
        obj = {k: v if isinstance(v, str) else json.dumps(v) for k, v in obj.items()}
    payload = dumps(obj)
    got = outcome(cryptofeed.codec(), payload, None)
    instant = instant_of_seconds(seconds)
    if instant is None:
        assert isinstance(got, RecordError) and "outside" in got.reason, payload
    else:
        assert not isinstance(got, RecordError | list), (got, payload)
        check_cryptofeed(got, obj, instant)
    outcome(cryptofeed.codec(), changed(data, obj), None)


@examples(100)
@given(epoch_seconds())
@example("253402300799.9999995")  # rounds past the end of the range: was an OverflowError
@example("253402300799.9999994999")
def test_cryptofeed_times_are_the_instant_sent_or_a_dead_letter(seconds: str) -> None:
    trade = {"exchange": "X", "symbol": "Y", "id": "t", "amount": "1", "price": "2", "timestamp": seconds}
    payload = json.dumps(trade)
    got = outcome(cryptofeed.codec(), payload.encode(), "trade")
    instant = instant_of_seconds(seconds)
    if instant is None:
        assert isinstance(got, RecordError) and "timestamp: epoch seconds outside" in got.reason
    else:
        assert not isinstance(got, RecordError | list) and got.time == instant


@examples(100)
@given(cold_decimals(ZERO, positive=True), cold_decimals(ZERO))
@example(Decimal("12345678901234567890.123456789012345678"), Decimal("0.000000000000000001"))
@example(Decimal("12345678901234567890.123456789012345678"), Decimal("1.000000000000000001"))
def test_cryptofeed_filled_quantity_is_amount_minus_remaining_exactly(
    amount: Decimal, remaining: Decimal
) -> None:
    """Both fit decimal(38, 18), so does their difference: it was computed to 28 digits, which
    rounded (and then refused as exceeding the quantity, or stored altered)."""
    order = {
        "exchange": "X", "symbol": "Y", "id": "o", "side": "buy", "status": "open", "type": "limit",
        "price": "1", "amount": str(amount), "remaining": str(remaining), "timestamp": 1700000000,
    }  # fmt: skip
    got = outcome(cryptofeed.codec(), json.dumps(order).encode(), "order")
    if remaining > amount:
        assert isinstance(got, RecordError) and "filled_quantity" in got.reason
    else:
        assert isinstance(got, Order), got
        assert Fraction(got.filled_quantity) == Fraction(amount) - Fraction(remaining)


def number(value: Any) -> Decimal:
    return Decimal(str(value))


def check_cryptofeed(item: Any, obj: dict[str, Any], instant: dt.datetime) -> None:
    if isinstance(item, Order):
        assert item.quantity == number(obj["amount"]) and item.price == number(obj["price"])
        filled = Fraction(number(obj["amount"])) - Fraction(number(obj["remaining"]))
        assert Fraction(item.filled_quantity) == filled, obj
        assert item.updated_at == instant
        return
    text = item.text.split("\t")
    if item.KIND == "kline":
        got = dict(zip(Kline.COLUMNS, text, strict=True))
        names = {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume"}
        assert dt.datetime.fromisoformat(got["open_time"]) == instant
    else:
        columns = Fill.COLUMNS if item.KIND == "fill" else Trade.COLUMNS
        got = dict(zip(columns, text, strict=True))
        names = {"quantity": "amount", "price": "price"} | ({"fee": "fee"} if item.KIND == "fill" else {})
        assert dt.datetime.fromisoformat(got["ts"]) == instant
    for column, name in names.items():
        assert Decimal(got[column]) == number(obj[name]), (column, obj)


@st.composite
def epoch_ms(draw: st.DrawFn) -> int:
    return draw(
        st.one_of(st.sampled_from([MIN_EPOCH_MS, MAX_EPOCH_MS]), st.integers(MIN_EPOCH_MS, MAX_EPOCH_MS))
    )


def text(value: Decimal, draw: st.DrawFn) -> str:
    """As Binance writes decimals: plain, with trailing zeros to 8 places (or as they are)."""
    plain = format(value, "f")
    return format(value, ".8f") if draw(st.booleans()) and -value.as_tuple().exponent <= 8 else plain  # type: ignore[operator]


@examples(150)
@given(st.data(), st.sampled_from(["kline", "trade", "aggTrade", "NEW", "TRADE"]), st.booleans())
def test_binance_events_hold_what_was_published(data: st.DataObject, event: str, wrapped: bool) -> None:
    draw = data.draw
    ts = draw(epoch_ms())
    symbol = draw(SYMBOLS)
    if event == "kline":
        values = sorted(draw(cold_decimals(ZERO)) for _ in range(5))
        k = {
            "t": ts, "T": ts, "s": symbol, "i": "1m", "o": text(values[1], draw), "c": text(values[2], draw),
            "h": text(values[3], draw), "l": text(values[0], draw), "v": text(values[4], draw), "x": True,
        }  # fmt: skip
        obj: dict[str, Any] = {"e": "kline", "E": ts, "s": symbol, "k": k}
    elif event in ("trade", "aggTrade"):
        price, quantity = (draw(cold_decimals(ZERO, positive=True)) for _ in range(2))
        key = "t" if event == "trade" else "a"
        obj = {"e": event, "s": symbol, key: draw(st.integers(0, 2**63 - 1)), "p": text(price, draw),
               "q": text(quantity, draw), "T": ts, "m": draw(st.booleans())}  # fmt: skip
    else:
        obj = execution_report(draw, event, symbol, ts)
    payload = json.dumps({"stream": "x", "data": obj} if wrapped else obj).encode()
    got = outcome(binance.codec(), payload, None)
    if "Z" in obj and Decimal(obj["z"]) and average(obj["Z"], obj["z"]) >= 10**20:
        assert isinstance(got, RecordError) and "avg_fill_price: does not fit" in got.reason
    else:
        assert not isinstance(got, RecordError), (got.reason, payload)
        check_binance(got, obj)
    outcome(binance.codec(), changed(data, obj), None)


def execution_report(draw: st.DrawFn, event: str, symbol: str, ts: int) -> dict[str, Any]:
    quantity = draw(cold_decimals(ZERO, positive=True))
    filled = draw(
        st.one_of(st.just(ZERO), st.just(quantity), cold_decimals(ZERO)).filter(lambda f: f <= quantity)
    )
    quote = draw(cold_decimals(ZERO))
    price = draw(cold_decimals(ZERO, positive=True))
    report = {
        "e": "executionReport", "s": symbol, "c": "c1", "S": "BUY", "o": "LIMIT", "q": text(quantity, draw),
        "p": text(price, draw), "x": event, "X": "PARTIALLY_FILLED" if filled else "NEW", "i": 7,
        "z": text(filled, draw), "Z": text(quote, draw), "T": ts, "O": ts,
    }  # fmt: skip
    if event == "TRADE":
        report |= {"t": 1, "l": text(quantity, draw), "L": text(price, draw), "n": "0", "m": True}
    return report


REPORT: Final[dict[str, Any]] = {
    "e": "executionReport", "s": "BTCUSDT", "c": "c1", "S": "BUY", "o": "LIMIT", "q": "2", "p": "3",
    "x": "TRADE", "X": "PARTIALLY_FILLED", "i": 7, "z": "1", "Z": "3", "T": MIN_EPOCH_MS, "O": MIN_EPOCH_MS,
    "t": 1, "l": "1", "L": "3", "n": "0", "m": True, "C": "", "P": "0", "N": None,
}  # fmt: skip


@examples(100)
@given(st.sampled_from(sorted(REPORT)), st.sampled_from(ODD_VALUES))
@example("o", "[]")  # an order type of a JSON array was a TypeError (unhashable)
@example("X", "{}")
def test_binance_execution_report_fields_of_any_json_type_are_dead_letters_or_stored(
    name: str, value: str
) -> None:
    """Any field of an executionReport set to an odd value: a RecordError or the records."""
    assert isinstance(outcome(binance.codec(), dumps(REPORT), None), list)
    outcome(binance.codec(), dumps({**REPORT, name: Raw(value)}), None)


def average(quote: str, filled: str) -> Fraction:
    exact = Fraction(quote) / Fraction(filled)
    return Fraction(round(exact * 10**18), 10**18)


def check_binance(got: Any, obj: dict[str, Any]) -> None:
    items = got if isinstance(got, list) else [got]
    for item in items:
        if isinstance(item, Order):
            assert item.quantity == Decimal(obj["q"]) and item.price == Decimal(obj["p"])
            assert item.filled_quantity == Decimal(obj["z"])
            want = None if not Decimal(obj["z"]) else average(obj["Z"], obj["z"])
            assert (item.avg_fill_price is None) == (want is None)
            assert want is None or Fraction(item.avg_fill_price) == want, (item.avg_fill_price, obj)
            assert item.updated_at == EPOCH + dt.timedelta(milliseconds=obj["T"])
            continue
        columns = {"kline": Kline, "fill": Fill, "trade": Trade}[item.KIND].COLUMNS
        row = dict(zip(columns, item.text.split("\t"), strict=True))
        source = obj["k"] if item.KIND == "kline" else obj
        names = {"kline": {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"},
                 "fill": {"quantity": "l", "price": "L", "fee": "n"},
                 "trade": {"price": "p", "quantity": "q"}}[item.KIND]  # fmt: skip
        for column, name in names.items():
            assert Decimal(row[column]) == Decimal(source[name]), (column, obj)
        when, sent = (row["open_time"], source["t"]) if item.KIND == "kline" else (row["ts"], obj["T"])
        assert dt.datetime.fromisoformat(when) == EPOCH + dt.timedelta(milliseconds=sent)
