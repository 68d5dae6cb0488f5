"""Codecs turn one message payload (bytes) into a record the pipeline batches. No I/O.

A codec raises `RecordError` with a human-readable reason when the payload cannot be
decoded or validated; the pipeline turns that into a dead letter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from tickvault.codecs import native
from tickvault.rows import Item

Codec = Callable[[bytes, str | None], Item]
# name → the codec for a floor of integer timestamps (source.min_epoch_ms; below it they are
# refused as likely epoch seconds, see records.parse_timestamp) and, optionally, a limit on a
# bot state's JSON text in bytes (state.max_bytes)
CODECS: Final[dict[str, Callable[..., Codec]]] = {"native": native.codec}

__all__ = ["CODECS", "Codec"]
