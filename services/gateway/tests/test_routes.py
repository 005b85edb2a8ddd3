"""The route table and the public-path list, as pure functions."""

from __future__ import annotations

import pytest

from opendrec_gateway.routes import has_dot_segment, is_public, resolve


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/device", "devices"),
        ("/api/device/", "devices"),
        ("/api/device/my", "devices"),
        ("/api/device/10", "devices"),
        ("/api/device/bulk-upload/job/3", "devices"),
        ("/api/device/ungrouped/buyerreservation", "devices"),
        ("/api/device-group", "reservations"),
        ("/api/device-group/my", "reservations"),
        ("/api/countrycode/list", "devices"),
        ("/api/reservation/5", "reservations"),
        ("/api/buyer-reservation/41", "reservations"),
        ("/api/buyer-reservation/bulk-upload/get-all-csv-jobs-of-organization", "devices"),
        ("/api/buyer-reservation/bulk-upload-status/7", "devices"),
        ("/api/buyer-reservation/bulk-uploads", "reservations"),
        ("/api/meter-reads/new/Ext1", "readings"),
        ("/api/certificate/1", "certificates"),
        ("/api/certificate-log/issuer/certified/new/abc", "certificates"),
        ("/api/charger/sessions", "charger-gateway"),
        ("/api/user/registerWithOrganization", "identity"),
        ("/api/auth/login", "identity"),
        ("/api/Organization/users", "identity"),
        ("/api/invitation", "identity"),
        ("/api/permission/module/apiuser/request", "identity"),
        ("/api/admin/users", "identity"),
        ("/api/aclmodules/3", "identity"),
        ("/api/access-control/modules", "identity"),
        ("/.well-known/jwks.json", "identity"),
    ],
)
def test_owning_service(path: str, service: str) -> None:
    route = resolve(path)
    assert route is not None and route[1] == service


def test_longest_prefix_wins() -> None:
    assert resolve("/api/device-group/7") == ("/api/device-group", "reservations")
    assert resolve("/api/certificate-log/x") == ("/api/certificate-log", "certificates")
    assert resolve("/api/device/7") == ("/api/device", "devices")


@pytest.mark.parametrize(
    "path",
    [
        "/api/devices",
        "/api/devicex/1",
        "/api/user-x",
        "/api/organization",
        "/api",
        "/api/",
        "/apix/device",
        "/api/unknown/device",
        "/device",
        "/.well-known/other",
    ],
)
def test_prefix_only_matches_whole_segments(path: str) -> None:
    assert resolve(path) is None


@pytest.mark.parametrize("path", ["/", "/console", "/console/", "/console/devices/1", "/console/static/console.css"])
def test_the_root_and_console_pages_go_to_the_console_without_a_token(path: str) -> None:
    assert resolve(path) == (path if path in ("/", "/console") else "/console", "console")
    assert is_public("GET", path)
    assert not is_public("POST", "/") and not is_public("DELETE", path)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/user/registerWithOrganization"),
        ("POST", "/api/user/register"),
        ("POST", "/api/auth/login"),
        ("POST", "/api/auth/token"),
        ("PUT", "/api/user/confirm-email/a3a7b310f3fecb245a16ce4643d4600a"),
        ("POST", "/api/user/forget-password"),
        ("PUT", "/api/user/reset/password/c1c7dc38d5de4e6f"),
        ("GET", "/api/countrycode/list"),
        ("GET", "/api/device/fuel-type"),
        ("GET", "/api/device/device-type"),
        ("GET", "/.well-known/jwks.json"),
        ("POST", "/api/invitation/register/9f2c1e"),
    ],
)
def test_public(method: str, path: str) -> None:
    assert is_public(method, path)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/auth/login"),  # right path, wrong method
        ("DELETE", "/api/user/register"),
        ("PUT", "/api/user/confirm-email/"),  # the wildcard needs a segment
        ("PUT", "/api/user/confirm-email"),
        ("GET", "/api/user/me"),
        ("GET", "/api/device/my"),
        ("GET", "/api/device/fuel-type/extra"),
        ("POST", "/api/user/registerWithOrganizationX"),
        ("GET", "/api/countrycode"),
        ("POST", "/api/invitation"),
        ("PUT", "/api/invitation/register/9f2c1e"),
    ],
)
def test_protected(method: str, path: str) -> None:
    assert not is_public(method, path)


def test_dot_segments() -> None:
    assert has_dot_segment("/api/auth/login/../../device/my")
    assert has_dot_segment("/api/device/./my")
    assert has_dot_segment("/api/device/..")
    assert not has_dot_segment("/.well-known/jwks.json")
    assert not has_dot_segment("/api/device/my.csv")
