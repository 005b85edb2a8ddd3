"""D-REC's yield configuration (`/api/yield/config`) against a real Postgres and broker: an Admin keeps one
yield per country; an Active one judges that country's reads in place of COUNTRY_YIELDS, a device's own
yield still winning."""

from __future__ import annotations

import pytest

from opendrec_contracts import DeviceRegistered
from opendrec_kit.testing import eventually, publish_events
from opendrec_readings import domain

from .test_service import delta, new_device, new_id, running

pytestmark = pytest.mark.asyncio(loop_scope="session")

RW = {"READS_MANAGEMENT_CRUDL": "RW"}
ADMIN_ID = 4242
# The plausibility bound of a Delta read over 1 h of a 100 kW device in its first year:
# 1.2 × 100 kW × 1000 × 1 h × yield / 8760 Wh — 13,699 at 1000, 20,548 at 1500, 27,397 at 2000.
SETTING_YIELD = 1500.0


class Side:
    def __init__(self, runtime, client, issuer, bootstrap):
        self.runtime, self.client, self.issuer, self.bootstrap = runtime, client, issuer, bootstrap

    def admin(self) -> dict[str, str]:
        return self.issuer.headers(
            user_id=ADMIN_ID, organization_id=1, organization_type="Admin", role="Admin", permissions={}
        )

    async def create(self, body: dict):
        return await self.client.post("/api/yield/config", json=body, headers=self.admin())

    async def update(self, config_id: int | str, body: dict):
        return await self.client.patch(f"/api/yield/config/update/{config_id}", json=body, headers=self.admin())

    async def register(self, country_code: str, yield_value: float | None = None) -> DeviceRegistered:
        device = new_device(yield_value=yield_value).model_copy(update={"country_code": country_code})
        await publish_events(self.bootstrap, [device])
        await eventually(
            lambda: self.runtime.pool.fetch("SELECT 1 FROM devices WHERE device_id = $1", device.device_id)
        )
        return device

    async def post_reads(self, device: DeviceRegistered, body: dict):
        headers = self.issuer.headers(user_id=7, organization_id=device.organization_id, permissions=RW)
        return await self.client.post(f"/api/meter-reads/new/{device.external_id}", json=body, headers=headers)


@pytest.fixture(scope="module")
async def side(postgres_url, kafka_bootstrap):
    # Its own database: the countries configured here judge no other module's reads.
    settings = {"service_name": "readings-yields", "country_yields": {"KEN": SETTING_YIELD, "TZA": SETTING_YIELD}}
    async with running(postgres_url, kafka_bootstrap, **settings) as (runtime, client, issuer):
        yield Side(runtime, client, issuer, kafka_bootstrap)


# -- success ---------------------------------------------------------------------------------------


async def test_an_admin_configures_lists_reads_and_changes_a_country_yield(side):
    created = await side.create({"countryName": "Nigeria", "countryCode": "nga", "yieldValue": 1700, "status": "Y"})
    assert created.status_code == 201, created.text
    config = created.json()
    assert {k: config[k] for k in ("countryName", "countryCode", "yieldValue", "status", "created_By")} == {
        "countryName": "Nigeria",
        "countryCode": "NGA",  # upper-cased, as the reference does
        "yieldValue": 1700,
        "status": "Y",
        "created_By": ADMIN_ID,
    }
    assert config["updated_By"] is None and isinstance(config["id"], int)
    assert config["createdAt"].endswith("Z") and config["updatedAt"].endswith("Z")

    listed = await side.client.get("/api/yield/config", headers=side.admin())
    assert listed.status_code == 200 and config in listed.json()
    one = await side.client.get(f"/api/yield/config/{config['id']}", headers=side.admin())
    assert one.status_code == 200 and one.json() == config

    # The reference's update body (all four fields): the value and the status change.
    changed = await side.update(
        config["id"], {"countryName": "Nigeria", "countryCode": "NGA", "yieldValue": 1650.5, "status": "N"}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["yieldValue"], changed.json()["status"], changed.json()["updated_By"]) == (
        1650.5,
        "N",
        ADMIN_ID,
    )
    # Only the fields given: the status alone, the rest kept.
    again = await side.update(config["id"], {"status": "Y"})
    assert again.status_code == 200
    assert {k: again.json()[k] for k in ("countryCode", "yieldValue", "status")} == {
        "countryCode": "NGA",
        "yieldValue": 1650.5,
        "status": "Y",
    }


async def test_alpha_2_is_taken_as_devices_store_it_and_status_defaults_to_active(side):
    created = await side.create({"countryName": "  Ghana ", "countryCode": "gh", "yieldValue": 1800.0})
    assert created.status_code == 201, created.text
    assert (created.json()["countryCode"], created.json()["countryName"], created.json()["status"]) == (
        "GHA",
        "Ghana",
        "Y",
    )


# -- the rule: a configured yield judges the country's reads -------------------------------------


async def test_a_changed_yield_changes_what_a_read_is_judged_against(side):
    device = await side.register("KEN")
    first = delta(device, [1], wh=25_000)

    # COUNTRY_YIELDS' 1500 for KEN: 25,000 Wh in an hour is over the bound (20,548).
    refused = await side.post_reads(device, first)
    assert refused.status_code == 400 and "not plausible" in refused.text, refused.text

    # Configured at 2000 (Active): the same read is now within the bound (27,397).
    created = await side.create({"countryName": "Kenya", "countryCode": "KEN", "yieldValue": 2000, "status": "Y"})
    assert created.status_code == 201, created.text
    config_id = created.json()["id"]
    assert (await side.post_reads(device, first)).status_code == 201

    # Lowered to 1000 (bound 13,699): 15,000 Wh in the next hour is refused...
    second = delta(device, [2], wh=15_000)
    assert (await side.update(config_id, {"yieldValue": 1000})).status_code == 200
    refused = await side.post_reads(device, second)
    assert refused.status_code == 400 and "1000/8760" in refused.text, refused.text

    # ... and with the configuration set inactive (N), COUNTRY_YIELDS' 1500 judges again: accepted.
    assert (await side.update(config_id, {"status": "N"})).status_code == 200
    assert (await side.post_reads(device, second)).status_code == 201


async def test_a_devices_own_yield_still_wins_over_the_configured_one(side):
    created = await side.create({"countryName": "Tanzania", "countryCode": "TZA", "yieldValue": 3000, "status": "Y"})
    assert created.status_code == 201, created.text
    own = await side.register("TZA", yield_value=1000)  # bound 13,699
    configured = await side.register("TZA")  # bound 41,096 (the configured 3000, not the setting's 1500)
    body = delta(own, [1], wh=15_000)
    refused = await side.post_reads(own, body)
    assert refused.status_code == 400 and "1000/8760" in refused.text, refused.text
    assert (await side.post_reads(configured, delta(configured, [1], wh=40_000))).status_code == 201


async def test_a_country_without_configuration_or_setting_takes_the_default(side):
    device = await side.register("PER")  # bound 27,397 at the default 2000
    assert (await side.post_reads(device, delta(device, [1], wh=27_000))).status_code == 201
    refused = await side.post_reads(device, delta(device, [2], wh=27_500))
    assert refused.status_code == 400 and f"{domain.DEFAULT_ANNUAL_YIELD:g}/8760" in refused.text


# -- validation and conflicts ---------------------------------------------------------------------

VALID = {"countryName": "Chile", "countryCode": "CHL", "yieldValue": 1900, "status": "Y"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"countryCode": None}, "countryCode"),
        ({"countryCode": "XYZ"}, "countryCode"),
        ({"countryCode": "INDIA"}, "countryCode"),
        ({"countryCode": ""}, "countryCode"),
        ({"countryCode": 356}, "countryCode"),
        ({"countryName": "   "}, "countryName"),
        ({"countryName": "x" * 201}, "countryName"),
        ({"countryName": None}, "countryName"),
        ({"yieldValue": 0}, "yieldValue"),
        ({"yieldValue": -5}, "yieldValue"),
        ({"yieldValue": 3000.5}, "yieldValue"),
        ({"yieldValue": "1600"}, "yieldValue"),
        ({"yieldValue": True}, "yieldValue"),
        ({"yieldValue": None}, "yieldValue"),
        ({"status": "Active"}, "status"),
    ],
)
async def test_a_bad_new_configuration_is_refused_with_its_field(side, change, field):
    body = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    response = await side.create(body)
    assert response.status_code == 400, response.text
    assert field in {d["field"] for d in response.json()["details"]}, response.text
    assert await side.runtime.pool.fetch("SELECT 1 FROM yield_configs WHERE country_code = 'CHL'") == []


async def test_a_body_that_is_not_json_is_refused(side):
    response = await side.client.post(
        "/api/yield/config", content=b"{not json", headers={**side.admin(), "Content-Type": "application/json"}
    )
    assert response.status_code == 400


async def test_a_second_yield_for_a_country_conflicts(side):
    assert (await side.create({**VALID, "countryCode": "ARG", "countryName": "Argentina"})).status_code == 201
    again = await side.create({**VALID, "countryCode": "ar", "countryName": "Argentina", "yieldValue": 1000})
    assert again.status_code == 409 and "already exists" in again.json()["message"]
    other = (await side.create({**VALID, "countryCode": "URY", "countryName": "Uruguay"})).json()
    moved = await side.update(other["id"], {"countryCode": "ARG"})
    assert moved.status_code == 409, moved.text
    kept = await side.client.get(f"/api/yield/config/{other['id']}", headers=side.admin())
    assert kept.json()["countryCode"] == "URY"
    # To a free country it moves.
    assert (await side.update(other["id"], {"countryCode": "PRY", "countryName": "Paraguay"})).json()[
        "countryCode"
    ] == "PRY"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"countryCode": "XYZ"}, "countryCode"),
        ({"yieldValue": 0}, "yieldValue"),
        ({"yieldValue": 3001}, "yieldValue"),
        ({"status": "yes"}, "status"),
        ({"countryName": ""}, "countryName"),
    ],
)
async def test_a_bad_change_is_refused_and_changes_nothing(side, body, field):
    created = await side.create({**VALID, "countryCode": "BOL", "countryName": "Bolivia"})
    config = created.json() if created.status_code == 201 else None
    if config is None:  # made by an earlier parameter
        listed = (await side.client.get("/api/yield/config", headers=side.admin())).json()
        config = next(c for c in listed if c["countryCode"] == "BOL")
    response = await side.update(config["id"], body)
    assert response.status_code == 400, response.text
    assert field in {d["field"] for d in response.json()["details"]}, response.text
    after = await side.client.get(f"/api/yield/config/{config['id']}", headers=side.admin())
    assert after.json() == config


@pytest.mark.parametrize("config_id", ["0", "-1", "abc", str(2**31)])
async def test_a_bad_id_is_refused(side, config_id):
    assert (await side.client.get(f"/api/yield/config/{config_id}", headers=side.admin())).status_code == 400
    assert (await side.update(config_id, {"status": "Y"})).status_code == 400


async def test_an_unknown_id_is_not_found(side):
    missing = 2**31 - 1
    got = await side.client.get(f"/api/yield/config/{missing}", headers=side.admin())
    assert got.status_code == 404 and str(missing) in got.json()["message"]
    assert (await side.update(missing, {"status": "N"})).status_code == 404


# -- access: the Admin's alone ---------------------------------------------------------------------

CALLERS = [
    {"role": "OrganizationAdmin", "permissions": {"YIELD_CONFIG_MANAGEMENT_CRUDL": "CRUDL", **RW}},
    {"role": "DeviceOwner", "permissions": RW},
    {"role": "User", "permissions": RW},
    {"role": "Buyer", "organization_type": "Buyer", "permissions": RW},
    {"role": "ApiUser", "organization_type": "ApiUser", "permissions": RW, "apiUserId": "a-1"},
]


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c["role"])
async def test_only_an_admin_reaches_the_yield_configuration(side, caller):
    created = await side.create({**VALID, "countryCode": "COL", "countryName": "Colombia"})
    config_id = created.json()["id"] if created.status_code == 201 else 1
    headers = side.issuer.headers(user_id=9, organization_id=new_id(), **caller)
    calls = [
        side.client.get("/api/yield/config", headers=headers),
        side.client.get(f"/api/yield/config/{config_id}", headers=headers),
        side.client.post("/api/yield/config", json={**VALID, "countryCode": "ECU"}, headers=headers),
        side.client.patch(f"/api/yield/config/update/{config_id}", json={"yieldValue": 5}, headers=headers),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 403, response.text
    assert await side.runtime.pool.fetch("SELECT 1 FROM yield_configs WHERE country_code = 'ECU'") == []
    assert await side.runtime.pool.fetch("SELECT 1 FROM yield_configs WHERE yield_value = 5") == []


async def test_without_a_token_nothing_is_answered(side):
    assert (await side.client.get("/api/yield/config")).status_code == 401
    assert (await side.client.post("/api/yield/config", json=VALID)).status_code == 401
    assert (await side.client.patch("/api/yield/config/update/1", json={"status": "N"})).status_code == 401
