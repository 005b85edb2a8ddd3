"""Dead letters for admins (issue 13): what consumers set aside on the broker's `<topic>.dlq` topics, with the
error that put each there, and their replay to the original topic once the cause is fixed (safe: every consumer's
inbox makes a repeat a no-op). The same reading and replaying as the `python -m opendrec_kit.dlq` command; identity
only adds who replayed which, and when."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opendrec_kit import ApiError, Principal, UnitOfWork, dlq
from opendrec_kit.paging import Page, total_pages
from opendrec_kit.timestamps import iso

from .. import store


@dataclass(frozen=True)
class Position:
    topic: str
    partition: int
    offset: int


def dlq_of(topic: str | None) -> list[str]:
    """The DLQs asked for: one (named by itself or by its original topic) or, with None, every one. 400 for a topic
    that has none."""
    known = dlq.dlq_topics()
    if topic is None:
        return known
    name = topic if topic.endswith(dlq.DLQ_SUFFIX) else topic + dlq.DLQ_SUFFIX
    if name not in known:
        message = f"topic {topic!r} has no dead-letter queue; one of: {', '.join(sorted(known))}"
        raise ApiError(400, message, [{"field": "topic", "message": message}])
    return [name]


def _answer(letter: dlq.DeadLetter, replay: Any | None) -> dict[str, Any]:
    return {
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "originalTopic": letter.original_topic,
        "eventId": letter.event_id,
        "eventType": letter.event_type,
        "key": letter.key,
        "errorType": letter.error_type,
        "errorMessage": letter.error_message,
        "attempts": letter.attempts,
        "replayedAt": iso(replay["replayed_at"]) if replay else None,
        "replayedBy": replay["replayed_by"] if replay else None,
    }


async def dead_letters(uow: UnitOfWork, bootstrap: str, page: Page, topic: str | None) -> dict[str, Any]:
    """A page of the dead letters (oldest first per DLQ), each with its error and, once replayed, when and by whom."""
    topics = dlq_of(topic)
    letters = await dlq.dead_letters(bootstrap, topics)
    async with uow.reading() as r:
        replays = {
            (x["topic"], x["partition"], x["offset"]): x for x in await store.dead_letter_replays(r.conn, topics)
        }
    shown = letters[page.offset : page.offset + page.limit]
    return {
        "deadLetters": [_answer(d, replays.get((d.topic, d.partition, d.offset))) for d in shown],
        "totalItems": len(letters),
        "waitingItems": sum((d.topic, d.partition, d.offset) not in replays for d in letters),
        "currentPage": page.number,
        "totalPages": total_pages(len(letters), page.limit),
    }


async def replay(uow: UnitOfWork, bootstrap: str, admin: Principal, positions: list[Position]) -> dict[str, Any]:
    """Publish the named dead letters again to their original topics and record who did. Every one must be on its
    DLQ (404 naming the missing ones: nothing replayed). The record and the replay go together: a replay the broker
    refuses leaves no record."""
    topics = sorted({dlq_of(p.topic)[0] for p in positions})
    wanted = {(dlq_of(p.topic)[0], p.partition, p.offset) for p in positions}
    found = [d for d in await dlq.dead_letters(bootstrap, topics) if (d.topic, d.partition, d.offset) in wanted]
    missing = wanted - {(d.topic, d.partition, d.offset) for d in found}
    if missing:
        details = [
            {"topic": t, "partition": p, "offset": o, "message": "no such dead letter"} for t, p, o in sorted(missing)
        ]
        raise ApiError(404, f"{len(missing)} of the dead letters named are not on their DLQ: nothing replayed", details)
    async with uow:
        letters = [(d.topic, d.partition, d.offset, d.event_id) for d in found]
        await store.record_dead_letter_replays(uow.conn, letters, admin.user_id)
        await dlq.replay(bootstrap, found)  # before the commit: refused, nothing is recorded
        replays = {
            (x["topic"], x["partition"], x["offset"]): x for x in await store.dead_letter_replays(uow.conn, topics)
        }
    return {
        "replayed": len(found),
        "deadLetters": [_answer(d, replays.get((d.topic, d.partition, d.offset))) for d in found],
    }
