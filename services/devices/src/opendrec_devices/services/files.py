"""Use cases of uploaded files (D-REC's file module): store an upload, read a file back.

Files live in Postgres (`files`), each under a key like D-REC's `<name>-<uuid>.csv`; the uploader's
organization (and admins) may read them, and name a CSV one in a bulk onboarding (`bulk_jobs`)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from opendrec_kit import ApiError, Principal, UnitOfWork

from .. import domain, store
from ..file_uploads import UploadedFile, close_all


def no_file(key: str) -> ApiError:
    # another organization's file answers like a missing one
    return ApiError(404, f"No uploaded file {key!r}")


def readable(user: Principal, row: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    """The file row if the caller may read it, else a 404 (one rule for downloads and bulk onboarding)."""
    if row is None or not domain.may_read_file(user.role, user.organization_id, row["organization_id"]):
        raise no_file(key)
    return row


async def store_files(
    uow: UnitOfWork, user: Principal, receive: Callable[[], Awaitable[list[UploadedFile]]]
) -> list[str]:
    """Store the uploaded files for the caller's organization, all or none; their keys, in upload order."""
    files = await receive()
    keys = []
    try:
        async with uow:
            for part in files:
                key = domain.file_key(part.file_name, part.content_type, uuid.uuid4())
                await store.insert_file(
                    uow.conn,
                    {
                        "id": uuid.uuid4(),
                        "key": key,
                        "file_name": part.file_name,
                        "content_type": part.content_type,
                        "data": part.file.read(),
                        "organization_id": user.organization_id,
                        "uploaded_by": user.user_id,
                    },
                )
                keys.append(key)
    finally:
        close_all(files)
    return keys


async def read_file(uow: UnitOfWork, user: Principal, key: str) -> dict[str, Any]:
    """An uploaded file's bytes, type and name, for its organization and admins."""
    async with uow.reading() as r:
        row = readable(user, await store.get_file(r.conn, key), key)
    return {"data": bytes(row["data"]), "contentType": row["content_type"], "fileName": row["file_name"]}
