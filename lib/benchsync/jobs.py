"""Run one job the same way every time: lock, log, connect, record the run, summarise.

Every cron job (`ftp_sync`, `scp_sync`, `imap_sync`, `verifier`, `cleaner`) and the
manual `ingest` goes through `run_job`, so each gets the flock that keeps a second copy
out, the run log with its closing summary line, the `runs` row, and the exit code rules.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import runlog
from .config import Config
from .db import Database, connect
from .db.runs import finish_run, start_run
from .errors import EXIT_ITEMS_FAILED, EXIT_OK, BenchsyncError, ConfigError, UnreachableError
from .parsing import Analyst, default_workers
from .pipeline import Counts, Pipeline
from .store import Store

log = logging.getLogger("benchsync")


@dataclass
class JobContext:
    """What a job body gets: config, database, store, its run id and flags."""

    job: str
    config: Config
    db: Database
    store: Store
    run_id: int
    dry_run: bool
    counts: Counts
    analyst: Analyst | None = None

    def pipeline(self) -> Pipeline:
        """A pipeline writing into this job's database and store, parsing on a spare core."""
        limits = self.config.section("limits")
        max_bytes = limits.get_size("max_file_bytes", "64 MiB")
        if self.analyst is None:
            workers = limits.get_int("parse_workers", default_workers())
            self.analyst = Analyst(
                self.db, self.store, lambda: open_database(self.config), min(workers, 1)
            )
        return Pipeline(self.db, self.store, max_bytes, self.run_id, self.dry_run, self.analyst)


def open_database(config: Config, migrate: bool = True) -> Database:
    """Connect to the configured database (password from `password_file` if set)."""
    section = config.section("database")
    return connect(config.database_url(), section.get_secret("password_file"), migrate=migrate)


def open_store(config: Config) -> Store:
    """The configured store, checked writable."""
    root = config.section("store").get_path("root")
    assert root is not None
    return Store(root).open()


@contextmanager
def job_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive flock on `path`; yield False at once when another run holds it.

    The kernel drops the lock when the holder dies, so a killed run never leaves a stale one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)


def run_job(
    job: str,
    config: Config,
    body: Callable[[JobContext], Counts],
    *,
    verbose: int = 0,
    quiet: bool = False,
    dry_run: bool = False,
) -> int:
    """Run `body` as one run of `job` and return the exit code (0, 1, 2 or 3)."""
    logs_dir = config.section("logs").get_path("dir")
    logger = runlog.setup(job, logs_dir, verbose, quiet)
    lock_path = config.section("locks").get_path("dir") / f"{job}.lock"
    with job_lock(lock_path) as got:
        if not got:
            log.info("skipped: locked (another %s run holds %s)", job, lock_path)
            return EXIT_OK
        return _run_locked(job, config, body, logger, dry_run)


def _run_locked(job, config, body, logger, dry_run) -> int:
    start = time.monotonic()
    counts = Counts()
    run_id: int | None = None
    db: Database | None = None
    status, code, detail = "ok", EXIT_OK, None
    try:
        store = open_store(config)
        store.clean_temp()
        db = open_database(config)
        run_id = start_run(db, job, socket.gethostname(), os.getpid(), logger.log_path)
        ctx = JobContext(job, config, db, store, run_id, dry_run, counts)
        try:
            counts = body(ctx) or counts
        finally:
            if ctx.analyst is not None and not dry_run:
                ctx.analyst.close()
        if counts.failed:
            status, code = "failed", EXIT_ITEMS_FAILED
            detail = f"{counts.failed} items failed"
    except (UnreachableError, ConfigError) as e:
        status, code, detail = "error", e.exit_code, str(e)
        log.error("%s", e)
    except BenchsyncError as e:
        status, code, detail = "failed", e.exit_code, str(e)
        log.error("%s", e)
    except Exception as e:  # noqa: BLE001 - a bug: traceback to the run log only
        status, code, detail = (
            "error",
            EXIT_ITEMS_FAILED,
            f"internal error: {type(e).__name__}: {e}",
        )
        _log_internal_error(logger, e)
    finally:
        seconds = time.monotonic() - start
        _finish(db, run_id, status, counts, detail)
        log.info(
            "run=%s done seen=%d new=%d dup=%d failed=%d skipped=%d seconds=%.2f status=%s",
            run_id if run_id is not None else "none",
            counts.seen,
            counts.new,
            counts.dup,
            counts.failed,
            counts.skipped,
            seconds,
            status,
        )
        if db is not None:
            db.close()
    return code


def _finish(db: Database | None, run_id: int | None, status: str, counts: Counts, detail) -> None:
    if db is None or run_id is None:
        return
    try:
        finish_run(db, run_id, status, counts.as_dict(), detail)
    except BenchsyncError as e:
        log.error("could not record the end of run %s: %s", run_id, e)


def _log_internal_error(logger: logging.Logger, e: Exception) -> None:
    """Full traceback into the run log; one line for the person reading stderr."""
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            record = logger.makeRecord(
                logger.name,
                logging.ERROR,
                __file__,
                0,
                "internal error",
                (),
                (type(e), e, e.__traceback__),
            )
            handler.handle(record)
    log.error("internal error: %s: %s (traceback in the run log)", type(e).__name__, e)
