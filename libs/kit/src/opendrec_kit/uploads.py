"""Uploaded files, spooled as they stream in. `spool`: a CSV file, the request body itself (text/csv) or
the file field of a multipart/form-data form (what browsers and D-REC clients send). `read_form`: the
file parts of a form, under the rules a caller gives (`FormFiles`; the defaults are the CSV upload's).
Memory stays flat whatever the size: past SPOOL_IN_MEMORY a spool is a temporary file; past the limit, a 413."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

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


@dataclass
class FormFile:
    """A file part of a form, as `read_form` keeps it."""

    file: tempfile.SpooledTemporaryFile
    file_name: str  # as FormFiles.name gives it ("" when the part has none)
    content_type: str  # as FormFiles.accept gives it


def close_all(files: Iterable[FormFile]) -> None:
    for part in files:
        part.file.close()


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


class FormFiles:
    """The rules of `read_form`: which parts of a form are files, what they may be, and the ApiError refusing
    a form. These defaults are the CSV upload's (one CSV file); a caller with other files subclasses it."""

    fields: tuple[str, ...] = FILE_FIELDS  # a part with one of these names is a file even without a filename
    the_files = "the file"  # what a form's large non-file field is told apart from

    def __init__(self, max_bytes: int, max_files: int = 1) -> None:
        self.max_bytes = max_bytes  # of each file
        self.max_files = max_files

    def name(self, field: str, file_name: str, n: int) -> str:
        """The name the n-th file part (from 1) is kept under; `file_name` is its filename (maybe "")."""
        return file_name

    def accept(self, field: str, file_name: str, declared: str) -> str:
        """The type a file part is kept with, from its declared Content-Type (before its bytes are read);
        raises the ApiError refusing it."""
        kind = media_type(declared)
        _check_csv_type(kind, f"form field {field!r}")
        return kind

    def too_many(self) -> ApiError:
        return ApiError(400, "The form has more than one file: upload one CSV file at a time")

    def too_large(self, part: FormFile) -> ApiError:
        return _too_large(self.max_bytes)

    def check(self, files: list[FormFile], ended: bool) -> None:
        """Raises the ApiError refusing a form read to its end: one without files, or cut short."""
        if not files:
            raise ApiError(
                400, f"The form has no file: send the CSV in a file field (e.g. {self.fields[0]!r}, with a filename)"
            )
        if not ended:
            raise cut_short()


def cut_short() -> ApiError:
    return ApiError(400, "The multipart form is cut short: its closing boundary is missing")


class _Form:
    """Callbacks of python-multipart's streaming parser: file parts go to their spools, the others are
    counted and dropped."""

    def __init__(self, rules: FormFiles) -> None:
        self.rules = rules
        self.files: list[FormFile] = []
        self.current: FormFile | None = None  # the file part being read
        self.ended = False  # the closing boundary was read
        self.size = 0  # bytes of the current part
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
        self.size = 0

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def header_end(self) -> None:
        self._headers[self._name.strip().lower()] = self._value.strip()
        self._name, self._value = b"", b""

    def headers_finished(self) -> None:
        rules = self.rules
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        field = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options and field not in rules.fields:
            return  # another field: counted, not kept
        if len(self.files) >= rules.max_files:
            raise rules.too_many()
        # some browsers send the client's full path; the name is what a listing shows
        raw_name = options.get(b"filename", b"").decode("utf-8", "replace")
        file_name = rules.name(field, raw_name.replace("\\", "/").rsplit("/", 1)[-1][:255], len(self.files) + 1)
        kind = rules.accept(field, file_name, self._headers.get(b"content-type", b"").decode("latin-1"))
        spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - kept in self.files, closed by close_all
        self.current = FormFile(spooled, file_name, kind)
        self.files.append(self.current)

    def part_data(self, data: bytes, start: int, end: int) -> None:
        self.size += end - start
        if self.current is None:
            if self.size > MAX_FIELD:
                raise ApiError(400, f"A form field other than {self.rules.the_files} is larger than {MAX_FIELD} bytes")
            return
        if self.size > self.rules.max_bytes:
            raise self.rules.too_large(self.current)
        self.current.file.write(data[start:end])

    def part_end(self) -> None:
        self.current = None

    def end(self) -> None:
        self.ended = True


async def read_form(content_type: str, stream: AsyncIterator[bytes], rules: FormFiles) -> list[FormFile]:
    """The file parts of a multipart/form-data form, each spooled at position 0 (the caller closes them:
    `close_all`). Raises ApiError 400/413 (and what `rules` raises) saying why not."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "The multipart/form-data Content-Type has no boundary")
    form = _Form(rules)
    try:
        try:
            parser = MultipartParser(boundary, form.callbacks())  # type: ignore[arg-type]  # a dict of the callbacks it names
            async for chunk in stream:
                parser.write(chunk)
            parser.finalize()
        except (MultipartParseError, ValueError) as exc:
            raise ApiError(400, f"The multipart form is malformed: {exc}") from None
        rules.check(form.files, form.ended)
    except BaseException:
        close_all(form.files)
        raise
    for part in form.files:
        part.file.seek(0)
    return form.files


async def _spool_form(content_type: str, stream: AsyncIterator[bytes], max_bytes: int) -> Upload:
    (part,) = await read_form(content_type, stream, FormFiles(max_bytes))
    return Upload(part.file, part.file_name or None)


class CsvLines:
    """A CSV text's lines for csv.reader, with the characters of the record being read counted: past `limit` the
    record is refused (`too_long`, the caller's 413 error) before more of it is read, a quoted cell spanning lines
    counted whole; so reading an upload costs a constant times a row, whatever the file (issue 12)."""

    def __init__(self, text: IO[str], limit: int, what: str, too_long: type[Exception]) -> None:
        self.text, self.limit, self.what, self.too_long = text, limit, what, too_long
        self.used = 0

    def __iter__(self) -> Iterator[str]:
        while line := self.text.readline(self.limit - self.used + 1):
            self.used += len(line)
            if self.used > self.limit:
                raise self.too_long(f"{self.what} is longer than {self.limit} characters")
            yield line

    def next_record(self, limit: int, what: str) -> None:
        """The next record's bound and name (for the error)."""
        self.used, self.limit, self.what = 0, limit, what
