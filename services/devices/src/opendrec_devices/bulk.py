"""Bulk CSV onboarding rules, no database: reading the file (streamed) and judging one row.

Columns are the D-REC device fields (header names matched case-insensitively); list fields
(images, SDGBenefits) take values separated by ";" or "|".
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from pydantic import ValidationError

from opendrec_kit import uploads

from .models import DeviceRegistration

# The columns every row must have: the registration's required fields, in its order (the D-REC template's).
REQUIRED = tuple(name for name, info in DeviceRegistration.model_fields.items() if info.is_required())
LIST_FIELDS = ("images", "SDGBenefits")


# Bounds of an upload's content (issue 12), so that reading it costs a constant times a row: the D-REC template's
# header is ~500 characters, a row rarely 1,000.
MAX_HEADER_CHARS = 8192
MAX_COLUMNS = 100
MAX_ROW_CHARS = 16384


class BadFile(ValueError):
    """The upload as a whole is unusable: no job is made."""


class TooLarge(BadFile):
    """A part of the file is past one of the bounds above (a 413)."""


@dataclass
class Header:
    names: list[str | None]  # per column: the D-REC field it holds, None for an ignored column
    warnings: list[str] = field(default_factory=list)


def read_header(row: list[str], known: list[str]) -> Header:
    by_lower = {name.lower(): name for name in known}
    names: list[str | None] = []
    ignored, seen = [], set()
    for cell in row:
        name = by_lower.get(cell.strip().lower())
        if name in seen:
            raise BadFile(f"column {name} appears twice in the header")
        if name is None and cell.strip():
            ignored.append(cell.strip())
        seen.add(name)
        names.append(name)
    missing = [n for n in REQUIRED if n not in seen]
    if missing:
        raise BadFile(
            f"the header lacks required column(s) {', '.join(missing)}; "
            f"columns are the device fields: {', '.join(known)}"
        )
    warnings = [f"column(s) ignored, not device fields: {', '.join(ignored)}"] if ignored else []
    return Header(names, warnings)


def read_rows(binary: IO[bytes], known: list[str]) -> tuple[Header, Iterator[tuple[int, dict[str, Any]]]]:
    """Header and an iterator of (row number, {field: cell}) from a CSV file, read as it goes.
    Rows with a wrong number of cells come out as {"__width__": n, "__expected__": m}. Raises BadFile."""
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    try:
        header, delimiter, width = _read_header(text, known)
    except BadFile:
        text.detach()  # the caller owns (and closes) the binary file
        raise

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        lines = uploads.CsvLines(text, MAX_ROW_CHARS, "row 2", TooLarge)
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        number = 1
        try:
            for cells in reader:
                number += 1
                lines.next_record(MAX_ROW_CHARS, f"row {number + 1}")
                if not any(c.strip() for c in cells):
                    continue  # blank line
                if len(cells) != width:
                    yield number, {"__width__": len(cells), "__expected__": width}
                    continue
                yield number, {n: c for n, c in zip(header.names, cells, strict=True) if n and c.strip()}
        except UnicodeDecodeError:
            raise BadFile(f"the file is not UTF-8 text (after row {number}); save the CSV as UTF-8") from None
        except csv.Error as exc:
            raise BadFile(f"the file is not valid CSV near row {number + 1}: {exc}") from None
        finally:
            text.detach()

    return header, rows()


def _read_header(text: io.TextIOWrapper, known: list[str]) -> tuple[Header, str, int]:
    try:
        sample = text.readline(MAX_HEADER_CHARS + 1)
    except UnicodeDecodeError:
        raise BadFile("the file is not UTF-8 text; save the CSV as UTF-8") from None
    if len(sample) > MAX_HEADER_CHARS:
        raise TooLarge(f"the header (the first line) is longer than {MAX_HEADER_CHARS} characters")
    if not sample.strip():
        raise BadFile("the file is empty or its first line (the header) is blank")
    # Only the delimiter is guessed (spreadsheets export ";" in some locales); quoting is Excel's.
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","  # one column only: the header check says what is missing
    try:
        header_row = next(csv.reader([sample], delimiter=delimiter, strict=True))
    except csv.Error as exc:
        raise BadFile(f"the header is not valid CSV: {exc}") from None
    if len(header_row) > MAX_COLUMNS:
        raise BadFile(f"the header has {len(header_row)} columns; at most {MAX_COLUMNS} are read")
    return read_header(header_row, known), delimiter, len(header_row)


@dataclass
class RowResult:
    columns: dict[str, Any] | None  # what to insert; None when the row failed
    errors: list[dict[str, str]]
    warnings: list[str]


def judge_row(data: dict[str, Any], model: Any) -> RowResult:
    """Check one row with the registration model (the same rules as POST /api/device)."""
    if "__width__" in data:
        return RowResult(
            None,
            [
                {
                    "field": "row",
                    "message": f"the row has {data['__width__']} cells; the header has {data['__expected__']}",
                }
            ],
            [],
        )
    values: dict[str, Any] = dict(data)
    for name in LIST_FIELDS:
        if name in values:
            values[name] = [p.strip() for p in values[name].replace("|", ";").split(";") if p.strip()]
    try:
        registration = model.model_validate(values)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "row", "message": e["msg"]} for e in exc.errors()]
        return RowResult(None, errors, [])
    warnings = []
    if not registration.timezone and _naive(data.get("commissioningDate")):
        warnings.append("no timezone given: commissioningDate without an offset was read as UTC")
    if "yieldValue" in data and registration.yieldValue == 0:
        warnings.append("yieldValue 0 is taken as unknown")
    return RowResult(registration.columns(), [], warnings)


def _naive(value: str | None) -> bool:
    try:
        return value is not None and datetime.fromisoformat(value.strip()).tzinfo is None
    except ValueError:
        return False
