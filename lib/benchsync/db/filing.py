"""The pipeline's queries: what a source already delivered, and filing one batch."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .bench import PENDING as PARSE_PENDING
from .connection import Database, now_iso

# source_items.status values
PENDING = "pending"  # seen, not settled yet
FILED = "filed"  # filed and acknowledged (or after_ingest = keep)
UNACKED = "unacked"  # filed, acknowledgement still to do
REJECTED = "rejected"  # can never be filed as it is; left in place for a person
FAILED = "failed"  # could not be filed this time; retried next poll

_CHUNK = 500


class ItemState(NamedTuple):
    """What the database remembers of one source item (a tuple: 100,000 load fast)."""

    status: str
    size: int | None
    mtime: float | None
    reason: str | None = None


@dataclass
class ItemUpdate:
    """A new state for one source item, written in the batch's transaction."""

    item: str
    name: str | None
    size: int | None
    mtime: float | None
    status: str
    reason: str | None = None
    md5: str | None = None


@dataclass
class Delivery:
    """One file a source delivered: its content (md5) and where it came from."""

    md5: str
    size: int
    stored_path: str
    item: str
    original_name: str | None
    submitter: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def known_items(db: Database, source: str) -> dict[str, ItemState]:
    """Every item this source has delivered, rejected or is waiting on, in one query."""
    rows = db.query(
        "SELECT item, status, size, mtime, reason FROM source_items WHERE source = ?", (source,)
    )
    make = ItemState._make
    return {r[0]: make(r[1:]) for r in rows}


def file_ids(db: Database, md5s: Iterable[str]) -> dict[str, int]:
    """The `files.id` of each md5 already filed (md5s not filed are absent)."""
    md5s = list(dict.fromkeys(md5s))
    found: dict[str, int] = {}
    for i in range(0, len(md5s), _CHUNK):
        part = md5s[i : i + _CHUNK]
        marks = ",".join("?" * len(part))
        found.update(db.query(f"SELECT md5, id FROM files WHERE md5 IN ({marks})", part))  # noqa: S608
    return found


def record_batch(
    db: Database,
    run_id: int | None,
    source: str,
    channel: str,
    deliveries: Sequence[Delivery],
    updates: Sequence[ItemUpdate],
) -> dict[str, tuple[int, bool]]:
    """File a batch in one transaction: files (parse pending), receipts, source item states.

    Returns md5 → (file id, inserted by this call). A content another collector filed
    a moment ago is not inserted twice: the unique md5 decides, not timing.
    """
    now = now_iso()
    result: dict[str, tuple[int, bool]] = {}
    with db.transaction():
        new = {d.md5: d for d in deliveries}
        inserted = db.insert_rows(
            "files",
            ("md5", "size", "stored_path", "first_seen_at", "parse_status", "parse_detail"),
            [(d.md5, d.size, d.stored_path, now, PARSE_PENDING, None) for d in new.values()],
            tail=" ON CONFLICT (md5) DO NOTHING",
            returning="md5, id",
        )
        result = {md5: (file_id, True) for md5, file_id in inserted}
        for md5, file_id in file_ids(db, [m for m in new if m not in result]).items():
            result[md5] = (file_id, False)
        db.executemany(
            "INSERT INTO receipts (file_id, channel, source, item, original_name, submitter,"
            " received_at, run_id, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (source, item, file_id) DO NOTHING",
            [
                (
                    result[d.md5][0],
                    channel,
                    source,
                    d.item,
                    d.original_name,
                    d.submitter,
                    now,
                    run_id,
                    json.dumps(d.meta, ensure_ascii=False) if d.meta else None,
                )
                for d in deliveries
            ],
        )
        upsert_items(db, source, updates, result, now)
    return result


def upsert_items(
    db: Database,
    source: str,
    updates: Sequence[ItemUpdate],
    ids: dict[str, tuple[int, bool]] | None = None,
    now: str | None = None,
) -> None:
    """Write the new states of source items (insert or replace by (source, item))."""
    now = now or now_iso()
    ids = ids or {}
    db.executemany(
        "INSERT INTO source_items (source, item, name, size, mtime, status, reason, file_id,"
        " first_seen_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (source, item) DO UPDATE SET name = excluded.name,"
        " size = excluded.size, mtime = excluded.mtime, status = excluded.status,"
        " reason = excluded.reason, file_id = COALESCE(excluded.file_id, source_items.file_id),"
        " updated_at = excluded.updated_at",
        [
            (
                source,
                u.item,
                u.name,
                u.size,
                u.mtime,
                u.status,
                u.reason,
                ids[u.md5][0] if u.md5 in ids else None,
                now,
                now,
            )
            for u in updates
        ],
    )


def mark_items(db: Database, source: str, items: Sequence[str], status: str) -> None:
    """Set the status of items already recorded (after their acknowledgement)."""
    now = now_iso()
    db.executemany(
        "UPDATE source_items SET status = ?, updated_at = ? WHERE source = ? AND item = ?",
        [(status, now, source, item) for item in items],
    )


def get_state(db: Database, source: str, key: str) -> str | None:
    """A value a source keeps between runs (IMAP UIDVALIDITY and watermark, …)."""
    row = db.query_one("SELECT value FROM source_state WHERE source = ? AND key = ?", (source, key))
    return row[0] if row else None


def set_state(db: Database, source: str, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO source_state (source, key, value) VALUES (?, ?, ?)"
        " ON CONFLICT (source, key) DO UPDATE SET value = excluded.value",
        (source, key, value),
    )
