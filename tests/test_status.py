"""`benchsync status [--json]`: last runs, health, open discrepancies, files by channel."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from conftest import Workspace, sample_log


def sql(ws: Workspace, statement: str, params: tuple = ()) -> None:
    db = ws.db()
    try:
        db.execute(statement, params)
    finally:
        db.close()


def status(ws: Workspace) -> tuple[int, dict]:
    result = ws.run("status", "--json")
    return result.code, json.loads(result.out)


def test_status_shows_the_last_run_its_counts_and_files_by_channel(ws: Workspace) -> None:
    for i in range(3):
        (ws.queue / f"{i}.log").write_bytes(sample_log(i))
    (ws.queue / "again.log").write_bytes(sample_log(0))
    assert ws.run("ftp-sync").code == 0
    code, report = status(ws)
    assert code == 0
    [job] = report["jobs"]
    assert job["job"] == "ftp_sync" and job["problem"] is None
    run = job["last_run"]
    assert run["status"] == "ok"
    assert run["counts"] == {"seen": 4, "new": 3, "dup": 1, "failed": 0, "skipped": 0}
    assert 0 <= run["seconds"] < 60
    assert report["files_by_channel"] == {"ftp": 3}
    assert report["totals"] == {"files": 3, "receipts": 4}
    assert report["open_discrepancies"] == {}
    text = ws.run("status")
    assert text.code == 0
    assert re.search(
        r"^ftp_sync +\d{4}-\d\d-\d\dT[\d:]+ +[\d.]+s ok +4 +3 +1 +0  ok$", text.out, re.M
    )
    assert "files: 3 (ftp 3); receipts: 4" in text.out
    assert "open discrepancies: none" in text.out


def test_a_job_with_no_recent_success_is_silent_and_status_exits_1(ws_sqlite: Workspace) -> None:
    ws = ws_sqlite
    assert ws.run("ftp-sync").code == 0
    then = (datetime.now(UTC) - timedelta(minutes=20)).isoformat()
    sql(ws, "UPDATE runs SET started_at = ?, finished_at = ?", (then, then))
    code, report = status(ws)
    assert code == 1
    assert report["jobs"][0]["problem"]["kind"] == "silent_job"
    text = ws.run("status").out
    assert "UNHEALTHY ftp_sync: no successful run for 20 min" in text
    ws.configure(status={"stale_after": "3600"})
    assert status(ws)[0] == 0


def test_a_job_that_never_ran_is_silent(ws_sqlite: Workspace) -> None:
    code, report = status(ws_sqlite)
    assert code == 1
    assert report["jobs"][0]["last_run"] is None
    assert report["unhealthy"] == ["ftp_sync: no successful run yet"]
    assert re.search(r"^ftp_sync +never ", ws_sqlite.run("status").out, re.M)


def test_a_job_whose_last_runs_failed_is_failing(ws_sqlite: Workspace) -> None:
    ws = ws_sqlite
    assert ws.run("ftp-sync").code == 0
    ws.queue.rmdir()
    for _ in range(3):
        assert ws.run("ftp-sync").code == 3
    code, report = status(ws)
    assert code == 1
    problem = report["jobs"][0]["problem"]
    assert problem["kind"] == "failing_job"
    assert "last 3 runs failed, latest: queue folder" in problem["detail"]
    assert report["jobs"][0]["last_run"]["status"] == "error"


def test_open_discrepancies_are_counted_by_kind(ws: Workspace) -> None:
    for i in range(2):
        (ws.queue / f"{i}.log").write_bytes(sample_log(i))
    assert ws.run("ftp-sync").code == 0
    for path in ws.store.glob("??/*.gz"):
        path.unlink()
    assert ws.run("verify").code == 1
    code, report = status(ws)
    assert code == 0, "discrepancies alone do not make a job unhealthy"
    assert report["open_discrepancies"] == {"missing": 2}
    assert {j["job"] for j in report["jobs"]} == {"ftp_sync", "verifier"}
    verifier = next(j for j in report["jobs"] if j["job"] == "verifier")
    assert verifier["last_run"]["status"] == "failed"
    assert verifier["last_run"]["counts"]["failed"] == 2
    assert "open discrepancies: missing 2" in ws.run("status").out


def test_status_counts_files_by_parse_outcome(ws_sqlite) -> None:
    from samples_path import samples_dir

    ws = ws_sqlite
    name = "run-local-rel7.32.6-epyc2cpu-default_summary"
    (ws.queue / name).write_bytes((samples_dir() / name).read_bytes())
    (ws.queue / "notes.txt").write_bytes(b"not a log at all\n")
    assert ws.run("ftp-sync").code == 0
    result = ws.run("status")
    assert "parsed: not_a_benchmark_log 1, parsed 1" in result.out
