"""The first admin, and what identity needs before it may start (signing key, real secrets)."""

import os
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from opendrec_contracts import access
from opendrec_identity import domain
from opendrec_identity.app import build
from opendrec_identity.settings import Settings
from opendrec_identity.tokens import SigningKeyError, load_signing_key
from opendrec_kit.testing import started


async def admin_login(client, settings) -> str:
    resp = await client.post(
        "/api/auth/login", json={"username": settings.admin_email, "password": settings.admin_password}
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["accessToken"]


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_first_admin_is_created_once_across_restarts(identity_settings):
    first = build(identity_settings)
    async with started(first) as client:
        token = await admin_login(client, identity_settings)
        claims = jwt.decode(token, options={"verify_signature": False})
        assert (claims["role"], claims["orgType"], claims["email"]) == ("Admin", "Admin", identity_settings.admin_email)
        assert claims["perms"] == {module: "RWUD" for module in domain.MODULES}
        me = (await client.get("/api/user/me", headers={"Authorization": f"Bearer {token}"})).json()
        assert me["organization"]["name"] == "OpenDREC Administration"
        admins = await first.pool.fetch("SELECT id FROM users WHERE role = 'Admin'")
    assert len(admins) == 1

    # Same database, same key file, and a changed ADMIN_PASSWORD: the existing admin is kept as it is.
    second_settings = identity_settings.model_copy(update={"admin_password": "Changed-pass-2025"})
    second = build(second_settings)
    async with started(second) as client:
        assert [r["id"] for r in await second.pool.fetch("SELECT id FROM users WHERE role = 'Admin'")] == [
            admins[0]["id"]
        ]
        assert await second.pool.fetchval("SELECT count(*) FROM organizations WHERE organization_type = 'Admin'") == 1
        await admin_login(client, identity_settings)  # the original password still works
        # A token signed before the restart still verifies: the key file was reused, not replaced.
        assert (await client.get("/api/user/me", headers={"Authorization": f"Bearer {token}"})).status_code == 200


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_the_migrations_seed_exactly_the_contracts_roles_modules_and_grants(identity_settings):
    """Other services compute their OpenAPI role lists from opendrec_contracts.access: the seed must not drift from it."""
    runtime = build(identity_settings)
    async with started(runtime):
        roles = [r["name"] for r in await runtime.pool.fetch("SELECT name FROM roles")]
        modules = [r["name"] for r in await runtime.pool.fetch("SELECT name FROM acl_modules ORDER BY id")]
        grants: dict[str, dict[str, str]] = {role: {} for role in roles if role != access.ADMIN}
        for r in await runtime.pool.fetch("SELECT role, module, actions FROM role_permissions"):
            grants.setdefault(r["role"], {})[r["module"]] = r["actions"]
    assert sorted(roles) == sorted(access.ROLES)
    assert modules == list(access.MODULES)
    assert grants == access.DEFAULT_ROLE_GRANTS


def test_production_refuses_the_dev_admin_password(tmp_path, monkeypatch):
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    with pytest.raises(ValidationError, match="ADMIN_PASSWORD still hold the dev default"):
        Settings(environment="production", jwt_private_key_file=str(tmp_path / "k.pem"))
    assert Settings(environment="dev").admin_password.startswith("dev-only-")


def test_a_weak_admin_password_is_refused_without_echoing_it():
    with pytest.raises(ValidationError) as err:
        Settings(admin_password="weakpassword")
    assert "at least one letter and one digit" in str(err.value)
    assert "weakpassword" not in str(err.value)


def test_production_without_a_key_file_does_not_start(tmp_path):
    settings = Settings(
        environment="production", admin_password="Real-secret-2024", jwt_private_key_file=str(tmp_path / "missing.pem")
    )
    with pytest.raises(SigningKeyError, match="does not exist"):
        build(settings)
    assert not (tmp_path / "missing.pem").exists()


def test_production_uses_the_key_file_it_is_given(tmp_path):
    path = tmp_path / "prod.pem"
    key = Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    settings = Settings(environment="production", admin_password="Real-secret-2024", jwt_private_key_file=str(path))
    runtime = build(settings)
    token = runtime.app.state.tokens.issue(
        user_id=1, organization_id=1, organization_type="Developer", role="User", email="u@example.org", permissions={}
    )
    claims = jwt.decode(token, key.public_key(), algorithms=["EdDSA"], audience="opendrec", issuer="opendrec-identity")
    assert claims["sub"] == "1"


def test_dev_generates_a_private_key_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "run" / "identity" / "jwt.pem"
    created = load_signing_key(path, may_create=True)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert created.generated
    again = load_signing_key(path, may_create=True)
    assert again.kid == created.kid and not again.generated  # reused on the next start
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    assert "PRIVATE" not in repr(created) and created.kid in repr(created)


def test_the_kid_follows_the_key(tmp_path):
    a = load_signing_key(tmp_path / "a.pem", may_create=True)
    b = load_signing_key(tmp_path / "b.pem", may_create=True)
    assert a.kid != b.kid
    assert a.public_jwk() == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": a.public_jwk()["x"],
        "kid": a.kid,
        "alg": "EdDSA",
        "use": "sig",
    }


def test_a_key_of_another_type_is_refused(tmp_path):
    path = tmp_path / "rsa.pem"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(SigningKeyError, match="Ed25519"):
        load_signing_key(path, may_create=True)
    (tmp_path / "junk.pem").write_text(f"not a key {uuid.uuid4()}")
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM"):
        load_signing_key(tmp_path / "junk.pem", may_create=True)


def test_revocations_must_be_retained_as_long_as_a_token_lives(tmp_path):
    """After a broker loses its data, token.revoked is published again from identity's outbox only while retained."""
    key = str(tmp_path / "k.pem")
    with pytest.raises(ValidationError, match=r"OUTBOX_RETENTION_S .* must be at least ACCESS_TOKEN_TTL_SECONDS"):
        Settings(jwt_private_key_file=key, outbox_retention_s=600, access_token_ttl_seconds=3600)
    assert Settings(jwt_private_key_file=key, outbox_retention_s=3600, access_token_ttl_seconds=3600)
