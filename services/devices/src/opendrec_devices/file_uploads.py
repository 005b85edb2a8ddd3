"""The files of a `multipart/form-data` upload (POST /api/file), spooled as they stream in.

D-REC's form: one or more parts in the field `files` (`file` is taken too), each with a filename and a
supported type (PDF, JPEG, PNG, CSV). Limits are checked as the bytes arrive: more than `max_files` files
(400), a file over `max_bytes` (413), an unsupported type (415, before its bytes are read). Memory stays
flat: each file spills to a temporary file past the kit's SPOOL_IN_MEMORY.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

from opendrec_kit import ApiError
from opendrec_kit.uploads import FORM_OVERHEAD, MAX_FIELD, SPOOL_IN_MEMORY, media_type

from . import domain

FILE_FIELDS = ("files", "file")


@dataclass
class UploadedFile:
    file: tempfile.SpooledTemporaryFile
    file_name: str
    content_type: str  # the supported type it is stored with


def close_all(files: list[UploadedFile]) -> None:
    for part in files:
        part.file.close()


class _Form:
    """Callbacks of python-multipart's streaming parser: file parts to spools, other fields counted and dropped."""

    def __init__(self, max_bytes: int, max_files: int) -> None:
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.files: list[UploadedFile] = []
        self.current: UploadedFile | None = None
        self.size = 0
        self.field_size = 0
        self.ended = False
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
        self.size = 0

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def header_end(self) -> None:
        self._headers[self._name.strip().lower()] = self._value.strip()
        self._name, self._value = b"", b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        field = options.get(b"name", b"").decode("utf-8", "replace")
        if field not in FILE_FIELDS and b"filename" not in options:
            return  # another field: counted, not kept
        if len(self.files) >= self.max_files:
            raise ApiError(400, f"Too many files: at most {self.max_files} in one upload")
        raw_name = options.get(b"filename", b"").decode("utf-8", "replace")
        # some browsers send the client's full path
        file_name = raw_name.replace("\\", "/").rsplit("/", 1)[-1][:255] or f"{field}-{len(self.files) + 1}"
        declared = self._headers.get(b"content-type", b"").decode("latin-1")
        try:
            kind = domain.file_type(declared, file_name)
        except ValueError as exc:
            raise ApiError(415, str(exc)) from None
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - kept in self.files, closed by close_all
        self.current = UploadedFile(spool, file_name, kind)
        self.files.append(self.current)

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.current is None:
            self.field_size += end - start
            if self.field_size > MAX_FIELD:
                raise ApiError(400, f"A form field other than the files is larger than {MAX_FIELD} bytes")
            return
        self.size += end - start
        if self.size > self.max_bytes:
            raise ApiError(413, f"{self.current.file_name!r} is larger than {self.max_bytes} bytes")
        self.current.file.write(data[start:end])

    def part_end(self) -> None:
        self.current = None

    def end(self) -> None:
        self.ended = True


async def receive_files(
    content_type: str, content_length: str | None, stream: AsyncIterator[bytes], max_bytes: int, max_files: int
) -> list[UploadedFile]:
    """The uploaded files, each spooled at position 0 (the caller closes them: `close_all`).
    Raises ApiError 400/413/415 saying why not."""
    if media_type(content_type) != "multipart/form-data":
        raise ApiError(415, "Send the files as multipart/form-data, in the field 'files'")
    if content_length and content_length.isdigit() and int(content_length) > max_files * max_bytes + FORM_OVERHEAD:
        raise ApiError(413, f"The upload is larger than {max_files} files of {max_bytes} bytes")
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "The multipart/form-data Content-Type has no boundary")
    form = _Form(max_bytes, max_files)
    try:
        try:
            parser = MultipartParser(boundary, form.callbacks())  # type: ignore[arg-type]  # a dict of the callbacks it names
            async for chunk in stream:
                parser.write(chunk)
            parser.finalize()
        except (MultipartParseError, ValueError) as exc:
            raise ApiError(400, f"The multipart form is malformed: {exc}") from None
        if not form.ended:
            raise ApiError(400, "The multipart form is cut short: its closing boundary is missing")
        if not form.files:
            raise ApiError(400, "No files added: send them in the form field 'files'")
    except BaseException:
        close_all(form.files)
        raise
    for part in form.files:
        part.file.seek(0)
    return form.files
