"""The events' AsyncAPI 3 document at /asyncapi (JSON) and /asyncapi.html (a page written here: no script, no CDN).

The document is generated from libs/contracts and the services' subscriptions by `opendrec asyncapi --write` and
committed beside this module; a test fails when the contracts change without it.
"""

from __future__ import annotations

import html
import importlib.resources
import json
from functools import cache
from typing import Any

from .docs import Document

JSON_PATHS = ("/asyncapi", "/asyncapi.json")
HTML_PATH = "/asyncapi.html"


@cache
def _raw() -> bytes:
    return (importlib.resources.files("opendrec_gateway") / "asyncapi.json").read_bytes()


@cache
def _page() -> bytes:
    return page(json.loads(_raw())).encode()


def find(path: str) -> Document | None:
    if path in JSON_PATHS:
        return Document(_raw(), b"application/json")
    if path == HTML_PATH:
        return Document(_page(), b"text/html; charset=utf-8")
    return None


def _list(items: list[str]) -> str:
    return ", ".join(html.escape(i) for i in items) or "&mdash;"


def page(doc: dict[str, Any]) -> str:
    """The document as one readable page: a table of topics, then each message's payload schema."""
    e = html.escape
    channels = doc["channels"]
    rows = []
    for topic, channel in sorted(channels.items()):
        if topic.endswith(".dlq"):
            continue
        [message] = channel["messages"]
        rows.append(
            f'<tr><td><a href="#{e(message)}"><code>{e(topic)}</code></a></td><td><code>{e(channel["x-key"])}</code></td>'
            f"<td>{_list(channel['x-producers'])}</td><td>{_list(channel['x-consumers'])}</td>"
            f"<td><code>{e(topic)}.dlq</code></td></tr>"
        )
    sections = []
    for name, message in sorted(doc["components"]["messages"].items()):
        schema = json.dumps(doc["components"]["schemas"][name], indent=2, sort_keys=True)
        sections.append(
            f'<section id="{e(name)}"><h3>{e(name)} <small><code>{e(message["name"])}</code> v{message["x-version"]},'
            f" key <code>{e(message['x-key'])}</code></small></h3><p>{e(message['summary'])}</p>"
            f"<pre>{e(schema)}</pre></section>"
        )
    defs = []
    for name, schema in sorted(doc["components"]["schemas"].items()):
        if name not in doc["components"]["messages"]:
            defs.append(
                f'<section id="{e(name)}"><h3>{e(name)}</h3><pre>{e(json.dumps(schema, indent=2, sort_keys=True))}</pre></section>'
            )
    info = doc["info"]
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(info["title"])} (AsyncAPI {e(doc["asyncapi"])})</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #1b1f23; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #d0d7de; padding: .4rem .6rem; text-align: left; vertical-align: top; }}
pre {{ background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: .85rem; }}
small {{ color: #57606a; font-weight: normal; }}
</style>
</head>
<body>
<h1>{e(info["title"])} <small>{e(info["version"])} &middot; AsyncAPI {e(doc["asyncapi"])} &middot; <a href="/asyncapi">JSON</a></small></h1>
<p>{e(info["description"])}</p>
<p>Every message is the envelope (<code>event_id</code>, <code>type</code>, <code>version</code>, <code>occurred_at</code>,
<code>producer</code>, <code>payload</code>) with trace context in the Kafka headers; the payloads follow.</p>
<h2>Topics</h2>
<table>
<thead><tr><th>topic</th><th>key</th><th>producers</th><th>consumers</th><th>dead letters</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody>
</table>
<h2>Payloads</h2>
{"".join(sections)}
<h2>Shared schemas</h2>
{"".join(defs)}
</body>
</html>
"""
