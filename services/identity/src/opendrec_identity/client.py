"""A small client for integrators (API users): sign client assertions, get tokens, call the API.

    from opendrec_identity.client import ApiUserClient

    api = ApiUserClient("http://127.0.0.1:8000", api_user_id, open("api-user.pem").read())
    status, body = api.call("GET", "/api/Organization/apiuser/all_organization")

Standard library and PyJWT only. Tokens are fetched with RFC 7523 client assertions
(private_key_jwt, EdDSA) from POST /api/auth/token and reused until shortly before they expire.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def client_assertion(
    api_user_id: str, private_key_pem: str, audience: str = "opendrec-identity", lifetime_s: int = 60
) -> str:
    """A one-time assertion: iss = sub = the API user's id, a fresh jti, valid for `lifetime_s` seconds."""
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    now = int(time.time())
    claims = {
        "iss": api_user_id,
        "sub": api_user_id,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime_s,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm="EdDSA")  # type: ignore[arg-type]  # the PEM may name key types PyJWT cannot sign with; an API user's is Ed25519


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body.get('message') if isinstance(body, dict) else body}")
        self.status = status
        self.body = body


class ApiUserClient:
    def __init__(self, base_url: str, api_user_id: str, private_key_pem: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_user_id = api_user_id
        self._key = private_key_pem
        self.timeout = timeout
        self._token: str | None = None
        self._expires = 0.0

    def __repr__(self) -> str:  # never print the key
        return f"ApiUserClient({self.base_url!r}, {self.api_user_id!r})"

    def token(self) -> str:
        """A valid access token, fetched anew a minute before the current one expires."""
        if self._token is None or time.time() > self._expires - 60:
            form = {
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": client_assertion(self.api_user_id, self._key),
            }
            status, body = self._send(
                "POST",
                "/api/auth/token",
                urllib.parse.urlencode(form).encode(),
                {"Content-Type": "application/x-www-form-urlencoded"},
            )
            if status != 200:
                raise ApiError(status, body)
            self._token, self._expires = body["access_token"], time.time() + body["expires_in"]
        return self._token

    def call(
        self, method: str, path: str, json_body: Any = None, query: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """(status, parsed JSON body) of one API call made as the API user."""
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        data = None
        headers = {}
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        status, body = self._send(method, path, data, {**headers, "Authorization": f"Bearer {self.token()}"})
        if status == 401:
            # The token was revoked (e.g. an admin just approved new modules): one fresh token, one retry.
            self._token = None
            status, body = self._send(method, path, data, {**headers, "Authorization": f"Bearer {self.token()}"})
        return status, body

    def _send(self, method: str, path: str, data: bytes | None, headers: dict[str, str]) -> tuple[int, Any]:
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")
