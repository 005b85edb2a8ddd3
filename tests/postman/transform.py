"""Turn the D-REC STAGE Postman collection (drec-stage.postman_collection.json, verbatim from the seed) into one
that runs against our platform, changing ONLY its variables: every request keeps its method, path, query and
body shape. The changes, request by request, are the table CHANGES below; `transform` applies exactly those and
fails on anything else (a request it does not know, a value that is not where the table says), so a new seed
cannot slip through half-changed.

What changes, and why:
- the base URL `https://stage-api.drecs.org` -> `{{baseUrl}}` (the gateway of the platform under test);
- e-mails, organization names, the device's externalId and the reservation name -> unique per run
  (`{{developerEmail}}`...), since the platform keeps them unique;
- dates -> inside the windows the platform allows now: History reads within 3 years before the device's
  onboarding (the seed's are from 2022), ongoing reads after it and not in the future (given by the test as it
  sends them), a reservation window that is not more than 3 years old;
- bearer tokens and ids the seed hard-codes (tokens of STAGE users, device 4, reservation 4 and its uid) ->
  values captured from earlier answers of the same run, by small test scripts added to the login and create
  requests (`pm.environment.set`: newman exports the environment between runs, while its --export-collection
  writes the collection variables as they were before the run);
- the seed's second developer's devices `EnergyT` (Delta) and `EnergyT1` (Aggregate) and its Buyer Login account
  (energy212@gmail.com) are not made by the collection: the first two become devices the test registers for
  the same developer (`{{deltaExternalId}}`, `{{aggregateExternalId}}`), the last the buyer the collection
  registers (its e-mail and password).

Run `python transform.py OUT.json` to see the result; the test (test_drec_collection.py) calls `transform`.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
SEED = HERE / "drec-stage.postman_collection.json"
STAGE_URL = "https://stage-api.drecs.org"


@dataclass(frozen=True)
class Change:
    """How one request of the seed changes: `(old, new)` text replacements in its body and in its path
    segments / query values, its bearer token (None: it has none, "keep": left as it is), and the collection
    variables its test script captures from the answer (variable -> field of the JSON answer)."""

    body: tuple[tuple[str, str], ...] = ()
    path: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()
    token: str | None = None
    captures: dict[str, str] = field(default_factory=dict)
    why: str = ""


def _json_text(value: str) -> str:
    """A JSON string value as it appears in a raw body: `"value"`."""
    return json.dumps(value)


CHANGES: dict[str, Change] = {
    "Register Developer": Change(
        body=(
            (_json_text("UAT_STAGE_DEVELOPER1_231122@gmail.com"), _json_text("{{developerEmail}}")),
            (_json_text("Drec4"), _json_text("{{developerOrgName}}")),
        ),
        why="a unique e-mail and organization name",
    ),
    "Developer Login": Change(
        body=((_json_text("UAT_STAGE_DEVELOPER1_231122@gmail.com"), _json_text("{{developerEmail}}")),),
        token="keep",  # a stale STAGE token on a public request, as Postman users send it: kept verbatim
        captures={"developerToken": "accessToken"},
        why="the developer just registered; the access token is captured for the developer's requests",
    ),
    "Register Device": Change(
        body=((_json_text("UAT_STAGE_Drec4"), _json_text("{{deviceExternalId}}")),),
        token="{{developerToken}}",
        captures={"deviceId": "id"},
        why="a unique externalId; the new device's id is captured for the reservation",
    ),
    "List Registered Devices": Change(token="{{developerToken}}", why="the developer's token"),
    "History Reads": Change(
        body=(
            (_json_text("2022-07-23T10:36:02.209Z"), _json_text("{{historyStart}}")),
            (_json_text("2022-11-23T10:00:02.209Z"), _json_text("{{historyEnd}}")),
        ),
        path=(("UAT_STAGE_Drec4", "{{deviceExternalId}}"),),
        token="{{developerToken}}",
        why="the device the collection registered; History within 3 years before its onboarding",
    ),
    "Delta Reads - Ongoing": Change(
        body=((_json_text("2022-11-16T11:40:13.444Z"), _json_text("{{deltaReadEnd}}")),),
        path=(("EnergyT", "{{deltaExternalId}}"),),
        token="{{developerToken}}",
        why="a Delta device the test registered for the developer; the read ends after its onboarding",
    ),
    "Aggregate Reads - Ongoing": Change(
        body=((_json_text("2022-11-16T11:37:13.444Z"), _json_text("{{aggregateReadEnd}}")),),
        path=(("EnergyT1", "{{aggregateExternalId}}"),),
        token="{{developerToken}}",
        why="an Aggregate device the test registered for the developer; the read ends after its onboarding",
    ),
    "Register Buyer": Change(
        body=(
            (_json_text("buyerswag@gmail.com"), _json_text("{{buyerEmail}}")),
            (_json_text("swi979"), _json_text("{{buyerOrgName}}")),
        ),
        why="a unique e-mail and organization name",
    ),
    "Buyer Login": Change(
        body=(
            (_json_text("energy212@gmail.com"), _json_text("{{buyerEmail}}")),
            (_json_text("DEF123"), _json_text("{{buyerPassword}}")),
        ),
        captures={"buyerToken": "accessToken"},
        why="the buyer just registered (the seed logs in another STAGE account); its token is captured",
    ),
    "Create Reservation": Change(
        body=(
            (_json_text("UAT-STAGE-231122-RES1"), _json_text("{{reservationName}}")),
            ("[\r\n    4\r\n  ]", "[\r\n    {{deviceId}}\r\n  ]"),
            (_json_text("2022-11-23T10:00:02.209Z"), _json_text("{{reservationStart}}")),
            (_json_text("2022-11-23T11:30:02.209Z"), _json_text("{{reservationEnd}}")),
        ),
        token="{{buyerToken}}",
        captures={"reservationId": "id", "reservationUid": "devicegroup_uid"},
        why="the device the collection registered, a unique name, a window around now as long as the seed's",
    ),
    "Devices Available For Reservation": Change(token="{{buyerToken}}", why="the buyer's token"),
    "List Devices - Part Of Reservation": Change(
        path=(("89c400e2-c222-42ac-98ee-74d588cb2dfb", "{{reservationUid}}"),),
        token="{{buyerToken}}",
        why="the uid of the reservation just made",
    ),
    "Get certificate": Change(
        query=(("4", "{{reservationId}}"),), token="{{buyerToken}}", why="the id of the reservation just made"
    ),
    "Devices Reserved For Me": Change(token="{{buyerToken}}", why="the buyer's token"),
}


def requests(collection: dict[str, Any]) -> list[dict[str, Any]]:
    """Every request item, depth first (the order newman runs them)."""
    found: list[dict[str, Any]] = []

    def walk(items: list[dict[str, Any]]) -> None:
        for item in items:
            if "item" in item:
                walk(item["item"])
            else:
                found.append(item)

    walk(collection["item"])
    return found


def folders(collection: dict[str, Any]) -> dict[str, list[str]]:
    """Folder name -> names of its requests."""
    return {f["name"]: [r["name"] for r in f["item"]] for f in collection["item"] if "item" in f}


def _replace(text: str, old: str, new: str, where: str) -> str:
    if text.count(old) != 1:
        raise ValueError(f"{where}: expected {old!r} once, found it {text.count(old)} times")
    return text.replace(old, new)


def _capture_script(captures: dict[str, str]) -> dict[str, Any]:
    lines = ["if (pm.response.code >= 200 && pm.response.code < 300) {", "  const answer = pm.response.json();"]
    for variable, answer_field in captures.items():
        lines.append(
            f"  if (answer[{json.dumps(answer_field)}] !== undefined) "
            f"pm.environment.set({json.dumps(variable)}, String(answer[{json.dumps(answer_field)}]));"
        )
    lines.append("}")
    return {"listen": "test", "script": {"type": "text/javascript", "exec": lines}}


def _transform_url(url: dict[str, Any], change: Change, where: str) -> dict[str, Any]:
    raw = url["raw"]
    if not raw.startswith(STAGE_URL + "/"):
        raise ValueError(f"{where}: URL {raw!r} is not on {STAGE_URL}")
    raw = "{{baseUrl}}" + raw[len(STAGE_URL) :]
    path = list(url["path"])
    for old, new in change.path:
        if path.count(old) != 1:
            raise ValueError(f"{where}: expected path segment {old!r} once in {path}")
        path[path.index(old)] = new
        raw = _replace(raw, f"/{old}", f"/{new}", where)
    query = copy.deepcopy(url.get("query"))
    for old, new in change.query:
        hits = [q for q in query or [] if q["value"] == old]
        if len(hits) != 1:
            raise ValueError(f"{where}: expected query value {old!r} once")
        hits[0]["value"] = new
        raw = _replace(raw, f"={old}", f"={new}", where)
    out: dict[str, Any] = {"raw": raw, "host": ["{{baseUrl}}"], "path": path}
    if query is not None:
        out["query"] = query
    return out


def transform(seed: dict[str, Any], variables: dict[str, str]) -> dict[str, Any]:
    """The seed with CHANGES applied and `variables` as its collection variables."""
    collection = copy.deepcopy(seed)
    names = [r["name"] for r in requests(collection)]
    if sorted(names) != sorted(CHANGES):
        raise ValueError(f"the seed's requests {names} are not the ones CHANGES describes {list(CHANGES)}")
    for item in requests(collection):
        where = item["name"]
        change = CHANGES[where]
        request = item["request"]
        request["url"] = _transform_url(request["url"], change, where)
        if change.body:
            text = request["body"]["raw"]
            for old, new in change.body:
                text = _replace(text, old, new, where)
            request["body"]["raw"] = text
        if change.token == "keep":
            pass
        elif change.token is None:
            if "auth" in request:
                raise ValueError(f"{where}: the seed sends a token CHANGES does not replace")
        else:
            if change.token and "auth" not in request:
                request["auth"] = {"type": "bearer", "bearer": [{"key": "token", "value": "", "type": "string"}]}
            [token] = [b for b in request["auth"]["bearer"] if b["key"] == "token"]
            token["value"] = change.token
        if change.captures:
            item["event"] = [*item.get("event", []), _capture_script(change.captures)]
    collection["variable"] = [{"key": k, "value": v, "type": "string"} for k, v in variables.items()]
    return collection


def seed() -> dict[str, Any]:
    return json.loads(SEED.read_text(encoding="utf-8"))


if __name__ == "__main__":
    out = transform(seed(), {"baseUrl": "http://127.0.0.1:8000"})
    Path(sys.argv[1]).write_text(json.dumps(out, indent=2), encoding="utf-8")
