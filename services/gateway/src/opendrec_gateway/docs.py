"""Swagger UI for the merged API document, at /swagger (the reference D-REC API's path) and /docs.

The UI's files come from the `swagger-ui-py` package (Swagger UI 5, which reads OpenAPI 3.1) and are served by
the gateway itself: browsers need no CDN. The page runs no inline script, so a strict content security
policy holds.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from functools import cache

PAGES = ("/swagger", "/swagger/", "/docs", "/docs/")
ASSET_PREFIX = "/swagger/"

_PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>OpenDREC API</title>
<link rel="icon" type="image/png" href="/swagger/favicon-32x32.png">
<link rel="stylesheet" href="/swagger/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/swagger/swagger-ui-bundle.js"></script>
<script src="/swagger/init.js"></script>
</body>
</html>
"""

_INIT = b"""window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false
});
"""

# Swagger UI sets inline styles on its elements; scripts come only from here.
CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

_PACKAGED = {
    "swagger-ui.css": b"text/css; charset=utf-8",
    "swagger-ui-bundle.js": b"text/javascript; charset=utf-8",
    "favicon-32x32.png": b"image/png",
}


@dataclass(frozen=True)
class Document:
    body: bytes
    content_type: bytes


def page() -> Document:
    return Document(_PAGE, b"text/html; charset=utf-8")


@cache
def asset(name: str) -> Document | None:
    """One of the UI's files by name (read once), or None for any other name."""
    if name == "init.js":
        return Document(_INIT, b"text/javascript; charset=utf-8")
    content_type = _PACKAGED.get(name)
    if content_type is None:
        return None
    return Document((importlib.resources.files("swagger_ui") / "static" / name).read_bytes(), content_type)


def find(path: str) -> Document | None:
    """What /swagger, /docs or /swagger/<file> answers; None when the path is none of them."""
    if path in PAGES:
        return page()
    if path.startswith(ASSET_PREFIX):
        return asset(path.removeprefix(ASSET_PREFIX))
    return None
