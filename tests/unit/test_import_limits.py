"""Import reads JSON Lines within source.max_message_bytes, as the daemon's sources do: a
longer line is a dead letter "too_large" holding only its head, and is never read whole."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tickvault.importer import jsonl
from tickvault.record_schemas import EXAMPLES

LIMIT = 4096


@pytest.mark.parametrize("wrap", ["plain", "zip"])
def test_a_line_past_the_limit_is_a_too_large_dead_letter(tmp_path: Path, wrap: str) -> None:
    good = json.dumps(EXAMPLES["kline"]).encode()
    huge = b'{"pad": "' + b"x" * (3 * LIMIT + 17) + b'"}'
    text = b"\n".join([good, huge, good.replace(b"87055.25", b"87055.5"), b"x" * LIMIT, b""])
    path = tmp_path / "in.jsonl"
    path.write_bytes(text)
    if wrap == "zip":
        with zipfile.ZipFile(tmp_path / "in.zip", "w") as archive:
            archive.write(path, "in.jsonl")
        path = tmp_path / "in.zip"

    chunks = list(jsonl.chunks(path, "kline", 100, max_message_bytes=LIMIT))
    items = [i for c in chunks for i in c.items]
    bad = [d for c in chunks for d in c.bad]
    assert [e for c in chunks for e in c.entries] == ["1", "3"]  # line numbers kept past the long line
    assert len(items) == 2
    assert [(d.entry_id, d.category) for d in bad] == [("2", "too_large"), ("4", "invalid_json")]
    assert len(bad[0].payload) == LIMIT and bad[0].payload == huge[:LIMIT]
    assert f"{LIMIT}-byte limit" in bad[0].reason
    assert len(bad[1].payload) == LIMIT  # exactly at the limit: decoded (and refused as JSON)
