"""A hand-computed trading example, shared by the unit and integration tests of positions and
the summary. Bot grid-1 trades BTCUSDT (quote USDT) on binance: partial fills, fees in USDT,
BTC (the base) and BNB, a flip from long to short and back to flat, then a new long; and
ETH-USDT, short first (strategy "mean"). Fill k of BTCUSDT is at T0 + 12h x k, so with one-day
partitions and the roll of test_archive (NOW = T0 + 5 days, 2 days hot) fills 1-5 end up cold
and 6-9 hot.

BTCUSDT, by hand (average cost; fees in USDT unless said):
  f1 buy  0.5 @ 100  fee 0.05          long 0.5, cost 50
  f2 buy  0.3 @ 110  fee 0.033         long 0.8, cost 83
  f3 buy  0.2 @ 110  fee 0.0002 BTC    long 1.0, cost 105, average 105
  f4 sell 0.4 @ 120  fee 0.048         realizes 0.4 x (120 - 105) = 6; long 0.6, cost 63
  f5 sell 1.0 @ 125  fee 0.125         flip: closes 0.6: 0.6 x 125 - 63 = 12 (realized 18);
                                       short 0.4 @ 125, cost 50. Fee split 0.075 / 0.05.
                                       Trip 1 (f1..f5): 18 - (0.05+0.033+0.048+0.075) = 17.794
  f6 buy  0.1 @ 130  fee 0.013         realizes 0.1 x (125 - 130) = -0.5 (17.5); short 0.3, cost 37.5
  f7 sell 0.2 @ 115  fee 0.01 BNB      short 0.5, cost 60.5, average 121
  f8 buy  0.5 @ 120  fee 0.06          closes all: 60.5 - 60 = 0.5 (realized 18); flat
                                       Trip 2 (f5..f8): 0 - (0.05+0.013+0.06) = -0.123
  f9 buy  0.2 @ 100  fee 0.02          long 0.2, average 100
  Fees in USDT 0.349, net 17.651; other fees BTC 0.0002, BNB 0.01.
ETH-USDT: e1 sell 1 @ 50 fee 0.05 at T0 + 30h; e2 buy 1 @ 40 fee 0.04 at T0 + 78h:
  realizes 10, trip 3: 10 - 0.09 = 9.91.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Final

T0_MS: Final = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR_MS: Final = 3_600_000
D = Decimal


def at(ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)


def btc_ms(k: int) -> int:
    return T0_MS + 12 * HOUR_MS * k


def fill(
    fill_id: str, order_id: str, side: str, quantity: str, price: str, fee: str, fee_asset: str | None,
    ts_ms: int, symbol: str = "BTCUSDT", strategy: str = "grid",
) -> dict[str, Any]:  # fmt: skip
    message: dict[str, Any] = {
        "fill_id": fill_id, "order_id": order_id, "exchange": "binance", "symbol": symbol, "side": side,
        "quantity": quantity, "price": price, "fee": fee, "liquidity": "maker", "bot_id": "grid-1",
        "strategy": strategy, "ts": ts_ms,
    }  # fmt: skip
    if fee_asset is not None:
        message["fee_asset"] = fee_asset
    return message


FILLS: Final = [
    fill("f1", "o1", "buy", "0.5", "100", "0.05", "USDT", btc_ms(1)),
    fill("f2", "o2", "buy", "0.3", "110", "0.033", "USDT", btc_ms(2)),
    fill("f3", "o2", "buy", "0.2", "110", "0.0002", "BTC", btc_ms(3)),
    fill("f4", "o3", "sell", "0.4", "120", "0.048", "USDT", btc_ms(4)),
    fill("f5", "o4", "sell", "1.0", "125", "0.125", "USDT", btc_ms(5)),
    fill("f6", "o5", "buy", "0.1", "130", "0.013", "USDT", btc_ms(6)),
    fill("f7", "o6", "sell", "0.2", "115", "0.01", "BNB", btc_ms(7)),
    fill("f8", "o7", "buy", "0.5", "120", "0.06", "USDT", btc_ms(8)),
    fill("f9", "o8", "buy", "0.2", "100", "0.02", None, btc_ms(9)),  # no fee_asset: the quote
    fill("e1", "p1", "sell", "1", "50", "0.05", "USDT", T0_MS + 30 * HOUR_MS, "ETH-USDT", "mean"),
    fill("e2", "p2", "buy", "1", "40", "0.04", "USDT", T0_MS + 78 * HOUR_MS, "ETH-USDT", "mean"),
]

# positions, in Vault.positions' order (symbol BTCUSDT before ETH-USDT)
BTC_POSITION: Final = {
    "bot_id": "grid-1", "exchange": "binance", "symbol": "BTCUSDT", "quantity": D("0.2"),
    "average_price": D("100"), "realized_pnl": D("18"), "fees": D("0.349"),
    "other_fees": [("BNB", D("0.01")), ("BTC", D("0.0002"))], "net_pnl": D("17.651"), "fills": 9,
    "opened_at": at(btc_ms(9)), "closed_at": at(btc_ms(8)), "last_fill_at": at(btc_ms(9)),
}  # fmt: skip
ETH_POSITION: Final = {
    "bot_id": "grid-1", "exchange": "binance", "symbol": "ETH-USDT", "quantity": D("0"),
    "average_price": None, "realized_pnl": D("10"), "fees": D("0.09"), "other_fees": [],
    "net_pnl": D("9.91"), "fills": 2, "opened_at": None, "closed_at": at(T0_MS + 78 * HOUR_MS),
    "last_fill_at": at(T0_MS + 78 * HOUR_MS),
}  # fmt: skip
# BTCUSDT as of f7's ts (exclusive): f1..f6
BTC_BEFORE_F7: Final = BTC_POSITION | {
    "quantity": D("-0.3"), "average_price": D("125"), "realized_pnl": D("17.5"), "fees": D("0.269"),
    "other_fees": [("BTC", D("0.0002"))], "net_pnl": D("17.231"), "fills": 6, "opened_at": at(btc_ms(5)),
    "closed_at": at(btc_ms(5)), "last_fill_at": at(btc_ms(6)),
}  # fmt: skip

# the summary of BTCUSDT: trips 17.794 and -0.123; the net curve after each fill:
# -0.05 -0.083 -0.083 5.869 17.744 17.231 17.231 17.671 17.651 → max drawdown 0.513
BTC_SUMMARY: Final = {
    "fills": 9, "round_trips": 2, "wins": 1, "losses": 1, "realized_pnl": D("18"), "fees": D("0.349"),
    "other_fees": {"BNB": D("0.01"), "BTC": D("0.0002")}, "net_pnl": D("17.651"), "win_rate": D("0.5"),
    "average_win": D("17.794"), "average_loss": D("-0.123"),
    "profit_factor": D("144.666666666666666667"),  # 17.794 / 0.123 = 144.6666…, half even at 18 places
    "max_drawdown": D("0.513"), "first_fill_at": at(btc_ms(1)), "last_fill_at": at(btc_ms(9)),
}  # fmt: skip
# the whole bot: ETH's trip (9.91) closes at T0 + 78h. The curve in time order: f1 -0.05,
# f2 -0.083, e1 -0.133, f3 -0.133, f4 5.819, f5 17.694, f6 17.181, e2 27.141, f7 27.141,
# f8 27.581, f9 27.561 → max drawdown 0.513 (17.694 → 17.181)
ALL_SUMMARY: Final = {
    "fills": 11, "round_trips": 3, "wins": 2, "losses": 1, "realized_pnl": D("28"), "fees": D("0.439"),
    "other_fees": {"BNB": D("0.01"), "BTC": D("0.0002")}, "net_pnl": D("27.561"),
    "win_rate": D("0.666666666666666667"), "average_win": D("13.852"), "average_loss": D("-0.123"),
    "profit_factor": D("225.235772357723577236"),  # 27.704 / 0.123
    "max_drawdown": D("0.513"), "first_fill_at": at(btc_ms(1)), "last_fill_at": at(btc_ms(9)),
}  # fmt: skip
# BTCUSDT in [f5, f8): fills f5, f6, f7; trip 1 closes at f5; curve 11.875, 11.362, 11.362
BTC_WINDOW_SUMMARY: Final = {
    "fills": 3, "round_trips": 1, "wins": 1, "losses": 0, "realized_pnl": D("11.5"), "fees": D("0.138"),
    "other_fees": {"BNB": D("0.01")}, "net_pnl": D("11.362"), "win_rate": D("1"),
    "average_win": D("17.794"), "average_loss": None, "profit_factor": None,
    "max_drawdown": D("0.513"), "first_fill_at": at(btc_ms(5)), "last_fill_at": at(btc_ms(7)),
}  # fmt: skip
