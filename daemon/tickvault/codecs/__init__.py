"""Codecs turn one message payload (bytes) into what the pipeline batches. No I/O.

A codec returns one `Item`, or a list of Items when one message holds several records (a
Binance executionReport that reports a trade: the order's new state and the fill). It raises
`RecordError` with a human-readable reason when the payload cannot be decoded or validated;
the pipeline turns that into a dead letter.

- `native`: tickvault's own JSON messages (DESIGN.md, README "Message formats").
- `cryptofeed`: what cryptofeed's Kafka and Redis Streams backends publish (`cryptofeed`).
- `binance`: Binance's raw websocket events (`binance`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeAlias

from tickvault.codecs import binance, cryptofeed, native
from tickvault.rows import Item

Codec: TypeAlias = Callable[[bytes, str | None], Item | list[Item]]
# name → the codec for a floor of integer timestamps (source.min_epoch_ms; below it they are
# refused as likely epoch seconds, see records.parse_timestamp) and, optionally, a limit on a
# bot state's JSON text in bytes (state.max_bytes)
CODECS: Final[dict[str, Callable[..., Codec]]] = {
    "native": native.codec,
    "cryptofeed": cryptofeed.codec,
    "binance": binance.codec,
}
# codecs whose Redis Stream entries are flat field maps rather than one `data` field holding
# JSON: the source hands such a codec the entry's fields as one JSON object of strings
FIELD_MAP_CODECS: Final = frozenset({"cryptofeed"})

__all__ = ["CODECS", "FIELD_MAP_CODECS", "Codec"]
