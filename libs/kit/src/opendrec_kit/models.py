"""Pydantic field types shared by the services' request bodies: a domain rule attached to the field's type.

`email: Annotated[str, rule(domain.normalize_email)]` says where the field is declared what checks it, instead
of a `@field_validator` method per field. The rule runs as such a validator would (after the field's type is
checked, or before it with `rule_before`): its ValueError becomes that field's error with the rule's message as
is (`errors.field_rule`), so one 400 still lists every bad field. The OpenAPI schema of the field is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, ValidationInfo

from .errors import field_rule
from .timestamps import client_instant


def rule(check: Callable[..., Any], *args: Any) -> AfterValidator:
    """The field's value (of its declared type) becomes `check(value, *args)`."""
    return AfterValidator(lambda value: field_rule(check, value, *args))


def rule_before(check: Callable[..., Any], *args: Any) -> BeforeValidator:
    """The raw input becomes `check(value, *args)` before the field's type is checked (e.g. a rule that parses)."""
    return BeforeValidator(lambda value: field_rule(check, value, *args))


def _instant(value: datetime, info: ValidationInfo) -> datetime:
    moment: datetime = field_rule(client_instant, value, info.field_name or "the date")
    return moment


# An instant a client sends (body field or query parameter): in UTC, within the years the platform takes.
Instant = Annotated[datetime, AfterValidator(_instant)]
# The same, with an offset required (D-REC's reservation dates).
AwareInstant = Annotated[AwareDatetime, AfterValidator(_instant)]
