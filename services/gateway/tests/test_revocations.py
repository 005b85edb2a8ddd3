"""A token revoked at logout (token.revoked on Kafka) is refused at the gateway within moments."""

from datetime import UTC, datetime, timedelta

import aiohttp
import jwt
import pytest

from opendrec_contracts import AccessTokenRevoked
from opendrec_kit.messaging import ensure_topics
from opendrec_kit.testing import eventually, publish_events

from .conftest import start_gateway, stop

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_revoked_token_is_refused_at_the_gateway(upstreams, keys, kafka_bootstrap, tmp_path):
    await ensure_topics(kafka_bootstrap, ["token.revoked"], partitions=1)
    gw = await start_gateway(
        tmp_path, {n: u.url for n, u in upstreams.items()}, "revocations", {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    )
    try:
        token = keys.token()
        other = keys.token()
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:
            async with http.get(gw.url + "/api/device/my", headers=headers) as resp:
                assert resp.status == 200
            jti = jwt.decode(token, options={"verify_signature": False})["jti"]
            await publish_events(
                kafka_bootstrap,
                [AccessTokenRevoked(token_id=jti, user_id=1, expires_at=datetime.now(UTC) + timedelta(minutes=5))],
            )

            async def refused():
                async with http.get(gw.url + "/api/device/my", headers=headers) as resp:
                    return resp.status == 401 and "revoked" in (await resp.json())["message"]

            await eventually(refused, timeout=20)
            async with http.get(gw.url + "/api/device/my", headers={"Authorization": f"Bearer {other}"}) as resp:
                assert resp.status == 200  # only that token
    finally:
        stop(gw)
