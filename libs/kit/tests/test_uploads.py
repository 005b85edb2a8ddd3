"""Uploaded files: the raw body or a multipart form's file (CSV), or a form's files under a caller's rules,
spooled as they stream in."""

import asyncio

import pytest

from opendrec_kit import ApiError, uploads

FORM = "multipart/form-data; boundary=B"


async def chunks(data):
    yield data


def part(field, body, file_name=None, content_type=None):
    disposition = f'form-data; name="{field}"' + (f'; filename="{file_name}"' if file_name is not None else "")
    headers = f"Content-Disposition: {disposition}\r\n" + (f"Content-Type: {content_type}\r\n" if content_type else "")
    return b"--B\r\n" + headers.encode() + b"\r\n" + body + b"\r\n"


def form(*parts, closed=True):
    return b"".join(parts) + (b"--B--\r\n" if closed else b"")


def refusal(coroutine):
    with pytest.raises(ApiError) as caught:
        asyncio.run(coroutine)
    return caught.value.status, caught.value.message


def test_a_form_file_name_loses_the_clients_path():
    body = (
        b'--B\r\nContent-Disposition: form-data; name="upload"; filename="C:\\\\Users\\\\ana\\\\fleet.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\na,b\r\n--B--\r\n"
    )
    spooled = asyncio.run(uploads.spool(FORM, None, chunks(body), 1000))
    assert (spooled.file_name, spooled.file.read()) == ("fleet.csv", b"a,b")


def test_a_csv_form_file_without_a_filename_has_no_name():
    body = form(part("note", b"hi"), part("csv", b"a,b", content_type="text/csv"))
    spooled = asyncio.run(uploads.spool(FORM, None, chunks(body), 1000))
    assert (spooled.file_name, spooled.file.read()) == (None, b"a,b")


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (form(part("file", b"a", "a.csv"), part("file", b"b", "b.csv")), 400, "more than one file"),
        (form(part("file", b"x" * 11, "a.csv")), 413, "The file is larger than 10 bytes"),
        (form(part("file", b"a", "a.pdf", "application/pdf")), 415, "Expected a CSV file"),
        (form(part("note", b"x" * (uploads.MAX_FIELD + 1)), part("file", b"a", "a.csv")), 400, "other than the file "),
        (form(part("note", b"x")), 400, "has no file"),
        (form(part("note", b"x"), closed=False), 400, "has no file"),  # no file yet: said before "cut short"
        (form(part("file", b"a", "a.csv"), closed=False), 400, "cut short"),
    ],
)
def test_csv_forms_refused(body, status, fragment):
    status_code, message = refusal(uploads.spool(FORM, None, chunks(body), 10))
    assert status_code == status and fragment in message, message


class Pictures(uploads.FormFiles):
    """A caller's rules: up to max_files PNG parts in the field 'pictures', unnamed ones named by position."""

    fields = ("pictures",)
    the_files = "the pictures"

    def name(self, field, file_name, n):
        return file_name or f"picture-{n}"

    def accept(self, field, file_name, declared):
        if uploads.media_type(declared) != "image/png":
            raise ApiError(415, f"{file_name}: not a PNG")
        return "image/png"

    def too_many(self):
        return ApiError(400, f"At most {self.max_files} pictures")

    def too_large(self, part):
        return ApiError(413, f"{part.file_name} is too large")


def test_a_form_read_under_a_callers_rules():
    body = form(
        part("pictures", b"one", "C:\\\\me\\\\a.png", "image/png; q=1"),
        part("comment", b"nice"),
        part("pictures", b"two", content_type="image/png"),
    )
    files = asyncio.run(uploads.read_form(FORM, chunks(body), Pictures(10, max_files=2)))
    try:
        assert [(f.file_name, f.content_type, f.file.read()) for f in files] == [
            ("a.png", "image/png", b"one"),
            ("picture-2", "image/png", b"two"),
        ]
    finally:
        uploads.close_all(files)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (form(*[part("pictures", b"p", f"{n}.png", "image/png") for n in range(3)]), 400, "At most 2 pictures"),
        (
            form(part("pictures", b"p", "a.png", "image/png"), part("pictures", b"x" * 11, content_type="image/png")),
            413,
            "picture-2 is too large",
        ),
        (form(part("pictures", b"p", "a.gif", "image/gif")), 415, "a.gif: not a PNG"),
        (form(part("note", b"x" * (uploads.MAX_FIELD + 1))), 400, "other than the pictures"),
        (form(part("note", b"x")), 400, "has no file: send the CSV in a file field (e.g. 'pictures'"),
        (b"--B\r\nbroken", 400, "has no file"),
        (form(part("pictures", b"p", "a.png", "image/png"), closed=False), 400, "cut short"),
        (b"not a form", 400, "malformed"),
    ],
)
def test_forms_refused_under_a_callers_rules(body, status, fragment):
    status_code, message = refusal(uploads.read_form(FORM, chunks(body), Pictures(10, max_files=2)))
    assert status_code == status and fragment in message, message


def test_a_form_without_a_boundary_is_refused():
    assert refusal(uploads.read_form("multipart/form-data", chunks(b""), uploads.FormFiles(10)))[0] == 400
