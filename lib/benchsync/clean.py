"""The cleaner (`benchsync clean`): repair what the verifier found, then email ops.

It works from the open rows of `discrepancies` and re-checks each before acting, so a
stale row never causes harm:

- not_filed: the pipeline is run again for exactly those items (their 'filed' state,
  which has no receipt behind it, is forgotten first);
- missing / corrupt: the content is read again from any source that still holds it —
  the receipt's item in a local queue folder (or its `move:` folder), the listed item of
  a remote source, the path of a manual ingest — and stored only if its md5 matches;
  otherwise the row is marked `lost` and stays open for a person;
- orphan: a stored file whose content matches its name and is a benchmark log is
  adopted (files row + receipt, channel 'manual', source 'store-orphan'); other stored
  files are removed; stale temp files are removed;
- silent_job, failing_job, parse: left for a person.

One email per run (`report`) when anything was repaired or remains open; an unchanged
report is repeated only after `[mail] repeat_after` seconds (default 3600).

Counts: seen = open discrepancies considered; new = repaired (closed) by this run;
skipped = repairs only described (--dry-run); failed = discrepancies still open at the
end, plus one when the report could not be sent — so the exit code is 1 in both cases.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .analyze import analyze
from .db import discrepancies, filing
from .db.discrepancies import LOST, Discrepancy
from .db.filing import Delivery
from .errors import BenchsyncError, ItemError
from .jobs import JobContext
from .parsing import analyze_files
from .pipeline import Counts
from .report import MailSettings, Report, ReportNotSent, send
from .runlog import q
from .sources.base import Source, Writer
from .sources.local import LocalFolderSource, copy_file
from .store import Incoming
from .verify import (
    CORRUPT,
    MISSING,
    NOT_FILED,
    ORPHAN,
    STALE_TEMP_SECONDS,
    SYNC_CHANNELS,
    check_gzip,
)

log = logging.getLogger("benchsync")

_STORED = re.compile(r"^(?P<md5>[0-9a-f]{32})\.gz$")
_STORED_REL = re.compile(r"^[0-9a-f]{2}/(?P<md5>[0-9a-f]{32})\.gz$")
_TMP_REL = re.compile(r"^tmp/(?P<name>[^/]+)$")
ORPHAN_SOURCE = "store-orphan"
REPORT_STATE = ("cleaner", "report")


def clean_job(ctx: JobContext) -> Counts:
    """One cleaner run: repair, count, and send the report."""
    mail = MailSettings.from_config(ctx.config)  # a bad [mail] stops us before any repair
    rows = discrepancies.list_open(ctx.db)
    report = Report(dry_run=ctx.dry_run)
    for d in rows:
        if d.resolution != LOST:
            report.add_found(d.kind, f"{d.subject}: {d.detail or ''}".rstrip(": "))
    with Cleaner(ctx, report) as cleaner:
        cleaner.refile([d for d in rows if d.kind == NOT_FILED])
        cleaner.restore([d for d in rows if d.kind in (MISSING, CORRUPT)])
        cleaner.orphans([d for d in rows if d.kind == ORPHAN])
    for d in rows:
        if d.id not in cleaner.closed:
            lost = " (lost)" if d.id in cleaner.lost or d.resolution == LOST else ""
            report.add_needs_person(d.kind, f"{d.subject}{lost}: {d.detail or ''}".rstrip(": "))
    counts = ctx.counts
    counts.seen = len(rows)
    if ctx.dry_run:
        counts.skipped = len(cleaner.closed)
        counts.failed = len(rows)
    else:
        counts.new = len(cleaner.closed)
        counts.failed = discrepancies.count_open(ctx.db)
    _send_report(ctx, mail, report)
    return counts


class Cleaner:
    """The repairs of one run; sources are opened once and closed at the end."""

    def __init__(self, ctx: JobContext, report: Report) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.store = ctx.store
        self.report = report
        self.dry_run = ctx.dry_run
        self.max_bytes = ctx.config.section("limits").get_size("max_file_bytes", "64 MiB")
        self.closed: set[int] = set()
        self.lost: set[int] = set()
        self._stack = contextlib.ExitStack()
        self._sources: dict[str, Source | None] = {}
        self._listings: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> Cleaner:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _close(self, d: Discrepancy, resolution: str, done: str | None = None) -> None:
        """Record a repair (or, with --dry-run, only say it would be made)."""
        self.closed.add(d.id)
        if self.dry_run:
            log.info(
                "dry run: would repair kind=%s subject=%s by=%s",
                d.kind,
                q(d.subject),
                q(done or resolution),
            )
            self.report.done.append(f"(would be) {done or resolution}: {d.subject}")
            return
        discrepancies.resolve(self.db, d.id, self.ctx.run_id, resolution)
        log.info("repaired kind=%s subject=%s resolution=%s", d.kind, q(d.subject), q(resolution))
        self.report.done.append(f"{done or resolution}: {d.subject}")

    # -- sources ------------------------------------------------------------------------
    def source(self, channel: str) -> Source | None:
        """The configured source of `channel`, opened once; None when it cannot be used."""
        if channel in self._sources:
            return self._sources[channel]
        from .sources import source_for

        src: Source | None = None
        if self.ctx.config.get(channel, "source"):
            try:
                src = self._stack.enter_context(source_for(self.ctx.config, channel))
            except ImportError as e:
                log.warning(
                    "source=%s unavailable reason=%s", channel, q(f"not installed: {e.name}")
                )
            except BenchsyncError as e:
                log.warning("source=%s unavailable reason=%s", channel, q(str(e)))
        self._sources[channel] = src
        return src

    def _source_by_url(self, url: str) -> Source | None:
        for channel in SYNC_CHANNELS:
            src = self.source(channel)
            if src is not None and src.url == url:
                return src
        return None

    def _listing(self, src: Source) -> dict[str, Any]:
        if src.url not in self._listings:
            self._listings[src.url] = {item.key: item for item in src.list()}
        return self._listings[src.url]

    # -- not_filed ------------------------------------------------------------------------
    def refile(self, rows: list[Discrepancy]) -> None:
        """Run the pipeline again for exactly the items the verifier found unfiled."""
        wanted: dict[str, dict[str, Discrepancy]] = defaultdict(dict)
        for d in rows:
            channel, _, key = d.subject.partition(":")
            wanted[channel][key] = d
        for channel, by_key in wanted.items():
            src = self.source(channel)
            if src is None:
                continue
            try:
                self._refile_source(src, by_key)
            except BenchsyncError as e:
                log.error("cannot file again from source=%s: %s", channel, e)

    def _refile_source(self, src: Source, by_key: dict[str, Discrepancy]) -> None:
        if not self.db.try_source_lock(src.url):
            log.info("skipped: source %s is being polled by another collector", src.url)
            return
        self._listings.pop(src.url, None)  # list afresh: items may have moved since
        listed = [item for key, item in self._listing(src).items() if key in by_key]
        present = {item.key for item in listed}
        receipted = discrepancies.receipted_items(self.db, src.url, by_key)
        for key, d in by_key.items():
            if key in receipted:
                self._close(d, "filed by a sync run", "filed meanwhile")
            elif key not in present:
                log.warning("vanished before it was filed item=%s source=%s", q(key), src.url)
                self._close(d, "gone from the source", "gone from the source before filing")
        todo = [item for item in listed if item.key not in receipted]
        if not todo:
            return
        if self.dry_run:
            for item in todo:
                self._close(by_key[item.key], "filed", "filed")
            return
        discrepancies.forget_filed(self.db, src.url, [item.key for item in todo])
        self.ctx.pipeline().run(src, items=todo, counts=Counts())
        filed = discrepancies.receipted_items(self.db, src.url, [item.key for item in todo])
        for item in todo:
            if item.key in filed:
                self._close(by_key[item.key], "filed", "filed")

    # -- missing / corrupt ---------------------------------------------------------------
    def restore(self, rows: list[Discrepancy]) -> None:
        """Put back missing or corrupt stored files from a source that still holds them."""
        for d in rows:
            md5 = d.subject
            if not _STORED.match(f"{md5}.gz"):
                continue
            if not discrepancies.file_exists(self.db, md5):
                self._close(d, "files row gone", "no longer in files")
                continue
            path = self.store.path_for(md5)
            if path.exists() and check_gzip(md5, path) is None:
                self._close(d, "stored file is sound again", "found sound")
                continue
            got = self._find_copy(md5)
            if got is not None:
                where, incoming = got
                self._put_back(d, md5, where, incoming)
            elif d.resolution != LOST:
                self.lost.add(d.id)
                log.warning(
                    "%slost kind=%s md5=%s: no source still holds this content",
                    "dry run: " if self.dry_run else "",
                    d.kind,
                    md5,
                )
                if not self.dry_run:
                    discrepancies.mark(self.db, d.id, LOST)

    def _put_back(self, d: Discrepancy, md5: str, where: str, incoming: Incoming) -> None:
        if self.dry_run:
            incoming.discard()
        else:
            placed = incoming.place()
            self.store.sync([placed])
            problem = check_gzip(md5, placed)
            if problem is not None:
                log.error("restore did not hold md5=%s: %s", md5, problem)
                return
        self._close(d, f"restored from {where}", f"restored from {where}")

    def _find_copy(self, md5: str) -> tuple[str, Incoming] | None:
        """The content read back from the first place that still holds it, md5 verified."""
        for where, reader in self._copies(md5):
            incoming = self.store.incoming(self.max_bytes)
            try:
                reader(incoming)
                incoming.finish()
            except (BenchsyncError, OSError) as e:
                incoming.discard()
                log.debug("no copy at %s: %s", where, e)
                continue
            if incoming.md5 == md5:
                return where, incoming
            incoming.discard()
        return None

    def _copies(self, md5: str) -> Iterator[tuple[str, Callable[[Writer], None]]]:
        for channel, source_url, item_key in discrepancies.receipts_for(self.db, md5):
            if channel == "manual" and os.path.isabs(item_key):
                yield item_key, _reader(item_key)
                continue
            src = self._source_by_url(source_url)
            if isinstance(src, LocalFolderSource):
                for path in _local_paths(src, item_key):
                    yield str(path), _reader(str(path))
            elif src is not None:
                item = self._listing(src).get(item_key)
                if item is not None:
                    yield f"{src.url} {item_key}", _fetcher(src, item)

    # -- orphans ---------------------------------------------------------------------------
    def orphans(self, rows: list[Discrepancy]) -> None:
        """Adopt stored files that are real logs, remove other orphans and stale temp files."""
        for d in rows:
            if m := _TMP_REL.match(d.subject):
                self._stale_temp(d, self.store.tmp_dir / m["name"])
            elif m := _STORED_REL.match(d.subject):
                self._orphan_gz(d, m["md5"], self.store.root / d.subject)

    def _stale_temp(self, d: Discrepancy, path: Path) -> None:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            self._close(d, "gone", "temp file gone")
            return
        if age >= STALE_TEMP_SECONDS:
            if not self.dry_run:
                path.unlink(missing_ok=True)
            self._close(d, "removed stale temp file", "removed stale temp file")

    def _orphan_gz(self, d: Discrepancy, md5: str, path: Path) -> None:
        if not path.exists():
            self._close(d, "gone", "orphan gone")
            return
        if discrepancies.file_exists(self.db, md5):
            self._close(d, "has a files row again", "has a files row again")
            return
        incoming, why = self._read_orphan(md5, path)
        if why == "too large to check":
            if incoming is not None:
                incoming.discard()
            return  # cannot tell whether it is a log: leave it to a person
        if incoming is None or why:
            if not self.dry_run:
                path.unlink(missing_ok=True)
            self._close(d, f"removed: {why}", f"removed ({why})")
            return
        if not self.dry_run:
            self.store.sync([incoming.place()])  # re-written deterministically
            delivery = Delivery(
                md5=md5,
                size=incoming.size,
                stored_path=self.store.relpath(md5),
                item=d.subject,
                original_name=None,
            )
            ids = filing.record_batch(
                self.db, self.ctx.run_id, ORPHAN_SOURCE, "manual", [delivery], []
            )
            analyze_files(self.db, self.store, [(ids[md5][0], None)])
        else:
            incoming.discard()
        self._close(d, "adopted", "adopted into files (source store-orphan)")

    def _read_orphan(self, md5: str, path: Path) -> tuple[Incoming | None, str | None]:
        """(content, why it cannot be adopted or None)."""
        incoming = self.store.incoming(self.max_bytes, keep_raw=True)
        from .store import _zlib

        try:
            _gunzip_into(path, incoming)
            incoming.finish()
        except (BenchsyncError, OSError, EOFError, ValueError, _zlib.error) as e:
            incoming.discard()
            reason = getattr(e, "reason", None) or str(e)
            if "too large" in reason:
                return None, "too large to check"
            return None, f"not a valid gzip file: {reason}"
        if incoming.md5 != md5:
            incoming.discard()
            return None, "content does not match its name"
        if incoming.raw is None:
            return incoming, "too large to check"
        if analyze(incoming.raw, None).status == "not_a_benchmark_log":
            incoming.discard()
            return None, "not a benchmark log"
        return incoming, None


def _reader(path: str) -> Callable[[Writer], None]:
    return lambda w: copy_file(os.fsencode(path), w)


def _fetcher(src: Source, item: Any) -> Callable[[Writer], None]:
    def read(w: Writer) -> None:
        payloads = list(src.fetch(item))
        if len(payloads) != 1:
            raise ItemError("item holds more than one file")
        payloads[0].write_to(w)

    return read


def _local_paths(src: LocalFolderSource, key: str) -> Iterator[Path]:
    """Where a filed item of a local folder may be now: in place, or in its move: folder."""
    yield src.root / key
    move = src._move_to
    if move is not None:
        yield move / key
        for n in range(1, 10):
            yield move / f"{key}.{n}"


def _gunzip_into(path: Path, writer: Incoming) -> None:
    """Decompress a stored file into `writer` in bounded pieces (a bomb hits max_bytes)."""
    from .store import _zlib

    d = _zlib.decompressobj(31)
    with open(path, "rb") as f:
        while chunk := f.read(256 * 1024):
            data = chunk
            while data:
                writer.write(d.decompress(data, 1024 * 1024))
                data = d.unconsumed_tail
        writer.write(d.flush())
    if not d.eof:
        raise EOFError("truncated gzip stream")


def _send_report(ctx: JobContext, mail: MailSettings | None, report: Report) -> None:
    if not report.worth_sending():
        log.info("all well: no report")
        return
    if mail is None:
        log.info("report not sent: [mail] smtp_host and to are not set")
        return
    if ctx.dry_run:
        log.info("would email the report to %s", ",".join(mail.to))
        return
    fingerprint = _fingerprint(ctx)
    last = (filing.get_state(ctx.db, *REPORT_STATE) or " 0").split(" ")
    if (
        not report.done
        and last[0] == fingerprint
        and time.time() - float(last[1]) < mail.repeat_after
    ):
        log.info("report unchanged since it was last sent: not repeated yet")
        return
    try:
        send(mail, report.message(mail))
    except ReportNotSent as e:
        log.error("report not sent: %s", e)
        ctx.counts.failed += 1
        return
    filing.set_state(ctx.db, *REPORT_STATE, f"{fingerprint} {time.time():.0f}")
    log.info("report sent to=%s host=%s", ",".join(mail.to), socket.gethostname())


def _fingerprint(ctx: JobContext) -> str:
    """A digest of what is open now, so an unchanged report is not mailed every 5 minutes."""
    h = hashlib.sha1()
    for d in discrepancies.list_open(ctx.db):
        h.update(f"{d.kind}\0{d.subject}\0{d.resolution}\n".encode())
    return h.hexdigest()
