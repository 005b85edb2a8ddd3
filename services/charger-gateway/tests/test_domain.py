"""Kazam transaction -> read rules, without I/O."""

from datetime import UTC, date, datetime

import pytest

from opendrec_charger_gateway import domain
from opendrec_charger_gateway.credentials import TokenCipher, UnreadableToken
from opendrec_charger_gateway.domain import InvalidTransaction, Link

LINKED_AT = datetime(2022, 9, 19, 12, 0, 0, 500000, tzinfo=UTC)  # 1663588800.5
LINK = Link("3654e5", device_id=7, external_id="ev-1", organization_id=3, linked_at=LINKED_AT, poll_cursor=1663588800)

# "Get Transactions" example of the Kazam collection (finished) ...
FINISHED = {
    "txn_id": "1234567890",
    "connector_id": 0,
    "device_id": "3654e5",
    "device_org": "kazam",
    "initiated_from": "kazam",
    "segment": "workplace",
    "subsegment": "corporate_office",
    "user_id": "9999999999",
    "device_network_type": 1,
    "end_time": 1663614985,
    "power": 687,
    "start_time": 1663594369,
    "total_usage": 150.02,
    "tx_status": 0,
    "usage_limit": 150,
    "voltage": 0,
    "end_reason": "limit_reached",
    "payment_initialised": False,
}
# ... and the shape of its "Private Transactions Excluded" example (still charging)
ONGOING = {
    "txn_id": "1234567891",
    "ack": True,
    "connector_id": 0,
    "device_id": "3654e5",
    "device_org": "kazam",
    "initiated_from": "kazam",
    "segment": "fleet",
    "subsegment": "customer_hub",
    "user_id": "9999999999",
    "device_network_type": 0,
    "power": 3300,
    "start_time": 1663620000,
    "total_usage": 12.5,
    "tx_status": 1,
}


def test_finished_and_ongoing():
    assert domain.is_finished(FINISHED)
    assert not domain.is_finished(ONGOING)
    assert not domain.is_finished({**FINISHED, "tx_status": 1})
    assert not domain.is_finished({**FINISHED, "end_time": None})
    assert domain.is_finished({**FINISHED, "end_time": "1663614985", "tx_status": "0"})  # quoted numbers


@pytest.mark.parametrize(
    ("usage", "wh"), [(150.02, 150), (1943.64, 1944), (0.5, 1), (0.04, 0), ("12.5", 13), (0, 0), (2.675, 3)]
)
def test_total_usage_is_wh_rounded_half_up(usage, wh):
    assert domain.usage_wh(usage) == wh


@pytest.mark.parametrize("usage", [None, -1, "lots", float("nan"), True])
def test_unusable_usage(usage):
    with pytest.raises(InvalidTransaction):
        domain.usage_wh(usage)


def test_a_finished_transaction_is_one_delta_read():
    read = domain.read_for(FINISHED, LINK)
    assert read.submission_id == "kazam:1234567890"
    assert (read.device_id, read.external_id, read.organization_id) == (7, "ev-1", 3)
    assert (read.read_type, read.source) == ("Delta", "kazam")
    assert len(read.reads) == 1
    r = read.reads[0]
    assert r.start == datetime.fromtimestamp(1663594369, UTC) and r.end == datetime.fromtimestamp(1663614985, UTC)
    assert r.value_wh == 150


def test_transactions_that_cannot_be_reads():
    with pytest.raises(InvalidTransaction, match="before start_time"):
        domain.read_for({**FINISHED, "start_time": 1663614986}, LINK)
    with pytest.raises(InvalidTransaction, match="missing"):
        domain.read_for({**FINISHED, "start_time": None}, LINK)


def test_only_transactions_ending_after_the_link_count():
    assert domain.counts_for({**FINISHED, "end_time": 1663588800}, LINK)  # in the link's own second
    assert not domain.counts_for({**FINISHED, "end_time": 1663588799}, LINK)
    assert not domain.counts_for(ONGOING, LINK)


def test_cursor_stops_at_the_oldest_running_transaction():
    assert domain.next_cursor(2000, []) == 2000
    assert domain.next_cursor(2000, [1500, 1800]) == 1500
    assert domain.query_window(2000, 2600, 3600) == (-1600, 2600)


def test_links_sharing_a_cursor_share_requests():
    links = [Link(f"c{i}", i, f"e{i}", 1, LINKED_AT, 100 if i < 5 else 200) for i in range(8)]
    groups = domain.group_by_cursor(links, size=2)
    assert [(cursor, [link.charger_id for link in group]) for cursor, group in groups] == [
        (100, ["c0", "c1"]),
        (100, ["c2", "c3"]),
        (100, ["c4"]),
        (200, ["c5", "c6"]),
        (200, ["c7"]),
    ]


def test_reads_of_a_poll_go_out_oldest_first():
    # Kazam lists transactions newest first; readings takes a charger's Delta reads only in time order.
    newest = {**FINISHED, "txn_id": "newest", "start_time": 1663620000, "end_time": 1663621000}
    middle = {**FINISHED, "txn_id": "middle", "start_time": 1663615000, "end_time": 1663616000}
    outcome = domain.plan([newest, middle, FINISHED], {LINK.charger_id: LINK}, window_end=1663630000)
    assert list(outcome.reads) == ["1234567890", "middle", "newest"]
    assert [r[0] for r in outcome.records] == ["1234567890", "middle", "newest"]


def test_plan_sorts_a_poll():
    other = Link("ggw52e", 8, "ev-2", 3, LINKED_AT, 1663588800)
    links = {LINK.charger_id: LINK, other.charger_id: other}
    transactions = [
        FINISHED,
        FINISHED,  # a page overlap: the same transaction twice
        ONGOING,
        {**FINISHED, "txn_id": "old", "start_time": 1663580000, "end_time": 1663585000},  # ended before the link
        {**FINISHED, "txn_id": "bad", "total_usage": -4},
        {**FINISHED, "txn_id": "x", "device_id": "not-linked"},
        {**FINISHED, "txn_id": "other", "device_id": "ggw52e", "total_usage": 1000},
    ]
    outcome = domain.plan(transactions, links, window_end=1663630000)
    assert set(outcome.reads) == {"1234567890", "other"}
    assert outcome.reads["other"].device_id == 8
    assert [(r[0], r[6]) for r in outcome.records] == [
        ("1234567890", "submitted"),
        ("bad", "skipped"),
        ("other", "submitted"),
    ]
    assert "total_usage" in outcome.records[1][7]
    # the running transaction holds its charger's cursor back; the other charger moves to the window end
    assert outcome.cursors == {"3654e5": 1663620000, "ggw52e": 1663630000}
    assert outcome.ignored == 3


# -- issue 19: sessions, state words, IST days, the breaker, encrypted tokens ---------------------------------


def test_a_finished_transaction_is_a_charging_session_over_its_own_interval():
    read = domain.read_for(FINISHED, LINK)
    assert read.charging_sessions is True
    [r] = read.reads
    assert (r.start, r.end) == (
        datetime.fromtimestamp(FINISHED["start_time"], UTC),
        datetime.fromtimestamp(FINISHED["end_time"], UTC),
    )


def test_a_session_without_energy_or_duration_is_skipped_with_its_reason():
    with pytest.raises(domain.InvalidTransaction, match="no energy delivered"):
        domain.read_for({**FINISHED, "total_usage": 0.04}, LINK)
    with pytest.raises(domain.InvalidTransaction, match="no duration"):
        domain.read_for({**FINISHED, "start_time": FINISHED["end_time"]}, LINK)


def test_charge_states_have_the_collections_words():
    assert domain.charge_state_name("kazam", 0) == "idle"
    assert domain.charge_state_name("kazam", 12) == "no mains"
    assert domain.charge_state_name("ocpp", 9) == "preparing"
    assert domain.charge_state_name("kazam", 7) == "unknown (7)"
    assert domain.availability({"protocol": "kazam", "charge_state": 0, "network": False}) == "Available via Bluetooth"
    assert domain.availability({"protocol": "ocpp", "charge_state": 13, "network": True}) == "Busy"
    assert domain.availability({"protocol": "ocpp", "charge_state": 0, "network": False}) == "Not Available"


def test_uptime_days_start_at_midnight_ist():
    start, end = domain.ist_day_window(date(2026, 12, 1), date(2026, 12, 1))
    assert datetime.fromtimestamp(start, UTC) == datetime(2026, 11, 30, 18, 30, tzinfo=UTC)
    assert end - start == 86_400
    with pytest.raises(ValueError, match="before"):
        domain.ist_day_window(date(2026, 12, 2), date(2026, 12, 1))
    with pytest.raises(ValueError, match="366"):
        domain.ist_day_window(date(2024, 1, 1), date(2026, 1, 1))
    for first, last in ((date(1, 1, 1), date(1, 1, 2)), (date(9999, 12, 30), date(9999, 12, 31))):
        with pytest.raises(ValueError, match="between"):
            domain.ist_day_window(first, last)


def test_wrong_passwords_hold_their_address_back_with_a_growing_backoff_and_never_another_address():
    throttle = domain.PasswordThrottle(base_s=1, max_s=8)
    assert throttle.admit("10.0.0.1", 0) == 0
    assert throttle.admit("10.0.0.1", 0) == 1  # one check at a time per address
    throttle.checked("CP-1", "10.0.0.1", False, 0)
    assert throttle.admit("10.0.0.1", 0.5) == 0.5  # held back 1 s, refused before any check
    waits = []
    for n in range(1, 6):  # each wrong password doubles the wait, up to the maximum
        now = 10.0 * n
        assert throttle.admit("10.0.0.1", now) == 0
        throttle.checked("CP-1", "10.0.0.1", False, now)
        waits.append(throttle.admit("10.0.0.1", now))
    assert waits == [2, 4, 8, 8, 8]
    # The real charge point, elsewhere, is checked at once and connects.
    assert throttle.admit("10.9.9.9", 50) == 0
    throttle.checked("CP-1", "10.9.9.9", True, 50)
    # A new address guessing CP-1 waits as long as CP-1 was guessed (6 wrong passwords: the maximum).
    assert throttle.admit("10.0.0.2", 51) == 0
    throttle.checked("CP-1", "10.0.0.2", False, 51)
    assert throttle.admit("10.0.0.2", 51) == 8
    # A right password clears its address; a check that could not be made counts nothing.
    assert throttle.admit("10.0.0.1", 100) == 0
    throttle.checked("CP-1", "10.0.0.1", True, 100)
    assert throttle.admit("10.0.0.1", 100) == 0
    throttle.released("10.0.0.1")
    assert throttle.admit("10.0.0.1", 100) == 0
    # Failures long past are forgotten.
    throttle.checked("CP-1", "10.0.0.1", False, 100)
    assert throttle.admit("10.0.0.3", 10_000) == 0
    throttle.checked("CP-1", "10.0.0.3", False, 10_000)
    assert throttle.admit("10.0.0.3", 10_000) == 1


def test_the_throttle_keeps_a_bounded_number_of_addresses():
    throttle = domain.PasswordThrottle(base_s=1, max_s=8, max_entries=3)
    for n in range(10):
        address = f"10.0.0.{n}"
        assert throttle.admit(address, n) == 0
        throttle.checked("CP-1", address, False, n)
    assert list(throttle.addresses) == ["10.0.0.7", "10.0.0.8", "10.0.0.9"]
    assert len(throttle.ids) == 1


def test_tokens_are_encrypted_and_rotated_to_the_first_key():
    old = TokenCipher("old-key")
    encrypted, key = old.encrypt("secret-token")
    assert b"secret-token" not in encrypted and key == old.current
    both = TokenCipher("new-key,old-key")
    assert both.decrypt(encrypted) == "secret-token"
    rotated, new_key = both.rotate(encrypted)
    assert new_key == both.current != key and TokenCipher("new-key").decrypt(rotated) == "secret-token"
    with pytest.raises(UnreadableToken):
        TokenCipher("other-key").decrypt(encrypted)
