"""Identity rules: what a registration must look like, what a role may do, what a token says.

Pure functions and small dataclasses, no I/O.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NotRequired, TypedDict

# Roles, modules and default grants are the platform's contract: identity seeds its tables from them
# (tests check the migration) and other services document their endpoints' roles from them.
from opendrec_contracts.access import ACTION_LETTERS, ADMIN, MODULES, ROLES  # noqa: F401 - re-exported (other modules read them through domain)

# -- roles, organization types, modules -------------------------------------------------

API_USER = "ApiUser"

DEVELOPER = "Developer"
BUYER = "Buyer"
ADMIN_ORGANIZATION = "Admin"  # the organization the first admin belongs to

# Who the first user of a self-registered organization becomes.
FIRST_USER_ROLE = {DEVELOPER: "OrganizationAdmin", BUYER: "Buyer"}

# Permission letters, in the order they are always written ("RWUD").
ACTIONS = {letter: name for name, letter in ACTION_LETTERS.items()}
LETTERS = "".join(ACTIONS)


class Invalid(ValueError):
    """A value breaks a rule; the message says which and how to fix it."""


# -- registration rules ------------------------------------------------------------------

# The WHATWG (HTML5) definition of a valid e-mail address, with at least one dot in the domain.
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
EMAIL_MAX = 254
PASSWORD_MIN, PASSWORD_MAX = 6, 128
_SECRET_KEY = re.compile(r"[A-Z0-9]{6}")

PASSWORD_RULE = (
    f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long and contain at least one letter and one digit"
)
SECRET_KEY_RULE = "secretKey must be exactly 6 characters, each an upper-case letter A-Z or a digit 0-9 (e.g. AB0123)"


def normalize_email(value: str) -> str:
    """Trimmed and lower-cased: e-mail addresses are unique regardless of letter case."""
    email = value.strip().lower()
    if not email:
        raise Invalid("email is required")
    if len(email) > EMAIL_MAX or not _EMAIL.fullmatch(email):
        raise Invalid("email must be a valid e-mail address, like name@example.org")
    return email


def check_password(value: str) -> str:
    if not (PASSWORD_MIN <= len(value) <= PASSWORD_MAX):
        raise Invalid(PASSWORD_RULE)
    if not any(c.isalpha() for c in value) or not any(c.isdecimal() for c in value):
        raise Invalid(PASSWORD_RULE)
    return value


def check_secret_key(value: str) -> str:
    if not _SECRET_KEY.fullmatch(value):
        raise Invalid(SECRET_KEY_RULE)
    return value


def normalize_organization_type(value: str) -> str:
    """'developer', 'DEVELOPER', 'Developer' -> 'Developer'; only Developer and Buyer register themselves."""
    by_lower = {t.lower(): t for t in FIRST_USER_ROLE}
    found = by_lower.get(value.strip().lower())
    if found is None:
        raise Invalid("organizationType must be Developer or Buyer")
    return found


def storable_text(value: str, field: str) -> str:
    """Text as typed, refused if Postgres could not keep it: a NUL character (it made the query fail, a 500)."""
    if "\x00" in value:
        raise Invalid(f"{field} must not contain a NUL character")
    return value


def required_text(value: str, field: str, max_length: int) -> str:
    text = storable_text(value, field).strip()
    if not text:
        raise Invalid(f"{field} is required")
    if len(text) > max_length:
        raise Invalid(f"{field} must be at most {max_length} characters")
    return text


def optional_text(value: str | None, field: str, max_length: int) -> str | None:
    if value is None or not value.strip():
        return None
    return required_text(value, field, max_length)


def first_user_role(organization_type: str) -> str:
    return FIRST_USER_ROLE[organization_type]


# -- permissions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModuleGrant:
    """One ACL module as seen by one user: what it offers and what their role and they were granted."""

    module: str
    supported: str = LETTERS  # the actions the module offers
    enabled: bool = True
    role_actions: str = ""
    user_actions: str = ""


def merge_actions(*granted: str) -> str:
    """The union of permission letters, written in RWUD order."""
    letters = set().union(*granted)
    return "".join(letter for letter in LETTERS if letter in letters)


def effective_permissions(role: str, grants: Iterable[ModuleGrant]) -> dict[str, str]:
    """Module -> letters: role grants plus the user's own grants, limited to what each enabled module offers.

    Admin holds every action of every enabled module.
    """
    perms: dict[str, str] = {}
    for grant in grants:
        if not grant.enabled:
            continue
        if role == ADMIN:
            actions = merge_actions(grant.supported)
        else:
            granted = set(grant.role_actions).union(grant.user_actions).intersection(grant.supported)
            actions = "".join(letter for letter in LETTERS if letter in granted)
        if actions:
            perms[grant.module] = actions
    return perms


def action_names(letters: str) -> list[str]:
    """'RWU' -> ['Read', 'Write', 'Update'] (the D-REC words for the letters)."""
    return [ACTIONS[letter] for letter in LETTERS if letter in letters]


def letters_of(names: Iterable[str]) -> str:
    """['Write', 'Read', 'Read'] -> 'RW' (callers validated the names)."""
    return merge_actions(*(ACTION_LETTERS[name] for name in names))


# D-REC's permissionValue of a grant: one bit per action.
PERMISSION_BITS = {"R": 1, "W": 2, "U": 4, "D": 8}


def permission_value(letters: str) -> int:
    """'RW' -> 3: D-REC's permissionValue (Read 1, Write 2, Update 4, Delete 8)."""
    return sum(bit for letter, bit in PERMISSION_BITS.items() if letter in letters)


def removed_actions(before: str, after: str) -> str:
    """The letters `before` holds and `after` does not: a non-empty answer is a reduction."""
    return "".join(letter for letter in before if letter not in after)


# -- ACL modules and grants (administered by an Admin) ---------------------------------------

_MODULE_NAME = re.compile(r"[A-Z][A-Z0-9_]{2,99}")
MODULE_NAME_RULE = "name must be 3 to 100 characters: upper-case letters, digits and _, starting with a letter (e.g. METER_MANAGEMENT_CRUDL)"
API_USER_GRANTS = (
    "API users get modules only through their own request and an admin's approval "
    "(POST /api/permission/module/apiuser/request, PUT /api/permission/module/verify/ByAdmin/{apiUserId})"
)
ADMIN_GRANTS = "Admin holds every action of every enabled module; it takes no grants"
GRANTABLE_ROLES = tuple(r for r in ROLES if r not in (ADMIN, API_USER))


def check_module_name(value: str) -> str:
    name = value.strip()
    if not _MODULE_NAME.fullmatch(name):
        raise Invalid(MODULE_NAME_RULE)
    return name


def check_offered(module: str, offered: str, letters: str) -> str:
    """A grant may hold only actions its module offers; the message lists those it does."""
    if set(letters) - set(offered):
        raise Invalid(f"{module} offers only {', '.join(action_names(offered))}")
    return letters


def grantable_role(role: str) -> str:
    """A role that grants may be given to (Admin needs none; API users go through approval)."""
    if role == ADMIN:
        raise Invalid(ADMIN_GRANTS)
    if role == API_USER:
        raise Invalid(API_USER_GRANTS)
    if role not in GRANTABLE_ROLES:
        raise Invalid(f"entityId must be a role: one of {', '.join(GRANTABLE_ROLES)}")
    return role


def grantable_role_named(value: str) -> str:
    """A grant's role as D-REC names it (its role id, "3") or by its name ("DeviceOwner")."""
    return grantable_role(role_named(value) or value)


def grantable_user_id(value: str | int) -> int:
    """A user grant names the user by id: 42 or "42"."""
    text = str(value).strip()
    if not text.isdecimal() or not (0 < int(text) < 2**63):
        raise Invalid("entityId must be a user id (a positive whole number) when entityType is User")
    return int(text)


# -- tokens ----------------------------------------------------------------------------------


class TokenSubject(TypedDict):
    """Whom an access token is for: the keywords TokenService.issue takes and passes on to access_token_claims."""

    user_id: int
    organization_id: int
    organization_type: str
    role: str
    email: str
    permissions: dict[str, str]
    api_user_id: NotRequired[str | None]


def access_token_claims(
    *,
    user_id: int,
    organization_id: int,
    organization_type: str,
    role: str,
    email: str,
    permissions: dict[str, str],
    issuer: str,
    audience: str,
    ttl: timedelta,
    now: datetime,
    jti: str,
    api_user_id: str | None = None,
) -> dict[str, Any]:
    """The claims every service reads to authorize a call without asking identity."""
    extra = {"apiUserId": api_user_id} if api_user_id else {}
    return {
        **extra,
        "sub": str(user_id),
        "org": organization_id,
        "orgType": organization_type,
        "role": role,
        "email": email,
        "perms": dict(permissions),
        "jti": jti,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "iss": issuer,
        "aud": audience,
    }


# -- one-time tokens (e-mail confirmation, password reset) ----------------------------------------


def token_digest(token: str) -> str:
    """What is stored for a one-time token: its SHA-256 (the token is 256 random bits, so no salt or slow hash)."""
    return hashlib.sha256(token.encode()).hexdigest()


# -- login throttling ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThrottlePolicy:
    window: timedelta  # failures older than this are forgotten
    slowdown_after: int  # from this many failures, each try must wait a growing delay
    slowdown_base_s: float
    slowdown_max_s: float
    lockout_after: int  # from this many failures, refused for `lockout`
    lockout: timedelta


@dataclass(frozen=True)
class ThrottleState:
    failures: int
    window_start: datetime
    blocked_until: datetime | None


def after_failure(policy: ThrottlePolicy, state: ThrottleState | None, now: datetime) -> ThrottleState:
    """The state after one more failed login for a key."""
    if state is None or state.window_start + policy.window <= now:
        failures, window_start = 1, now
    else:
        failures, window_start = state.failures + 1, state.window_start
    if failures >= policy.lockout_after:
        blocked: datetime | None = now + policy.lockout
    elif failures >= policy.slowdown_after:
        delay = min(policy.slowdown_base_s * 2 ** (failures - policy.slowdown_after), policy.slowdown_max_s)
        blocked = now + timedelta(seconds=delay)
    else:
        blocked = None
    return ThrottleState(failures, window_start, blocked)


def retry_after_seconds(blocked_until: datetime | None, now: datetime) -> int | None:
    """Whole seconds to wait (at least 1) while a key is blocked, else None."""
    if blocked_until is None or blocked_until <= now:
        return None
    return max(1, math.ceil((blocked_until - now).total_seconds()))


def client_address(peer: str | None, forwarded_for: str | None, trust_forwarded_for: bool) -> str:
    """The caller's address: the last X-Forwarded-For entry (the one our gateway appended) when trusted."""
    if trust_forwarded_for and forwarded_for:
        last = forwarded_for.split(",")[-1].strip()
        if last:
            return last
    return peer or "unknown"


# -- organization members ---------------------------------------------------------------------------

# The roles a member of each organization type may be given.
MEMBER_ROLES = {
    DEVELOPER: ("OrganizationAdmin", "DeviceOwner", "User"),
    BUYER: ("Buyer", "SubBuyer", "User"),
}


def check_member_role(organization_type: str, role: str) -> str:
    allowed = MEMBER_ROLES.get(organization_type, ())
    if role not in allowed:
        if not allowed:
            raise Invalid(f"members of a {organization_type} organization cannot be given roles")
        raise Invalid(f"role must be one of {', '.join(allowed)} in a {organization_type} organization")
    return role


# -- who reads whom ------------------------------------------------------------------------------------------

# The roles that administer their organization (its first user's role): they read its members.
ORGANIZATION_ADMINS = frozenset(FIRST_USER_ROLE.values())

VISIBLE, FORBIDDEN, HIDDEN = "visible", "forbidden", "hidden"


def user_visibility(
    *, viewer_id: int, viewer_role: str, viewer_organization_id: int, user_id: int, user_organization_id: int
) -> str:
    """Whether a caller may read a user (D-REC: oneself, one's organization's administrator, an Admin).
    VISIBLE; FORBIDDEN for a colleague (403); HIDDEN for another organization's user (answered as if there
    were none: 404, so that ids of other organizations' users reveal nothing)."""
    if viewer_role == ADMIN or viewer_id == user_id:
        return VISIBLE
    if viewer_organization_id != user_organization_id:
        return HIDDEN
    return VISIBLE if viewer_role in ORGANIZATION_ADMINS else FORBIDDEN


# -- roles by the reference's ids ----------------------------------------------------------------------------

# D-REC's user_role table (migrations/user_role.json): GET /api/permission/role/{id} names a role by these.
ROLE_IDS = {1: ADMIN, 2: "OrganizationAdmin", 3: "DeviceOwner", 4: BUYER, 5: "User", 6: API_USER, 7: "SubBuyer"}


def role_named(value: str) -> str | None:
    """A role from D-REC's role id ("2") or its name ("OrganizationAdmin"); None if there is no such role."""
    text = value.strip()
    if text.isdecimal():
        return ROLE_IDS.get(int(text)) if len(text) < 10 else None
    return text if text in ROLES else None


# -- organizations an Admin changes or deletes -----------------------------------------------------------------

DELETED = "Deleted"
ORGANIZATION_STATUSES = ("Submitted", "Denied", "Active")  # what PATCH may set; DELETE alone sets Deleted
# Fields of D-REC's organization bodies that OpenDREC does not keep (no column, no reader).
UNKEPT_ORGANIZATION_FIELDS = (
    "zipCode",
    "city",
    "country",
    "signatoryFullName",
    "signatoryAddress",
    "signatoryZipCode",
    "signatoryCity",
    "signatoryCountry",
    "signatoryEmail",
    "signatoryPhoneNumber",
    "documentIds",
    "signatoryDocumentIds",
)
UNKEPT = "OpenDREC keeps no such field for an organization; leave it out"


def same_organization_type(current: str, requested: str) -> str:
    """An organization keeps its type: its members' roles depend on it (any letter case of the same type is fine)."""
    if requested.strip().lower() != current.lower():
        raise Invalid(f"organizationType cannot change (it is {current}): the members' roles depend on it")
    return current


def check_deletable(organization_type: str, status: str, *, own: bool, organizations_under_it: int) -> None:
    """Why an organization may not be deleted, if it may not (the caller's own, the admins', an API user's
    with organizations still registered under it, one already deleted)."""
    if status == DELETED:
        raise Invalid("this organization is already deleted")
    if own:
        raise Invalid("you cannot delete your own organization")
    if organization_type == ADMIN_ORGANIZATION:
        raise Invalid("the administrators' organization cannot be deleted")
    if organizations_under_it:
        raise Invalid(
            f"this API user still acts for {organizations_under_it} organization(s) registered under it; delete those first"
        )
