"""Trading state computed from stored fills and orders: positions and realized PnL by the
average-cost method (book, positions), the trading summary (summary), open orders and one
order with its history and fills (orders). The README's "Positions and PnL" section gives
the definitions these modules implement."""
