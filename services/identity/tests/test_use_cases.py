"""Rules of identity's use cases that need no database."""

import pytest

from opendrec_identity.bodies import ModuleRequest
from opendrec_identity.services.api_users import requested_modules
from opendrec_kit import ApiError

ENABLED = {
    1: ("DEVICE_MANAGEMENT_CRUDL", "RWUD"),
    2: ("READS_MANAGEMENT_CRUDL", "RW"),
    3: ("PERMISSION_MANAGEMENT_CRUDL", "RWUD"),  # an administrators' module
}


def ask(*items: dict) -> dict[str, str]:
    return requested_modules([ModuleRequest(**item) for item in items], ENABLED)


def refusal(*items: dict) -> tuple[str, list]:
    with pytest.raises(ApiError) as err:
        ask(*items)
    assert err.value.status == 400
    return err.value.message, err.value.details


def test_an_api_user_asks_for_modules_by_id_or_name_and_repeats_merge():
    assert ask(
        {"aclmodulesId": 1, "permissions": ["Write"]},
        {"moduleName": "READS_MANAGEMENT_CRUDL", "permissions": ["Read"]},
        {"moduleName": "DEVICE_MANAGEMENT_CRUDL", "permissions": ["Read", "Write"]},
    ) == {"DEVICE_MANAGEMENT_CRUDL": "RW", "READS_MANAGEMENT_CRUDL": "R"}


def test_an_unknown_or_disabled_module_is_refused_by_its_position():
    assert refusal({"aclmodulesId": 1, "permissions": ["Read"]}, {"aclmodulesId": 9, "permissions": ["Read"]}) == (
        "Invalid request: check 1",
        [{"field": "1", "message": "no such enabled ACL module"}],
    )
    assert refusal({"moduleName": "NOPE", "permissions": ["Read"]})[1][0]["field"] == "0"


def test_administrators_modules_are_not_for_api_users():
    message, details = refusal({"aclmodulesId": 3, "permissions": ["Read"]})
    assert message == "Invalid request: check 0"
    assert details == [
        {
            "field": "0",
            "message": "PERMISSION_MANAGEMENT_CRUDL is for administrators only; an API user may ask for "
            "DEVICE_MANAGEMENT_CRUDL, READS_MANAGEMENT_CRUDL",
        }
    ]


def test_only_the_actions_a_module_offers():
    assert refusal({"aclmodulesId": 2, "permissions": ["Read", "Delete"]})[1] == [
        {"field": "0.permissions", "message": "READS_MANAGEMENT_CRUDL offers only Read, Write"}
    ]
