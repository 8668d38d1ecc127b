"""Rows parsed from benchmark logs: machines, bench_runs, bench_results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .connection import Database, now_iso

_MACHINE_COLS = (
    "hostname",
    "os",
    "os_release",
    "arch",
    "cpu_model",
    "cpu_vendor",
    "cpu_mhz",
    "cores",
    "sockets",
)
_RUN_COLS = (
    "kind",
    "brlcad_version",
    "compile_date",
    "run_date",
    "run_at",
    "processors",
    "mean_rays_per_sec",
    "mean_vgr",
    "vgr_metric",
    "log_vgr",
    "rt_args",
)
_RUN_FIXED = ("file_id", "seq", "machine_id", "complete", "parser_version")
_RESULT_COLS = (
    "model",
    "rays_per_sec",
    "vgr_ratio",
    "cpu_seconds",
    "wall_seconds",
    "pixels_per_sec",
    "rays",
    "hits",
    "misses",
    "verdict",
    "frames",
)


def save_parses(db: Database, parsed: Sequence[tuple[int, Any]], replace: bool = True) -> None:
    """Write the parsed rows of many files in a few multi-row statements.

    `replace` first deletes rows the files already have (reparse); freshly filed files
    have none. Machines are matched on their stable key, inserted the first time seen.
    """
    if replace and parsed:
        ids = [file_id for file_id, _ in parsed]
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ", ".join("?" * len(part))
            db.execute(f"DELETE FROM bench_runs WHERE file_id IN ({marks})", part)  # noqa: S608
    runs = [(fid, seq, run) for fid, res in parsed for seq, run in enumerate(_runs(res))]
    if not runs:
        return
    from ..parse import PARSER_VERSION, machine_key

    keys = [machine_key(run.machine) for _, _, run in runs]
    machine_ids = _machine_ids(db, dict(zip(keys, (r.machine for _, _, r in runs), strict=True)))
    run_rows = [
        (
            fid,
            seq,
            machine_ids[key],
            _bool(db, run.complete),
            PARSER_VERSION,
            *(getattr(run, c) for c in _RUN_COLS),
        )
        for (fid, seq, run), key in zip(runs, keys, strict=True)
    ]
    returned = db.insert_rows(
        "bench_runs", _RUN_FIXED + _RUN_COLS, run_rows, returning="file_id, seq, id"
    )
    run_ids = {(fid, seq): rid for fid, seq, rid in returned}
    db.insert_rows(
        "bench_results",
        ("run_id", *_RESULT_COLS),
        [
            (run_ids[(fid, seq)], *(getattr(r, c) for c in _RESULT_COLS))
            for fid, seq, run in runs
            for r in run.results
        ],
        tail=" ON CONFLICT (run_id, model) DO NOTHING",
    )


def _runs(result: Any) -> list[Any]:
    return getattr(result, "runs", None) or []


def _machine_ids(db: Database, machines: dict[str, Any]) -> dict[str, int]:
    """Ids of the machines with these stable keys, inserting those seen for the first time."""
    found = _existing_machines(db, list(machines))
    missing = [k for k in machines if k not in found]
    now = now_iso()
    found.update(
        db.insert_rows(
            "machines",
            ("match_key", "first_seen_at", *_MACHINE_COLS),
            [(k, now, *(getattr(machines[k], c) for c in _MACHINE_COLS)) for k in missing],
            tail=" ON CONFLICT (match_key) DO NOTHING",
            returning="match_key, id",
        )
    )
    if len(found) < len(machines):  # another collector inserted some a moment ago
        found.update(_existing_machines(db, [k for k in machines if k not in found]))
    return found


def _existing_machines(db: Database, keys: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for i in range(0, len(keys), 500):
        part = keys[i : i + 500]
        marks = ", ".join("?" * len(part))
        found.update(
            db.query(f"SELECT match_key, id FROM machines WHERE match_key IN ({marks})", part)  # noqa: S608
        )
    return found


def _bool(db: Database, value: bool) -> Any:
    return bool(value) if db.dialect == "postgresql" else int(bool(value))


def files_to_reparse(
    db: Database, all_files: bool, with_status: str | None, md5s: list[str]
) -> list[tuple[int, str, int, str | None]]:
    """(id, md5, size, a received name) of the files `reparse` was asked for."""
    name = "(SELECT MIN(original_name) FROM receipts r WHERE r.file_id = f.id)"
    base = f"SELECT f.id, f.md5, f.size, {name} FROM files f"  # noqa: S608 - constant text
    if all_files:
        return db.query(base + " ORDER BY f.id")
    rows: list[tuple[int, str, int, str | None]] = []
    if with_status:
        rows += db.query(base + " WHERE f.parse_status = ? ORDER BY f.id", (with_status,))
    for md5 in md5s:
        rows += db.query(base + " WHERE f.md5 = ?", (md5,))
    return rows


PENDING = "pending"  # filed, not parsed yet
PARSING = "parsing"  # claimed by an analyst


def claim_pending(db: Database, file_ids: list[int]) -> list[tuple[int, str, int]]:
    """Claim these files for parsing if still pending: (id, md5, size) of those won."""
    claimed: list[tuple[int, str, int]] = []
    for i in range(0, len(file_ids), 500):
        part = file_ids[i : i + 500]
        marks = ", ".join("?" * len(part))
        claimed += db.query(
            f"UPDATE files SET parse_status = ? WHERE parse_status = ? AND id IN ({marks})"  # noqa: S608
            " RETURNING id, md5, size",
            (PARSING, PENDING, *part),
        )
    return claimed


def claim_stale(
    db: Database, pending_before: str, parsing_before: str, limit: int
) -> list[tuple[int, str, int]]:
    """Claim files an earlier run left pending, or whose claimer vanished long ago."""
    return db.query(
        "UPDATE files SET parse_status = ? WHERE id IN (SELECT id FROM files WHERE"
        " (parse_status = ? AND first_seen_at < ?) OR (parse_status = ? AND first_seen_at < ?)"
        " ORDER BY id LIMIT ?) RETURNING id, md5, size",
        (PARSING, PENDING, pending_before, PARSING, parsing_before, limit),
    )


def received_names(db: Database, file_ids: list[int]) -> dict[int, str | None]:
    """A name each file was received under (the parser uses it to tell rt logs apart)."""
    names: dict[int, str | None] = {}
    for i in range(0, len(file_ids), 500):
        part = file_ids[i : i + 500]
        marks = ", ".join("?" * len(part))
        names.update(
            db.query(
                f"SELECT file_id, MIN(original_name) FROM receipts WHERE file_id IN ({marks})"  # noqa: S608
                " GROUP BY file_id",
                part,
            )
        )
    return names


def set_parse_statuses(db: Database, rows: Sequence[tuple[str, str | None, int]]) -> None:
    """Record (status, reason, file id) for many files."""
    db.executemany("UPDATE files SET parse_status = ?, parse_detail = ? WHERE id = ?", rows)


def parsed_rows(db: Database, md5: str) -> dict[str, Any] | None:
    """Everything stored about one file and what was parsed from it (for `show`)."""
    f = db.query_one(
        "SELECT id, md5, size, stored_path, first_seen_at, parse_status, parse_detail"
        " FROM files WHERE md5 = ?",
        (md5,),
    )
    if f is None:
        return None
    receipts = db.query(
        "SELECT channel, source, item, original_name, submitter, received_at FROM receipts"
        " WHERE file_id = ? ORDER BY id",
        (f[0],),
    )
    runs = db.query(
        "SELECT r.id, r.kind, m.hostname, m.cpu_model, m.cores, r.brlcad_version,"
        " r.run_date, r.processors, r.mean_rays_per_sec, r.mean_vgr, r.vgr_metric, r.complete"
        " FROM bench_runs r LEFT JOIN machines m ON m.id = r.machine_id"
        " WHERE r.file_id = ? ORDER BY r.seq",
        (f[0],),
    )
    results = {
        run[0]: db.query(
            "SELECT model, rays_per_sec, vgr_ratio, cpu_seconds, wall_seconds, verdict"
            " FROM bench_results WHERE run_id = ? ORDER BY id",
            (run[0],),
        )
        for run in runs
    }
    return {"file": f, "receipts": receipts, "runs": runs, "results": results}
