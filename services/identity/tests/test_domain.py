from datetime import UTC, datetime, timedelta

import pytest

from opendrec_identity import domain
from opendrec_identity.domain import Invalid, ModuleGrant
from opendrec_kit.paging import Page, total_pages

# -- registration rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("UAT_STAGE_DEVELOPER1_231122@gmail.com", "uat_stage_developer1_231122@gmail.com"),
        ("  buyerswag@gmail.com ", "buyerswag@gmail.com"),
        ("first.last+tag@sub.example.org", "first.last+tag@sub.example.org"),
    ],
)
def test_email_is_trimmed_and_lower_cased(given, stored):
    assert domain.normalize_email(given) == stored


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "plainaddress",
        "no-at.example.org",
        "a@b",
        "a@@example.org",
        "a b@example.org",
        "a@-example.org",
        "x" * 250 + "@example.org",
    ],
)
def test_bad_emails_are_refused(bad):
    with pytest.raises(Invalid, match="email"):
        domain.normalize_email(bad)


@pytest.mark.parametrize("good", ["MNO133", "DEF123", "abc123", "Pass w0rd with spaces", "ä1ö2ü3"])
def test_password_policy_accepts_the_drec_samples(good):
    assert domain.check_password(good) == good


@pytest.mark.parametrize("bad", ["", "AB12", "ABC12", "abcdef", "123456", "!!!!!!", "a1" * 65])
def test_password_policy_refuses_short_letterless_or_digitless(bad):
    with pytest.raises(Invalid, match="at least one letter and one digit"):
        domain.check_password(bad)


@pytest.mark.parametrize("good", ["MNLA70", "AB0123", "NPO170", "ABCDEF", "123456"])
def test_secret_key_accepts_the_drec_samples(good):
    assert domain.check_secret_key(good) == good


@pytest.mark.parametrize("bad", ["", "ab0123", "AB012", "AB01234", "AB-123", "AB 123", "ÄB0123"])
def test_secret_key_refuses_other_shapes(bad):
    with pytest.raises(Invalid, match="secretKey must be exactly 6 characters"):
        domain.check_secret_key(bad)


@pytest.mark.parametrize(
    ("given", "kind"),
    [("developer", "Developer"), ("DEVELOPER", "Developer"), ("Buyer", "Buyer"), (" bUyEr ", "Buyer")],
)
def test_organization_type_in_any_letter_case(given, kind):
    assert domain.normalize_organization_type(given) == kind


@pytest.mark.parametrize("bad", ["ApiUser", "Admin", "seller", ""])
def test_only_developer_and_buyer_register_themselves(bad):
    with pytest.raises(Invalid, match="Developer or Buyer"):
        domain.normalize_organization_type(bad)


def test_first_user_administers_the_organization():
    assert domain.first_user_role("Developer") == "OrganizationAdmin"
    assert domain.first_user_role("Buyer") == "Buyer"


def test_required_text_is_trimmed_and_bounded():
    assert domain.required_text("  Drec4 ", "orgName", 10) == "Drec4"
    with pytest.raises(Invalid, match="orgName is required"):
        domain.required_text("   ", "orgName", 10)
    with pytest.raises(Invalid, match="at most 10"):
        domain.required_text("x" * 11, "orgName", 10)
    assert domain.optional_text("  ", "orgAddress", 10) is None


# -- permissions -----------------------------------------------------------------------------


def test_role_and_user_grants_are_merged_in_rwud_order():
    grants = [
        ModuleGrant("DEVICE_MANAGEMENT_CRUDL", role_actions="R", user_actions="DW"),
        ModuleGrant("READS_MANAGEMENT_CRUDL", role_actions="RWU"),
        ModuleGrant("USER_MANAGEMENT_CRUDL", user_actions="R"),
        ModuleGrant("INVITATION_MANAGEMENT_CRUDL"),
    ]
    assert domain.effective_permissions("OrganizationAdmin", grants) == {
        "DEVICE_MANAGEMENT_CRUDL": "RWD",
        "READS_MANAGEMENT_CRUDL": "RWU",
        "USER_MANAGEMENT_CRUDL": "R",
    }


def test_disabled_modules_and_unsupported_actions_give_nothing():
    grants = [
        ModuleGrant("DEVICE_MANAGEMENT_CRUDL", enabled=False, role_actions="RWUD"),
        ModuleGrant("CERTIFICATE_LOG_MANAGEMENT_CRUDL", supported="R", role_actions="RWUD"),
    ]
    assert domain.effective_permissions("Buyer", grants) == {"CERTIFICATE_LOG_MANAGEMENT_CRUDL": "R"}


def test_admin_holds_every_action_of_every_enabled_module():
    grants = [
        ModuleGrant("ACL_MODULE_MANAGEMENT_CRUDL"),
        ModuleGrant("CERTIFICATE_LOG_MANAGEMENT_CRUDL", supported="RU"),
        ModuleGrant("DEVICE_MANAGEMENT_CRUDL", enabled=False),
    ]
    assert domain.effective_permissions("Admin", grants) == {
        "ACL_MODULE_MANAGEMENT_CRUDL": "RWUD",
        "CERTIFICATE_LOG_MANAGEMENT_CRUDL": "RU",
    }


def test_action_names_use_the_drec_words():
    assert domain.action_names("RWUD") == ["Read", "Write", "Update", "Delete"]
    assert domain.action_names("DR") == ["Read", "Delete"]


# -- token claims ------------------------------------------------------------------------------


def test_access_token_claims():
    now = datetime(2024, 6, 4, 12, 0, tzinfo=UTC)
    claims = domain.access_token_claims(
        user_id=7,
        organization_id=3,
        organization_type="Buyer",
        role="Buyer",
        email="b@example.org",
        permissions={"BUYER_RESERVATION_MANAGEMENT_CRUDL": "RWUD"},
        issuer="opendrec-identity",
        audience="opendrec",
        ttl=timedelta(seconds=3600),
        now=now,
        jti="abc",
    )
    assert claims == {
        "sub": "7",
        "org": 3,
        "orgType": "Buyer",
        "role": "Buyer",
        "email": "b@example.org",
        "perms": {"BUYER_RESERVATION_MANAGEMENT_CRUDL": "RWUD"},
        "jti": "abc",
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + 3600,
        "iss": "opendrec-identity",
        "aud": "opendrec",
    }


# -- login throttling, one-time tokens, member roles ----------------------------------------------


POLICY = domain.ThrottlePolicy(
    window=timedelta(minutes=15),
    slowdown_after=3,
    slowdown_base_s=1,
    slowdown_max_s=8,
    lockout_after=6,
    lockout=timedelta(minutes=10),
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_failures_below_the_threshold_block_nothing():
    state = None
    for n in (1, 2):
        state = domain.after_failure(POLICY, state, T0)
        assert (state.failures, state.blocked_until) == (n, None)


def test_the_slowdown_doubles_up_to_its_maximum_then_locks_out():
    state, delays = None, []
    for _ in range(6):
        state = domain.after_failure(POLICY, state, T0)
        delays.append(None if state.blocked_until is None else (state.blocked_until - T0).total_seconds())
    assert delays == [None, None, 1, 2, 4, 600]


def test_old_failures_are_forgotten_after_the_window():
    state = domain.ThrottleState(failures=5, window_start=T0, blocked_until=None)
    later = T0 + timedelta(minutes=15)
    assert domain.after_failure(POLICY, state, later) == domain.ThrottleState(1, later, None)


def test_retry_after_is_whole_seconds_at_least_one():
    assert domain.retry_after_seconds(None, T0) is None
    assert domain.retry_after_seconds(T0, T0) is None
    assert domain.retry_after_seconds(T0 + timedelta(milliseconds=10), T0) == 1
    assert domain.retry_after_seconds(T0 + timedelta(seconds=2.5), T0) == 3


def test_client_address_trusts_only_the_entry_the_gateway_appended():
    assert domain.client_address("10.0.0.1", "1.2.3.4, 5.6.7.8", True) == "5.6.7.8"
    assert domain.client_address("10.0.0.1", "1.2.3.4, 5.6.7.8", False) == "10.0.0.1"
    assert domain.client_address("10.0.0.1", None, True) == "10.0.0.1"
    assert domain.client_address(None, None, True) == "unknown"


def test_token_digest_is_sha256_hex():
    digest = domain.token_digest("abc")
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_member_roles_follow_the_organization_type():
    assert domain.check_member_role("Developer", "DeviceOwner") == "DeviceOwner"
    assert domain.check_member_role("Buyer", "SubBuyer") == "SubBuyer"
    with pytest.raises(domain.Invalid, match="OrganizationAdmin, DeviceOwner, User"):
        domain.check_member_role("Developer", "SubBuyer")
    with pytest.raises(domain.Invalid, match="Buyer, SubBuyer, User"):
        domain.check_member_role("Buyer", "Admin")


def test_pages():
    # Listings page through the kit's Page (identity keeps no copy).
    assert Page(3, 10).offset == 20
    assert (total_pages(0, 10), total_pages(10, 10), total_pages(11, 10)) == (0, 1, 2)


def test_grant_rules():
    assert domain.letters_of(["Write", "Read", "Read"]) == "RW"
    assert (domain.removed_actions("RWU", "RW"), domain.removed_actions("RW", "RWD")) == ("U", "")
    assert domain.check_offered("M", "RW", "W") == "W"
    with pytest.raises(domain.Invalid, match="M offers only Read, Write"):
        domain.check_offered("M", "RW", "RD")
    assert domain.grantable_role("DeviceOwner") == "DeviceOwner"
    for role, text in (
        ("Admin", "holds every action"),
        ("ApiUser", "approval"),
        ("Nobody", "one of OrganizationAdmin"),
    ):
        with pytest.raises(domain.Invalid, match=text):
            domain.grantable_role(role)
    # D-REC names a role grant's role by its id
    assert [domain.grantable_role_named(v) for v in ("3", "DeviceOwner", "7")] == [
        "DeviceOwner",
        "DeviceOwner",
        "SubBuyer",
    ]
    for value, text in (("1", "holds every action"), ("6", "approval"), ("99", "one of OrganizationAdmin")):
        with pytest.raises(domain.Invalid, match=text):
            domain.grantable_role_named(value)
    assert (domain.grantable_user_id(42), domain.grantable_user_id(" 42 ")) == (42, 42)
    for bad in ("x", "0", -1, "1.5", str(2**63)):
        with pytest.raises(domain.Invalid):
            domain.grantable_user_id(bad)
    # D-REC's permissionValue: Read 1, Write 2, Update 4, Delete 8
    assert [domain.permission_value(x) for x in ("", "R", "RW", "WU", "RWUD")] == [0, 1, 3, 6, 15]
    assert domain.check_module_name(" METER_READS_CRUDL ") == "METER_READS_CRUDL"
    for bad in ("meter", "AB", "1ABC", "A-B-C", "A" * 101):
        with pytest.raises(domain.Invalid):
            domain.check_module_name(bad)


# -- who reads whom, D-REC role ids, organization changes and deletion ------------------------------------------


def _seen(viewer_role: str, *, viewer_id: int = 1, viewer_org: int = 10, user_id: int = 2, user_org: int = 10) -> str:
    return domain.user_visibility(
        viewer_id=viewer_id,
        viewer_role=viewer_role,
        viewer_organization_id=viewer_org,
        user_id=user_id,
        user_organization_id=user_org,
    )


def test_user_visibility():
    assert _seen("User", user_id=1) == domain.VISIBLE  # oneself
    assert _seen("OrganizationAdmin") == _seen("Buyer") == domain.VISIBLE  # one's organization's administrator
    assert _seen("DeviceOwner") == _seen("SubBuyer") == _seen("User") == domain.FORBIDDEN  # a colleague
    assert _seen("OrganizationAdmin", user_org=11) == _seen("ApiUser", user_org=11) == domain.HIDDEN
    assert _seen("Admin", user_org=11) == domain.VISIBLE


def test_roles_by_drec_id_or_name():
    assert [domain.role_named(str(i)) for i in range(1, 8)] == [
        "Admin",
        "OrganizationAdmin",
        "DeviceOwner",
        "Buyer",
        "User",
        "ApiUser",
        "SubBuyer",
    ]
    assert domain.role_named(" SubBuyer ") == "SubBuyer"
    assert [domain.role_named(v) for v in ("0", "8", "2147483647", "99999999999", "admin", "")] == [None] * 6


def test_an_organization_keeps_its_type():
    assert domain.same_organization_type("Developer", " developer ") == "Developer"
    with pytest.raises(domain.Invalid, match="cannot change"):
        domain.same_organization_type("Developer", "Buyer")


@pytest.mark.parametrize(
    ("kind", "status", "own", "under", "reason"),
    [
        ("Developer", "Deleted", False, 0, "already deleted"),
        ("Developer", "Active", True, 0, "your own"),
        ("Admin", "Active", False, 0, "administrators"),
        ("ApiUser", "Active", False, 2, "2 organization"),
    ],
)
def test_what_may_not_be_deleted(kind, status, own, under, reason):
    with pytest.raises(domain.Invalid, match=reason):
        domain.check_deletable(kind, status, own=own, organizations_under_it=under)


def test_what_may_be_deleted():
    for kind in ("Developer", "Buyer", "ApiUser"):
        domain.check_deletable(kind, "Submitted", own=False, organizations_under_it=0)
