import uuid

import pytest

from opendrec_devstack.net import free_port
from opendrec_devstack.smtp_sink import start_smtp_sink
from opendrec_identity.app import build
from opendrec_identity.settings import Settings
from opendrec_kit.testing import settings_for_test, started

from .accounts import headers_for


@pytest.fixture(scope="session")
def smtp_sink(tmp_path_factory):
    """A real SMTP server (the devstack sink) storing each mail as a file; yields (smtp_url, mail_dir)."""
    mail_dir = tmp_path_factory.mktemp("identity-mail")
    port = free_port()
    controller = start_smtp_sink(mail_dir, port)
    yield f"smtp://127.0.0.1:{port}", mail_dir
    controller.stop()


@pytest.fixture(scope="session")
def make_identity_settings(postgres_url, kafka_bootstrap, tmp_path_factory, smtp_sink):
    """Identity settings with their own database and signing key, a unique admin, the test SMTP sink.

    Login throttling is set out of reach here; the throttling tests ask for their own thresholds.
    """

    def make(**overrides) -> Settings:
        values = {
            "jwt_private_key_file": str(tmp_path_factory.mktemp("identity-keys") / "jwt.pem"),
            "admin_email": f"admin-{uuid.uuid4().hex[:8]}@example.org",
            "admin_password": "Admin-pass-2024",
            "smtp_url": smtp_sink[0],
            "mail_poll_interval_s": 0.2,
            "login_account_slowdown_after": 1000,
            "login_address_slowdown_after": 1000,
            "login_account_lockout_after": 1000,
            "login_address_lockout_after": 1000,
        }
        values.update(overrides)
        return settings_for_test(Settings, postgres_url, kafka_bootstrap, **values)

    return make


@pytest.fixture(scope="module")
def identity_settings(make_identity_settings) -> Settings:
    return make_identity_settings()


@pytest.fixture(scope="module")
async def runtime(identity_settings):
    """Identity running in-process for one test module: its own database, real broker."""
    return build(identity_settings)


@pytest.fixture(scope="module")
async def client(runtime):
    async with started(runtime) as client:
        yield client


@pytest.fixture(scope="module")
async def admin(client, identity_settings) -> dict[str, str]:
    """The first admin's headers (logged in once per module)."""
    return await headers_for(client, identity_settings.admin_email, identity_settings.admin_password)
