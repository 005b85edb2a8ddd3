"""The files of a `multipart/form-data` upload (POST /api/file): the rules the kit's form parser
(`opendrec_kit.uploads.read_form`) reads them under.

D-REC's form: one or more parts in the field `files` (`file` is taken too), each with a filename and a
supported type (PDF, JPEG, PNG, CSV). Limits are checked as the bytes arrive: more than `max_files` files
(400), a file over `max_bytes` (413), an unsupported type (415, before its bytes are read). Memory stays
flat: each file spills to a temporary file past the kit's SPOOL_IN_MEMORY.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from opendrec_kit import ApiError
from opendrec_kit.uploads import FORM_OVERHEAD, FormFile, FormFiles, close_all, cut_short, media_type, read_form

from . import domain

__all__ = ["UploadedFile", "close_all", "receive_files"]

UploadedFile = FormFile  # file, file_name, content_type (the supported type it is stored with)


class _Files(FormFiles):
    fields = ("files", "file")
    the_files = "the files"

    def name(self, field: str, file_name: str, n: int) -> str:
        return file_name or f"{field}-{n}"

    def accept(self, field: str, file_name: str, declared: str) -> str:
        try:
            return domain.file_type(declared, file_name)
        except ValueError as exc:
            raise ApiError(415, str(exc)) from None

    def too_many(self) -> ApiError:
        return ApiError(400, f"Too many files: at most {self.max_files} in one upload")

    def too_large(self, part: FormFile) -> ApiError:
        return ApiError(413, f"{part.file_name!r} is larger than {self.max_bytes} bytes")

    def check(self, files: list[FormFile], ended: bool) -> None:
        if not ended:
            raise cut_short()
        if not files:
            raise ApiError(400, "No files added: send them in the form field 'files'")


async def receive_files(
    content_type: str, content_length: str | None, stream: AsyncIterator[bytes], max_bytes: int, max_files: int
) -> list[UploadedFile]:
    """The uploaded files, each spooled at position 0 (the caller closes them: `close_all`).
    Raises ApiError 400/413/415 saying why not."""
    if media_type(content_type) != "multipart/form-data":
        raise ApiError(415, "Send the files as multipart/form-data, in the field 'files'")
    if content_length and content_length.isdigit() and int(content_length) > max_files * max_bytes + FORM_OVERHEAD:
        raise ApiError(413, f"The upload is larger than {max_files} files of {max_bytes} bytes")
    return await read_form(content_type, stream, _Files(max_bytes, max_files))
