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
CODECS: Final[dict[str, Codec]] = {"native": native.decode_item}

__all__ = ["CODECS", "Codec"]
