"""The verifier (`benchsync verify`): compare sources, database and store; record what differs.

Kinds of discrepancy (one open row per kind and subject, see `db.discrepancies`):

| kind        | subject               | found when                                              |
|-------------|-----------------------|---------------------------------------------------------|
| not_filed   | `<channel>:<item>`    | a settled item of the [ftp]/[scp] source has no receipt  |
| missing     | md5                   | a `files` row whose `.gz` does not exist                |
| corrupt     | md5                   | the `.gz` does not decompress to its md5                |
| orphan      | path in the store     | a `.gz` with no `files` row, or a temp file over an hour |
| silent_job  | job                   | no successful run within `[status] stale_after`         |
| failing_job | job                   | its last `[status] failing_runs` runs failed            |
| parse       | md5                   | `files.parse_status = 'failed'`                         |

"Settled" is the sync jobs' own rule (`pipeline.would_fetch`), with `[verify]
grace_seconds` (default: `[status] stale_after`) added to `settle_seconds`, so an item
simply waiting for the next 5-minute poll is not reported.

Without `--deep` every stored file is checked for existence, and a share of them is
re-read: a window of the md5 space that moves on each run by `[verify] sample_share`
(default 0.01), or further when runs are far apart, so that every stored file is
re-read within `[verify] full_cycle_days` (default 7). Open corrupt rows are always
re-read. Many stored files are decompressed and hashed by forked worker processes
(`[verify] workers`, default one per core).

Counts (summary line and `runs` row): seen = things checked (source items listed,
`files` rows, stored and temp files, jobs); new = discrepancies first found in this
run; dup = open ones found again; skipped = sources that could not be checked;
failed = discrepancies open at the end, so the exit code is 1 while any is open.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .db import discrepancies, filing
from .db.bench import PARSING, PENDING
from .db.filing import FILED, REJECTED
from .errors import BenchsyncError
from .jobs import JobContext
from .parsing import STALE_CLAIM
from .pipeline import Counts, would_fetch
from .runlog import q
from .status import expected_jobs, job_health
from .store import MD5_RE, Store, _zlib, md5_of_gzip_file
from .workers import worker_pool

log = logging.getLogger("benchsync")

NOT_FILED, MISSING, CORRUPT, ORPHAN, PARSE = "not_filed", "missing", "corrupt", "orphan", "parse"
SYNC_CHANNELS = ("ftp", "scp")
STALE_TEMP_SECONDS = 3600.0  # a temp file older than this belongs to no live transfer
ORPHAN_MIN_AGE = 3600.0  # younger .gz may be a file placed just before its commit
STATE_SOURCE = "verifier"
_POOL_MIN = 2000  # fewer files are checked in-process
_SPAN = 1 << 32


@dataclass
class Findings:
    """What one verifier run found, and which subjects it was able to look at."""

    found: dict[tuple[str, str], str] = field(default_factory=dict)
    unchecked_prefixes: list[tuple[str, str]] = field(default_factory=list)
    sample: tuple[float, float] | None = None  # corrupt: md5 window checked (None: all)
    rehashed: set[str] = field(default_factory=set)
    filed: set[str] = field(default_factory=set)  # md5 of every files row

    def add(self, kind: str, subject: str, detail: str) -> None:
        self.found[(kind, subject)] = detail

    def checked(self, kind: str, subject: str) -> bool:
        """Whether this run looked at `subject`, so not finding it again closes its row."""
        if any(kind == k and subject.startswith(p) for k, p in self.unchecked_prefixes):
            return False
        if kind == CORRUPT and self.sample is not None:
            return subject in self.rehashed or subject not in self.filed
        return True


def verify_job(ctx: JobContext, deep: bool = False) -> Counts:
    """One verifier run: check everything, reconcile the discrepancies table, count."""
    f = Findings()
    counts = ctx.counts
    _check_jobs(ctx, f)
    _check_store(ctx, f, deep)
    _check_sources(ctx, f)
    if ctx.dry_run:
        for (kind, subject), detail in f.found.items():
            log.info("found kind=%s subject=%s detail=%s", kind, q(subject), q(detail))
        counts.failed = len(f.found)
        return counts
    done = discrepancies.reconcile(ctx.db, ctx.run_id, f.found, f.checked)
    for kind, subject in done.new:
        log.warning(
            "found kind=%s subject=%s detail=%s", kind, q(subject), q(f.found[(kind, subject)])
        )
    for kind, subject in done.again:
        log.info(
            "still kind=%s subject=%s detail=%s", kind, q(subject), q(f.found[(kind, subject)])
        )
    for d in done.closed:
        log.info("closed kind=%s subject=%s resolution=no longer found", d.kind, q(d.subject))
    counts.new, counts.dup = len(done.new), len(done.again)
    counts.failed = discrepancies.count_open(ctx.db)
    return counts


# -- jobs ---------------------------------------------------------------------------------
def _check_jobs(ctx: JobContext, f: Findings) -> None:
    for job in expected_jobs(ctx.config):
        ctx.counts.seen += 1
        health = job_health(ctx.db, ctx.config, job)
        if health is not None:
            f.add(health.kind, job, health.detail)


# -- store and files rows -----------------------------------------------------------------
def _check_store(ctx: JobContext, f: Findings, deep: bool) -> None:
    store, db = ctx.store, ctx.db
    on_disk = scan_store(store.root)  # scanned before the rows are read: see _orphans
    rows = discrepancies.stored_files(db)
    ctx.counts.seen += len(rows) + len(on_disk)
    f.sample = None if deep else _sample_window(ctx)
    open_corrupt = {d.subject for d in discrepancies.list_open(db, [CORRUPT])}
    to_hash: list[tuple[str, str]] = []
    unparsed_before = (datetime.now(UTC) - STALE_CLAIM).isoformat(timespec="microseconds")
    for md5, _size, parse_status, first_seen in rows:
        if parse_status == "failed":
            f.add(PARSE, md5, "the parser failed on this file (benchsync show / reparse)")
        elif parse_status in (PENDING, PARSING) and (first_seen or "") < unparsed_before:
            f.add(PARSE, md5, "filed over an hour ago and still not parsed (benchsync reparse)")
        path = on_disk.get(md5)
        if path is None and not store.exists(md5):  # re-checked: placed after the scan?
            f.add(MISSING, md5, f"files row without its stored file {store.relpath(md5)}")
        elif f.sample is None or md5 in open_corrupt or in_window(md5, f.sample):
            to_hash.append((md5, path or str(store.path_for(md5))))
    f.rehashed = {md5 for md5, _ in to_hash}
    workers = ctx.config.section("verify").get_int("workers", os.cpu_count() or 1)
    for md5, problem in hash_stored(to_hash, workers):
        f.add(CORRUPT, md5, problem)
    f.filed = {r[0] for r in rows}
    _orphans(ctx, f, on_disk, f.filed)


def _orphans(ctx: JobContext, f: Findings, on_disk: dict[str, str], known: set[str]) -> None:
    """Stored files with no row (old enough not to be a commit in flight) and stale temps."""
    now = time.time()
    for md5 in on_disk.keys() - known:
        age = _age(on_disk[md5], now)
        if age is not None and age >= ORPHAN_MIN_AGE and not discrepancies.file_exists(ctx.db, md5):
            f.add(ORPHAN, Store.relpath(md5), "stored file with no files row")
    for path in ctx.store.iter_temp():
        ctx.counts.seen += 1
        age = _age(path, now)
        if age is not None and age >= STALE_TEMP_SECONDS:
            f.add(ORPHAN, f"tmp/{path.name}", f"stale temp file, {age / 3600:.1f} h old")


def _age(path: str | Path, now: float) -> float | None:
    try:
        return now - os.stat(path).st_mtime
    except FileNotFoundError:
        return None


def _sample_window(ctx: JobContext) -> tuple[float, float]:
    """This run's window of the md5 space, moved on from where the previous run stopped."""
    section = ctx.config.section("verify")
    share = section.get_float("sample_share", 0.01)
    cycle = section.get_float("full_cycle_days", 7.0) * 86400
    pos = float(filing.get_state(ctx.db, STATE_SOURCE, "sample_position") or 0.0)
    at = float(filing.get_state(ctx.db, STATE_SOURCE, "sample_at") or 0.0)
    now = time.time()
    start, end = next_window(pos, at, now, share, cycle)
    if not ctx.dry_run:
        filing.set_state(ctx.db, STATE_SOURCE, "sample_position", repr(end % 1.0))
        filing.set_state(ctx.db, STATE_SOURCE, "sample_at", repr(now))
    return start, end


def next_window(
    pos: float, last_at: float, now: float, share: float, cycle_seconds: float
) -> tuple[float, float]:
    """[start, end) of the md5 space (as fractions; end may pass 1 and wrap) to re-read now.

    The window is at least `share` wide, and wider when the previous run was long ago,
    so the whole space is covered once per `cycle_seconds` however often runs happen.
    """
    elapsed = max(0.0, now - last_at) if last_at else 0.0
    step = max(share, elapsed / cycle_seconds if cycle_seconds > 0 else 1.0)
    return pos, pos + min(step, 1.0)


def in_window(md5: str, window: tuple[float, float]) -> bool:
    """Whether the md5's leading 32 bits fall in the (possibly wrapping) window."""
    start, end = window
    if end - start >= 1.0:
        return True
    x = int(md5[:8], 16) / _SPAN
    return start <= x < end if end <= 1.0 else x >= start or x < end - 1.0


def hash_stored(
    files: list[tuple[str, str]], workers: int | None = None
) -> Iterator[tuple[str, str]]:
    """(md5, problem) for each stored file that does not decompress to its md5.

    Small stored files cost more in per-call overhead than in inflating, which the GIL
    serialises, so large batches go to forked worker processes (one per core).
    """
    workers = workers or os.cpu_count() or 1
    if workers < 2 or len(files) < _POOL_MIN:
        yield from _check_batch(files)
        return
    chunk = max(256, len(files) // (workers * 8))
    batches = [files[i : i + chunk] for i in range(0, len(files), chunk)]
    with worker_pool(workers) as pool:
        for problems in pool.map(_check_batch, batches):
            yield from problems


def _check_batch(batch: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(md5, problem) for md5, path in batch if (problem := check_gzip(md5, path))]


def check_gzip(md5: str, path: str | os.PathLike) -> str | None:
    """None when `path` decompresses to content with this md5, else what is wrong."""
    try:
        got = md5_of_gzip_file(path)
    except FileNotFoundError:
        return "stored file vanished while being checked"
    except OSError as e:
        return f"unreadable: {e.strerror}"
    except (_zlib.error, EOFError, ValueError) as e:
        return f"not a valid gzip file: {e}"
    if got != md5:
        return f"content md5 is {got}"
    return None


def scan_store(root: Path) -> dict[str, str]:
    """md5 -> path of every `<md5[0:2]>/<md5>.gz` (plain strings: 100,000s of them)."""
    found: dict[str, str] = {}
    with os.scandir(root) as subs:
        folders = [e.path for e in subs if len(e.name) == 2 and e.is_dir(follow_symlinks=False)]
    for folder in folders:
        for name in os.listdir(folder):
            if len(name) == 35 and name.endswith(".gz") and MD5_RE.match(name[:32]):
                found[name[:32]] = f"{folder}/{name}"
    return found


# -- sources --------------------------------------------------------------------------------
def _check_sources(ctx: JobContext, f: Findings) -> None:
    from .sources import source_for

    grace = ctx.config.section("verify").get_float(
        "grace_seconds", ctx.config.section("status").get_float("stale_after", 900.0)
    )
    for channel in SYNC_CHANNELS:
        if not ctx.config.get(channel, "source"):
            continue
        try:
            source = source_for(ctx.config, channel)
            with source:
                _check_source(ctx, f, channel, source, grace)
        except ImportError as e:
            _not_checked(ctx, f, channel, f"no {channel} support installed ({e.name})")
        except BenchsyncError as e:
            _not_checked(ctx, f, channel, str(e))


def _not_checked(ctx: JobContext, f: Findings, channel: str, why: str) -> None:
    ctx.counts.skipped += 1
    f.unchecked_prefixes.append((NOT_FILED, f"{channel}:"))
    log.warning("not checked source=%s reason=%s", channel, q(why))


def _check_source(ctx: JobContext, f: Findings, channel: str, source, grace: float) -> None:
    max_bytes = ctx.config.section("limits").get_size("max_file_bytes", "64 MiB")
    known = filing.known_items(ctx.db, source.url)
    receipted = discrepancies.receipted_items(ctx.db, source.url)
    now = source.clock()
    for item in source.list():
        ctx.counts.seen += 1
        if item.key in receipted:
            continue
        if not would_fetch(item, None, now, source.settle_seconds + grace, max_bytes):
            continue
        prev = known.get(item.key)
        same = prev is not None and (prev.size, prev.mtime) == (item.size, item.mtime)
        if same and (prev.status == REJECTED or (prev.status == FILED and prev.reason)):
            continue  # refused on purpose, or filed with nothing to file: no receipt expected
        state = ""
        if prev is not None:
            state = f"; last state {prev.status}" + (f" ({prev.reason})" if prev.reason else "")
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(item.mtime or 0))
        detail = f"{item.size} bytes, modified {when}, no receipt from {source.url}{state}"
        f.add(NOT_FILED, f"{channel}:{item.key}", detail)
