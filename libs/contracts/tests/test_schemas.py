"""The committed schemas are a promise to every consumer: these tests hold the models to it."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import Field

from opendrec_contracts import (
    EVENTS,
    DeviceRegistered,
    Envelope,
    UnknownEvent,
    envelope_for,
    parse_event,
    registry,
)
from opendrec_contracts.events import Event, MeterRead
from opendrec_contracts.schemas import breaking_changes, check_committed, current_schema, write_all
from opendrec_contracts.testing import device_registered


def test_every_model_matches_its_committed_schema():
    assert check_committed() == []


def test_missing_committed_schema_is_reported(tmp_path):
    problems = check_committed(tmp_path)
    assert len(problems) == len(EVENTS)
    assert all("no committed schema" in p for p in problems)


def test_written_schemas_are_the_committed_ones(tmp_path):
    write_all(tmp_path)
    for path in tmp_path.iterdir():
        committed = registry.__file__.rsplit("/", 1)[0] + "/schemas/" + path.name
        assert json.loads(path.read_text()) == json.loads(Path(committed).read_text()), path.name


class _Thing(Event):
    TYPE: ClassVar[str] = "thing.happened"
    KEY: ClassVar[str] = "thing_id"


class _Old(_Thing):
    thing_id: int
    label: str | None = None
    reads: list[MeterRead] = Field(default_factory=list)


def _schema(model):
    return current_schema(model)


def test_adding_an_optional_field_is_compatible():
    class New(_Old):
        colour: str | None = None

    assert breaking_changes(_schema(_Old), _schema(New)) == []


def test_removing_a_field_is_breaking():
    class New(_Thing):
        thing_id: int
        reads: list[MeterRead] = Field(default_factory=list)

    assert breaking_changes(_schema(_Old), _schema(New)) == ["label: field removed"]


def test_retyping_a_field_is_breaking():
    class New(_Thing):
        thing_id: str
        label: str | None = None
        reads: list[MeterRead] = Field(default_factory=list)

    problems = breaking_changes(_schema(_Old), _schema(New))
    assert len(problems) == 1 and problems[0].startswith("thing_id: type changed")


def test_making_an_optional_field_required_is_breaking():
    class New(_Thing):
        thing_id: int
        label: str | None
        reads: list[MeterRead] = Field(default_factory=list)

    assert breaking_changes(_schema(_Old), _schema(New)) == ["label: optional field made required"]


def test_a_change_inside_a_nested_model_is_found():
    class OtherRead(MeterRead):
        value_wh: float  # retyped from int

    class New(_Thing):
        thing_id: int
        label: str | None = None
        reads: list[OtherRead] = Field(default_factory=list)

    problems = breaking_changes(_schema(_Old), _schema(New))
    assert problems == ["reads[].value_wh: type changed from ['integer'] to ['number']"]


def _device_registered() -> DeviceRegistered:
    return device_registered(
        7,
        external_id="roof-7",
        organization_id=3,
        capacity_kw=25.0,
        commissioning_date=datetime(2022, 8, 9, tzinfo=UTC),
        onboarded_at=datetime(2023, 1, 1, tzinfo=UTC),
    )


def test_envelope_round_trips_and_ignores_unknown_fields():
    event = _device_registered()
    env = envelope_for(event, producer="devices")
    wire = env.model_dump(mode="json")
    wire["payload"]["a_field_from_the_future"] = 1
    wire["something_new"] = "x"
    back = parse_event(Envelope.model_validate(wire))
    assert back == event


def test_unknown_type_and_future_version_are_refused():
    with pytest.raises(UnknownEvent):
        parse_event(Envelope(type="nope.happened", version=1, producer="x", payload={}))
    env = envelope_for(_device_registered(), producer="devices")
    with pytest.raises(UnknownEvent):
        parse_event(env.model_copy(update={"version": 2}))


def test_old_versions_are_upcast(monkeypatch):
    # Pretend DeviceRegistered is at v2, where v1 called the timezone `tz`.
    monkeypatch.setattr(DeviceRegistered, "VERSION", 2)
    monkeypatch.setitem(
        registry.UPCASTERS,
        ("device.registered", 1),
        lambda p: {**p, "timezone": p.pop("tz", None)},
    )
    v1 = envelope_for(_device_registered(), producer="devices").model_dump(mode="json")
    v1["version"] = 1
    v1["payload"]["tz"] = "Asia/Kolkata"
    assert parse_event(Envelope.model_validate(v1)).timezone == "Asia/Kolkata"
