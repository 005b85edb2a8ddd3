"""Unit tests of the pure rules added for updates, listings and bulk onboarding."""

import io
from datetime import UTC, datetime

import pytest

from opendrec_devices import bulk, domain
from opendrec_devices.models import FIELD_COLUMNS, DeviceRegistration

KNOWN = list(FIELD_COLUMNS)
HEADER = ",".join(bulk.REQUIRED)


def test_deletion_refusal_names_every_reason():
    assert domain.deletion_refusal([], 0) is None
    assert domain.deletion_refusal([4, 9], 0) == "The device cannot be deleted: it is in active reservation(s) 4, 9"
    both = domain.deletion_refusal([4], 1500)
    assert "reservation(s) 4" in both and "certified energy (1500 Wh)" in both


def test_date_bounds():
    assert domain.parse_date_bound("2022-03-01") == datetime(2022, 3, 1, tzinfo=UTC)
    assert domain.parse_date_bound("2022-03-01", end_of_day=True) == datetime(
        2022, 3, 1, 23, 59, 59, 999999, tzinfo=UTC
    )
    assert domain.parse_date_bound("2022-03-01T05:30:00+05:30", end_of_day=True) == datetime(2022, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        domain.parse_date_bound("March")


def test_list_values_and_checks():
    assert domain.split_list(["IN, KE", "NG"]) == ["IN", "KE", "NG"]
    assert domain.split_list(None) == [] and domain.split_list(" , ") == []
    assert domain.check_each(domain.normalize_country, ["IN", "IND", "ke"]) == ["IND", "KEN"]
    with pytest.raises(ValueError) as err:
        domain.check_each(domain.normalize_country, ["XX", "IN", "YY"])
    assert "'XX'" in str(err.value) and "'YY'" in str(err.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (b"", "empty"),
        (b"\n\n", "empty"),
        (b"externalId;projectName\n", "lacks required column(s) address"),
        ((HEADER + ",externalid\n").encode(), "externalId appears twice"),
        (b"\xff\xfe" + HEADER.encode("utf-16-le"), "not UTF-8"),
    ],
)
def test_bad_files(text, fragment):
    with pytest.raises(bulk.BadFile, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        _header, rows = bulk.read_rows(io.BytesIO(text), KNOWN)
        list(rows)


def test_rows_are_read_lazily_with_bom_tabs_and_quoted_newlines():
    text = (
        "\ufeff"
        + HEADER.replace(",", "\t")
        + "\tNotes\n"
        + "\t".join(["a"] * 13)
        + "\n\n"
        + '"b\nc"'
        + "\tx" * 12
        + "\n"
    )
    header, rows = bulk.read_rows(io.BytesIO(text.encode()), KNOWN)
    assert header.warnings == ["column(s) ignored, not device fields: Notes"]
    first = next(rows)
    assert first[0] == 2 and first[1]["externalId"] == "a" and "Notes" not in first[1]
    second = next(rows)
    assert second[0] == 4 and second[1]["externalId"] == "b\nc"  # the blank line 3 is skipped


def test_judge_row_collects_every_error_and_warns():
    row = {
        "externalId": "x",
        "projectName": "p",
        "address": "a",
        "latitude": "1",
        "longitude": "2",
        "countryCode": "KE",
        "fuelCode": "ES100",
        "deviceTypeCode": "TC120",
        "capacity": "3",
        "commissioningDate": "2020-01-01",
        "gridInterconnection": "yes",
        "offTaker": "school",
        "yieldValue": "0",
    }
    ok = bulk.judge_row(row, DeviceRegistration)
    assert ok.errors == [] and ok.columns["grid_interconnection"] is True and ok.columns["off_taker"] == "School"
    assert len(ok.warnings) == 2
    bad = bulk.judge_row({**row, "capacity": "-1", "latitude": "x", "gridInterconnection": "maybe"}, DeviceRegistration)
    assert bad.columns is None and {e["field"] for e in bad.errors} == {"capacity", "latitude", "gridInterconnection"}
    short = bulk.judge_row({"__width__": 2, "__expected__": 12}, DeviceRegistration)
    assert short.errors[0]["message"] == "the row has 2 cells; the header has 12"
