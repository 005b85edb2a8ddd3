"""read.ingested v2: intervals in columns; v1 events (a list of read objects) still read, upcast."""

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pydantic import ValidationError

from opendrec_contracts import Envelope, ReadIngested, parse_event

T = datetime(2025, 3, 1, 10, 0, 0, 500_001, tzinfo=UTC)
H = timedelta(hours=1)
IDS = {"batch_id": uuid.uuid4(), "device_id": 7, "external_id": "roof-7", "organization_id": 3, "read_type": "Delta"}


def test_consecutive_intervals_leave_the_starts_out_and_come_back_whole():
    starts, ends = [T, T + H, T + 2 * H], [T + H, T + 2 * H, T + 3 * H]
    columns = ReadIngested.columns(starts, ends, [5, 0, 7])
    assert columns == {
        "origin": T,
        "ends_us": [3_600_000_000, 7_200_000_000, 10_800_000_000],
        "values_wh": [5, 0, 7],
        "starts_us": None,
    }
    event = ReadIngested(**IDS, **columns)
    assert event.intervals() == [(T, T + H, 5), (T + H, T + 2 * H, 0), (T + 2 * H, T + 3 * H, 7)]


def test_intervals_with_gaps_or_out_of_order_keep_their_starts():
    starts = [T + 5 * H, T, T + 2 * H + timedelta(microseconds=1)]
    ends = [T + 6 * H, T + H, T + 3 * H]
    event = ReadIngested(**IDS, **ReadIngested.columns(starts, ends, [1, 2, 3]))
    assert event.origin == T and event.starts_us is not None
    assert event.intervals() == list(zip(starts, ends, [1, 2, 3], strict=False))


def test_the_wire_form_is_a_few_bytes_a_read():
    n = 10_000
    starts = [T + i * timedelta(minutes=1) for i in range(n)]
    event = ReadIngested(**IDS, **ReadIngested.columns(starts, [s + timedelta(minutes=1) for s in starts], [123] * n))
    assert len(event.model_dump_json()) < 20 * n  # v1 took ~75 bytes a read


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"values_wh": [1, 2]}, "one entry per interval"),
        ({"starts_us": [0]}, "one entry per interval"),
        ({"values_wh": [1, -2, 3]}, "must not be negative"),
        ({"ends_us": [10, 5, 20]}, "end before it starts"),  # consecutive: the second would run backwards
        ({"ends_us": [-1, 10, 20]}, "end before it starts"),  # the first would end before the origin
        ({"starts_us": [0, 30, 10]}, "end before it starts"),
        ({"ends_us": []}, "at least 1"),
    ],
)
def test_an_event_with_broken_intervals_is_refused(change, message):
    payload = {**IDS, "origin": T, "ends_us": [10, 20, 30], "values_wh": [1, 2, 3], **change}
    with pytest.raises(ValidationError, match=message):
        ReadIngested(**payload)


def test_a_v1_event_is_upcast_to_the_same_intervals():
    v1 = {
        "event_id": str(uuid.uuid4()), "type": "read.ingested", "version": 1, "occurred_at": "2025-03-01T12:00:00Z",
        "producer": "readings",
        "payload": {
            "batch_id": str(IDS["batch_id"]), "device_id": 7, "external_id": "roof-7", "organization_id": 3, "read_type": "History",
            "reads": [
                {"start": "2025-03-01T10:00:00.500001Z", "end": "2025-03-01T11:00:00.500001Z", "value_wh": 40},
                {"start": "2025-03-01T12:00:00.500001Z", "end": "2025-03-01T13:00:00.500001Z", "value_wh": 60},
            ],
        },
    }  # fmt: skip
    event = parse_event(Envelope.model_validate_json(orjson.dumps(v1)))
    assert isinstance(event, ReadIngested) and event.read_type == "History"
    assert event.intervals() == [(T, T + H, 40), (T + 2 * H, T + 3 * H, 60)]


def test_a_v1_read_without_a_start_is_an_instant():
    # v1 allowed a read without a start (certificates count it whole when its time is in a window).
    payload = {
        **IDS,
        "batch_id": str(IDS["batch_id"]),
        "reads": [{"start": None, "end": "2025-03-01T10:00:00.500001Z", "value_wh": 9}],
    }
    envelope = Envelope(type="read.ingested", version=1, producer="readings", payload=payload)
    assert parse_event(envelope).intervals() == [(T, T, 9)]
