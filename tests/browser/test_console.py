"""The console in a real browser: the journeys issue 17 names, each page screenshotted and the main ones checked
with axe-core. Everything goes through the gateway's /console pages, as a person would click through them."""

from __future__ import annotations

import csv
import io
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import expect

from opendrec_devstack.drec_samples import PASSWORD, SECRET_KEY, registration_body

from .conftest import Pages, mailed_token

pytestmark = [pytest.mark.e2e]

CONFIRM_SUBJECT = "Confirm your OpenDREC e-mail address"
RESET_SUBJECT = "Reset your OpenDREC password"


def minute(moment: datetime) -> str:
    """A datetime-local input's value (UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def register(pages: Pages, kind: str, email: str, org: str) -> None:
    page = pages.open("/console/register")
    page.get_by_label("Organization type").select_option(kind)
    page.get_by_label("Organization name").fill(org)
    page.get_by_label("Organization address").fill("Hyderabad")
    page.get_by_label("First name").fill("Asha")
    page.get_by_label("Last name").fill("Rao")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label(re.compile(r"^Password")).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_label("Secret key").fill(SECRET_KEY)
    pages.shot("register")
    page.get_by_role("button", name="Register").click()


def confirm_and_sign_in(pages: Pages, mail_dir, email: str, password: str = PASSWORD) -> None:
    token = mailed_token(mail_dir, email, CONFIRM_SUBJECT)
    page = pages.open(f"/console/confirm-email/{token}")  # the link a mail would carry
    expect(page.get_by_label("Token from the e-mail")).to_have_value(token)
    pages.shot("confirm")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("status")).to_contain_text("confirmed")
    sign_in(pages, email, password)


def sign_in(pages: Pages, email: str, password: str) -> None:
    page = pages.open("/console/sign-in")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    pages.shot("sign-in")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("status")).to_contain_text(f"Signed in as {email.lower()}", ignore_case=True)


def test_developer_registers_a_device_and_reads_then_a_buyer_reserves_it_and_gets_its_certificate(
    platform, console
) -> None:
    tag = uuid.uuid4().hex[:8]
    dev = console("developer")
    dev_email = f"dev-{tag}@example.org"

    # A developer registers with an organization, confirms the address from the mail and signs in.
    register(dev, "Developer", dev_email, f"Sunroof {tag}")
    expect(dev.page.get_by_role("status")).to_contain_text("We sent you an e-mail")
    dev.shot("registered")
    confirm_and_sign_in(dev, platform.mail_dir, dev_email)
    dev.shot("home")
    dev.check_accessibility()

    # A device, through the form.
    external_id = f"ROOF-{tag}"
    page = dev.open("/console/devices/new")
    page.get_by_label("External id").fill(external_id)
    page.get_by_label("Project name").fill(f"School roof {tag}")
    page.get_by_label("Address").fill("Hyderabad")
    page.get_by_label("Latitude").fill("17.38")
    page.get_by_label("Longitude").fill("78.48")
    page.get_by_label("Country").select_option("IND")
    page.get_by_label("Fuel").select_option("ES100")
    page.get_by_label("Device type").select_option("TC120")
    page.get_by_label("Capacity (kW)").fill("2000")
    page.get_by_label("Commissioning date (UTC)").fill("2021-01-02T11:35")
    page.get_by_label("Off-taker").fill("School")
    dev.shot("device-form")
    dev.check_accessibility()
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Device {external_id}")
    device_url = page.url
    dev.shot("device")

    page = dev.open("/console/devices")
    expect(page.get_by_role("link", name=external_id)).to_be_visible()
    dev.shot("devices")
    dev.check_accessibility()

    # Devices from a CSV: one registered, one refused (its externalId is taken), each row with its result.
    header = "externalId,projectName,address,latitude,longitude,countryCode,fuelCode,deviceTypeCode,capacity,commissioningDate,gridInterconnection,offTaker"
    bulk = [
        header,
        f"{external_id}-B,Clinic {tag},Pune,18.52,73.85,IND,ES100,TC120,50,2022-05-01T00:00:00Z,true,Health Facility",
    ]
    bulk.append(f"{external_id},Taken {tag},Pune,18.52,73.85,IND,ES100,TC120,50,2022-05-01T00:00:00Z,true,School")
    page = dev.open("/console/devices/bulk")
    page.get_by_label("CSV file of devices").set_input_files(
        files=[{"name": "devices.csv", "mimeType": "text/csv", "buffer": "\n".join(bulk).encode()}]
    )
    page.get_by_role("button", name="Upload").click()
    rows = page.locator("#job-rows tbody tr")
    expect(rows).to_have_count(2, timeout=30_000)  # console.js reloads the page when the job is done
    expect(rows.filter(has_text=f"{external_id}-B")).to_contain_text("Registered")
    expect(rows.nth(1)).to_contain_text("Failed")
    dev.shot("devices-bulk-results")
    dev.check_accessibility()

    # Edit that new device, then delete it (the API's rules: it holds no reservation).
    rows.filter(has_text=f"{external_id}-B").get_by_role("link").click()
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Project name").fill(f"Clinic roof {tag}")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Device saved")
    expect(page.locator(".facts")).to_contain_text(f"Clinic roof {tag}")
    page.get_by_role("button", name="Delete this device").click()
    expect(page.get_by_role("status")).to_have_text("Device deleted")
    expect(page.get_by_role("link", name=f"{external_id}-B", exact=True)).to_have_count(0)

    # Reads as CSV: one History read inside the coming reservation's window (before onboarding), one refused.
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=50), now - timedelta(minutes=40)
    rows = [
        "deviceExternalId,timezone,type,unit,value,startDate,endDate",
        f"{external_id},,History,Wh,2998,{start.isoformat()},{end.isoformat()}",
        f"{external_id},,History,Wh,0,{(end + timedelta(minutes=1)).isoformat()},{(end + timedelta(minutes=5)).isoformat()}",
    ]
    page = dev.open("/console/reads")
    page.get_by_label("CSV file of reads").set_input_files(
        files=[{"name": "reads.csv", "mimeType": "text/csv", "buffer": "\n".join(rows).encode()}]
    )
    dev.shot("reads-upload")
    page.get_by_role("button", name="Upload").click()
    # console.js follows the job and reloads the page with the per-row results when it is done
    expect(page.locator("#job-rows")).to_be_visible(timeout=30_000)
    expect(page.locator("#job-rows tbody tr")).to_have_count(2)
    expect(page.locator("#job-rows tbody tr").nth(0)).to_contain_text("Accepted")
    expect(page.locator("#job-rows tbody tr").nth(1)).to_contain_text("Refused")
    expect(page.locator("#job-rows tbody tr").nth(1)).to_contain_text("value must be greater than 0")
    dev.shot("reads-results")
    dev.check_accessibility()

    # The device's energy per day: the accepted read, in the table (and the chart above it).
    page = dev.open(device_url.removeprefix(platform.gateway_url))
    expect(page.locator("#energy-total")).to_have_text("2,998 Wh")
    expect(page.locator("#energy-chart")).to_be_visible()
    dev.shot("device-energy")
    dev.check_accessibility()

    # A buyer registers, signs in and reserves the device for a window that holds the read.
    buyer = console("buyer")
    buyer_email = f"buyer-{tag}@example.org"
    register(buyer, "Buyer", buyer_email, f"Green buyer {tag}")
    confirm_and_sign_in(buyer, platform.mail_dir, buyer_email)
    page = buyer.open("/console/reservations/new?countryCode=IND")
    checkbox = page.get_by_label(f"Reserve {external_id}", exact=True)
    expect(checkbox).to_be_visible()
    checkbox.check()
    page.get_by_label("Reservation name").fill(f"Schools {tag}")
    page.get_by_label("Target volume (MWh)").fill("20")
    page.get_by_label("Starts (UTC)").fill(minute(now - timedelta(hours=1)))
    page.get_by_label("Ends (UTC)").fill(minute(now + timedelta(days=1)))
    page.get_by_label("Certificate frequency").select_option("hourly")
    buyer.shot("reservation-form")
    buyer.check_accessibility()
    page.get_by_role("button", name="Reserve").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Reservation Schools {tag}")
    reservation_id = page.url.rstrip("/").rsplit("/", 1)[-1]

    # The certificate appears: whole kWh of the 2,998 Wh read (D-REC's issuance), 2,000 Wh for this device.
    deadline = time.monotonic() + 60
    while page.locator("#certificates").count() == 0:
        assert time.monotonic() < deadline, "no certificate after 60 s"
        page.reload()
    expect(page.locator("#certified-total")).to_have_text("2,000 Wh")
    expect(page.locator("#per-device tbody tr")).to_have_count(1)
    expect(page.locator("#per-device tbody tr")).to_contain_text(external_id)
    expect(page.locator("#per-device td[data-wh]")).to_have_attribute("data-wh", "2000")
    buyer.shot("reservation")
    buyer.check_accessibility()

    # The CSV export downloads, with the device's certified energy.
    with page.expect_download() as info:
        page.get_by_role("link", name="Export certificates (CSV)").click()
    download = info.value
    content = download.path().read_text()
    exported = list(csv.DictReader(io.StringIO(content)))
    assert exported and any(external_id in ",".join(row.values()) for row in exported), content[:500]
    assert download.suggested_filename.endswith(".csv")

    # The developer sees the certificate issued for its device, and the reservation it went to.
    page = dev.open("/console/devices/certificates")
    expect(page.locator("#device-certificates tbody tr")).to_contain_text(f"Schools {tag}")
    expect(page.locator("#devices-certified")).to_have_text("2,000 Wh")
    dev.shot("device-certificates")

    # The REC inventory: the certificate's energy, of which the buyer retires 1,000 Wh for a beneficiary.
    page = buyer.open("/console/certificates")
    row = page.locator("#holdings tbody tr").filter(has_text="IND")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(3)).to_have_attribute("data-wh", "2000")
    buyer.shot("certificates")
    buyer.check_accessibility()
    row.get_by_role("link", name="Retire").click()
    page.get_by_label("Energy (Wh)").fill("1000")
    page.get_by_label("Beneficiary").fill(f"School {tag}")
    page.get_by_label("Location of consumption").fill("Hyderabad")
    page.get_by_label("Purpose").fill("Scope 2 claim")
    page.get_by_label("Reporting period starts (UTC)").fill(minute(now - timedelta(days=30)))
    page.get_by_label("Reporting period ends (UTC)").fill(minute(now))
    buyer.shot("retire")
    page.get_by_role("button", name="Retire").click()
    expect(page.get_by_role("status")).to_have_text(f"Retired 1,000 Wh for School {tag}")
    expect(row.locator("td").nth(3)).to_have_attribute("data-wh", "1000")
    expect(row.locator("td").nth(4)).to_have_attribute("data-wh", "1000")
    buyer.shot("certificates-retired")

    # The buyer ends the reservation early; the page says so.
    page = buyer.open(f"/console/reservations/{reservation_id}")
    page.get_by_role("button", name="End this reservation now").click()
    expect(page.get_by_role("status")).to_have_text("Reservation ended")
    buyer.shot("reservation-ended")

    page = buyer.open("/console/reservations")
    expect(page.get_by_role("link", name=f"Schools {tag}")).to_be_visible()
    buyer.shot("reservations")
    assert not dev.console_errors and not buyer.console_errors, dev.console_errors + buyer.console_errors


def test_a_form_error_shows_the_apis_message_next_to_its_field(platform, console) -> None:
    person = console("visitor")
    body = registration_body("Developer", email="not-an-e-mail")
    answer = httpx.post(f"{platform.gateway_url}/api/user/registerWithOrganization", json=body, timeout=30)
    assert answer.status_code == 400, answer.text
    said = {d["field"]: d["message"] for d in answer.json()["details"]}
    assert "email" in said, said

    register(person, "Developer", "not-an-e-mail", body["orgName"])
    page = person.page
    email = page.get_by_label("E-mail")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-email-error")).to_have_text(said["email"])
    expect(page.get_by_role("alert")).to_contain_text(answer.json()["message"])
    expect(email).to_have_value("not-an-e-mail")  # what was typed stays; the passwords do not
    expect(page.get_by_label(re.compile(r"^Password"))).to_have_value("")
    person.shot("register-error")
    person.check_accessibility()

    # On a phone-sized screen the same form stays usable: one column, nothing wider than the screen.
    phone = console("phone", phone=True)
    page = phone.open("/console/register")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    phone.shot("register-phone")
    phone.check_accessibility()


def test_an_admin_approves_an_api_users_permission_request(platform, console) -> None:
    tag = uuid.uuid4().hex[:8]
    integrator = console("api-user")
    email = f"integrator-{tag}@example.org"
    register(integrator, "ApiUser", email, f"Integrator {tag}")
    page = integrator.page
    expect(page.get_by_role("heading", level=1)).to_have_text("Save your private key now")
    api_user_id = page.locator("#api-user-id").inner_text().strip()
    pem = page.get_by_label("Private key").input_value()
    assert api_user_id and pem.startswith("-----BEGIN PRIVATE KEY-----")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download the private key (.pem)").click()
    assert info.value.path().read_text() == pem
    integrator.shot("api-user-key")
    integrator.check_accessibility()

    # The integrator signs in with its key and asks for a module.
    page = integrator.open("/console/sign-in-key")
    page.get_by_label("API user id").fill(api_user_id)
    page.get_by_label("Private key file (.pem)").set_input_files(
        files=[{"name": "key.pem", "mimeType": "application/x-pem-file", "buffer": pem.encode()}]
    )
    integrator.shot("sign-in-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("status")).to_have_text(f"Signed in as API user {api_user_id}")
    page.get_by_label("Module").select_option("ORGANIZATION_MANAGEMENT_CRUDL")
    page.get_by_label("Read", exact=True).check()
    page.get_by_label("Write", exact=True).check()
    page.get_by_role("button", name="Request").click()
    expect(page.get_by_role("status")).to_contain_text("Requested ORGANIZATION_MANAGEMENT_CRUDL")
    expect(page.locator("#permission-status")).to_have_text("Waiting for an administrator")
    integrator.shot("permissions-waiting")
    integrator.check_accessibility()

    admin = console("admin")
    sign_in(admin, platform.admin_email, platform.admin_password)
    page = admin.open("/console/admin/api-users")
    approve = page.get_by_role("button", name=f"Approve {email.lower()}")
    expect(approve).to_be_visible()
    admin.shot("api-users-waiting")
    admin.check_accessibility()
    approve.click()
    expect(page.get_by_role("status")).to_have_text(f"API user {api_user_id} approved")
    page = admin.open("/console/admin/api-users?status=Active")
    expect(page.locator("#api-users")).to_contain_text(email.lower())
    admin.shot("api-users-approved")

    # Approval revokes the integrator's tokens (its grants changed): the console asks it to sign in again.
    page = integrator.open("/console/permissions")
    expect(page.get_by_role("status")).to_contain_text("revoked")
    page.get_by_label("API user id").fill(api_user_id)
    page.get_by_label("Private key file (.pem)").set_input_files(
        files=[{"name": "key.pem", "mimeType": "application/x-pem-file", "buffer": pem.encode()}]
    )
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#permission-status")).to_have_text("Approved")
    expect(page.locator("#granted")).to_contain_text("ORGANIZATION_MANAGEMENT_CRUDL: Read, Write")
    integrator.shot("permissions-approved")

    page = admin.open("/console/admin/acl")
    expect(page.locator("#acl")).to_contain_text("ORGANIZATION_MANAGEMENT_CRUDL")
    admin.shot("acl")

    page = admin.open("/console/admin/organizations")
    expect(page.get_by_role("cell", name=f"Integrator {tag}")).to_be_visible()
    admin.shot("organizations")
    admin.check_accessibility()


def test_forgot_password_reset_profile_and_sign_out(platform, console) -> None:
    tag = uuid.uuid4().hex[:8]
    person = console("account")
    email = f"account-{tag}@example.org"
    register(person, "Buyer", email, f"Account {tag}")
    confirm_and_sign_in(person, platform.mail_dir, email)

    # Profile: the name, then the password.
    page = person.open("/console/profile")
    page.get_by_label("First name").fill("Meera")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Profile saved")
    expect(page.get_by_label("First name")).to_have_value("Meera")
    person.shot("profile")
    person.check_accessibility()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("Signed out")
    page = person.open("/console/devices")  # signed out: back to the sign-in page
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")

    # Forgot password: the mailed token sets a new one, which signs in.
    page = person.open("/console/forgot-password")
    page.get_by_label("E-mail").fill(email)
    person.shot("forgot")
    page.get_by_role("button", name="Send the link").click()
    token = mailed_token(platform.mail_dir, email, RESET_SUBJECT)
    page = person.open(f"/console/reset-password/{token}")
    new_password = "Newpass123"
    page.get_by_label(re.compile(r"^New password")).fill(new_password)
    page.get_by_label("Repeat the new password").fill(new_password)
    person.shot("reset")
    page.get_by_role("button", name="Change the password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password is changed")
    sign_in(person, email, new_password)
