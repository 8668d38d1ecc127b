"""The `runs` table: one row per run of a job, written at its start and its end."""

from __future__ import annotations

from dataclasses import dataclass

from .connection import Database, as_iso, now_iso


@dataclass
class RunRow:
    """One run of a job as `status` shows it."""

    id: int
    job: str
    host: str
    pid: int
    started_at: str | None
    finished_at: str | None
    status: str
    n_seen: int
    n_new: int
    n_dup: int
    n_failed: int
    n_skipped: int
    log_path: str | None
    detail: str | None


_COLUMNS = (
    "id, job, host, pid, started_at, finished_at, status, n_seen, n_new, n_dup, n_failed,"
    " n_skipped, log_path, detail"
)


def start_run(db: Database, job: str, host: str, pid: int, log_path: str | None) -> int:
    """Record that a run started, so a run killed half-way still shows up."""
    run_id = db.insert_id(
        "INSERT INTO runs (job, host, pid, started_at, status, log_path) VALUES (?, ?, ?, ?, ?, ?)",
        (job, host, pid, now_iso(), "running", log_path),
    )
    assert run_id is not None
    return run_id


def finish_run(
    db: Database, run_id: int, status: str, counts: dict[str, int], detail: str | None
) -> None:
    """Record how a run ended, with its counts."""
    db.execute(
        "UPDATE runs SET finished_at = ?, status = ?, n_seen = ?, n_new = ?, n_dup = ?,"
        " n_failed = ?, n_skipped = ?, detail = ? WHERE id = ?",
        (
            now_iso(),
            status,
            counts.get("seen", 0),
            counts.get("new", 0),
            counts.get("dup", 0),
            counts.get("failed", 0),
            counts.get("skipped", 0),
            detail,
            run_id,
        ),
    )


def _row(r: tuple) -> RunRow:
    values = list(r)
    values[4] = as_iso(values[4])
    values[5] = as_iso(values[5])
    return RunRow(*values)


def last_runs(db: Database) -> list[RunRow]:
    """The latest run of every job."""
    rows = db.query(
        f"SELECT {_COLUMNS} FROM runs WHERE id IN (SELECT MAX(id) FROM runs GROUP BY job)"  # noqa: S608
        " ORDER BY job"
    )
    return [_row(r) for r in rows]


def recent_runs(db: Database, job: str, limit: int = 10) -> list[RunRow]:
    """The latest runs of one job, newest first."""
    rows = db.query(
        f"SELECT {_COLUMNS} FROM runs WHERE job = ? ORDER BY id DESC LIMIT ?",  # noqa: S608
        (job, limit),
    )
    return [_row(r) for r in rows]


def last_success(db: Database, job: str) -> str | None:
    """When the job last finished a run that was not an error."""
    row = db.query_one(
        "SELECT MAX(finished_at) FROM runs WHERE job = ? AND status IN ('ok', 'failed')", (job,)
    )
    return as_iso(row[0]) if row else None


def files_by_channel(db: Database) -> dict[str, int]:
    """How many distinct files each channel has delivered."""
    rows = db.query("SELECT channel, COUNT(DISTINCT file_id) FROM receipts GROUP BY channel")
    return {r[0]: r[1] for r in rows}


def files_by_parse_status(db: Database) -> dict[str, int]:
    """How many files the parser left in each state (parsed, partial, pending, failed…)."""
    rows = db.query("SELECT COALESCE(parse_status, 'none'), COUNT(*) FROM files GROUP BY 1")
    return {r[0]: r[1] for r in rows}


def totals(db: Database) -> dict[str, int]:
    """Counts of files and receipts, for `status`."""
    files = db.query_one("SELECT COUNT(*) FROM files")
    receipts = db.query_one("SELECT COUNT(*) FROM receipts")
    return {"files": files[0] if files else 0, "receipts": receipts[0] if receipts else 0}
