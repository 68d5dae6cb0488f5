"""Positions from fills: group by (bot_id, exchange, symbol), order, replay each group through
a `book.Book`, and give the result as an Arrow table. No I/O: `Vault.positions` reads the
fills (hot and cold) and calls `table`.

Order: the fills of a group are applied by (ts, fill_id) — fill_id compared as text, by code
point — so the result depends only on which fills are stored, never on the order they
arrived in or how often they were redelivered. Storage keeps one row per (exchange, symbol,
fill_id, ts); a fill_id sent again with another ts is a second stored row (see the README's
rules per kind), and here it counts once, at its earliest ts.

Fees are in the quote asset (`fee_in_quote`) when `fee_asset` is empty, or when it is the
symbol's quote: a part after the first of a symbol split at `- / _ : . @ +` (`BTC-USDT`,
`BTC/USDT:USDT`, `BTC-USDT-SWAP` → USDT), or, for a symbol without separators, its ending
(`BTCUSDT` → USDT, `ETHBTC` → BTC). Case is ignored. Any other fee asset is reported per
asset in `other_fees`, not converted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, Final

import pyarrow as pa

from tickvault.decimals import COLD_INTEGER_DIGITS, COLD_PRECISION, COLD_SCALE, canonical
from tickvault.reads.columns import DECIMAL, TIME
from tickvault.reads.tiers import first_of_each_key
from tickvault.trading.book import EXACT, Book, Step, rounded

# the fill columns positions need
FILL_COLUMNS: Final = (
    "fill_id", "exchange", "symbol", "side", "quantity", "price", "fee", "fee_asset", "bot_id", "ts",
)  # fmt: skip
GROUP: Final = ("bot_id", "exchange", "symbol")
OTHER_FEES: Final = pa.map_(pa.string(), DECIMAL)
SCHEMA: Final = pa.schema(
    [
        ("bot_id", pa.string()),
        ("exchange", pa.string()),
        ("symbol", pa.string()),
        ("quantity", DECIMAL),  # signed: > 0 long, < 0 short, 0 flat
        ("average_price", DECIMAL),  # average entry price of the open quantity; null when flat
        ("realized_pnl", DECIMAL),  # quote asset, before fees
        ("fees", DECIMAL),  # fees paid in the quote asset
        ("other_fees", OTHER_FEES),  # fee asset → total, fees in any other asset
        ("net_pnl", DECIMAL),  # realized_pnl - fees
        ("fills", pa.int64()),
        ("opened_at", TIME),  # when the open position was opened; null when flat
        ("closed_at", TIME),  # when it last became flat (or flipped); null if never
        ("last_fill_at", TIME),
    ]
)
_SEPARATORS: Final = re.compile(r"[-/_:.@+]")

Key = tuple[str | None, str, str]


def fee_in_quote(symbol: str, fee_asset: str | None) -> bool:
    """Whether a fee in `fee_asset` is in the symbol's quote asset (the module's rule)."""
    if not fee_asset:
        return True
    asset, name = fee_asset.upper(), symbol.upper()
    parts = _SEPARATORS.split(name)
    if len(parts) > 1:
        return asset in parts[1:]
    return len(name) > len(asset) and name.endswith(asset)


def prepare(fills: pa.Table) -> pa.Table:
    """`fills` (at least FILL_COLUMNS) one row per (exchange, symbol, fill_id), the earliest
    ts, sorted by bot_id (null last), exchange, symbol, ts, fill_id."""
    if fills.num_rows == 0:
        return fills
    by_key = fills.sort_by([("exchange", "ascending"), ("symbol", "ascending"), ("fill_id", "ascending"),
                            ("ts", "ascending")])  # fmt: skip
    unique = by_key.filter(first_of_each_key(by_key, ("exchange", "symbol", "fill_id")))
    return unique.sort_by([(c, "ascending") for c in (*GROUP, "ts", "fill_id")])


def replay(fills: pa.Table, on_step: Callable[[int, Step], None] | None = None) -> Iterator[tuple[Key, Book]]:
    """Each group's key and book after all its fills, in the order of `fills` (`prepare`d).
    `on_step(i, step)` is called after row i is applied."""
    columns = {c: fills.column(c).to_pylist() for c in ("bot_id", "exchange", "symbol", "side", "quantity",
                                                         "price", "fee", "fee_asset")}  # fmt: skip
    ts = fills.column("ts").cast(pa.int64()).to_pylist()
    bots, exchanges, symbols = columns["bot_id"], columns["exchange"], columns["symbol"]
    sides, quantities, prices = columns["side"], columns["quantity"], columns["price"]
    fees, assets = columns["fee"], columns["fee_asset"]
    key: Key | None = None
    book = Book()
    quote: dict[str | None, bool] = {}
    for i in range(fills.num_rows):
        row_key = (bots[i], exchanges[i], symbols[i])
        if row_key != key:
            if key is not None:
                yield key, book
            key, book, quote = row_key, Book(), {}
        asset = assets[i]
        in_quote = quote.get(asset)
        if in_quote is None:
            in_quote = quote[asset] = fee_in_quote(row_key[2], asset)
        step = book.apply(
            sides[i] == "buy", quantities[i], prices[i], fees[i] or Decimal(0), asset, in_quote, ts[i]
        )
        if on_step is not None:
            on_step(i, step)
    if key is not None:
        yield key, book


def out(value: Decimal | None) -> Decimal | None:
    """A computed decimal as an output value: rounded to 18 places, canonical. Raises
    ValueError when it has more than 20 integer digits (decimal(38, 18) cannot hold it)."""
    if value is None:
        return None
    if value.adjusted() >= COLD_INTEGER_DIGITS:
        raise ValueError(f"{value:.6E} does not fit decimal({COLD_PRECISION}, {COLD_SCALE})")
    return canonical(rounded(value))


def table(fills: pa.Table) -> pa.Table:
    """The positions of `fills` (any order, at least FILL_COLUMNS) as SCHEMA, one row per
    (bot_id, exchange, symbol) that has fills — flat ones too — ordered by bot_id (null
    last), exchange, symbol. Raises ValueError for a value beyond decimal(38, 18)."""
    rows = [row(key, book) for key, book in replay(prepare(fills))]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def row(key: Key, book: Book) -> dict[str, Any]:
    """One position as a SCHEMA row."""
    return {
        "bot_id": key[0],
        "exchange": key[1],
        "symbol": key[2],
        "quantity": out(book.quantity),
        "average_price": out(book.average_price),
        "realized_pnl": out(book.realized_pnl),
        "fees": out(book.fees),
        "other_fees": other_fees(book.other_fees),
        "net_pnl": out(EXACT.subtract(book.realized_pnl, book.fees)),
        "fills": book.fills,
        "opened_at": book.opened_at_us,  # epoch µs: Arrow takes them as timestamp[us]
        "closed_at": book.closed_at_us,
        "last_fill_at": book.last_fill_at_us,
    }


def other_fees(fees: dict[str, Decimal]) -> list[tuple[str, Decimal | None]]:
    """Fees per asset as map entries, by asset."""
    return [(asset, out(fees[asset])) for asset in sorted(fees)]
