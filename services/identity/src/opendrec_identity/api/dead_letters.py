"""Dead letters for admins (issue 13): list them with their errors, replay them. Parse, authorize (Admin only),
call a use case (services/dead_letters.py), answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from opendrec_kit import Principal, UoW
from opendrec_kit.auth import only_roles
from opendrec_kit.paging import Page

from ..services import dead_letters as use_cases
from .deps import ADMIN_ONLY, Ident, Paging

router = APIRouter()

TopicName = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")


class DeadLetterPosition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: str = TopicName  # the DLQ, or its original topic
    partition: int = Field(ge=0, le=10_000)
    offset: int = Field(ge=0, le=2**62)


class Replay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deadLetters: list[DeadLetterPosition] = Field(min_length=1, max_length=500)


@router.get("/api/admin/dead-letters", tags=["admin"], dependencies=ADMIN_ONLY)
async def dead_letters(
    uow: UoW,
    ident: Ident,
    page: Page = Paging,
    topic: str | None = Query(
        None, min_length=1, max_length=200, description="one DLQ, by its name or its original topic's (default: all)"
    ),
) -> dict[str, Any]:
    """What consumers set aside after their retries, with the error; `waitingItems`: not replayed yet. Admin only."""
    return await use_cases.dead_letters(uow, ident.settings.kafka_bootstrap_servers, page, topic)


@router.post("/api/admin/dead-letters/replay", tags=["admin"])
async def replay_dead_letters(
    body: Replay, uow: UoW, ident: Ident, admin: Principal = only_roles("Admin")
) -> dict[str, Any]:
    """Publish the named dead letters again to their original topics (consumers' inboxes make a repeat harmless);
    404 when one is not on its DLQ (nothing replayed). Admin only."""
    positions = [use_cases.Position(p.topic, p.partition, p.offset) for p in body.deadLetters]
    return await use_cases.replay(uow, ident.settings.kafka_bootstrap_servers, admin, positions)
