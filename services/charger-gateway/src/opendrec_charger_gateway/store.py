"""SQL for the charger gateway (asyncpg): one function per query, parameters always bound."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from .domain import DeviceState, Link


class ChargerTaken(Exception):
    pass


# ---------------------------------------------------------------- device read model


async def lock_device(conn: asyncpg.Connection, device_id: int) -> None:
    """Events of one device are applied one transaction at a time: registered, updated and deleted come on three
    topics, read by three consumers at once, and each decides from what the others have stored."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"charger-gateway.device:{device_id}")


async def upsert_device(conn: asyncpg.Connection, device: DeviceState) -> bool:
    """The device as announced (registered or updated) at `state_at`; caller holds lock_device. False: nothing changed (the device
    was deleted, or the stored state is newer). Another live row holding the same external id is a device
    the owner deleted (its device.deleted may not have arrived yet: topics are not ordered)."""
    if await conn.fetchval("SELECT 1 FROM deleted_devices WHERE device_id = $1", device.device_id):
        return False
    stored_at = await conn.fetchval("SELECT state_at FROM devices WHERE device_id = $1", device.device_id)
    if stored_at is not None and stored_at > device.state_at:
        return False
    await conn.execute(
        "UPDATE devices SET deleted_at = now() "
        "WHERE organization_id = $1 AND external_id = $2 AND device_id <> $3 AND deleted_at IS NULL",
        device.organization_id,
        device.external_id,
        device.device_id,
    )
    await conn.execute(
        "INSERT INTO devices (device_id, external_id, organization_id, onboarded_at, state_at) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (device_id) DO UPDATE SET external_id = EXCLUDED.external_id, "
        "organization_id = EXCLUDED.organization_id, onboarded_at = EXCLUDED.onboarded_at, state_at = EXCLUDED.state_at "
        "WHERE devices.deleted_at IS NULL",
        device.device_id,
        device.external_id,
        device.organization_id,
        device.onboarded_at,
        device.state_at,
    )
    return True


async def delete_device(conn: asyncpg.Connection, device_id: int, deleted_at: datetime) -> int:
    """Remember the deletion (even of a device not known yet), mark the device deleted and remove its
    charger links (their chargers are no longer polled); returns how many links were removed."""
    await conn.execute(
        "INSERT INTO deleted_devices (device_id, deleted_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        device_id,
        deleted_at,
    )
    await conn.execute(
        "UPDATE devices SET deleted_at = $2 WHERE device_id = $1 AND deleted_at IS NULL", device_id, deleted_at
    )
    status = await conn.execute("DELETE FROM charger_links WHERE device_id = $1", device_id)
    return int(status.split()[-1])


async def find_device(conn: asyncpg.Connection, organization_id: int, external_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT device_id, external_id, organization_id FROM devices "
        "WHERE organization_id = $1 AND external_id = $2 AND deleted_at IS NULL",
        organization_id,
        external_id,
    )


# ---------------------------------------------------------------- links

_LINK_COLUMNS = "l.charger_id, l.device_id, d.external_id, l.organization_id, l.linked_at, l.poll_cursor, l.ownership"
_ANSWER_COLUMNS = f"{_LINK_COLUMNS}, l.kind, l.ownership_reason, l.ownership_checked_at"


async def insert_link(
    conn: asyncpg.Connection,
    charger_id: str,
    device_id: int,
    organization_id: int,
    linked_by: int,
    kind: str = "kazam",
    ocpp_password_hash: bytes | None = None,
) -> asyncpg.Record:
    """Link a charger (its ownership proven: Kazam's answer for the organization's credentials, or an OCPP charge
    point's own password); its cursor starts at the link time. A link whose ownership was refused gives way to it.
    Raises ChargerTaken if the charger is linked already."""
    await conn.execute("DELETE FROM charger_links WHERE charger_id = $1 AND ownership = 'refused'", charger_id)
    try:
        await conn.execute(
            "INSERT INTO charger_links (charger_id, device_id, organization_id, linked_by, linked_at, poll_cursor, kind, "
            "ocpp_password_hash, ownership) "
            "VALUES ($1, $2, $3, $4, now(), floor(extract(epoch FROM now()))::bigint, $5, $6, 'verified')",
            charger_id,
            device_id,
            organization_id,
            linked_by,
            kind,
            ocpp_password_hash,
        )
    except asyncpg.UniqueViolationError as exc:
        raise ChargerTaken(charger_id) from exc
    return await conn.fetchrow(
        f"SELECT {_ANSWER_COLUMNS} FROM charger_links l JOIN devices d USING (device_id) WHERE l.charger_id = $1",
        charger_id,
    )


async def list_links(
    conn: asyncpg.Connection, organization_ids: list[int] | None, limit: int, offset: int
) -> list[asyncpg.Record]:
    """One page of these organizations' links (every link when organization_ids is None), by charger id."""
    return await conn.fetch(
        f"SELECT {_ANSWER_COLUMNS} FROM charger_links l JOIN devices d USING (device_id) "
        "WHERE $1::bigint[] IS NULL OR l.organization_id = ANY($1) ORDER BY l.charger_id LIMIT $2 OFFSET $3",
        organization_ids,
        limit,
        offset,
    )


async def count_links(conn: asyncpg.Connection, organization_ids: list[int] | None) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM charger_links WHERE $1::bigint[] IS NULL OR organization_id = ANY($1)", organization_ids
    )


async def delete_link(conn: asyncpg.Connection, charger_id: str, organization_ids: list[int] | None) -> bool:
    """Remove a link of one of these organizations (any when None); False when there is none."""
    status = await conn.execute(
        "DELETE FROM charger_links WHERE charger_id = $1 AND ($2::bigint[] IS NULL OR organization_id = ANY($2))",
        charger_id,
        organization_ids,
    )
    return status != "DELETE 0"


async def all_links(conn: asyncpg.Connection) -> list[Link]:
    """The Kazam chargers' links the poller asks Kazam about, verified or still to be checked (OCPP charge points
    report themselves; a link whose ownership was refused is not polled)."""
    rows = await conn.fetch(
        f"SELECT {_LINK_COLUMNS} FROM charger_links l JOIN devices d USING (device_id) "
        "WHERE l.kind = 'kazam' AND l.ownership <> 'refused'"
    )
    return [Link(**dict(r)) for r in rows]


async def lock_links(conn: asyncpg.Connection, charger_ids: list[str]) -> list[Link]:
    """The links as they are now, locked until the transaction ends (a concurrent unlink or re-link waits)."""
    rows = await conn.fetch(
        f"SELECT {_LINK_COLUMNS} FROM charger_links l JOIN devices d USING (device_id) "
        "WHERE l.charger_id = ANY($1::text[]) FOR UPDATE OF l",
        charger_ids,
    )
    return [Link(**dict(r)) for r in rows]


async def set_ownership(
    conn: asyncpg.Connection, charger_id: str, linked_at: datetime, ownership: str, reason: str | None
) -> bool:
    """The outcome of checking an unverified link (verified or refused), if it is still that link."""
    status = await conn.execute(
        "UPDATE charger_links SET ownership = $3, ownership_reason = $4, ownership_checked_at = now() "
        "WHERE charger_id = $1 AND linked_at = $2 AND ownership = 'unverified'",
        charger_id,
        linked_at,
        ownership,
        reason,
    )
    return status != "UPDATE 0"


async def check_refused_links_again(conn: asyncpg.Connection, organization_id: int) -> int:
    """The organization registered new credentials: its refused links are checked again on the next poll."""
    status = await conn.execute(
        "UPDATE charger_links SET ownership = 'unverified' WHERE organization_id = $1 AND ownership = 'refused'",
        organization_id,
    )
    return int(status.split()[-1])


async def set_cursors(conn: asyncpg.Connection, cursors: dict[str, int]) -> None:
    await conn.execute(
        "UPDATE charger_links l SET poll_cursor = c.cursor "
        "FROM unnest($1::text[], $2::bigint[]) AS c(charger_id, cursor) WHERE l.charger_id = c.charger_id",
        list(cursors),
        list(cursors.values()),
    )


# ---------------------------------------------------------------- transactions


async def record_transactions(conn: asyncpg.Connection, records: list[tuple]) -> set[str]:
    """Record transactions not seen before; returns the txn_ids that are new."""
    if not records:
        return set()
    columns = list(zip(*records, strict=True))
    rows = await conn.fetch(
        "INSERT INTO kazam_transactions "
        "(txn_id, charger_id, device_id, start_time, end_time, value_wh, outcome, reason) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[], "
        "$6::bigint[], $7::text[], $8::text[]) "
        "ON CONFLICT (txn_id) DO NOTHING RETURNING txn_id",
        *[list(c) for c in columns],
    )
    return {r["txn_id"] for r in rows}


async def count_transactions(conn: asyncpg.Connection, outcome: str) -> int:
    return await conn.fetchval("SELECT count(*) FROM kazam_transactions WHERE outcome = $1", outcome)


async def count_transactions_since(conn: asyncpg.Connection, seconds: float) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM kazam_transactions WHERE recorded_at > now() - make_interval(secs => $1)", seconds
    )


async def list_transactions(conn: asyncpg.Connection, charger_id: str, limit: int, offset: int) -> list[asyncpg.Record]:
    """One page of the charger's recorded transactions, newest start first."""
    return await conn.fetch(
        "SELECT txn_id, device_id, start_time, end_time, value_wh, outcome, reason, recorded_at, refused_reasons, "
        "refused_at FROM kazam_transactions WHERE charger_id = $1 "
        "ORDER BY start_time DESC NULLS LAST, txn_id LIMIT $2 OFFSET $3",
        charger_id,
        limit,
        offset,
    )


async def count_charger_transactions(conn: asyncpg.Connection, charger_id: str) -> int:
    return await conn.fetchval("SELECT count(*) FROM kazam_transactions WHERE charger_id = $1", charger_id)


async def mark_refused(conn: asyncpg.Connection, txn_id: str, reasons: str) -> bool:
    """Readings refused the read of a submitted transaction (`reasons`: JSON text). False: not ours."""
    status = await conn.execute(
        "UPDATE kazam_transactions SET refused_reasons = $2::jsonb, refused_at = now() "
        "WHERE txn_id = $1 AND outcome = 'submitted'",
        txn_id,
        reasons,
    )
    return status != "UPDATE 0"


# ---------------------------------------------------------------- Kazam accounts (per organization)

_ACCOUNT_COLUMNS = (
    "organization_id, base_url, token_encrypted, key_id, status, status_reason, status_at, registered_at, updated_at"
)


async def upsert_account(
    conn: asyncpg.Connection,
    organization_id: int,
    base_url: str | None,
    token_encrypted: bytes,
    key_id: str,
    registered_by: int,
) -> asyncpg.Record:
    """Register or replace the organization's Kazam credentials; the account is active again."""
    return await conn.fetchrow(
        "INSERT INTO kazam_accounts (organization_id, base_url, token_encrypted, key_id, registered_by) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (organization_id) DO UPDATE SET base_url = EXCLUDED.base_url, "
        "token_encrypted = EXCLUDED.token_encrypted, key_id = EXCLUDED.key_id, registered_by = EXCLUDED.registered_by, "
        "status = 'active', status_reason = NULL, status_at = now(), updated_at = now() "
        f"RETURNING {_ACCOUNT_COLUMNS}",
        organization_id,
        base_url,
        token_encrypted,
        key_id,
        registered_by,
    )


async def get_account(conn: asyncpg.Connection, organization_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_ACCOUNT_COLUMNS} FROM kazam_accounts WHERE organization_id = $1", organization_id
    )


async def accounts_of(conn: asyncpg.Connection, organization_ids: list[int]) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {_ACCOUNT_COLUMNS} FROM kazam_accounts WHERE organization_id = ANY($1::bigint[])", organization_ids
    )


async def delete_account(conn: asyncpg.Connection, organization_id: int) -> bool:
    status = await conn.execute("DELETE FROM kazam_accounts WHERE organization_id = $1", organization_id)
    return status != "DELETE 0"


async def mark_needs_credentials(
    conn: asyncpg.Connection, organization_id: int, token_encrypted: bytes, reason: str
) -> bool:
    """Kazam refused this token (401): the account needs new credentials. Only if the token is still the one
    that was refused (credentials registered meanwhile stay active)."""
    status = await conn.execute(
        "UPDATE kazam_accounts SET status = 'needs_credentials', status_reason = $3, status_at = now() "
        "WHERE organization_id = $1 AND token_encrypted = $2 AND status = 'active'",
        organization_id,
        token_encrypted,
        reason,
    )
    return status != "UPDATE 0"


async def accounts_to_rotate(conn: asyncpg.Connection, key_id: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT organization_id, token_encrypted FROM kazam_accounts WHERE key_id <> $1 LIMIT $2", key_id, limit
    )


async def set_encrypted_token(
    conn: asyncpg.Connection, organization_id: int, old: bytes, new: bytes, key_id: str
) -> None:
    await conn.execute(
        "UPDATE kazam_accounts SET token_encrypted = $3, key_id = $4 WHERE organization_id = $1 AND token_encrypted = $2",
        organization_id,
        old,
        new,
        key_id,
    )


# ---------------------------------------------------------------- circuit breakers (per Kazam account)


async def breaker_allows(conn: asyncpg.Connection, account: str, cooldown_s: float) -> bool:
    """Whether the account may be asked now: its breaker is closed, or open past its cool-down and this caller claims
    the one trial request (the claim moves the cool-down on, so other replicas and rounds wait for its outcome:
    concurrent claims are serialized by the row lock, and the loser sees the moved cool-down)."""
    return await conn.fetchval(
        "WITH trial AS (UPDATE kazam_breakers SET open_until = now() + make_interval(secs => $2) "
        "WHERE account = $1 AND open_until <= now() RETURNING 1) "
        "SELECT EXISTS (SELECT FROM trial) "
        "OR NOT EXISTS (SELECT FROM kazam_breakers WHERE account = $1 AND open_until IS NOT NULL)",
        account,
        cooldown_s,
    )


async def breaker_failed(conn: asyncpg.Connection, account: str, failures: int, cooldown_s: float) -> None:
    """One more request in a row that stayed unavailable: from `failures` on, the breaker opens for the cool-down."""
    await conn.execute(
        "INSERT INTO kazam_breakers AS b (account, failed, open_until) "
        "VALUES ($1, 1, CASE WHEN $2 <= 1 THEN now() + make_interval(secs => $3) END) "
        "ON CONFLICT (account) DO UPDATE SET failed = b.failed + 1, open_until = CASE "
        "WHEN b.failed + 1 >= $2 THEN now() + make_interval(secs => $3) ELSE b.open_until END",
        account,
        failures,
        cooldown_s,
    )


async def breaker_closed(conn: asyncpg.Connection, account: str) -> None:
    """Kazam answered the account: its breaker closes (no row)."""
    await conn.execute("DELETE FROM kazam_breakers WHERE account = $1", account)


async def count_open_breakers(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM kazam_breakers WHERE open_until > now()")


async def count_links_by_ownership(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT ownership, count(*) AS n FROM charger_links WHERE kind = 'kazam' GROUP BY 1")
    return {r["ownership"]: r["n"] for r in rows}


async def find_link(
    conn: asyncpg.Connection, charger_id: str, organization_ids: list[int] | None
) -> asyncpg.Record | None:
    """The charger's link if it is in one of these organizations (any when None)."""
    return await conn.fetchrow(
        f"SELECT {_ANSWER_COLUMNS} FROM charger_links l JOIN devices d USING (device_id) "
        "WHERE l.charger_id = $1 AND ($2::bigint[] IS NULL OR l.organization_id = ANY($2))",
        charger_id,
        organization_ids,
    )


# ---------------------------------------------------------------- OCPP charge points


async def ocpp_link(conn: asyncpg.Connection, charger_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    """The OCPP charge point's link (with its password hash); locked until the transaction ends if `lock`."""
    return await conn.fetchrow(
        f"SELECT {_LINK_COLUMNS}, l.ocpp_password_hash FROM charger_links l JOIN devices d USING (device_id) "
        "WHERE l.charger_id = $1 AND l.kind = 'ocpp'" + (" FOR UPDATE OF l" if lock else ""),
        charger_id,
    )


async def heard_from(conn: asyncpg.Connection, charger_id: str) -> None:
    await conn.execute(
        "INSERT INTO ocpp_charge_points (charger_id) VALUES ($1) "
        "ON CONFLICT (charger_id) DO UPDATE SET last_heard_at = now()",
        charger_id,
    )


async def record_boot(
    conn: asyncpg.Connection, charger_id: str, vendor: str, model: str, firmware_version: str | None
) -> None:
    await conn.execute(
        "INSERT INTO ocpp_charge_points (charger_id, vendor, model, firmware_version, booted_at) "
        "VALUES ($1, $2, $3, $4, now()) ON CONFLICT (charger_id) DO UPDATE SET vendor = $2, model = $3, "
        "firmware_version = $4, booted_at = now(), last_heard_at = now()",
        charger_id,
        vendor,
        model,
        firmware_version,
    )


async def record_connector_status(
    conn: asyncpg.Connection,
    charger_id: str,
    connector_id: int,
    status: str,
    error_code: str,
    info: str | None,
    at: datetime,
) -> None:
    """The connector's status, unless a later one is stored (StatusNotifications may be resent late)."""
    await conn.execute(
        "INSERT INTO ocpp_connectors (charger_id, connector_id, status, error_code, info, status_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (charger_id, connector_id) DO UPDATE SET status = $3, "
        "error_code = $4, info = $5, status_at = $6 WHERE ocpp_connectors.status_at <= $6",
        charger_id,
        connector_id,
        status,
        error_code,
        info,
        at,
    )


async def connector_statuses(conn: asyncpg.Connection, charger_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT connector_id, status, error_code, info, status_at FROM ocpp_connectors WHERE charger_id = $1 "
        "ORDER BY connector_id",
        charger_id,
    )


async def charge_point(conn: asyncpg.Connection, charger_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM ocpp_charge_points WHERE charger_id = $1", charger_id)


async def start_transaction(
    conn: asyncpg.Connection,
    charger_id: str,
    device_id: int,
    connector_id: int,
    id_tag: str,
    meter_start_wh: int,
    started_at: datetime,
) -> tuple[int, bool]:
    """(transaction id, new?): the same StartTransaction sent again gets the id it got the first time."""
    new_id = await conn.fetchval(
        "INSERT INTO ocpp_transactions (charger_id, device_id, connector_id, id_tag, meter_start_wh, started_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (charger_id, connector_id, started_at, meter_start_wh) "
        "DO NOTHING RETURNING transaction_id",
        charger_id,
        device_id,
        connector_id,
        id_tag,
        meter_start_wh,
        started_at,
    )
    if new_id is not None:
        return new_id, True
    existing = await conn.fetchval(
        "SELECT transaction_id FROM ocpp_transactions "
        "WHERE charger_id = $1 AND connector_id = $2 AND started_at = $3 AND meter_start_wh = $4",
        charger_id,
        connector_id,
        started_at,
        meter_start_wh,
    )
    return existing, False


async def open_transactions_before(
    conn: asyncpg.Connection, charger_id: str, connector_id: int, started_at: datetime
) -> list[asyncpg.Record]:
    """Transactions of the connector still open that started before `started_at` (left open by a lost
    connection: the connector has started another one since), locked."""
    return await conn.fetch(
        "SELECT * FROM ocpp_transactions WHERE charger_id = $1 AND connector_id = $2 AND status = 'open' "
        "AND started_at < $3 ORDER BY started_at FOR UPDATE",
        charger_id,
        connector_id,
        started_at,
    )


async def lock_transaction(conn: asyncpg.Connection, charger_id: str, transaction_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM ocpp_transactions WHERE transaction_id = $1 AND charger_id = $2 FOR UPDATE",
        transaction_id,
        charger_id,
    )


async def close_transaction(
    conn: asyncpg.Connection,
    transaction_id: int,
    status: str,
    meter_stop_wh: int | None,
    stopped_at: datetime | None,
    outcome: str,
    reason: str | None,
) -> None:
    await conn.execute(
        "UPDATE ocpp_transactions SET status = $2, meter_stop_wh = $3, stopped_at = $4, outcome = $5, reason = $6 "
        "WHERE transaction_id = $1",
        transaction_id,
        status,
        meter_stop_wh,
        stopped_at,
        outcome,
        reason,
    )


async def record_meter(
    conn: asyncpg.Connection, charger_id: str, transaction_id: int, meter_wh: int, at: datetime
) -> None:
    await conn.execute(
        "UPDATE ocpp_transactions SET last_meter_wh = $3, last_meter_at = $4 WHERE transaction_id = $1 "
        "AND charger_id = $2 AND status = 'open' AND (last_meter_at IS NULL OR last_meter_at <= $4)",
        transaction_id,
        charger_id,
        meter_wh,
        at,
    )


async def ocpp_transactions(conn: asyncpg.Connection, charger_id: str, limit: int, offset: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM ocpp_transactions WHERE charger_id = $1 ORDER BY started_at DESC, transaction_id DESC "
        "LIMIT $2 OFFSET $3",
        charger_id,
        limit,
        offset,
    )


async def count_ocpp_transactions(conn: asyncpg.Connection, charger_id: str) -> int:
    return await conn.fetchval("SELECT count(*) FROM ocpp_transactions WHERE charger_id = $1", charger_id)


async def mark_ocpp_refused(conn: asyncpg.Connection, charger_id: str, transaction_id: int, reasons: str) -> bool:
    status = await conn.execute(
        "UPDATE ocpp_transactions SET refused_reasons = $3::jsonb "
        "WHERE charger_id = $1 AND transaction_id = $2 AND outcome = 'submitted'",
        charger_id,
        transaction_id,
        reasons,
    )
    return status != "UPDATE 0"
