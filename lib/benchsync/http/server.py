"""`benchsync serve`: the HTTP API under waitress, recorded as one run of `http_receiver`.

waitress (a production WSGI server) reads each request fully before the application
sees it, spooling bodies over 512 KiB to a temp file, so a slow client never holds a
worker thread. Its `max_request_body_size` is set from `[http] max_upload_bytes`: a
request whose Content-Length is over the limit is answered 413 as soon as its headers
arrive, and a chunked one as soon as it passes the limit; the body is not read further.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

from .. import runlog
from ..config import Config
from ..db.runs import finish_run, start_run
from ..errors import (
    EXIT_CONFIG,
    EXIT_ITEMS_FAILED,
    EXIT_OK,
    BenchsyncError,
    ConfigError,
    UnreachableError,
)
from ..jobs import open_database, open_store
from .app import Receiver, Settings, log_request
from .auth import Tokens

log = logging.getLogger("benchsync")

JOB = "http_receiver"
DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_THREADS = 8


@dataclass
class Listen:
    """Where to listen: `HOST:PORT`, `[v6]:PORT`."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        host, sep, port = text.strip().rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"[http] listen = {text!r}: use HOST:PORT, e.g. {DEFAULT_LISTEN}")
        return cls(host, int(port))


def settings_from(config: Config, run_id: int | None = None) -> tuple[Settings, int]:
    """Read `[http]` and `[limits]`: the application's settings and the thread count."""
    http = config.section("http")
    tokens = Tokens.load(http.get_path("token_file"), http.get_bool("allow_anonymous", False))
    settings = Settings(
        max_upload_bytes=http.get_size("max_upload_bytes", "64 MiB"),
        max_file_bytes=config.section("limits").get_size("max_file_bytes", "64 MiB"),
        tokens=tokens,
        run_id=run_id,
    )
    threads = http.get_int("threads", DEFAULT_THREADS)
    if not 1 <= threads <= 256:
        raise ConfigError(f"[http] threads = {threads}: use 1 to 256")
    return settings, threads


def serve(config: Config, listen: str | None, verbose: int = 0, quiet: bool = False) -> int:
    """Serve until SIGTERM or SIGINT; return the exit code (0, 2 or 3)."""
    logger = runlog.setup(JOB, config.section("logs").get_path("dir"), verbose, quiet)
    start = time.monotonic()
    try:
        where = Listen.parse(listen or config.section("http").get("listen") or DEFAULT_LISTEN)
        settings, threads = settings_from(config)
        store = open_store(config)
        store.clean_temp()
        db = open_database(config)
        try:
            settings.run_id = start_run(
                db, JOB, socket.gethostname(), os.getpid(), getattr(logger, "log_path", None)
            )
        finally:
            db.close()
    except (ConfigError, UnreachableError) as e:
        log.error("%s", e)
        return e.exit_code
    app = Receiver(config, store, settings)
    try:
        server = _create_server(app, where, threads, settings.max_upload_bytes)
    except OSError as e:
        detail = f"cannot listen on {where.host}:{where.port}: {e.strerror}"
        log.error("%s", detail)
        _finish(config, app, "error", detail, start)
        return EXIT_CONFIG
    log.info(
        "listening on http://%s:%s threads=%d max_upload_bytes=%d run=%s",
        where.host,
        server.effective_port,
        threads,
        settings.max_upload_bytes,
        settings.run_id,
    )
    _stop_on_sigterm()
    status, detail = "ok", None
    try:
        server.run()  # returns on KeyboardInterrupt / SystemExit, after stopping the workers
    except Exception as e:  # noqa: BLE001 - a bug: record it, never a traceback for the user
        status, detail = "error", f"internal error: {type(e).__name__}: {e}"
        log.error("%s", detail)
    finally:
        _finish(config, app, status, detail, start)
    return EXIT_OK if status == "ok" else EXIT_ITEMS_FAILED


def _stop_on_sigterm() -> None:
    """SIGTERM stops the server like Ctrl-C: waitress then finishes its running requests."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)


def _finish(config: Config, app: Receiver, status: str, detail: str | None, start: float) -> None:
    """Close the server's `runs` row with its counts and write the summary line."""
    c = app.counts
    run_id = app.settings.run_id
    try:
        db = open_database(config, migrate=False)
        try:
            finish_run(db, run_id, status, c.as_dict(), detail)  # type: ignore[arg-type]
        finally:
            db.close()
    except BenchsyncError as e:
        log.error("could not record the end of run %s: %s", run_id, e)
    log.info(
        "run=%s done seen=%d new=%d dup=%d failed=%d skipped=%d seconds=%.2f status=%s",
        run_id,
        c.seen,
        c.new,
        c.dup,
        c.failed,
        c.skipped,
        time.monotonic() - start,
        status,
    )


def _create_server(app: Receiver, where: Listen, threads: int, max_upload: int) -> Any:
    """A waitress server whose own refusals (413, 400) answer JSON and get a log line."""
    from waitress import create_server
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    class JsonErrorTask(ErrorTask):
        def execute(self) -> None:
            e = self.request.error
            reason = f"{e.reason}: {e.body}"
            if e.code == 413:
                reason = f"too large: over max_upload_bytes ({max_upload} bytes)"
                app.count(failed=1)
                log.warning("refused status=413 reason=%s", json.dumps(reason))
            body = json.dumps({"error": reason}).encode() + b"\n"
            self.status = f"{e.code} {e.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)
            log_request(
                self.request.command or "-",
                self.request.path or "-",
                e.code,
                None,
                None,
                self.request.content_length or 0,
                time.monotonic(),
                self.channel.addr[0] if self.channel.addr else None,
            )

    class Channel(HTTPChannel):
        error_task_class = JsonErrorTask

    waitress_log = logging.getLogger("waitress")
    waitress_log.handlers = list(log.handlers)  # its errors go to the run log too
    waitress_log.propagate = False
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "queue depth" under load
    server = create_server(
        app,
        host=where.host,
        port=where.port,
        threads=threads,
        ident="benchsync",
        max_request_body_size=max_upload + 1,  # waitress refuses a body of exactly its limit
        connection_limit=max(100, threads * 16),
        channel_timeout=60,
        clear_untrusted_proxy_headers=True,
    )
    server.channel_class = Channel
    return server
