"""Readings settings: the platform's common ones plus what the read rules and events need."""

from __future__ import annotations

from pydantic import Field

from opendrec_kit import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "readings"
    http_port: int = 8103

    # Annual yield (kWh per kWp per year) per country code for the plausibility bound, as JSON:
    # COUNTRY_YIELDS='{"IND": 1600, "NGA": 1700}'. A device's own yield wins, then the country's Active
    # configured yield (/api/yield/config), then this; the default is 2000.
    country_yields: dict[str, float] = Field(default_factory=dict)

    # Reads are judged against no more than this capacity (kW) and a yield of a year's hours (8760): a device
    # registered with an absurd one before devices refused it (DEVICE_MAX_CAPACITY_KW, the same setting) cannot
    # make any energy plausible (issue 12).
    device_max_capacity_kw: float = Field(default=1_000_000, gt=0, le=1e9)

    # A read.ingested event carries at most this many reads: Kafka refuses messages over 1 MiB
    # by default and one interval takes ~17 bytes of JSON (evenly spaced, consecutive), at worst
    # ~45 (History over years, huge values). A larger batch would go out in several events with
    # the same batch_id; the default announces any batch (at most 10,000 reads) in one.
    read_ingested_max_reads: int = Field(default=10_000, ge=1, le=20_000)

    # Group commit of single-read requests (services.ReadGroups, the way every D-REC client sends): the ones
    # arriving within READ_GROUP_WINDOW_MS of each other share one transaction; at most READ_GROUP_MAX_SIZE a
    # group, READ_GROUPS_CONCURRENT groups at once. READ_GROUPS=false: each request its own transaction.
    # One group at a time: those arriving while it commits make the next one, larger (README: less CPU a read and,
    # through the gateway, more reads/s at a lower p50 than two at once, 16 connections).
    read_groups: bool = True
    read_group_window_ms: float = Field(default=2.0, ge=0, le=100)
    read_group_max_size: int = Field(default=64, ge=1, le=1000)
    read_groups_concurrent: int = Field(default=1, ge=1, le=32)

    # Outbox rows here can be up to ~0.4 MB each (a whole batch of reads): relay fewer at a time.
    outbox_batch_size: int = 50

    # Bulk read import: whether this process works on jobs, and how often it looks for ones
    # it wasn't told about (uploaded to another replica, or left by a restart).
    import_worker: bool = True
    import_poll_interval_s: float = 5.0
    import_max_bytes: int = 100 * 1024 * 1024
