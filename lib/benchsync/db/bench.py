"""Rows parsed from benchmark logs: machines, bench_runs, bench_results."""

from __future__ import annotations

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


def _insert(table: str, fixed: tuple[str, ...], cols: tuple[str, ...], tail: str = "") -> str:
    names = ", ".join(fixed + cols)
    marks = ", ".join("?" * (len(fixed) + len(cols)))
    return f"INSERT INTO {table} ({names}) VALUES ({marks}){tail}"  # noqa: S608 - constant names


_INSERT_RUN = _insert(
    "bench_runs", ("file_id", "seq", "machine_id", "complete", "parser_version"), _RUN_COLS
)
_INSERT_RESULT = _insert(
    "bench_results", ("run_id",), _RESULT_COLS, " ON CONFLICT (run_id, model) DO NOTHING"
)
_INSERT_MACHINE = _insert(
    "machines", ("match_key", "first_seen_at"), _MACHINE_COLS, " ON CONFLICT (match_key) DO NOTHING"
)


def save_parse(db: Database, file_id: int, result: Any) -> None:
    """Replace the parsed rows of one file with `result` (inside the caller's transaction)."""
    db.execute("DELETE FROM bench_runs WHERE file_id = ?", (file_id,))
    runs = getattr(result, "runs", None) or []
    if not runs:
        return
    from ..parse import PARSER_VERSION, machine_key

    for seq, run in enumerate(runs):
        machine_id = _machine_id(db, run.machine, machine_key(run.machine))
        values = [getattr(run, c) for c in _RUN_COLS]
        run_id = db.insert_id(
            _INSERT_RUN,
            (file_id, seq, machine_id, _bool(db, run.complete), PARSER_VERSION, *values),
        )
        db.executemany(
            _INSERT_RESULT,
            [(run_id, *(getattr(r, c) for c in _RESULT_COLS)) for r in run.results],
        )


def _machine_id(db: Database, machine: Any, key: str) -> int:
    """The id of the machine with this stable key, inserting it the first time it is seen."""
    row = db.query_one("SELECT id FROM machines WHERE match_key = ?", (key,))
    if row:
        return row[0]
    new_id = db.insert_id(
        _INSERT_MACHINE,
        (key, now_iso(), *(getattr(machine, c) for c in _MACHINE_COLS)),
    )
    if new_id is None:  # another collector inserted it a moment ago
        row = db.query_one("SELECT id FROM machines WHERE match_key = ?", (key,))
        assert row is not None
        return row[0]
    return new_id


def _bool(db: Database, value: bool) -> Any:
    return bool(value) if db.dialect == "postgresql" else int(bool(value))


def files_to_reparse(
    db: Database, all_files: bool, with_status: str | None, md5s: list[str]
) -> list[tuple[int, str, str | None]]:
    """(id, md5, a received name) of the files `reparse` was asked for."""
    name = "(SELECT MIN(original_name) FROM receipts r WHERE r.file_id = f.id)"
    base = f"SELECT f.id, f.md5, {name} FROM files f"  # noqa: S608 - constant text
    if all_files:
        return db.query(base + " ORDER BY f.id")
    rows: list[tuple[int, str, str | None]] = []
    if with_status:
        rows += db.query(base + " WHERE f.parse_status = ? ORDER BY f.id", (with_status,))
    for md5 in md5s:
        rows += db.query(base + " WHERE f.md5 = ?", (md5,))
    return rows


def set_parse_status(db: Database, file_id: int, status: str | None, detail: str | None) -> None:
    db.execute(
        "UPDATE files SET parse_status = ?, parse_detail = ? WHERE id = ?",
        (status, detail, file_id),
    )


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
