"""The public route table: which service owns which D-REC path, and which calls need no token.

Plain data, so that adding a route is a one-line change. Prefixes match on a path-segment
boundary and the longest one wins: `/api/device-group` is not under `/api/device`.
"""

from __future__ import annotations

# service name -> name of the settings field (env var) holding its base URL
SERVICES: dict[str, str] = {
    "identity": "identity_url",
    "devices": "devices_url",
    "readings": "readings_url",
    "reservations": "reservations_url",
    "certificates": "certificates_url",
    "charger-gateway": "charger_gateway_url",
}
# The web console (services/console): pages for people, not API operations (so not in the merged OpenAPI, not
# probed by /healthz); it calls the API through this gateway as any client does. Served at / and /console/...
CONSOLE = "console"

# public path prefix -> owning service
ROUTES: dict[str, str] = {
    "/api/user": "identity",
    "/api/auth": "identity",
    "/api/Organization": "identity",  # capitalised as in the D-REC API
    "/api/invitation": "identity",
    "/api/permission": "identity",
    "/api/aclmodules": "identity",
    "/api/admin": "identity",
    "/api/admin/devices": "devices",  # the admin's device autocomplete
    "/api/admin/add/device-into-Irec": "devices",
    "/api/access-control": "identity",
    "/api/access-control-layer-module-service": "identity",  # the reference's name for /api/aclmodules
    "/.well-known/jwks.json": "identity",
    "/api/device": "devices",  # also /api/device/bulk..., but not /api/device-group
    "/api/countrycode": "devices",
    "/api/sdgbenefit": "devices",
    "/api/file": "devices",  # uploaded files (bulk device and reservation CSVs) named by later requests
    "/api/meter-reads": "readings",
    "/api/yield": "readings",  # country yield values used by the plausibility rule
    "/api/device-group": "reservations",
    "/api/reservation": "reservations",
    "/api/buyer-reservation": "reservations",  # used by D-REC clients (see the API-user manual)
    # D-REC keeps the device bulk-upload job listings under buyer-reservation; devices owns those jobs
    "/api/buyer-reservation/bulk-upload": "devices",
    "/api/buyer-reservation/bulk-upload-status": "devices",
    "/api/buyer-reservation/process-creation-bulk-devices-csv": "devices",
    # a reservation's issuance log: certificates own it
    "/api/buyer-reservation/certificatelog": "certificates",
    "/api/certificate": "certificates",
    "/api/certificate-log": "certificates",
    "/api/drec-issuer": "certificates",
    "/api/charger": "charger-gateway",
    "/public/v2/inventories": "certificates",  # the REC inventory API (shared/seeds/rec-inventory-api.txt)
    "/": CONSOLE,  # only "/" itself: a prefix never shortens to it
    "/console": CONSOLE,
}

# Paths whose errors are written in the REC inventory API's envelope ({Data, Errors, Meta, StatusCode, Message}),
# the gateway's own refusals (401, 413, 502...) included, as that API's clients expect.
SEED_ENVELOPE_PREFIX = "/public/v2/"

# Request bodies past the small JSON limit (BODY_LIMIT_BYTES): read batches and uploads, streamed to the service,
# up to UPLOAD_BODY_LIMIT_BYTES. Prefixes match as ROUTES' do.
LARGE_BODIES: frozenset[str] = frozenset(
    {
        "/api/meter-reads",  # read batches (up to 10,000 reads) and CSV imports
        "/api/file",
        "/api/device/bulk",
        "/api/device/addByAdmin/process-creation-bulk-devices-csv",
        "/console/reads",  # the console's CSV uploads of reads and devices
        "/console/devices/bulk",
    }
)

# (method, path) reachable without a token; a path ending in "/*" covers everything below it
PUBLIC: list[tuple[str, str]] = [
    ("POST", "/api/user/registerWithOrganization"),
    ("POST", "/api/user/register"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/token"),
    ("PUT", "/api/user/confirm-email/*"),
    ("POST", "/api/user/forget-password"),
    ("PUT", "/api/user/reset/password/*"),
    ("POST", "/api/invitation/register/*"),  # an invitee without an account registers with the mailed token
    ("GET", "/api/countrycode/list"),
    ("GET", "/api/device/fuel-type"),
    ("GET", "/api/device/device-type"),
    ("GET", "/api/sdgbenefit"),
    ("GET", "/api/sdgbenefit/code"),
    ("POST", "/api/auth/getAccess"),
    # D-REC's public issuance triggers: refused (410) for everyone, saying issuance runs continuously here
    ("GET", "/api/drec-issuer/ongoing"),
    ("GET", "/api/drec-issuer/history"),
    ("POST", "/api/drec-issuer"),
    ("GET", "/api/drec-issuer/lateongoing"),
    ("POST", "/api/drec-issuer/missinglateongoing/onetimerun"),
    # the certificate ledger: anyone may export and verify the chain, and a certificate's proof
    ("GET", "/api/certificate/ledger"),
    ("GET", "/api/certificate/ledger/*"),  # refused for everyone: it names the signed-assertion flow instead
    ("GET", "/.well-known/jwks.json"),
    ("HEAD", "/.well-known/jwks.json"),
    # the console's pages: it keeps each user's session itself (a cookie), and its API calls carry the token
    ("GET", "/"),
    ("HEAD", "/"),
    ("GET", "/console"),
    ("GET", "/console/*"),
    ("HEAD", "/console/*"),
    ("POST", "/console/*"),
]

_public_exact = {(m, p.rstrip("/")) for m, p in PUBLIC if not p.endswith("/*")}
_public_prefix = [(m, p[:-1]) for m, p in PUBLIC if p.endswith("/*")]  # keeps the trailing "/"


def takes_large_body(path: str) -> bool:
    """Whether `path` (under one of LARGE_BODIES, on a segment boundary) may carry a large body."""
    candidate = path.rstrip("/")
    while candidate:
        if candidate in LARGE_BODIES:
            return True
        cut = candidate.rfind("/")
        if cut <= 0:
            return False
        candidate = candidate[:cut]
    return False


# WebSocket paths (ASGI "websocket" scope), relayed frame by frame to the owning service (`upstream.relay_websocket`):
# the service authenticates the client itself (OCPP charge points: HTTP Basic on the upgrade, security profile 1),
# the gateway asks for no bearer token. Only below the prefix: /ocpp/{chargePointId}.
WEBSOCKETS: dict[str, str] = {
    "/ocpp": "charger-gateway",  # OCPP 1.6J central system
}


def resolve_websocket(path: str) -> tuple[str, str] | None:
    """(prefix, service) relaying a WebSocket to `path`, or None."""
    for prefix, service in WEBSOCKETS.items():
        if path.startswith(prefix + "/") and len(path) > len(prefix) + 1 and not has_dot_segment(path):
            return prefix, service
    return None


def resolve(path: str) -> tuple[str, str] | None:
    """(route prefix, service) owning `path`, or None. Longest prefix on a segment boundary wins."""
    candidate = path.rstrip("/") or "/"
    while candidate:
        service = ROUTES.get(candidate)
        if service is not None:
            return candidate, service
        cut = candidate.rfind("/")
        if cut <= 0:
            return None
        candidate = candidate[:cut]
    return None


def is_public(method: str, path: str) -> bool:
    if (method, path.rstrip("/")) in _public_exact:
        return True
    return any(method == m and path.startswith(prefix) and len(path) > len(prefix) for m, prefix in _public_prefix)


def has_dot_segment(path: str) -> bool:
    """True for paths with "." or ".." segments, which could route one way and resolve another."""
    if "/." not in path:
        return False
    return any(seg in (".", "..") for seg in path.split("/"))
