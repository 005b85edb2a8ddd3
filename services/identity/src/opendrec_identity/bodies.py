"""Identity's request and answer bodies (D-REC field names): what the routes parse and the use cases take.

Every field is checked on its own (the rules are in domain.py), so one 400 lists every bad field;
rejected values are never echoed (`hide_input_in_errors`).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from opendrec_kit.errors import field_rule
from opendrec_kit.models import rule

from . import domain

# Answers carry timestamps as D-REC writes them (opendrec_kit.timestamps.iso).
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
MAX_MODULE_ID = 2**31 - 1  # ACL modules are numbered by a Postgres serial (integer)
ModuleId = Annotated[int, Field(ge=1, le=MAX_MODULE_ID)]
Action = Literal["Read", "Write", "Update", "Delete"]
ModuleStatus = Literal["Enable", "Disable"]
Email = Annotated[str, rule(domain.normalize_email)]
Password = Annotated[str, rule(domain.check_password)]  # a new one: checked against domain.PASSWORD_RULE


class Done(BaseModel):
    success: bool = True
    message: str


# -- accounts ---------------------------------------------------------------------------------------------


def _confirms(password_field: str) -> Any:
    """The validator of confirmPassword: it repeats the password field (compared only when that one was
    valid, else its own error is reported)."""

    def check(value: str, info: ValidationInfo) -> str:
        if password_field in info.data and value != info.data[password_field]:
            raise PydanticCustomError("mismatch", f"confirmPassword must match {password_field}")
        return value

    return check


class NewAccount(BaseModel):
    """Who a new user is and the password they chose; shared by every way of creating an account.
    Every field is checked on its own, so one 400 lists every bad field."""

    model_config = ConfigDict(str_strip_whitespace=False, hide_input_in_errors=True)

    firstName: Annotated[str, rule(domain.required_text, "firstName", 100)]
    lastName: Annotated[str, rule(domain.required_text, "lastName", 100)]
    password: Password = Field(description=domain.PASSWORD_RULE)
    confirmPassword: str

    _check_confirm = field_validator("confirmPassword")(_confirms("password"))


class NewOrganizationAccount(NewAccount):
    """An organization and its first user (who administers it)."""

    email: Email
    organizationType: Annotated[str, rule(domain.normalize_organization_type)] = Field(
        description="Developer or Buyer, in any letter case"
    )
    orgName: Annotated[str, rule(domain.required_text, "orgName", 200)]
    orgAddress: Annotated[str | None, rule(domain.optional_text, "orgAddress", 500)] = None


class RegisterWithOrganization(NewOrganizationAccount):
    secretKey: Annotated[str, rule(domain.check_secret_key)] = Field(description=domain.SECRET_KEY_RULE)


class AdminNewUser(NewOrganizationAccount):
    """D-REC's CreateUserORGDTO as POST /api/admin/users takes it (no secretKey). Its api_user_id and orgid are
    not read (D-REC too sets api_user_id from the calling admin and always creates a new organization)."""


class Login(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)

    # Bounded so a huge body cannot buy a long hash computation.
    username: Annotated[str, rule(domain.storable_text, "username")] = Field(
        min_length=1, max_length=1024, description="the account's e-mail address"
    )
    password: str = Field(min_length=1, max_length=1024)


class AccessToken(BaseModel):
    accessToken: str


class OrganizationOut(BaseModel):
    id: int
    name: str
    address: str | None
    organizationType: str
    status: str
    createdAt: Timestamp


class UserOut(BaseModel):
    id: int
    firstName: str
    lastName: str
    email: str
    role: str
    status: str
    emailConfirmed: bool
    createdAt: Timestamp
    organization: OrganizationOut


class UserDetail(UserOut):
    apiUserId: str | None = Field(default=None, description="for an API user: its apiUserId")
    permission_status: str | None = Field(
        default=None, description="for an API user: the state of its module request (Request, Active, Deactive)"
    )


class UserChange(BaseModel):
    """What an Admin (or an API user, for the organizations registered under it) changes of a user."""

    model_config = ConfigDict(hide_input_in_errors=True)

    firstName: Annotated[str, rule(domain.required_text, "firstName", 100)] | None = None
    lastName: Annotated[str, rule(domain.required_text, "lastName", 100)] | None = None
    email: Email | None = None
    status: Literal["Pending", "Active", "Suspended", "Deleted"] | None = None
    # An empty change is refused by the use case, after it checked the caller may change the user at all
    # (so that a stranger learns nothing from a 400).

    def empty(self) -> bool:
        return self.firstName is None and self.lastName is None and self.email is None and self.status is None


class Me(UserOut):
    permissions: dict[str, list[str]] = Field(description="ACL module -> allowed actions (Read, Write, Update, Delete)")


class ForgetPassword(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)
    email: Email


class ResetPassword(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)
    newPassword: Password = Field(description=domain.PASSWORD_RULE)
    confirmPassword: str

    _check_confirm = field_validator("confirmPassword")(_confirms("newPassword"))


class ChangePassword(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)
    oldPassword: str = Field(min_length=1, max_length=1024)
    newPassword: Password = Field(description=domain.PASSWORD_RULE)
    confirmPassword: str

    _check_confirm = field_validator("confirmPassword")(_confirms("newPassword"))


class Profile(BaseModel):
    firstName: Annotated[str, rule(domain.required_text, "firstName", 100)] | None = None
    lastName: Annotated[str, rule(domain.required_text, "lastName", 100)] | None = None

    @model_validator(mode="after")
    def _something(self) -> Profile:
        if self.firstName is None and self.lastName is None:
            raise PydanticCustomError("empty", "give firstName, lastName or both")
        return self


# -- organizations ----------------------------------------------------------------------------------------


class UsersPage(BaseModel):
    users: list[UserOut]
    currentPage: int
    totalPages: int
    totalCount: int


class OrganizationsPage(BaseModel):
    organizations: list[OrganizationOut]
    currentPage: int
    totalPages: int
    totalCount: int


class ChangeRole(BaseModel):
    role: str


_Text100 = Annotated[str, Field(max_length=100)]
_Documents = Annotated[list[_Text100], Field(max_length=20)]


class NewOrganization(BaseModel):
    """D-REC's NewOrganizationDTO (POST /api/Organization)."""

    model_config = ConfigDict(hide_input_in_errors=True)

    name: Annotated[str, rule(domain.required_text, "name", 200)]
    address: Annotated[str, Field(max_length=500)]
    zipCode: Annotated[str, Field(max_length=20)]
    city: _Text100
    country: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2 code, e.g. IN")]
    organizationType: Annotated[str, Field(max_length=20)] | None = None
    orgEmail: Email | None = None
    documentIds: _Documents | None = None
    signatoryDocumentIds: _Documents | None = None


class OrganizationChange(BaseModel):
    """D-REC's UpdateOrganizationDTO (PATCH /api/admin/organizations/{id}): name, address and status change;
    organizationType may only repeat the current one; the fields OpenDREC does not keep are refused if given."""

    model_config = ConfigDict(hide_input_in_errors=True)

    name: Annotated[str, rule(domain.required_text, "name", 200)] | None = None
    address: Annotated[str | None, rule(domain.optional_text, "address", 500)] = Field(
        default=None, description="an empty string clears it"
    )
    organizationType: Annotated[str, Field(max_length=20)] | None = None
    status: Literal["Submitted", "Denied", "Active"] | None = None
    zipCode: Annotated[str, Field(max_length=20)] | None = None
    city: _Text100 | None = None
    country: Annotated[str, Field(max_length=2)] | None = None
    signatoryFullName: _Text100 | None = None
    signatoryAddress: Annotated[str, Field(max_length=500)] | None = None
    signatoryZipCode: Annotated[str, Field(max_length=20)] | None = None
    signatoryCity: _Text100 | None = None
    signatoryCountry: Annotated[str, Field(max_length=2)] | None = None
    signatoryEmail: Annotated[str, Field(max_length=254)] | None = None
    signatoryPhoneNumber: Annotated[str, Field(max_length=30)] | None = None
    documentIds: _Documents | None = None
    signatoryDocumentIds: _Documents | None = None

    @field_validator(*domain.UNKEPT_ORGANIZATION_FIELDS)
    @classmethod
    def _not_kept(cls, value: Any) -> Any:
        if value not in (None, "", []):
            raise PydanticCustomError("unkept", domain.UNKEPT)
        return None

    @model_validator(mode="after")
    def _something(self) -> OrganizationChange:
        if not {"name", "address", "organizationType", "status"} & self.model_fields_set:
            raise PydanticCustomError("empty", "give name, address, organizationType or status")
        return self


# -- invitations ------------------------------------------------------------------------------------------


class Invite(BaseModel):
    email: Email
    role: str = Field(
        description="a role of the organization's type: Developer OrganizationAdmin|DeviceOwner|User, Buyer Buyer|SubBuyer|User"
    )


class Answer(BaseModel):
    status: Literal["Accepted", "Rejected"]


class InvitedRegistration(NewAccount):
    """An invitee without an account registers with the mailed token (the email is the invitation's)."""


class InvitationOrganization(BaseModel):
    id: int
    name: str


class InvitationOut(BaseModel):
    id: int
    email: str
    role: str
    status: str
    sender: str
    organization: InvitationOrganization
    createdAt: Timestamp
    expiresAt: Timestamp


class InvitationsPage(BaseModel):
    invitations: list[InvitationOut]
    currentPage: int
    totalPages: int
    totalCount: int


# -- API users --------------------------------------------------------------------------------------------


class Register(RegisterWithOrganization):
    organizationType: str = Field(
        description="ApiUser; or Developer/Buyer together with api_user_id, called by that API user"
    )
    api_user_id: uuid.UUID | None = Field(
        default=None, description="the API user the Developer/Buyer organization is registered under"
    )

    @field_validator("organizationType")
    @classmethod
    def _organization_type(cls, value: str) -> str:
        found = {"apiuser": "ApiUser", "developer": "Developer", "buyer": "Buyer"}.get(value.strip().lower())
        if found is None:
            raise PydanticCustomError("invalid", "organizationType must be ApiUser, Developer or Buyer")
        return found

    @model_validator(mode="after")
    def _api_user(self) -> Register:
        if self.organizationType == "ApiUser" and self.api_user_id is not None:
            raise PydanticCustomError(
                "api_user_id", "api_user_id is only for Developer and Buyer organizations registered under an API user"
            )
        if self.organizationType != "ApiUser" and self.api_user_id is None:
            raise PydanticCustomError(
                "api_user_id",
                "api_user_id is required for a Developer or Buyer organization here (without an API user, use /api/user/registerWithOrganization)",
            )
        return self


class Registered(UserOut):
    apiUserId: str | None = Field(
        default=None,
        description="the API user: for ApiUser registrations its client_id (iss and sub of its assertions)",
    )
    privateKey: str | None = Field(
        default=None,
        description="ApiUser registrations only: the Ed25519 private key (PEM, PKCS#8), shown this once only; sign client assertions with it (EdDSA)",
    )


class ModuleChoice(BaseModel):
    """A module named by its id or by its name (one of them)."""

    aclmodulesId: ModuleId | None = None
    moduleName: str | None = None

    @model_validator(mode="after")
    def _one_module(self) -> Self:
        if (self.aclmodulesId is None) == (self.moduleName is None):
            raise PydanticCustomError("module", "give aclmodulesId or moduleName (one of them)")
        return self


class ModuleRequest(ModuleChoice):
    permissions: list[Action] = Field(min_length=1)


class PermissionState(BaseModel):
    apiUserId: str
    status: str
    modules: dict[str, list[str]]


class Verdict(BaseModel):
    status: Literal["Active", "Deactive"]


class TokenRequest(BaseModel):
    grant_type: str
    client_assertion_type: str
    client_assertion: str = Field(max_length=8192)


class TokenAnswer(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    accessToken: str = Field(description="the same token, under the D-REC login answer's name")


class RotatedKey(BaseModel):
    apiUserId: str
    privateKey: str = Field(description="the new Ed25519 private key (PEM), shown this once only")


class ApiUserOut(BaseModel):
    apiUserId: str
    userId: int
    email: str
    organizationId: int
    organizationName: str
    permissionStatus: str
    requestedModules: dict[str, list[str]]
    createdAt: Timestamp


class ApiUsersPage(BaseModel):
    apiusers: list[ApiUserOut]
    currentPage: int
    totalPages: int
    totalCount: int


# -- ACL modules and grants (origin-drec-api field names) ----------------------------------------------------


class NewModule(BaseModel):
    name: Annotated[str, rule(domain.check_module_name)] = Field(description=domain.MODULE_NAME_RULE)
    description: str = ""
    permissions: list[Action] = Field(min_length=1, description="the actions the module offers")
    status: ModuleStatus = "Enable"

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        return field_rule(domain.optional_text, value, "description", 500) or ""


class ModuleChange(BaseModel):
    description: str | None = None
    permissions: list[Action] | None = Field(
        default=None, min_length=1, description="the actions the module offers from now on"
    )
    status: ModuleStatus | None = None

    @field_validator("description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        return None if value is None else field_rule(domain.optional_text, value, "description", 500) or ""

    @model_validator(mode="after")
    def _something(self) -> ModuleChange:
        if self.description is None and self.permissions is None and self.status is None:
            raise PydanticCustomError("empty", "give description, permissions or status")
        return self


class ModuleOut(BaseModel):
    id: int
    name: str
    description: str
    permissions: list[str] = Field(description="the actions the module offers")
    status: str
    createdAt: Timestamp


class ModulesPage(BaseModel):
    aclmodules: list[ModuleOut]
    currentPage: int
    totalPages: int
    totalCount: int


class NewGrant(ModuleChoice):
    entityType: Literal["Role", "User"]
    entityId: str | int = Field(
        description="Role: the role's name (e.g. DeviceOwner) or D-REC's role id (3); User: the user's id"
    )
    permissions: list[Action] = Field(min_length=1)


class GrantChange(BaseModel):
    permissions: list[Action] = Field(
        min_length=1, description="the actions granted from now on (to remove them all, DELETE the grant)"
    )


class GrantOut(BaseModel):
    id: int
    aclmodulesId: int
    moduleName: str
    entityType: str
    entityId: str | int = Field(description="Role: its name; User: the user's id")
    permissions: list[str]
    permissionValue: int = Field(
        description="D-REC's bit value of the permissions: Read 1, Write 2, Update 4, Delete 8"
    )
    status: int = Field(description="1: in force (D-REC's active grant)")


class GrantsPage(BaseModel):
    permissions: list[GrantOut]
    currentPage: int
    totalPages: int
    totalCount: int
