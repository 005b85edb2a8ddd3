"""Extract the reference D-REC API's endpoints into drec_reference_endpoints.txt (run once per reference update).

    .venv/bin/python tests/contract/extract_drec_endpoints.py /work/.mirror/d-rec+drec-origin/repo [commit]

Reads every `*.controller.ts` under apps/drec-api/src at the commit (default HEAD) straight from git, drops
comments, and joins each controller's `@Controller('prefix')` with its `@Get/@Post/@Put/@Patch/@Delete('path')`
under the global prefix `/api` (apps/drec-api/src/index.ts). Nest's `:param` becomes `{param}`. One line per
endpoint: METHOD, path, controller file stem and handler name, tab-separated, in source order.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).with_name("drec_reference_endpoints.txt")
SOURCE_ROOT = "apps/drec-api/src"
GLOBAL_PREFIX = "/api"

# a string literal (kept), or a comment (dropped): strings first so "http://..." is not taken for a comment
_TOKEN = re.compile(r"""('(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|`(?:\\.|[^`\\])*`)|(//[^\n]*|/\*.*?\*/)""", re.S)
_STRING = r"""\s*(?:'([^']*)'|"([^"]*)"|`([^`$]*)`)?\s*"""
_CONTROLLER = re.compile(r"@Controller\(" + _STRING + r"\)")
_ROUTE = re.compile(r"@(Get|Post|Put|Patch|Delete)\(" + _STRING + r"\)")
_NAME = re.compile(r"[A-Za-z_]\w*")
_MODIFIERS = {"async", "public", "private", "protected", "static"}


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def strip_comments(source: str) -> str:
    return _TOKEN.sub(lambda m: m.group(1) or ("\n" * m.group(2).count("\n")), source)


def literal(match: re.Match[str], first: int) -> str:
    return next((g for g in match.groups()[first : first + 3] if g is not None), "")


def join(*parts: str) -> str:
    segments = [s for part in parts for s in part.split("/") if s]
    path = "/" + "/".join(segments)
    return re.sub(r":(\w+)", r"{\1}", path)


def handler_after(source: str, start: int) -> str:
    """The method a route decorator belongs to: the first name called at bracket depth 0 that is not a decorator
    (decorators such as `@UseGuards(AuthGuard('jwt'))` may span lines and call functions of their own)."""
    depth, i = 0, start
    while i < len(source):
        char = source[i]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and (char == "@" or char.isalpha() or char == "_"):
            name = _NAME.match(source, i + (char == "@"))
            assert name is not None
            i = name.end()
            if char != "@" and name.group(0) not in _MODIFIERS and source[i:].lstrip().startswith("("):
                return name.group(0)
            continue
        i += 1
    return "?"


def endpoints(repo: str, commit: str) -> list[tuple[str, str, str, str]]:
    files = [
        f
        for f in git(repo, "ls-tree", "-r", "--name-only", commit, SOURCE_ROOT).split()
        if f.endswith(".controller.ts")
    ]
    found: list[tuple[str, str, str, str]] = []
    for file in sorted(files):
        source = strip_comments(git(repo, "show", f"{commit}:{file}"))
        controller = _CONTROLLER.search(source)
        if controller is None:
            continue
        prefix = literal(controller, 0)
        stem = Path(file).name.removesuffix(".controller.ts")
        for route in _ROUTE.finditer(source, controller.end()):
            found.append(
                (
                    route.group(1).upper(),
                    join(GLOBAL_PREFIX, prefix, literal(route, 1)),
                    stem,
                    handler_after(source, route.end()),
                )
            )
    return found


def main() -> None:
    repo = sys.argv[1] if len(sys.argv) > 1 else "/work/.mirror/d-rec+drec-origin/repo"
    commit = git(repo, "rev-parse", sys.argv[2] if len(sys.argv) > 2 else "HEAD").strip()
    rows = endpoints(repo, commit)
    lines = [
        "# The reference D-REC API's endpoints (written by extract_drec_endpoints.py; do not edit by hand)",
        f"# reference: github.com/d-rec/drec-origin@{commit}",
        "# method\tpath\tcontroller\thandler",
        *("\t".join(row) for row in rows),
    ]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{len(rows)} endpoints from {commit} -> {OUT}")


if __name__ == "__main__":
    main()
