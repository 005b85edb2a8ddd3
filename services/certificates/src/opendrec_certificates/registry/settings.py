"""The registry's settings (environment, as the service's): read once per process."""

from __future__ import annotations

from functools import cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class RegistrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # The first part of every serial number and the inventory's Registry.Value (the seed's "IREC").
    registry_prefix: str = "DREC"
    registry_description: str = "D-REC"  # the inventory's Registry.Description (the seed's "I-REC")
    # Whether a sender may hand energy over at once (`"direct": true`), without the receiver accepting it.
    registry_direct_transfers: bool = False


@cache
def registry_settings() -> RegistrySettings:
    """The route dependency (tests override it with `app.dependency_overrides`)."""
    return RegistrySettings()
