"""Bulk read import, the pure parts: a CSV's rows, their groups, and what their form refuses.

Columns: deviceExternalId, timezone, type, unit, value, startDate, endDate (one read a row).
Consecutive rows of one device, type, unit and timezone are judged together by the same
rules as the HTTP API, up to 10,000 at a time. The job itself (queued in Postgres, worked
on by the `bulk-read-import` worker, a group per transaction) is a use case in services.py.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import IO, cast

from opendrec_kit import uploads

from . import domain

COLUMNS = ("deviceExternalId", "timezone", "type", "unit", "value", "startDate", "endDate")
SOURCE = "import"


@dataclass(frozen=True, slots=True)
class CsvRow:
    number: int  # 1 = the first row after the header
    external_id: str
    timezone: str
    read_type: str
    unit: str
    value: str
    start: str
    end: str

    def cells(self) -> list[str]:
        """Its cells in COLUMNS' order (as staged)."""
        return [self.external_id, self.timezone, self.read_type, self.unit, self.value, self.start, self.end]

    def group(self) -> tuple[str, str, str, str]:
        return (self.external_id, self.timezone, self.read_type, self.unit)


@dataclass(frozen=True, slots=True)
class RowResult:
    number: int
    accepted: bool
    reason: str | None = None
    batch_id: uuid.UUID | None = None


# -- pure parts -------------------------------------------------------------------------


# Bounds of an upload's content (issue 12), so that parsing it costs a constant times a row: a read's row is about
# 120 characters, a header 70.
MAX_HEADER_CHARS = 4096
MAX_COLUMNS = 64
MAX_ROW_CHARS = 4096


class TooLarge(ValueError):
    """A part of the file is past one of the bounds above (a 413)."""


def read_csv(binary: IO[bytes]) -> Iterator[CsvRow]:
    """The rows of an upload (UTF-8, a BOM allowed), read as they are needed; ValueError when it is not a reads CSV
    (the header lacks a column, names as in COLUMNS, any case; not UTF-8; not CSV), TooLarge past a bound."""
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    number = 0
    lines = uploads.CsvLines(text, MAX_HEADER_CHARS, "the header (the first row)", TooLarge)
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise ValueError("the file is empty: expected a header row " + ",".join(COLUMNS))
        if len(header) > MAX_COLUMNS:
            raise ValueError(f"the header has {len(header)} columns; at most {MAX_COLUMNS} are read")
        positions = {name.strip().lower(): i for i, name in enumerate(header)}
        missing = [c for c in COLUMNS if c.lower() not in positions]
        if missing:
            raise ValueError(f"the header lacks {', '.join(missing)}: expected {','.join(COLUMNS)}")
        at = [positions[c.lower()] for c in COLUMNS]
        lines.next_record(MAX_ROW_CHARS, "row 1")
        for number, cells in enumerate(reader, start=1):
            lines.next_record(MAX_ROW_CHARS, f"row {number + 1}")
            if not any(cell.strip() for cell in cells):
                continue  # blank line
            cells = cells + [""] * (len(header) - len(cells))
            yield CsvRow(number, *(cells[i].strip() for i in at))
    except UnicodeDecodeError:
        raise ValueError(f"the file is not UTF-8 text (after row {number}); save the CSV as UTF-8") from None
    except csv.Error as exc:
        raise ValueError(f"the file is not valid CSV near row {number + 1}: {exc}") from None
    finally:
        text.detach()  # the caller owns (and closes) the binary file


def parse_csv(text: str) -> list[CsvRow]:
    """Every row of a CSV held as text (read_csv's rules)."""
    return list(read_csv(io.BytesIO(text.encode())))


def rows_from_cells(rows: Iterable[tuple[int, Sequence[str]]]) -> list[CsvRow]:
    """Staged rows (their number and cells in COLUMNS' order) as CsvRows again."""
    return [CsvRow(number, *cells) for number, cells in rows]


def groups(rows: Sequence[CsvRow], max_size: int = domain.MAX_READS_PER_REQUEST) -> list[list[CsvRow]]:
    """Consecutive rows of one device, timezone, type and unit, at most `max_size` each."""
    out: list[list[CsvRow]] = []
    for row in rows:
        if out and out[-1][0].group() == row.group() and len(out[-1]) < max_size:
            out[-1].append(row)
        else:
            out.append([row])
    return out


def group_error(first: CsvRow) -> str | None:
    """What makes every row of a group unacceptable (type, unit, timezone), or None."""
    if not first.external_id:
        return "deviceExternalId is required"
    if first.read_type not in domain.READ_TYPES:
        return f"type {first.read_type!r} is not one of {', '.join(domain.READ_TYPES)}"
    if first.unit not in domain.UNIT_EXPONENTS:
        return f"unit {first.unit!r} is not one of {', '.join(domain.UNIT_EXPONENTS)}"
    if first.timezone:
        try:
            domain.resolve_timezone(first.timezone)
        except ValueError as exc:
            return str(exc)
    return None


def parse_group(rows: Sequence[CsvRow]) -> tuple[domain.Reads, list[RowResult]]:
    """Reads of a group (indexed by row number), and the rows refused already by their form."""
    first = rows[0]
    tz = domain.resolve_timezone(first.timezone) if first.timezone else None
    values: list[Decimal | int] = []
    refused: list[RowResult] = []
    usable: list[CsvRow] = []
    for row in rows:
        try:
            value = Decimal(row.value)
            values.append(int(value) if value == value.to_integral_value() and value.is_finite() else value)
            usable.append(row)
        except InvalidOperation:
            refused.append(RowResult(row.number, False, f"value {row.value!r} is not a number"))
    reads, errors = domain.parse_reads(
        [r.start for r in usable],
        [r.end for r in usable],
        values,
        cast(domain.ReadType, first.read_type),  # one of READ_TYPES when group_error found nothing
        first.unit,
        tz,
    )
    # parse_reads indexes by position: back to row numbers.
    reads = domain.Reads([usable[i].number for i in reads.indexes], reads.starts, reads.ends, reads.values_wh)
    refused += [RowResult(usable[e.index].number, False, e.reason) for e in errors if e.index is not None]
    return reads, refused
