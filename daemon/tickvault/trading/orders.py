"""Orders as bots look at them: the open ones, and one order whole (`OrderDetail`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa

from tickvault.output import rows_of

# statuses of an order that can still fill (records.TERMINAL_STATUSES are the others)
OPEN_STATUSES: Final = ("new", "open", "partially_filled")


@dataclass(frozen=True)
class OrderDetail:
    """One order (`Vault.order`): three Arrow tables of the read schemas.

    - `state`: its current row (`orders`, columns `Order.COLUMNS`): one row, or none when
      only fills of it are stored.
    - `history`: every accepted update (`order_events`, hot and cold), oldest first.
    - `fills`: its fills (hot and cold, columns `Fill.COLUMNS`), oldest first.
    """

    state: pa.Table
    history: pa.Table
    fills: pa.Table

    @property
    def current(self) -> dict[str, Any] | None:
        """The current state as a dict (decimals canonical), or None when not stored."""
        return rows_of(self.state)[0] if self.state.num_rows else None
