"""Uploaded CSV files: the raw body or a multipart form's file, spooled as they stream in."""

import asyncio

from opendrec_kit import uploads


def test_a_form_file_name_loses_the_clients_path():
    async def chunks(data):
        yield data

    body = (
        b'--B\r\nContent-Disposition: form-data; name="upload"; filename="C:\\\\Users\\\\ana\\\\fleet.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\na,b\r\n--B--\r\n"
    )
    spooled = asyncio.run(uploads.spool("multipart/form-data; boundary=B", None, chunks(body), 1000))
    assert (spooled.file_name, spooled.file.read()) == ("fleet.csv", b"a,b")
