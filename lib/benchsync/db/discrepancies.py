"""The `discrepancies` table, and the reads the verifier and cleaner compare against.

One open row per (kind, subject) — the partial unique index `discrepancies_open` holds it
— found again it is the same row (`last_found_at` moves), no longer found it is closed
(`resolved_run_id`, `resolution`). A row the cleaner could not repair keeps
`resolved_run_id` NULL and gets `resolution = 'lost'`: still open, waiting for a person.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .connection import Database, as_iso, now_iso

LOST = "lost"
_CHUNK = 500


@dataclass
class Discrepancy:
    """One open (or closed) problem the verifier recorded."""

    id: int
    kind: str
    subject: str
    detail: str | None
    found_run_id: int | None
    first_found_at: str | None
    last_found_at: str | None
    resolution: str | None


@dataclass
class Reconciled:
    """What one verifier run changed: rows opened, found again, closed."""

    new: list[tuple[str, str]] = field(default_factory=list)
    again: list[tuple[str, str]] = field(default_factory=list)
    closed: list[Discrepancy] = field(default_factory=list)


_COLUMNS = "id, kind, subject, detail, found_run_id, first_found_at, last_found_at, resolution"


def _row(r: tuple) -> Discrepancy:
    values = list(r)
    values[5], values[6] = as_iso(values[5]), as_iso(values[6])
    return Discrepancy(*values)


def list_open(db: Database, kinds: Iterable[str] | None = None) -> list[Discrepancy]:
    """Every open discrepancy (of these kinds), oldest first."""
    rows = db.query(
        f"SELECT {_COLUMNS} FROM discrepancies WHERE resolved_run_id IS NULL ORDER BY id"  # noqa: S608
    )
    wanted = set(kinds) if kinds is not None else None
    return [_row(r) for r in rows if wanted is None or r[1] in wanted]


def open_by_kind(db: Database) -> dict[str, int]:
    """Open discrepancies counted by kind (for `status` and the summary)."""
    rows = db.query(
        "SELECT kind, COUNT(*) FROM discrepancies WHERE resolved_run_id IS NULL GROUP BY kind"
    )
    return {r[0]: r[1] for r in rows}


def count_open(db: Database) -> int:
    row = db.query_one("SELECT COUNT(*) FROM discrepancies WHERE resolved_run_id IS NULL")
    return row[0] if row else 0


def reconcile(
    db: Database,
    run_id: int,
    found: dict[tuple[str, str], str],
    checked: Callable[[str, str], bool],
) -> Reconciled:
    """Record this run's findings in one transaction.

    `found` maps (kind, subject) to a detail line. A finding already open keeps its row;
    a new one gets a row; an open row not found again is closed — but only when
    `checked(kind, subject)` says this run looked at it (a source that could not be
    listed, or a file outside this run's sample, keeps its row open).
    """
    now = now_iso()
    result = Reconciled()
    with db.transaction():
        open_rows = {(d.kind, d.subject): d for d in list_open(db)}
        fresh = [key for key in found if key not in open_rows]
        db.executemany(
            "INSERT INTO discrepancies (kind, subject, detail, found_run_id, first_found_at,"
            " last_found_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (kind, subject) WHERE resolved_run_id IS NULL DO NOTHING",
            [(k, s, found[(k, s)], run_id, now, now) for k, s in fresh],
        )
        result.new = fresh
        result.again = [key for key in found if key in open_rows]
        db.executemany(
            "UPDATE discrepancies SET detail = ?, last_found_at = ? WHERE id = ?",
            [(found[key], now, open_rows[key].id) for key in result.again],
        )
        result.closed = [
            d for key, d in open_rows.items() if key not in found and checked(d.kind, d.subject)
        ]
        db.executemany(
            "UPDATE discrepancies SET resolved_run_id = ?, resolution = ?"
            " WHERE id = ? AND resolved_run_id IS NULL",
            [(run_id, "no longer found", d.id) for d in result.closed],
        )
    return result


def resolve(db: Database, disc_id: int, run_id: int, resolution: str) -> None:
    """Close one discrepancy: repaired (or gone) in run `run_id`, saying how."""
    db.execute(
        "UPDATE discrepancies SET resolved_run_id = ?, resolution = ?"
        " WHERE id = ? AND resolved_run_id IS NULL",
        (run_id, resolution, disc_id),
    )


def mark(db: Database, disc_id: int, resolution: str) -> None:
    """Note what the cleaner concluded (e.g. 'lost') while leaving the row open."""
    db.execute("UPDATE discrepancies SET resolution = ? WHERE id = ?", (resolution, disc_id))


# -- what the verifier compares -------------------------------------------------------
def stored_files(db: Database) -> list[tuple[str, int, str | None, str | None]]:
    """(md5, size, parse_status, first_seen_at) of every `files` row."""
    rows = db.query("SELECT md5, size, parse_status, first_seen_at FROM files")
    return [(md5, size, status, as_iso(seen)) for md5, size, status, seen in rows]


def file_exists(db: Database, md5: str) -> bool:
    return db.query_one("SELECT 1 FROM files WHERE md5 = ?", (md5,)) is not None


def receipted_items(db: Database, source: str, items: Iterable[str] | None = None) -> set[str]:
    """Items of `source` that have a receipt (all of them, or those among `items`)."""
    if items is None:
        rows = db.query("SELECT DISTINCT item FROM receipts WHERE source = ?", (source,))
        return {r[0] for r in rows}
    keys = list(dict.fromkeys(items))
    found: set[str] = set()
    for i in range(0, len(keys), _CHUNK):
        part = keys[i : i + _CHUNK]
        marks = ",".join("?" * len(part))
        rows = db.query(
            f"SELECT item FROM receipts WHERE source = ? AND item IN ({marks})",  # noqa: S608
            (source, *part),
        )
        found.update(r[0] for r in rows)
    return found


def receipts_for(db: Database, md5: str) -> list[tuple[str, str, str]]:
    """(channel, source, item) of every delivery of this content, newest first."""
    return db.query(
        "SELECT r.channel, r.source, r.item FROM receipts r JOIN files f ON f.id = r.file_id"
        " WHERE f.md5 = ? ORDER BY r.id DESC",
        (md5,),
    )


def forget_filed(db: Database, source: str, items: Iterable[str]) -> None:
    """Let the pipeline take items again whose 'filed' state has no receipt behind it."""
    db.executemany(
        "UPDATE source_items SET status = 'failed', reason = ?, updated_at = ?"
        " WHERE source = ? AND item = ? AND status = 'filed'",
        [("no receipt: filed again by the cleaner", now_iso(), source, item) for item in items],
    )
