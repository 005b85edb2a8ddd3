"""The one Dockerfile, its .dockerignore and the health probe it ships, checked without Docker."""

import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dockerfile
import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
HEALTHCHECK = REPO / "deploy" / "healthcheck.py"
KNOWN_INSTRUCTIONS = set(
    [
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ]
)


def instructions() -> list[dockerfile.Command]:
    """The Dockerfile as BuildKit's own parser reads it."""
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def stages() -> list[list[dockerfile.Command]]:
    """Instructions grouped by build stage (each list starts with its FROM)."""
    groups: list[list[dockerfile.Command]] = []
    for command in instructions():
        if command.cmd == "FROM":
            groups.append([])
        if groups:
            groups[-1].append(command)
    return groups


def global_args() -> dict[str, str]:
    """ARG defaults declared before the first FROM (usable in FROM lines)."""
    defaults = {}
    for command in instructions():
        if command.cmd == "FROM":
            break
        if command.cmd == "ARG":
            name, _, value = command.value[0].partition("=")
            defaults[name] = value
    return defaults


def final_cmd() -> list[str]:
    (cmd,) = [c for c in stages()[-1] if c.cmd == "CMD"]
    assert cmd.json, "CMD should be in exec form"
    return list(cmd.value)


def test_the_dockerfile_uses_only_known_instructions():
    assert {c.cmd for c in instructions()} <= KNOWN_INSTRUCTIONS


def test_every_stage_builds_on_python_3_11_slim():
    defaults = global_args()
    for stage in stages():
        image = stage[0].value[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], image)
        # Pinned to a patch release; build and run stages share it (the venv links to its python).
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", image), image


def test_dependencies_come_from_the_lock_file_without_dev_tools():
    syncs = [c.value[0] for c in instructions() if c.cmd == "RUN" and "uv sync" in c.value[0]]
    assert syncs, "no `uv sync` in the Dockerfile"
    for args in syncs:
        assert "--frozen" in args and "--no-dev" in args, args
        assert '--package "opendrec-$SERVICE"' in args, "the SERVICE build arg must choose the package"
    copied = [source for c in instructions() if c.cmd == "COPY" for source in c.value[:-1]]
    assert "uv.lock" in copied


def test_the_image_runs_as_a_non_root_user():
    users = [c.value[0] for c in stages()[-1] if c.cmd == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    # Numeric, so that Kubernetes' runAsNonRoot can verify it.
    assert uid.isdigit() and int(uid) != 0, users[-1]


def run_default_command(service: str) -> subprocess.CompletedProcess:
    """Run the image's CMD as the container would, with this interpreter as `python`."""
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "OPENDREC_SERVICE": service,
    }
    return subprocess.run(final_cmd(), env=env, capture_output=True, text=True, timeout=60)


def test_the_default_command_runs_the_built_service_module():
    # A service name that exists nowhere, so nothing real starts: python reports the
    # module it was asked for, which shows the name -> module translation.
    result = run_default_command("no-such-service")
    assert result.returncode != 0
    assert "No module named opendrec_no_such_service" in result.stderr


def test_the_default_command_explains_a_missing_service():
    result = run_default_command("")
    assert result.returncode != 0
    assert "--build-arg SERVICE" in result.stderr


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build():
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for pattern in (".git", "**/.venv", ".env", "**/*.pem", "**/*.key"):
        assert pattern in patterns, pattern
    # The health probe is the one file of deploy/ the image needs.
    assert "!deploy/healthcheck.py" in patterns
    copied = [c.value[0] for c in stages()[-1] if c.cmd == "COPY" and not c.flags]
    assert "deploy/healthcheck.py" in copied


class _Status:
    code = 200


@pytest.fixture
def service():
    """A real HTTP server on loopback whose /readyz answers _Status.code."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(_Status.code if self.path == "/readyz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    _Status.code = 200


def probe(port: int, path: str = "/readyz") -> subprocess.CompletedProcess:
    env = {**os.environ, "HTTP_PORT": str(port)}
    return subprocess.run([sys.executable, str(HEALTHCHECK), path], env=env, capture_output=True, text=True, timeout=60)


def test_healthcheck_passes_when_the_service_is_ready(service):
    assert probe(service.server_address[1]).returncode == 0


def test_healthcheck_fails_when_the_service_is_not_ready(service):
    _Status.code = 503
    result = probe(service.server_address[1])
    assert result.returncode == 1
    assert "503" in result.stderr


def test_healthcheck_fails_when_nothing_listens(service):
    port = service.server_address[1]
    service.shutdown()
    service.server_close()
    result = probe(port)
    assert result.returncode == 1
    assert f"127.0.0.1:{port}/readyz" in result.stderr
