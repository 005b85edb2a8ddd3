"""The console's own rules, without a platform: sessions, CSRF, security headers, reading the API's refusals.
(The journeys through the real platform are in tests/browser.)"""

from __future__ import annotations

import re

import httpx
from cryptography.fernet import Fernet

from opendrec_console import domain
from opendrec_console.app import build
from opendrec_console.session import COOKIE, Session, Sessions
from opendrec_console.settings import Settings


def client() -> httpx.AsyncClient:
    # nothing answers at this gateway address: these pages must not need it
    settings = Settings(
        environment="test", gateway_url="http://127.0.0.1:9", session_key=Fernet.generate_key().decode()
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build(settings).app), base_url="http://console.test")


def test_a_session_survives_its_cookie_and_a_forged_or_old_one_is_a_new_signed_out_session() -> None:
    sessions = Sessions(Fernet.generate_key().decode(), max_age_s=60)
    session = Session(token="secret-token", email="a@example.org", role="Buyer", organization_type="Buyer")
    sealed = sessions.seal(session)
    assert "secret-token" not in sealed  # encrypted, not only signed
    assert sessions.open(sealed) == session
    assert not sessions.open(sealed[:-4] + "AAAA").signed_in
    assert not Sessions(Fernet.generate_key().decode(), 60).open(sealed).signed_in  # another key
    assert not Sessions(None, max_age_s=60).open("x" * 9000).signed_in


def test_the_envelope_s_field_messages_are_read_per_field() -> None:
    body = {
        "statusCode": 400,
        "message": "Invalid request: check email, reads.0.value",
        "details": [
            {"field": "email", "message": "value is not a valid email address", "where": "body"},
            {"field": "reads.0.value", "message": "must be greater than 0", "where": "body"},
        ],
    }
    message, fields = domain.refusal_of(400, body)
    assert message == "Invalid request: check email, reads.0.value"
    assert fields["email"] == "value is not a valid email address"
    assert fields["reads.0.value"] == fields["value"] == "must be greater than 0"
    assert domain.refusal_of(502, None) == ("The platform answered 502", {})


async def test_pages_carry_a_strict_policy_and_the_session_cookie_is_httponly_and_strict() -> None:
    async with client() as http:
        r = await http.get("/console/sign-in")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "<script>" not in r.text and " style=" not in r.text  # nothing inline for the policy to refuse


def test_secure_cookies_in_production() -> None:
    settings = Settings(environment="production", session_key=Fernet.generate_key().decode())
    assert settings.secure_cookies()
    assert not Settings(environment="dev").secure_cookies()


async def test_a_form_without_its_csrf_token_is_refused_and_nothing_is_sent() -> None:
    async with client() as http:
        await http.get("/console/sign-in")
        r = await http.post("/console/sign-in", data={"email": "a@example.org", "password": "x", "csrf": "forged"})
    assert r.status_code == 403
    assert "This form has expired" in r.text


async def test_signed_out_pages_go_to_sign_in_and_the_root_to_the_console() -> None:
    async with client() as http:
        r = await http.get("/")
        assert (r.status_code, r.headers["location"]) == (303, "/console/")
        r = await http.get("/console/devices")
        assert (r.status_code, r.headers["location"]) == (303, "/console/sign-in")
        r = await http.get("/console/reservations/1")
        assert r.headers["location"] == "/console/sign-in"


async def test_the_platform_not_answering_is_said_on_the_page_not_a_500() -> None:
    async with client() as http:
        page = await http.get("/console/sign-in")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        r = await http.post("/console/sign-in", data={"email": "a@example.org", "password": "x", "csrf": csrf.group(1)})
    assert r.status_code == 502
    assert "The platform did not answer" in r.text
    assert 'value="a@example.org"' in r.text  # what was typed stays


async def test_metrics_count_the_console_s_requests_by_route_template() -> None:
    async with client() as http:
        await http.get("/console/invitation/some-mailed-token-1234")
        r = await http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    series = [line for line in r.text.splitlines() if line.startswith("http_server_request_duration_seconds_count")]
    # by the route's template: the mailed token never becomes a label
    assert any('http_route="/console/invitation/{token}"' in line and 'status_code="200"' in line for line in series)
    assert "some-mailed-token" not in r.text


async def test_an_invitation_link_fills_the_form_and_nothing_happens_until_it_is_sent() -> None:
    async with client() as http:
        r = await http.get("/console/invitation/abcDEF123_-xyz")
    assert r.status_code == 200
    assert 'id="f-token"' in r.text and 'value="abcDEF123_-xyz"' in r.text
    assert 'action="/console/invitation"' in r.text


async def test_a_button_form_needs_a_session_and_its_csrf_token() -> None:
    key = Fernet.generate_key().decode()
    settings = Settings(environment="test", gateway_url="http://127.0.0.1:9", session_key=key)
    transport = httpx.ASGITransport(app=build(settings).app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as http:
        r = await http.post("/console/devices/7/delete", data={"csrf": "x"})
        assert (r.status_code, r.headers["location"]) == (303, "/console/sign-in")  # signed out: nothing is sent
        # signed in, but the form's token is not the session's: refused before the API is asked (it does not answer)
        signed_in = Session(token="t", email="dev@example.org", role="OrganizationAdmin", organization_type="Developer")
        http.cookies.set(COOKIE, Sessions(key, 60).seal(signed_in), domain="console.test")
        r = await http.post("/console/devices/7/delete", data={"csrf": "forged"})
        assert (r.status_code, r.headers["location"]) == (303, "/console/devices/7")
        page = await http.get("/console/devices/7")  # the device page says why (and that the platform is away)
    assert "Not deleted: This form has expired; please send it again" in page.text
