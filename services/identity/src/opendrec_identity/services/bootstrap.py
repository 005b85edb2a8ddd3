"""The first admin: created at startup from ADMIN_EMAIL / ADMIN_PASSWORD when no admin exists."""

from __future__ import annotations

import logging

from opendrec_kit import UnitOfWork

from .. import domain, store
from ..passwords import Passwords
from ..settings import Settings

log = logging.getLogger(__name__)


class BootstrapError(RuntimeError):
    pass


async def ensure_admin(uow: UnitOfWork, settings: Settings, passwords: Passwords) -> None:
    """Create the first admin (and the administration organization) unless an admin exists."""
    async with uow:
        await store.lock_admin_bootstrap(uow.conn)  # replicas starting together create one admin, not two
        if await store.admin_exists(uow.conn):
            return
        if await store.email_taken(uow.conn, settings.admin_email):
            raise BootstrapError(
                f"ADMIN_EMAIL {settings.admin_email} already belongs to a non-admin user; choose another"
            )
        org = await store.insert_organization(
            uow.conn,
            name=settings.admin_organization_name,
            address=None,
            organization_type=domain.ADMIN_ORGANIZATION,
            secret_key_hash=None,
        )
        user = await store.insert_user(
            uow.conn,
            organization_id=org["id"],
            first_name="OpenDREC",
            last_name="Admin",
            email=settings.admin_email,
            password_hash=await passwords.hash(settings.admin_password),
            role=domain.ADMIN,
            email_confirmed=True,
        )
    log.info(
        "created the first admin", extra={"user_id": user["id"], "email": user["email"], "organization_id": org["id"]}
    )
