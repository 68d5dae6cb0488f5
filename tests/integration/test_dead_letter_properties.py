"""Through the running daemon: every generated message, valid, near valid or any bytes, is
stored or dead-lettered with the very category and reason its codec gives, and the daemon
stays up. Each example starts the daemon, publishes a batch to the streams of every kind
(and the mixed one), drains and stops it; the dead letters are matched by stream entry.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import Daemon, TestEnv
from tests.integration.test_bad_input import letters_by_entry
from tests.properties import examples
from tests.property_messages import messages, near_valid
from tickvault.codecs import native
from tickvault.errors import RecordError

STREAMS = ("kline", "order", "fill", "bot_state", "balance", "signal", "trade", "mixed")


@st.composite
def published(draw: st.DrawFn) -> tuple[str, bytes]:
    """(stream, payload): a message valid or near valid on its kind's stream or, carrying
    its kind, on the mixed one; or any bytes on any stream."""
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(st.sampled_from(STREAMS)), draw(st.binary(max_size=200))
    message = draw(messages()) if choice == 1 else draw(near_valid())[0]
    mixed = draw(st.booleans())
    return ("mixed" if mixed else message.kind), message.payload(with_kind=mixed)


@examples(5)
@given(st.lists(published(), min_size=1, max_size=60))
async def test_every_message_is_stored_or_dead_lettered_with_its_codecs_reason(
    env: TestEnv, daemon: Daemon, batch: list[tuple[str, bytes]]
) -> None:
    expected: dict[tuple[str, str], Any] = {}
    for stream, payload in batch:
        entry = (env.stream(stream), await env.add(stream, payload))
        try:
            native.decode_item(payload, None if stream == "mixed" else stream)
            expected[entry] = None
        except RecordError as exc:
            expected[entry] = (exc.category, exc.reason)
    await daemon.start()
    await daemon.drain(timeout_s=60)
    assert await daemon.stop_all() == [0]
    letters = await letters_by_entry(env)
    refused = {entry for entry, letter in letters.items() if letter["category"] != "db_rejected"}
    assert refused & expected.keys() == {entry for entry, refusal in expected.items() if refusal}
    for entry, refusal in expected.items():
        letter = letters.get(entry)
        if refusal is None:  # stored, unless PostgreSQL refused a value the codec took
            assert letter is None or letter["category"] == "db_rejected", (entry, dict(letter))
        else:
            assert letter is not None, entry
            assert (letter["category"], letter["reason"]) == refusal
