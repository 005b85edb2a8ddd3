"""Issue 12: the one-time tokens mailed to users travel in URL paths; after a password reset through the gateway,
no trace file and no log line of any process holds the token (they show `{token}`)."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest

from opendrec_devstack.drec_samples import register_with_organization, registration_body
from opendrec_devstack.smtp_sink import read_mails
from opendrec_kit.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_a_reset_token_reaches_no_trace_and_no_log(platform):
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as http:
        body = registration_body("Developer")
        await register_with_organization(http, body)
        assert (await http.post("/api/user/forget-password", json={"email": body["email"]})).status_code == 200

        async def reset_mail():
            found = [m for m in read_mails(platform.mail_dir, to=body["email"]) if "reset" in m["Subject"].lower()]
            return found[-1] if found else None

        text = (await eventually(reset_mail)).get_body(("plain",)).get_content()
        token = re.search(r"/api/user/reset/password/(\S+)", text).group(1)
        trace_id = uuid.uuid4().hex
        resp = await http.put(
            f"/api/user/reset/password/{token}",
            json={"newPassword": "Reset1234", "confirmPassword": "Reset1234"},
            headers={"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"},
        )
        assert resp.status_code == 200, resp.text

    def spans_of_the_reset() -> list[dict]:
        spans = []
        for path in platform.traces_dir.glob("*.jsonl"):
            spans += [json.loads(line) for line in path.read_text().splitlines() if trace_id in line]
        names = {s["resource"]["attributes"]["service.name"] for s in spans}
        return spans if {"gateway", "identity"} <= names else []

    async def written() -> list[dict]:
        return spans_of_the_reset()

    spans = await eventually(written, timeout=20)
    paths = {s["attributes"].get("url.path") or s["attributes"].get("http.target") for s in spans} - {None}
    assert "/api/user/reset/password/{token}" in paths, paths
    for path in platform.traces_dir.glob("*.jsonl"):
        assert token not in path.read_text(), f"{path.name} holds the reset token"
    assert token not in platform.log_path.read_text(errors="replace"), "a log line holds the reset token"
