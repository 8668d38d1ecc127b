"""Parse what was filed: after the commit, in a process of its own.

Filing — storing the bytes, recording the receipt — is the part that must be exactly
once, durable and fast; analysis can follow a moment later. New files are committed with
`parse_status = 'pending'`, and the `Analyst` parses them from the store and writes their
rows in transactions of its own: in a forked process during a sync run, so that parsing
runs on the other core while the job goes on fetching, or inline for the HTTP receiver,
which answers with the parse status.

A file is claimed before it is parsed (`pending` → `parsing`, one UPDATE that only one
collector can win), so two collectors never parse the same file. Files left `pending` by
a killed run, or `parsing` by a killed analyst, are taken by the next run's catch-up.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .analyze import Unparsed, analyze
from .db import Database
from .db import bench as bench_db
from .errors import BenchsyncError
from .store import KEEP_RAW, Store
from .workers import die_with_parent

log = logging.getLogger("benchsync")

STALE_CLAIM = timedelta(hours=1)  # a `parsing` claim older than this was abandoned
CATCH_UP_LIMIT = 1000  # files a run takes over from earlier runs, at most


def default_workers() -> int:
    """A background analyst when there is a core to spare for it."""
    return 1 if (os.cpu_count() or 1) > 1 else 0


def analyze_files(db: Database, store: Store, files: Sequence[tuple[int, str | None]]) -> dict:
    """Claim, parse and record the given (file id, name) pairs; return id → parse status."""
    names = dict(files)
    claimed = bench_db.claim_pending(db, list(names))
    return _parse_claimed(db, store, claimed, names)


def catch_up(db: Database, store: Store, started_at: datetime) -> int:
    """Parse files that earlier runs filed but never parsed; return how many."""
    claimed = bench_db.claim_stale(
        db,
        started_at.isoformat(timespec="microseconds"),
        (started_at - STALE_CLAIM).isoformat(timespec="microseconds"),
        CATCH_UP_LIMIT,
    )
    if claimed:
        log.info("parsing %d files left unparsed by earlier runs", len(claimed))
        names = bench_db.received_names(db, [fid for fid, _, _ in claimed])
        _parse_claimed(db, store, claimed, names)
    return len(claimed)


def _parse_claimed(db: Database, store: Store, claimed, names) -> dict[int, str]:
    return {fid: result.status for fid, result in parse_files(db, store, claimed, names)}


def parse_files(
    db: Database,
    store: Store,
    files: Sequence[tuple[int, str, int]],
    names: dict[int, str | None],
    dry_run: bool = False,
) -> list[tuple[int, Any]]:
    """Parse (id, md5, size) files from the store and replace their rows in one transaction."""
    results = []
    for file_id, md5, size in files:
        raw = _read(store, md5) if size <= KEEP_RAW else None
        if raw is None and size <= KEEP_RAW:
            results.append((file_id, Unparsed("failed", "stored file unreadable")))
        else:
            results.append((file_id, analyze(raw, names.get(file_id))))
    if not dry_run:
        with db.transaction():
            bench_db.save_parses(db, results, replace=True)
            bench_db.set_parse_statuses(db, [(r.status, r.reason, fid) for fid, r in results])
    return results


def _read(store: Store, md5: str) -> bytes | None:
    try:
        return store.read(md5)
    except (OSError, ValueError) as e:
        log.warning("parse failed md5=%s reason=stored file unreadable: %s", md5, e)
        return None


class Analyst:
    """Parses the files a run commits: in a background process, or inline with workers=0."""

    def __init__(
        self, db: Database, store: Store, open_db: Callable[[], Database], workers: int
    ) -> None:
        self.db, self.store, self._open_db, self.workers = db, store, open_db, workers
        self.started_at = datetime.now(UTC)
        self._queue: multiprocessing.Queue | None = None
        self._proc: multiprocessing.Process | None = None
        self._parent = os.getpid()

    def submit(self, files: Sequence[tuple[int, str | None]]) -> dict[int, str]:
        """Hand newly committed files over; inline, return their parse statuses."""
        if not files:
            return {}
        if self.workers <= 0 or not self._start():
            return analyze_files(self.db, self.store, files)
        self._queue.put(list(files))
        return {}

    def _start(self) -> bool:
        if self._proc is not None:
            return True
        try:
            ctx = multiprocessing.get_context("fork")
            self._queue = ctx.Queue()
            self._proc = ctx.Process(target=self._serve, name="benchsync-analyst", daemon=True)
            self._proc.start()
        except (OSError, ValueError) as e:
            log.warning("no background parser (%s): parsing in the job's process", e)
            self.workers = 0
            return False
        return True

    def _serve(self) -> None:
        """The background process: its own database connection, the same store."""
        die_with_parent(self._parent)
        db = self._open_db()
        try:
            while (files := self._queue.get()) is not None:
                analyze_files(db, self.store, files)
            catch_up(db, self.store, self.started_at)
        finally:
            db.close()

    def close(self) -> None:
        """Wait for everything submitted to be parsed, then take over earlier leftovers."""
        if self._proc is None:
            try:
                catch_up(self.db, self.store, self.started_at)
            except BenchsyncError as e:
                log.warning("could not parse leftovers: %s", e)
            return
        self._queue.put(None)
        self._proc.join()
        if self._proc.exitcode:
            log.warning("background parser ended with code %s", self._proc.exitcode)
        self._proc = None
