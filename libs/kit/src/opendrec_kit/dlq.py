"""Dead letters: list what consumers set aside (`<topic>.dlq`, with the error in headers) and replay it.

A message lands in a DLQ after bounded retries (a bug, a transient fault that outlasted them, a poison message).
Once the cause is fixed, replaying publishes it again to its original topic with its original key: every consumer
group of that topic sees it again, and their inboxes make it a no-op where it was already handled. A message that
still fails goes to the DLQ again (a new dead letter: nothing is lost either way).

    python -m opendrec_kit.dlq list [--topic device.registered.dlq ...]         one JSON line per dead letter
    python -m opendrec_kit.dlq replay --topic read.ingested.dlq [--event-id ID ...]

`--bootstrap` (default KAFKA_BOOTSTRAP_SERVERS) names the broker. Replaying without `--event-id` replays every
dead letter of the topics given (never all DLQs implicitly).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from opendrec_contracts import all_topics, dlq_topic

from .kafka_security import client_options

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class DeadLetter:
    topic: str  # the DLQ
    partition: int
    offset: int
    original_topic: str
    event_id: str | None  # None: not even an envelope
    event_type: str | None
    error_type: str
    error_message: str
    attempts: str
    key: str | None
    value: bytes = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, object]:
        out = asdict(self)
        out.pop("value")
        out.pop("headers")
        return out


def dlq_topics() -> list[str]:
    return [t for t in all_topics() if t.endswith(DLQ_SUFFIX)]


async def dead_letters(bootstrap: str, topics: Sequence[str] | None = None) -> list[DeadLetter]:
    """Every message of the DLQs (all of them, or `topics`), from their beginning to their current end."""
    wanted = list(topics) if topics else dlq_topics()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    wanted = [t for t in wanted if t in existing]
    if not wanted:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client_options())
    await consumer.start()
    try:
        await consumer.topics()  # metadata, so partitions are known
        parts = [TopicPartition(t, p) for t in wanted for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not parts:
            return []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        found: list[DeadLetter] = []
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(_letter(r) for r in records if r.offset < ends[TopicPartition(r.topic, r.partition)])
        return sorted(found, key=lambda d: (d.topic, d.partition, d.offset))
    finally:
        await consumer.stop()


def _letter(record: object) -> DeadLetter:
    headers = {k: v.decode(errors="replace") for k, v in (getattr(record, "headers", None) or [])}
    value: bytes = getattr(record, "value", None) or b""
    event_id = event_type = None
    try:
        envelope = json.loads(value)
        if isinstance(envelope, dict):
            event_id, event_type = envelope.get("event_id"), envelope.get("type")
    except ValueError:
        pass
    topic: str = getattr(record, "topic", "")
    key = getattr(record, "key", None)
    return DeadLetter(
        topic=topic,
        partition=getattr(record, "partition", 0),
        offset=getattr(record, "offset", 0),
        original_topic=headers.get("x-original-topic") or topic.removesuffix(DLQ_SUFFIX),
        event_id=event_id,
        event_type=event_type,
        error_type=headers.get("x-error-type", ""),
        error_message=headers.get("x-error-message", ""),
        attempts=headers.get("x-attempts", ""),
        key=key.decode(errors="replace") if isinstance(key, bytes) else None,
        value=value,
        headers=headers,
    )


async def replay(bootstrap: str, letters: Sequence[DeadLetter]) -> int:
    """Publish each dead letter again to its original topic, with its key and its trace headers (the DLQ's own
    x-error-* headers left out, x-replayed-from added); returns how many were published."""
    if not letters:
        return 0
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, **client_options())
    await producer.start()
    try:
        for letter in letters:
            headers = [(k, v.encode()) for k, v in letter.headers.items() if not k.startswith("x-")]
            headers.append(("x-replayed-from", f"{letter.topic}/{letter.partition}/{letter.offset}".encode()))
            key = letter.key.encode() if letter.key is not None else None
            await producer.send_and_wait(letter.original_topic, letter.value, key=key, headers=headers)
        return len(letters)
    finally:
        await producer.stop()


async def _main(args: argparse.Namespace) -> int:
    topics = [t if t.endswith(DLQ_SUFFIX) else dlq_topic(t) for t in args.topic or []]
    letters = await dead_letters(args.bootstrap, topics or None)
    if args.command == "list":
        for letter in letters:
            sys.stdout.write(json.dumps(letter.summary()) + "\n")
        sys.stderr.write(f"{len(letters)} dead letter(s)" + "\n")
        return 0
    if not topics:
        sys.stderr.write("replay needs --topic (which DLQ); nothing replayed" + "\n")
        return 2
    if args.event_id:
        letters = [d for d in letters if d.event_id in set(args.event_id)]
    replayed = await replay(args.bootstrap, letters)
    sys.stderr.write(f"{replayed} dead letter(s) published again to their topics" + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opendrec_kit.dlq", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["list", "replay"])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--topic", action="append", help="a DLQ (or its original topic); repeat for several")
    parser.add_argument("--event-id", action="append", help="only this event (repeat for several)")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
