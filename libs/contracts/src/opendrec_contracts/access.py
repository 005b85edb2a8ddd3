"""Roles, ACL modules and the permissions each role holds by default.

Identity seeds its tables from these (an admin may change them later); services use them
to document in OpenAPI which roles reach an endpoint, and the authorization matrix test
uses them as the expected answer. Letters: R(ead) W(rite) U(pdate) D(elete).
"""

from __future__ import annotations

ADMIN = "Admin"
ROLES = ("Admin", "OrganizationAdmin", "DeviceOwner", "Buyer", "SubBuyer", "User", "ApiUser")

MODULES = (
    "USER_MANAGEMENT_CRUDL",
    "DEVICE_MANAGEMENT_CRUDL",
    "READS_MANAGEMENT_CRUDL",
    "BUYER_RESERVATION_MANAGEMENT_CRUDL",
    "CERTIFICATE_LOG_MANAGEMENT_CRUDL",
    "DEVICE_BULK_MANAGEMENT_CRUDL",
    "INVITATION_MANAGEMENT_CRUDL",
    "PASSWORD_MANAGEMENT_CRUDL",
    "ORGANIZATION_MANAGEMENT_CRUDL",
    "PERMISSION_MANAGEMENT_CRUDL",
    "ACL_MODULE_MANAGEMENT_CRUDL",
)

# Modules that administer access itself: never granted to an API user (it may not even ask for them).
ADMIN_MODULES = ("PERMISSION_MANAGEMENT_CRUDL", "ACL_MODULE_MANAGEMENT_CRUDL")
API_USER_MODULES = tuple(m for m in MODULES if m not in ADMIN_MODULES)

ACTION_LETTERS = {"Read": "R", "Write": "W", "Update": "U", "Delete": "D"}

# Admin holds everything and needs no rows; ApiUser holds only what an admin approved.
DEFAULT_ROLE_GRANTS: dict[str, dict[str, str]] = {
    "OrganizationAdmin": {
        "DEVICE_MANAGEMENT_CRUDL": "RWUD",
        "READS_MANAGEMENT_CRUDL": "RWUD",
        "DEVICE_BULK_MANAGEMENT_CRUDL": "RWUD",
        "CERTIFICATE_LOG_MANAGEMENT_CRUDL": "RWU",  # W/U: the registry's transfers, retirements and locks
        "USER_MANAGEMENT_CRUDL": "RWU",
        "ORGANIZATION_MANAGEMENT_CRUDL": "RWU",
        "INVITATION_MANAGEMENT_CRUDL": "RWU",
        "PASSWORD_MANAGEMENT_CRUDL": "RWU",
    },
    "Buyer": {
        "BUYER_RESERVATION_MANAGEMENT_CRUDL": "RWUD",
        "CERTIFICATE_LOG_MANAGEMENT_CRUDL": "RWU",  # W/U: the registry's transfers, retirements and locks
        "DEVICE_MANAGEMENT_CRUDL": "R",
        "READS_MANAGEMENT_CRUDL": "R",
        "USER_MANAGEMENT_CRUDL": "RWU",
        "ORGANIZATION_MANAGEMENT_CRUDL": "RWU",
        "INVITATION_MANAGEMENT_CRUDL": "RWU",
        "PASSWORD_MANAGEMENT_CRUDL": "RWU",
    },
    "DeviceOwner": {
        "DEVICE_MANAGEMENT_CRUDL": "RWU",
        "READS_MANAGEMENT_CRUDL": "RWU",
        "DEVICE_BULK_MANAGEMENT_CRUDL": "RW",
        "CERTIFICATE_LOG_MANAGEMENT_CRUDL": "R",
        "USER_MANAGEMENT_CRUDL": "R",
        "ORGANIZATION_MANAGEMENT_CRUDL": "R",
        "PASSWORD_MANAGEMENT_CRUDL": "RWU",
    },
    "SubBuyer": {
        "BUYER_RESERVATION_MANAGEMENT_CRUDL": "RWU",
        "CERTIFICATE_LOG_MANAGEMENT_CRUDL": "R",
        "DEVICE_MANAGEMENT_CRUDL": "R",
        "READS_MANAGEMENT_CRUDL": "R",
        "USER_MANAGEMENT_CRUDL": "R",
        "ORGANIZATION_MANAGEMENT_CRUDL": "R",
        "PASSWORD_MANAGEMENT_CRUDL": "RWU",
    },
    "User": {
        "DEVICE_MANAGEMENT_CRUDL": "R",
        "READS_MANAGEMENT_CRUDL": "R",
        "CERTIFICATE_LOG_MANAGEMENT_CRUDL": "R",
        "USER_MANAGEMENT_CRUDL": "R",
        "ORGANIZATION_MANAGEMENT_CRUDL": "R",
        "PASSWORD_MANAGEMENT_CRUDL": "RWU",
    },
    "ApiUser": {},
}


def roles_granted(module: str, action: str) -> list[str]:
    """The roles that may do `action` in `module` by default: Admin always, ApiUser never until approved."""
    letter = ACTION_LETTERS[action]
    return [ADMIN, *(role for role, grants in DEFAULT_ROLE_GRANTS.items() if letter in grants.get(module, ""))]
