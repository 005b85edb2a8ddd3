"""Follows token.revoked so a logged-out token is refused at the door within moments.

Every gateway process reads the whole topic without a consumer group (each must see every
revocation); what it learns lives in memory and is idempotent, so no offsets are kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from opendrec_contracts import AccessTokenRevoked, Envelope, UnknownEvent, parse_event

log = logging.getLogger(__name__)


async def follow_revocations(bootstrap: str, revoke: Callable[[str], None]) -> None:
    while True:
        consumer = AIOKafkaConsumer(
            AccessTokenRevoked.TYPE,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            metadata_max_age_ms=5000,  # the gateway may start before the services create the topic
        )
        try:
            await consumer.start()
            async for record in consumer:
                try:
                    event = parse_event(Envelope.model_validate_json(record.value))
                except (ValidationError, UnknownEvent, ValueError):
                    log.warning("unreadable token.revoked message ignored", extra={"offset": record.offset})
                    continue
                if isinstance(event, AccessTokenRevoked):
                    revoke(event.token_id)
        except asyncio.CancelledError:
            raise
        except (KafkaError, OSError) as exc:
            log.warning("revocation feed interrupted; reconnecting", extra={"error": repr(exc)})
            await asyncio.sleep(1.0)
        finally:
            await consumer.stop()
