"""The one loop every sync job runs: list, skip, fetch, dedup, store, commit, then ack.

It knows no protocol (a `Source` does that) and writes no SQL (`db` does that). The
order is what makes it safe: the stored file is durable before the commit that records
it, and the source item is acknowledged only after that commit. A crash anywhere leaves
either nothing, or an orphan stored file that the next run overwrites with the same
bytes, or a filed item whose acknowledgement the next run repeats.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .db import Database, filing
from .db.filing import FAILED, FILED, PENDING, REJECTED, UNACKED, Delivery, ItemUpdate
from .errors import ItemError, ItemRejected, SourceUnreachable
from .parsing import Analyst
from .runlog import q
from .sources.base import Item, Source, is_in_progress
from .store import Incoming, Store

log = logging.getLogger("benchsync")

BATCH_ITEMS = 100
LISTING_DIGEST = "listing_digest"
BATCH_BYTES = 64 * 1024 * 1024


@dataclass
class Counts:
    """What a run did, for the summary line and the `runs` row."""

    seen: int = 0
    new: int = 0
    dup: int = 0
    failed: int = 0
    skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    def add(self, other: Counts) -> None:
        for k, v in other.__dict__.items():
            setattr(self, k, getattr(self, k) + v)


@dataclass
class Filed:
    """One payload the pipeline filed: new content, or a duplicate of content filed before."""

    name: str | None
    md5: str
    size: int
    file_id: int
    new: bool
    parse_status: str | None


class SourceState:
    """Small values a source keeps between runs (IMAP UIDVALIDITY, watermark), in the DB."""

    def __init__(self, db: Database, source: str) -> None:
        self._db = db
        self._source = source

    def get(self, key: str) -> str | None:
        return filing.get_state(self._db, self._source, key)

    def set(self, key: str, value: str) -> None:
        filing.set_state(self._db, self._source, key, value)


@dataclass
class Fetched:
    """An item whose payloads have all streamed in."""

    item: Item
    parts: list[tuple[Any, Incoming]] = field(default_factory=list)


class Pipeline:
    """Files items from sources into one store and one database."""

    def __init__(
        self,
        db: Database,
        store: Store,
        max_file_bytes: int,
        run_id: int | None = None,
        dry_run: bool = False,
        analyst: Analyst | None = None,
    ) -> None:
        self.db = db
        self.analyst = analyst or Analyst(db, store, lambda: db, workers=0)
        self.store = store
        self.max_file_bytes = max_file_bytes
        self.run_id = run_id
        self.dry_run = dry_run

    # -- the loop ---------------------------------------------------------------------
    def run(
        self,
        source: Source,
        items: Iterable[Item] | None = None,
        progress: Callable[[int], None] | None = None,
        counts: Counts | None = None,
    ) -> Counts:
        """Poll `source` once and file everything new and settled in it.

        `items` replaces the source's own listing (taken already, e.g. to size a
        progress bar); `progress(1)` is called once per listed item. `counts` is updated
        as the run goes, so a run that stops half-way still reports what it did.
        """
        counts = Counts() if counts is None else counts
        source.state = SourceState(self.db, source.url)
        source.dry_run = self.dry_run
        use_digest = items is None and not self.dry_run
        quick = source.fingerprint() if use_digest else None
        if quick is not None and source.state.get(LISTING_DIGEST) == quick[0]:
            counts.seen += quick[1]
            log.debug("listing unchanged since a run that left nothing open: nothing to do")
            return counts
        listing = list(source.list() if items is None else items)
        digest = None
        if use_digest:
            digest = quick[0] if quick is not None else listing_digest(listing)
            if quick is None and source.state.get(LISTING_DIGEST) == digest:
                counts.seen += len(listing)
                log.debug("listing unchanged since a run that left nothing open: nothing to do")
                return counts
        known = filing.known_items(self.db, source.url)
        self._open = False
        now = source.clock()
        batch: list[Item] = []
        batch_bytes = 0
        updates: list[ItemUpdate] = []
        unacked: list[Item] = []
        for item in listing:
            counts.seen += 1
            if progress is not None:
                progress(1)
            prev = known.get(item.key)
            same = prev is not None and (prev.size, prev.mtime) == (item.size, item.mtime)
            if same and prev.status in (FILED, REJECTED):
                if not self.dry_run:
                    source.outcome(item, prev.status)  # e.g. IMAP's watermark may pass it
                continue
            if same and prev.status == UNACKED:
                unacked.append(item)
                continue
            if item.problem or item.size == 0:
                self._reject(source, item, item.problem or "empty file", prev, updates, counts)
                continue
            if is_in_progress(item.name):
                counts.skipped += 1
                continue
            if not settled(item, prev, now, source.settle_seconds):
                counts.skipped += 1
                self._open = True
                if not (prev and prev.status == PENDING and same):
                    log.info("waiting item=%s size=%s reason=not settled", q(item.key), item.size)
                    updates.append(_update(item, PENDING, "not settled"))
                source.outcome(item, PENDING)
                continue
            if item.size is not None and item.size > self.max_file_bytes:
                reason = f"too large: {item.size} bytes, over max_file_bytes"
                self._reject(source, item, reason, prev, updates, counts)
                continue
            batch.append(item)
            batch_bytes += item.size or 0
            if len(batch) >= BATCH_ITEMS or batch_bytes >= BATCH_BYTES:
                self._file_batch(source, batch, updates, counts)
                batch, batch_bytes, updates = [], 0, []
        self._file_batch(source, batch, updates, counts)
        self._retry_acks(source, unacked, counts)
        if digest is not None:
            source.state.set(LISTING_DIGEST, "" if self._open or unacked else digest)
        return counts

    def _reject(self, source, item, reason, prev, updates, counts) -> None:
        counts.failed += 1
        if not self.dry_run:
            source.outcome(item, REJECTED)
        if prev is not None and prev.status == REJECTED and prev.reason == reason:
            return
        log.warning("rejected item=%s size=%s reason=%s", q(item.key), item.size, q(reason))
        if not self.dry_run:
            updates.append(_update(item, REJECTED, reason))

    # -- one batch --------------------------------------------------------------------
    def _file_batch(
        self, source: Source, items: list[Item], updates: list[ItemUpdate], counts: Counts
    ) -> None:
        """Fetch a batch, store the new contents durably, commit once, then ack each item."""
        if self.dry_run:
            for item in items:
                log.info("would file item=%s size=%s", q(item.key), item.size)
            return
        fetched: list[Fetched] = []
        fatal: SourceUnreachable | None = None
        source.prefetch(items)
        for item in items:
            try:
                fetched.append(self._fetch(source, item))
            except ItemError as e:
                counts.failed += 1
                status = REJECTED if e.permanent else FAILED
                self._open = self._open or not e.permanent
                log.warning(
                    "%s item=%s reason=%s",
                    "rejected" if e.permanent else "failed",
                    q(item.key),
                    q(e.reason),
                )
                updates.append(_update(item, status, e.reason))
                source.outcome(item, status)
            except SourceUnreachable as e:
                fatal = e
                break
        if fetched or updates:
            self._commit(source, fetched, updates, counts)
            if fatal is None:
                self._ack(source, fetched, counts)
        if fatal is not None:
            raise fatal

    def file_item(self, source: Source, item: Item) -> list[Filed]:
        """File one item now, without listing or acknowledging (the HTTP receiver's path).

        Raises ItemError when it cannot be filed; nothing is recorded in that case.
        """
        fetched = self._fetch(source, item)
        return self._commit(source, [fetched], [], Counts())

    def _fetch(self, source: Source, item: Item) -> Fetched:
        done = Fetched(item)
        try:
            for payload in source.fetch(item):
                incoming = self.store.incoming(self.max_file_bytes)
                done.parts.append((payload, incoming))
                payload.write_to(incoming)
                incoming.finish()
                expected = payload.expected_size
                if expected is not None and incoming.size != expected:
                    raise ItemError(
                        f"transfer cut: listed {expected} bytes, received {incoming.size}"
                    )
                if incoming.size == 0:
                    raise ItemRejected("empty file")
        except BaseException:
            for _, incoming in done.parts:
                incoming.discard()
            raise
        return done

    def _commit(
        self, source: Source, fetched: list[Fetched], updates: list[ItemUpdate], counts: Counts
    ) -> list[Filed]:
        known = filing.file_ids(self.db, (inc.md5 for f in fetched for _, inc in f.parts))
        placed: dict[str, Incoming] = {}
        for f in fetched:
            for _, inc in f.parts:
                if inc.md5 in known or inc.md5 in placed:
                    inc.discard()
                else:
                    placed[inc.md5] = inc
        paths = [inc.place() for inc in placed.values()]
        self.store.sync(paths)
        deliveries = []
        status = FILED if source.after_ingest.action == "keep" else UNACKED
        for f in fetched:
            for payload, inc in f.parts:
                deliveries.append(
                    Delivery(
                        md5=inc.md5,
                        size=inc.size,
                        stored_path=self.store.relpath(inc.md5),
                        item=f.item.key,
                        original_name=payload.name,
                        submitter=f.item.submitter,
                        meta={**f.item.meta, **payload.meta},
                    )
                )
            md5 = f.parts[0][1].md5 if f.parts else None
            reason = None if f.parts else "nothing to file"
            updates.append(_update(f.item, status, reason, md5))
        ids = filing.record_batch(
            self.db, self.run_id, source.url, source.channel, deliveries, updates
        )
        filed = []
        for d in deliveries:
            file_id, inserted = ids[d.md5]
            new = inserted and placed.pop(d.md5, None) is not None
            if new:
                counts.new += 1
            else:
                counts.dup += 1
            log.info("%s md5=%s size=%d item=%s", "new" if new else "dup", d.md5, d.size, q(d.item))
            filed.append(Filed(d.original_name, d.md5, d.size, file_id, new, None))
        statuses = self.analyst.submit([(f.file_id, f.name) for f in filed if f.new])
        for f in filed:
            f.parse_status = statuses.get(f.file_id, "pending" if f.new else None)
        for f in fetched:
            source.outcome(f.item, status)
        return filed

    def _ack(self, source: Source, fetched: list[Fetched], counts: Counts) -> None:
        self._acknowledge(source, [f.item for f in fetched], counts)

    def _retry_acks(self, source: Source, items: list[Item], counts: Counts) -> None:
        if items and not self.dry_run:
            log.info("retrying acknowledgement of %d filed items", len(items))
            self._acknowledge(source, items, counts)

    def _acknowledge(self, source: Source, items: list[Item], counts: Counts) -> None:
        if source.after_ingest.action == "keep":
            return
        acked = []
        for item in items:
            try:
                source.ack(item)
                acked.append(item.key)
            except (ItemError, OSError) as e:
                counts.failed += 1
                self._open = True
                reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)
                log.warning(
                    "ack failed item=%s action=%s reason=%s",
                    q(item.key),
                    source.after_ingest.action,
                    q(reason),
                )
        filing.mark_items(self.db, source.url, acked, FILED)


def settled(item: Item, prev: Any, now: float, settle_seconds: float) -> bool:
    """Old enough by the source's clock, or unchanged since the previous poll."""
    if settle_seconds <= 0 or item.mtime is None:
        return True
    if now - item.mtime >= settle_seconds:
        return True
    return bool(
        prev and prev.status == PENDING and (prev.size, prev.mtime) == (item.size, item.mtime)
    )


def would_fetch(item: Item, prev: Any, now: float, settle_seconds: float, max_bytes: int) -> bool:
    """True when a sync run would fetch `item` as new content (the verifier's "settled" rule)."""
    if item.problem or item.size == 0 or is_in_progress(item.name):
        return False
    if item.size is not None and item.size > max_bytes:
        return False
    return settled(item, prev, now, settle_seconds)


def listing_digest(listing: list[Item]) -> str:
    """A fingerprint of a listing: names, sizes and mtimes (one C-level pass, ~30 ms/100k).

    When a run ends with every item filed or rejected, the pipeline keeps this; a later
    poll whose listing has the same fingerprint has nothing to do and skips even the
    database read of what the source delivered, which keeps a no-op poll near `find`.
    """
    rows = [(i.key, i.size, i.mtime, i.problem) for i in listing]
    return hashlib.md5(pickle.dumps(rows, protocol=5)).hexdigest()


def _update(item: Item, status: str, reason: str | None, md5: str | None = None) -> ItemUpdate:
    return ItemUpdate(item.key, item.name, item.size, item.mtime, status, reason, md5)
