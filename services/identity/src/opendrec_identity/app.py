"""Wiring: the identity service's routes, keys and startup steps."""

from __future__ import annotations

import logging
from pathlib import Path

from opendrec_kit import ServiceRuntime

from . import account, api, api_users, grants, invitations, organizations
from .bootstrap import ensure_admin
from .mail import MailSender, parse_smtp_url
from .passwords import Passwords
from .settings import Settings
from .throttle import LoginThrottle
from .tokens import TokenService, load_signing_key

log = logging.getLogger(__name__)


def build(settings: Settings) -> ServiceRuntime:
    # Loaded before anything starts: a production instance without its key must not come up.
    key = load_signing_key(Path(settings.jwt_private_key_file), may_create=settings.environment in ("dev", "test"))
    runtime = ServiceRuntime(settings, title="OpenDREC identity", migrations=Path(__file__).parent / "migrations")
    runtime.app.state.tokens = TokenService(
        key, issuer=settings.jwt_issuer, audience=settings.jwt_audience, ttl_seconds=settings.access_token_ttl_seconds
    )
    runtime.app.state.passwords = Passwords()
    runtime.app.state.login_throttle = LoginThrottle(settings)
    smtp_server = parse_smtp_url(settings.smtp_url)  # a bad SMTP_URL stops the start, not the first mail
    runtime.include_router(api.router)
    runtime.include_router(account.router)
    runtime.include_router(organizations.router)
    runtime.include_router(invitations.router)
    runtime.include_router(api_users.router)
    runtime.include_router(grants.router)

    async def trust_own_key(rt: ServiceRuntime) -> None:
        # Identity verifies its own tokens (GET /api/user/me) without fetching its own JWKS over HTTP.
        rt.app.state.token_verifier.add_key(key.public_jwk())
        message = "generated a new token signing key" if key.generated else "loaded the token signing key"
        log.info(message, extra={"kid": key.kid, "path": settings.jwt_private_key_file})

    async def start_mail_sender(rt: ServiceRuntime) -> None:
        assert rt.pool is not None
        sender = MailSender(
            rt.pool, smtp_server, settings.mail_from, settings.mail_poll_interval_s, settings.mail_max_attempts
        )
        rt.app.state.mailer = sender
        rt.background("mail-sender", sender.run())

    runtime.on_startup(trust_own_key)
    runtime.on_startup(start_mail_sender)
    runtime.on_startup(ensure_admin)
    return runtime
