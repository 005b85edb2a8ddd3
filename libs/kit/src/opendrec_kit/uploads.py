"""An uploaded CSV file, spooled as it streams in: the request body itself (text/csv), or the file
field of a multipart/form-data form (what browsers and D-REC clients send). Memory stays flat
whatever the size: past SPOOL_IN_MEMORY the spool is a temporary file; past the limit, a 413."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

from .errors import ApiError

SPOOL_IN_MEMORY = 1024 * 1024  # bytes of an upload kept in memory before it spills to a temporary file
CSV_TYPES = ("text/csv", "application/csv", "text/plain", "application/octet-stream", "application/vnd.ms-excel")
FILE_FIELDS = ("file", "csvFile", "csv")  # a part with one of these names is the file even without a filename
FORM_OVERHEAD = 64 * 1024  # bytes a form may carry beyond its file (boundaries, part headers, small fields)
MAX_FIELD = 8 * 1024  # a non-file field is not read; it may not be large either


@dataclass
class Upload:
    file: tempfile.SpooledTemporaryFile
    file_name: str | None  # the multipart part's filename, when there is one


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"The file is larger than {max_bytes} bytes; split it into several uploads")


def _check_csv_type(content_type: str, what: str) -> None:
    if content_type and content_type not in CSV_TYPES:
        raise ApiError(415, f"Expected a CSV file (Content-Type: text/csv), got {content_type} for {what}")


def media_type(header: str) -> str:
    return header.split(";")[0].strip().lower()


async def spool(content_type: str, content_length: str | None, stream: AsyncIterator[bytes], max_bytes: int) -> Upload:
    """The uploaded CSV in a spooled file, at position 0. Raises ApiError 400/413/415 saying why not."""
    kind = media_type(content_type)
    if content_length and content_length.isdigit():
        allowed = max_bytes + (FORM_OVERHEAD if kind == "multipart/form-data" else 0)
        if int(content_length) > allowed:
            raise _too_large(max_bytes)  # said up front: nothing is read
    if kind == "multipart/form-data":
        return await _spool_form(content_type, stream, max_bytes)
    if kind.startswith("multipart/"):
        raise ApiError(415, f"Send the CSV as multipart/form-data or as the request body (text/csv), not {kind}")
    _check_csv_type(kind, "the request body")
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - returned to the caller, who closes it
    size = 0
    try:
        async for chunk in stream:
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            out.write(chunk)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return Upload(out, None)


class _Form:
    """Callbacks of python-multipart's streaming parser: the file part goes to the spool, the
    others are counted and dropped (a CSV upload needs no other field)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.out = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - owned by this object, closed by its close()
        self.file_name: str | None = None
        self.found = False  # a file part has begun
        self.ended = False  # the closing boundary was read
        self.in_file = False
        self.size = 0  # bytes of the file part
        self.field_size = 0
        self._name = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.part_begin,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        self._headers = {}
        self.field_size = 0

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def header_end(self) -> None:
        self._headers[self._name.strip().lower()] = self._value.strip()
        self._name, self._value = b"", b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        is_file = b"filename" in options or name in FILE_FIELDS
        if not is_file:
            self.in_file = False
            return
        if self.found:
            raise ApiError(400, "The form has more than one file: upload one CSV file at a time")
        _check_csv_type(media_type(self._headers.get(b"content-type", b"").decode("latin-1")), f"form field {name!r}")
        self.found = self.in_file = True
        if b"filename" in options:
            # some browsers send the client's full path; the name is what a job listing shows
            name = options[b"filename"].decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
            self.file_name = name[:255] or None

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.in_file:
            self.field_size += end - start
            if self.field_size > MAX_FIELD:
                raise ApiError(400, f"A form field other than the file is larger than {MAX_FIELD} bytes")
            return
        self.size += end - start
        if self.size > self.max_bytes:
            raise _too_large(self.max_bytes)
        self.out.write(data[start:end])

    def part_end(self) -> None:
        self.in_file = False

    def end(self) -> None:
        self.ended = True


async def _spool_form(content_type: str, stream: AsyncIterator[bytes], max_bytes: int) -> Upload:
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "The multipart/form-data Content-Type has no boundary")
    form = _Form(max_bytes)
    try:
        try:
            parser = MultipartParser(boundary, form.callbacks())  # type: ignore[arg-type]  # a dict of the callbacks it names
            async for chunk in stream:
                parser.write(chunk)
            parser.finalize()
        except (MultipartParseError, ValueError) as exc:
            raise ApiError(400, f"The multipart form is malformed: {exc}") from None
        if not form.found:
            raise ApiError(
                400, f"The form has no file: send the CSV in a file field (e.g. {FILE_FIELDS[0]!r}, with a filename)"
            )
        if not form.ended:
            raise ApiError(400, "The multipart form is cut short: its closing boundary is missing")
    except BaseException:
        form.out.close()
        raise
    form.out.seek(0)
    return Upload(form.out, form.file_name)
