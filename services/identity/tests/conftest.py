import uuid

import pytest

from opendrec_kit.testing import settings_for_test
from opendrec_identity.settings import Settings


@pytest.fixture(scope="module")
def identity_settings(postgres_url, kafka_bootstrap, tmp_path_factory) -> Settings:
    """Identity settings for one test module: its own database and signing key, a unique admin."""
    return settings_for_test(
        Settings,
        postgres_url,
        kafka_bootstrap,
        jwt_private_key_file=str(tmp_path_factory.mktemp("identity-keys") / "jwt.pem"),
        admin_email=f"admin-{uuid.uuid4().hex[:8]}@example.org",
        admin_password="Admin-pass-2024",
    )
