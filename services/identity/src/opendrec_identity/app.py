"""Wiring: the identity service's routes, keys, mail worker and startup steps."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from opendrec_kit import ServiceRuntime

from . import api
from .mail import parse_smtp_url
from .passwords import Passwords
from .services import bootstrap
from .services import mail as mail_service
from .services.common import Identity
from .settings import Settings
from .throttle import LoginThrottle
from .tokens import TokenService, load_signing_key

log = logging.getLogger(__name__)


def build(settings: Settings) -> ServiceRuntime[Settings]:
    # Loaded before anything starts: a production instance without its key must not come up.
    key = load_signing_key(Path(settings.jwt_private_key_file), may_create=settings.environment in ("dev", "test"))
    runtime = ServiceRuntime(settings, title="OpenDREC identity", migrations=Path(__file__).parent / "migrations")
    smtp_server = parse_smtp_url(settings.smtp_url)  # a bad SMTP_URL stops the start, not the first mail

    async def send_mail() -> bool:
        """One batch of due mails; True when the batch was full (more may be waiting)."""
        tried = await mail_service.send_due_mails(
            runtime.uow(), smtp_server, settings.mail_from, settings.mail_max_attempts
        )
        return tried >= mail_service.BATCH

    identity = Identity(
        settings=settings,
        passwords=Passwords(threads=settings.password_threads, queue=settings.password_queue),
        tokens=TokenService(
            key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_seconds=settings.access_token_ttl_seconds,
        ),
        throttle=LoginThrottle(settings),
        verifier=runtime.app.state.token_verifier,
        mailer=runtime.worker("mail-sender", send_mail, interval_s=settings.mail_poll_interval_s),
    )
    state: Any = runtime.app.state
    state.identity = identity
    state.tokens, state.passwords = identity.tokens, identity.passwords
    for router in api.ROUTERS:
        runtime.include_router(router)

    async def trust_own_key(rt: ServiceRuntime[Any]) -> None:
        # Identity verifies its own tokens (GET /api/user/me) without fetching its own JWKS over HTTP.
        rt.app.state.token_verifier.add_key(key.public_jwk())
        message = "generated a new token signing key" if key.generated else "loaded the token signing key"
        log.info(message, extra={"kid": key.kid, "path": settings.jwt_private_key_file})

    async def ensure_admin(rt: ServiceRuntime[Any]) -> None:
        await bootstrap.ensure_admin(rt.uow(), settings, identity.passwords)

    async def stop_password_pool(rt: ServiceRuntime[Any]) -> None:
        identity.passwords.close()

    runtime.on_startup(trust_own_key)
    runtime.on_shutdown(stop_password_pool)
    runtime.on_startup(ensure_admin)
    return runtime
