"""The signed-in user's session: an encrypted, authenticated cookie (HttpOnly, SameSite=Strict).

It holds the access token, so the page's scripts never see one, and the CSRF token every form carries back.
Fernet stamps each cookie with its time of making: older than SESSION_MAX_AGE_S and it is refused.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field

from cryptography.fernet import Fernet, InvalidToken

COOKIE = "opendrec_console"


@dataclass
class Session:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    token: str | None = None
    user_id: int | None = None
    email: str = ""
    name: str = ""
    role: str = ""
    organization_id: int | None = None
    organization_name: str = ""
    organization_type: str = ""
    api_user_id: str = ""  # an API user's id (it signs in with its key)
    requested: str = ""  # an API user's last permission request's status, as the API answered it
    notice: str = ""  # one message for the next page (after a redirect), then cleared

    @property
    def signed_in(self) -> bool:
        return self.token is not None

    @property
    def is_admin(self) -> bool:
        return self.role == "Admin"

    @property
    def is_developer(self) -> bool:
        return self.organization_type == "Developer" or self.is_admin

    @property
    def is_buyer(self) -> bool:
        return self.organization_type == "Buyer" or self.is_admin


class Sessions:
    def __init__(self, key: str | None, max_age_s: int) -> None:
        self._fernet = Fernet(key.encode() if key else Fernet.generate_key())
        self.max_age_s = max_age_s

    def seal(self, session: Session) -> str:
        return self._fernet.encrypt(json.dumps(asdict(session), separators=(",", ":")).encode()).decode()

    def open(self, cookie: str | None) -> Session:
        """The session in the cookie; a new, signed-out one when there is none, or it is expired or forged."""
        if not cookie or len(cookie) > 8192:
            return Session()
        try:
            data = json.loads(self._fernet.decrypt(cookie.encode(), ttl=self.max_age_s))
            return Session(**data)
        except (InvalidToken, ValueError, TypeError):
            return Session()
