"""The console's pages for joining and managing (issue 17, second part), in a real browser: an invitation accepted
from the mail's link, an admin's organization, user and ACL editing, dead letters and jobs, Kazam charger links, the
commissioning-date filter and a developer's devices held by reservations.

What a test only needs to exist (an organization, a device, a reservation) is made through the public API, as a
client would; what a person does is clicked through the console."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from playwright.sync_api import Locator, Page, expect

from opendrec_contracts import envelope_for
from opendrec_contracts.testing import device_registered
from opendrec_devstack.drec_samples import PASSWORD, device_body, registration_body, reservation_body
from opendrec_devstack.kazam_sim import add_charger

from .conftest import mailed_token
from .test_console import CONFIRM_SUBJECT, sign_in

pytestmark = [pytest.mark.e2e]


@dataclass
class Account:
    email: str
    token: str
    user_id: int
    organization_id: int
    organization_name: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def run(coroutine: Any) -> Any:
    """An awaitable run to its end beside Playwright's own event loop (which holds this thread's)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="module")
def api(platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.gateway_url, timeout=30) as client:
        yield client


def account(api: httpx.Client, platform, kind: str, tag: str) -> Account:
    """An organization's first user, registered, confirmed from its mail and logged in through the public API."""
    email = f"{kind.lower()}-{tag}@example.org"
    body = registration_body(kind, email=email, orgName=f"{kind} {tag}")
    assert api.post("/api/user/registerWithOrganization", json=body).status_code == 201
    token = mailed_token(platform.mail_dir, email, CONFIRM_SUBJECT)
    assert api.put(f"/api/user/confirm-email/{token}").status_code == 200
    answer = api.post("/api/auth/login", json={"username": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    access = answer.json()["accessToken"]
    me = api.get("/api/user/me", headers={"Authorization": f"Bearer {access}"}).json()
    return Account(email, access, me["id"], me["organization"]["id"], me["organization"]["name"])


def device(api: httpx.Client, owner: Account, external_id: str, **changes: Any) -> dict[str, Any]:
    answer = api.post("/api/device", json=device_body(external_id, **changes), headers=owner.headers)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.2)


def reload_until(page: Page, check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Reload the page until `check` holds (what the platform learns from events takes a moment)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        page.reload()


def test_an_invitee_joins_from_the_mail_link_and_an_admin_edits_the_organization_the_user_and_a_grant(
    platform, console, api
) -> None:
    tag = uuid.uuid4().hex[:8]
    owner = account(api, platform, "Developer", tag)

    # The organization's administrator invites a colleague from the console.
    dev = console("developer")
    sign_in(dev, owner.email, PASSWORD)
    page = dev.open("/console/invitations")
    colleague = f"colleague-{tag}@example.org"
    page.get_by_label("E-mail").fill(colleague)
    page.get_by_label("Role").select_option("DeviceOwner")
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.get_by_role("status")).to_have_text(f"Invitation sent to {colleague}")
    expect(page.locator("#sent tbody tr").filter(has_text=colleague)).to_contain_text("DeviceOwner")
    dev.shot("invitations")
    dev.check_accessibility()

    # The colleague opens the link of the mail: the form holds the token; the account joins the organization.
    token = mailed_token(platform.mail_dir, colleague, f"You are invited to join {owner.organization_name} on OpenDREC")
    invitee = console("invitee")
    page = invitee.open(f"/console/invitation/{token}")
    expect(page.get_by_label("Token from the e-mail")).to_have_value(token)
    page.get_by_label("First name").fill("Ravi")
    page.get_by_label("Last name").fill("Kumar")
    page.get_by_label(re.compile(r"^Password")).fill("short")
    page.get_by_label("Repeat the password").fill("short")
    page.get_by_role("button", name="Create my account").click()
    # the API's refusal next to its field; the token and names stay, the passwords do not
    expect(page.get_by_label(re.compile(r"^Password"))).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-password-error")).not_to_be_empty()
    expect(page.get_by_label("Token from the e-mail")).to_have_value(token)
    invitee.shot("invitation-error")
    invitee.check_accessibility()
    new_password = "Colleague123"
    page.get_by_label(re.compile(r"^Password")).fill(new_password)
    page.get_by_label("Repeat the password").fill(new_password)
    page.get_by_role("button", name="Create my account").click()
    expect(page.get_by_role("status")).to_have_text(
        f"Welcome to {owner.organization_name}. Sign in with {colleague} and your new password."
    )
    sign_in(invitee, colleague, new_password)
    expect(page.locator("footer")).to_contain_text(f"{owner.organization_name} (Developer, DeviceOwner)")
    page = invitee.open("/console/invitations")
    expect(page.locator("#received")).to_contain_text("Accepted")
    invitee.shot("invitation-accepted")

    # Someone with an account already, invited by mail: the link's page says to sign in and answer it; it declines.
    buyer = account(api, platform, "Buyer", tag)
    sent = api.post(
        "/api/invitation",
        params={"organizationId": owner.organization_id},
        json={"email": buyer.email, "role": "User"},
        headers=owner.headers,
    )
    assert sent.status_code == 201, sent.text
    token = mailed_token(
        platform.mail_dir, buyer.email, f"You are invited to join {owner.organization_name} on OpenDREC"
    )
    someone = console("existing-account")
    page = someone.open(f"/console/invitation/{token}")
    page.get_by_label("First name").fill("Meera")
    page.get_by_label("Last name").fill("Iyer")
    page.get_by_label(re.compile(r"^Password")).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create my account").click()
    expect(page.get_by_role("alert")).to_contain_text("An account with this e-mail exists")
    sign_in(someone, buyer.email, PASSWORD)
    page = someone.open("/console/invitations")
    page.get_by_role("button", name=f"Decline {owner.organization_name}").click()
    expect(page.get_by_role("status")).to_have_text("Invitation rejected")
    expect(page.locator("#received tbody tr").filter(has_text=owner.organization_name)).to_contain_text("Rejected")
    someone.shot("invitation-declined")

    # An admin renames the organization and corrects the colleague's name; a bad e-mail is refused next to it.
    admin = console("admin")
    sign_in(admin, platform.admin_email, platform.admin_password)
    page = admin.open("/console/admin/organizations?organizationType=Developer")
    expect(page.locator("tbody tr").first).to_contain_text("Developer")
    page.get_by_label("Organization id").fill(str(owner.organization_id))
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Organization {owner.organization_name}")
    expect(page.locator("#organization-users")).to_contain_text(colleague)
    page.get_by_label(re.compile(r"^Name")).fill(f"Sunroof Cooperative {tag}")
    page.get_by_label("Address").fill("Pune")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Organization saved")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Organization Sunroof Cooperative {tag}")
    expect(page.get_by_label("Address")).to_have_value("Pune")
    admin.shot("organization")
    admin.check_accessibility()

    page.get_by_role("link", name=colleague).click()
    page.get_by_label("E-mail").fill("not-an-address")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_label("E-mail")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-email-error")).not_to_be_empty()
    admin.shot("user-error")
    admin.check_accessibility()
    page.get_by_label("E-mail").fill(colleague)
    page.get_by_label("Last name").fill("Kumar-Rao")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("User saved")
    expect(page.get_by_label("Last name")).to_have_value("Kumar-Rao")
    colleague_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])

    # The ACL: a module's grants; one given to the colleague alone, changed, then revoked.
    page = admin.open("/console/admin/acl")
    page.get_by_role("link", name="READS_MANAGEMENT_CRUDL", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("ACL module READS_MANAGEMENT_CRUDL")
    page.get_by_label(re.compile(r"^To\b")).select_option("User")
    page.get_by_label("Role name or user id").fill(str(colleague_id))
    page.get_by_label("Grant Read").check()
    page.get_by_role("button", name="Grant", exact=True).click()
    expect(page.get_by_role("status")).to_have_text(f"Granted Read to User {colleague_id}")
    row = page.locator("#grants tbody tr").filter(has_text=f"User {colleague_id}")
    expect(row).to_have_count(1)
    row.get_by_label("Write", exact=True).check()
    row.get_by_role("button", name=f"Save User {colleague_id}").click()
    expect(page.get_by_role("status")).to_contain_text("saved")
    expect(row.get_by_label("Write", exact=True)).to_be_checked()
    admin.shot("acl-module")
    admin.check_accessibility()
    row.get_by_role("button", name=f"Revoke User {colleague_id}").click()
    expect(page.get_by_role("status")).to_contain_text("revoked")
    expect(page.locator("#grants tbody tr").filter(has_text=f"User {colleague_id}")).to_have_count(0)

    # The colleague, invited by the buyer's organization too, joins it from its Invitations page: its account moves
    # there, and it signs in again as the new member.
    sent = api.post(
        "/api/invitation",
        params={"organizationId": buyer.organization_id},
        json={"email": colleague, "role": "SubBuyer"},
        headers=buyer.headers,
    )
    assert sent.status_code == 201, sent.text
    sign_in(invitee, colleague, new_password)
    page = invitee.open("/console/invitations")
    page.get_by_role("button", name=f"Join {buyer.organization_name}").click()
    expect(page.get_by_role("status")).to_have_text(
        f"You joined {buyer.organization_name} as SubBuyer. Sign in again to work there."
    )
    sign_in(invitee, colleague, new_password)
    expect(page.locator("footer")).to_contain_text(f"{buyer.organization_name} (Buyer, SubBuyer)")


async def _dead_letter(bootstrap: str, error: str) -> str:
    """A device.registered event set aside on its DLQ as a consumer does (with its error headers): its event id.
    The device id is beyond any the platform gives, so its replay changes nothing another test sees."""
    event = device_registered(2_000_000_000 + uuid.uuid4().int % 100_000_000)
    envelope = envelope_for(event, "devices")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        headers = [
            ("x-error-type", b"ValueError"),
            ("x-error-message", error.encode()),
            ("x-original-topic", b"device.registered"),
            ("x-attempts", b"3"),
        ]
        await producer.send_and_wait(
            "device.registered.dlq", envelope.model_dump_json().encode(), key=event.key().encode(), headers=headers
        )
    finally:
        await producer.stop()
    return str(envelope.event_id)


def dead_letter_row(page: Page, event_id: str) -> Locator:
    """The row of that event on the dead-letters page, turning pages (other tests' older letters come first)."""
    row = page.locator("#dead-letters tbody tr").filter(has_text=event_id)
    while row.count() == 0 and page.get_by_role("link", name="Next").count():
        page.get_by_role("link", name="Next").click()
    return row


def upload(api: httpx.Client, owner: Account, path: str, file_name: str, csv: str) -> None:
    """A CSV import through the API, as a client would start one (202: the job)."""
    headers = {**owner.headers, "Content-Type": "text/csv"}
    answer = api.post(path, params={"fileName": file_name}, content=csv.encode(), headers=headers)
    assert answer.status_code == 202, answer.text


def test_an_admin_replays_a_dead_letter_and_follows_the_jobs(platform, console, api) -> None:
    tag = uuid.uuid4().hex[:8]
    error = f"capacity unreadable {tag}"
    event_id = run(_dead_letter(platform.kafka_bootstrap, error))

    admin = console("admin")
    sign_in(admin, platform.admin_email, platform.admin_password)
    page = admin.open("/console/admin/dead-letters?topic=device.registered")
    row = dead_letter_row(page, event_id)
    expect(row).to_contain_text(f"ValueError: {error}")
    expect(row).to_contain_text("not yet")
    admin.shot("dead-letters")
    admin.check_accessibility()
    row.get_by_role("checkbox").check()
    page.get_by_role("button", name="Replay the chosen ones").click()
    expect(page.get_by_role("status")).to_have_text("Replayed 1 dead letter(s)")
    page = admin.open("/console/admin/dead-letters?topic=device.registered")
    row = dead_letter_row(page, event_id)
    expect(row).to_contain_text("by user")

    # A developer's device CSV and reads CSV, through the API; the admin follows both jobs.
    owner = account(api, platform, "Developer", tag)
    header = "externalId,projectName,address,latitude,longitude,countryCode,fuelCode,deviceTypeCode,capacity,commissioningDate,gridInterconnection,offTaker"
    csv = f"{header}\nJOB-{tag},Clinic {tag},Pune,18.52,73.85,IND,ES100,TC120,50,2022-05-01T00:00:00Z,true,School\n"
    upload(api, owner, "/api/device/bulk", f"devices-{tag}.csv", csv)
    reads = f"deviceExternalId,timezone,type,unit,value,startDate,endDate\nNOPE-{tag},,History,Wh,5,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z\n"
    upload(api, owner, "/api/meter-reads/bulk-upload", f"reads-{tag}.csv", reads)

    page = admin.open(f"/console/admin/jobs?organizationId={owner.organization_id}")
    reload_until(page, lambda: "completed" in page.locator("#device-jobs").inner_text(), "the device job finished")
    expect(page.locator("#device-jobs tbody tr")).to_contain_text(f"devices-{tag}.csv")
    expect(page.locator("#device-jobs tbody tr").locator("td").nth(5)).to_have_text("1")  # created
    reload_until(page, lambda: page.locator("#read-jobs").count() == 1, "the read import listed")
    expect(page.locator("#read-jobs tbody tr")).to_contain_text(f"reads-{tag}.csv")
    admin.shot("jobs")
    admin.check_accessibility()


def test_a_developer_links_a_kazam_charger_and_sees_its_state_and_sessions(platform, console, api) -> None:
    tag = uuid.uuid4().hex[:8]
    owner = account(api, platform, "Developer", tag)
    external_id = f"EV-{tag}"
    device(api, owner, external_id, capacity=22)
    charger_id = f"kz{tag}"
    run(add_charger(platform.kazam_url, platform.kazam_token, charger_id))

    dev = console("developer")
    sign_in(dev, owner.email, PASSWORD)
    page = dev.open("/console/chargers")
    expect(page.locator("#kazam-status")).to_contain_text("No Kazam credentials yet")
    page.get_by_label("Kazam API token").fill(platform.kazam_token)
    page.get_by_role("button", name="Save the credentials").click()
    expect(page.get_by_role("status")).to_have_text("Kazam credentials saved")
    expect(page.locator("#kazam-status")).to_have_text("active")
    assert platform.kazam_token not in page.content()  # never shown again

    # A device the organization does not have is refused next to its field.
    page.get_by_label("Kazam charger id").fill(charger_id)
    page.get_by_label("Device (external id)").fill(f"NOPE-{tag}")
    page.get_by_role("button", name="Link").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_label("Kazam charger id")).to_have_value(charger_id)
    page.get_by_label("Device (external id)").fill(external_id)
    # (the charger gateway learns the device from device.registered: a moment after its registration)
    page.get_by_role("button", name="Link").click()
    expect(page.get_by_role("status")).to_have_text(f"Charger {charger_id} linked to {external_id}")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Charger {charger_id}")
    expect(page.locator("#charge-state")).to_have_text("idle")
    expect(page.locator("#uptime")).to_contain_text("Asia/Kolkata")

    # A charging session finished at Kazam after the link (earlier ones are not polled) becomes a read of the
    # device: the page shows it once polled. Kazam counts whole seconds, and a read may not end in the future.
    start = datetime.fromtimestamp(int(datetime.now(UTC).timestamp()) + 1, UTC)
    end = start + timedelta(seconds=2)
    until(lambda: datetime.now(UTC) > end, "the session ended", timeout=5)
    with httpx.Client(base_url=platform.kazam_url, headers={"Authorization": f"Bearer {platform.kazam_token}"}) as kz:
        body = {"device_id": charger_id, "start_time": int(start.timestamp()), "end_time": int(end.timestamp())}
        answer = kz.post("/simulator/transactions", json={**body, "total_usage": 10})  # within 22 kW for 2 s
        assert answer.status_code == 201, answer.text
    reload_until(page, lambda: page.locator("#transactions").count() == 1, "the session polled", timeout=45)
    row = page.locator("#transactions tbody tr").first
    expect(row).to_contain_text("10 Wh")
    expect(row).to_contain_text("read")
    dev.shot("charger")
    dev.check_accessibility()

    page = dev.open("/console/chargers")
    expect(page.locator("#chargers tbody tr")).to_contain_text(external_id)
    dev.shot("chargers")
    dev.check_accessibility()
    page.get_by_role("button", name=f"Unlink {charger_id}").click()
    expect(page.get_by_role("status")).to_have_text(f"Charger {charger_id} unlinked")
    expect(page.locator("#chargers")).to_have_count(0)
    page.get_by_role("button", name="Remove the credentials").click()
    expect(page.get_by_role("status")).to_have_text("Kazam credentials removed")
    expect(page.locator("#kazam-status")).to_contain_text("No Kazam credentials yet")


def test_a_buyer_filters_by_commissioning_date_and_the_developer_sees_its_device_held(platform, console, api) -> None:
    tag = uuid.uuid4().hex[:8]
    owner = account(api, platform, "Developer", tag)
    buyer = account(api, platform, "Buyer", tag)
    old = device(api, owner, f"OLD-{tag}", commissioningDate="2015-03-01T00:00:00.000Z", offTaker="School")
    new = device(api, owner, f"NEW-{tag}", commissioningDate="2023-06-01T00:00:00.000Z", offTaker="School")

    shopper = console("buyer")
    sign_in(shopper, buyer.email, PASSWORD)
    page = shopper.open("/console/reservations/new?countryCode=IND")
    reload_until(page, lambda: page.get_by_label(f"Reserve NEW-{tag}").count() == 1, "the devices offered")
    page.get_by_label("Commissioned from").fill("2020-01-01")
    page.get_by_label("Commissioned until").fill("2024-12-31")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_label(f"Reserve NEW-{tag}")).to_be_visible()
    expect(page.get_by_label(f"Reserve OLD-{tag}")).to_have_count(0)
    expect(page.get_by_label("Commissioned from")).to_have_value("2020-01-01")
    shopper.shot("reserve-filtered")
    shopper.check_accessibility()

    # The buyer reserves the newer device (through the API); its developer sees it held, the older one free.
    answer = api.post("/api/device-group", json=reservation_body(f"Schools {tag}", [new["id"]]), headers=buyer.headers)
    assert answer.status_code in (200, 201), answer.text
    dev = console("developer")
    sign_in(dev, owner.email, PASSWORD)
    page = dev.open("/console/devices/reservations")
    held = page.locator("#held-devices")
    reload_until(page, lambda: held.count() == 1 and f"NEW-{tag}" in held.inner_text(), "the device held")
    expect(held.get_by_role("row", name=f"Schools {tag}")).to_contain_text("active")  # which reservation holds it
    expect(held).not_to_contain_text(f"OLD-{tag}")
    dev.shot("device-reservations")
    dev.check_accessibility()

    # The developer's own list filters by commissioning date too.
    page = dev.open("/console/devices?commissioningDateTo=2016-01-01")
    expect(page.get_by_role("link", name=f"OLD-{tag}")).to_be_visible()
    expect(page.get_by_role("link", name=f"NEW-{tag}")).to_have_count(0)
    assert old["id"] != new["id"]
