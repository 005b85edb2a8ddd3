"""A stand-in service for supervisor tests: serves /healthz, /readyz and /env (the platform
variables it was started with) on HTTP_HOST:HTTP_PORT, exits cleanly on SIGTERM.
With DUMMY_EXIT_AFTER_S set it exits by itself (code 3) after that many seconds."""

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHOWN = (
    "ENVIRONMENT",
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SESSION_TIMEOUT_MS",
    "KAFKA_HEARTBEAT_INTERVAL_MS",
    "HTTP_HOST",
    "HTTP_PORT",
    "TRACES_FILE",
    "SMTP_URL",
    "ADMIN_EMAIL",
    "ADMIN_PASSWORD",
    "JWT_PRIVATE_KEY_FILE",
    "KAZAM_URL",
    "KAZAM_TOKEN",
    "KAZAM_POLL_SECONDS",
    "DATABASE_NAME_PREFIX",
    "IDENTITY_URL",
    "GATEWAY_URL",
)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path in ("/healthz", "/readyz"):
            body = b'{"status":"ok"}'
        elif self.path == "/env":
            body = json.dumps({k: os.environ.get(k) for k in SHOWN}).encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def ensure_database():
    # like a real service: its own database `<DATABASE_NAME_PREFIX>opendrec_<name>` on DATABASE_URL
    import psycopg
    from psycopg import sql

    name = os.environ.get("DATABASE_NAME_PREFIX", "") + "opendrec_dummy"
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                pass  # the other dummy of the table won the race


def main():
    if os.environ.get("DATABASE_URL"):
        ensure_database()
    server = ThreadingHTTPServer((os.environ["HTTP_HOST"], int(os.environ["HTTP_PORT"])), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    if os.environ.get("DUMMY_EXIT_AFTER_S"):
        threading.Timer(float(os.environ["DUMMY_EXIT_AFTER_S"]), lambda: os._exit(3)).start()
    print(f"dummy listening on {os.environ['HTTP_PORT']}", flush=True)
    server.serve_forever()
    print("dummy stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
