"""CPU per message of the daemon's own Python work, without servers: how many µs of one core
each step costs a trade (or a kline), so a change to the hot path can be compared on a busy
machine, where end-to-end ratios swing with the load.

    python bench/message_cpu.py [--kind trade|kline] [--messages 100000] [--repeat 5]

Steps, on the bench's workload (bench/ingest_workload.py), each timed with process CPU time,
best of --repeat:
- redis entries: a read's unparsed XREADGROUP reply → Messages (`RedisStreamsSource._messages`);
- decode: the native codec on every payload (hot path);
- routing: `Pipeline._take` on reads of 1,000 messages, less the decode measured above;
- COPY text: each writer's batches as the COPY payload (`KindWriter.copy_text`);
- observe: the per-batch latency and newest-event metrics (`observe.committed`).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

from ingest_workload import build_workload
from tickvault import observe
from tickvault.codecs import native
from tickvault.pipeline import Pipeline, PipelineConfig, Route, Routes
from tickvault.sources.redis_streams import RedisStreamsSource
from tickvault.store.writers import build_writers

READ = 1000  # messages per read, the daemon's default read_count


def best_us(fn: Callable[[], Any], n: int, repeat: int) -> float:
    """The least process CPU time of `repeat` calls of `fn`, in µs per message."""
    best_s = float("inf")
    for _ in range(repeat):
        gc.collect()
        started_s = time.process_time()
        fn()
        best_s = min(best_s, time.process_time() - started_s)
    return best_s / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=("trade", "kline"), default="trade")
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    kind, n = args.kind, args.messages
    workload = build_workload(n, 1, mix=(0, 0, 0, 100) if kind == "trade" else (100, 0, 0, 0))
    topic = f"tickvault.{kind}s"
    reply = [[topic.encode(), [[f"{1_700_000_000_000 + i // 3}-{i % 3}".encode(), [b"data", payload]]
                               for i, payload in enumerate(workload.payloads[kind])]]]  # fmt: skip
    source = RedisStreamsSource.__new__(RedisStreamsSource)  # only its reply parsing is used
    source._in_flight = {topic: set()}
    messages = source._messages(reply)
    decode = native.codec()

    def pipeline() -> Pipeline:
        routes = Routes({topic: Route(kind, decode)})
        return Pipeline(None, None, routes, PipelineConfig(max_backlog_rows=n + 1))  # type: ignore[arg-type]

    def take() -> Pipeline:
        pipe = pipeline()
        for i in range(0, n, READ):
            pipe._take(messages[i : i + READ])
        return pipe

    batches = []
    filled = take()
    for key in list(filled._wake):
        while filled.batcher.size(key):
            batches.append(filled.batcher.take(key))
    writer = build_writers("bench")[kind]
    gc.freeze()
    us = {
        "redis entries": best_us(
            lambda: (source._in_flight[topic].clear(), source._messages(reply)), n, args.repeat
        ),
        "decode": best_us(lambda: [decode(m.payload, kind) for m in messages], n, args.repeat),
        "routing": best_us(take, n, args.repeat),
        "COPY text": best_us(
            lambda: [writer.copy_text(items, [m.version for m in ms]) for items, ms in batches],
            n,
            args.repeat,
        ),
        "observe": best_us(
            lambda: [observe.committed(kind, items, ms) for items, ms in batches], n, args.repeat
        ),
    }
    us["routing"] -= us["decode"]
    print(f"{n:,} {kind}s, µs of CPU per message (best of {args.repeat}):")
    for step, value in us.items():
        print(f"  {step:14s} {value:5.2f}")
    print(f"  {'total':14s} {sum(us.values()):5.2f}")


if __name__ == "__main__":
    main()
