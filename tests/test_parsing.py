"""Parsing after the commit: the background analyst, claims, and catching up leftovers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from benchsync.db import connect
from benchsync.db.bench import claim_pending
from conftest import Workspace
from samples_path import samples_dir

RUN_LOG = "run-local-rel7.32.6-epyc2cpu-default_run-22401-benchmark.log"
SUMMARY = "run-local-rel7.32.6-epyc2cpu-default_summary"


def _put(ws: Workspace, *names: str) -> None:
    for name in names:
        (ws.queue / name).write_bytes((samples_dir() / name).read_bytes())


def _results(ws: Workspace) -> list[tuple]:
    return ws.rows("SELECT model, rays_per_sec FROM bench_results ORDER BY model, rays_per_sec")


def test_background_and_inline_parsing_store_the_same_rows(ws: Workspace) -> None:
    _put(ws, RUN_LOG, SUMMARY)
    ws.configure(limits={"parse_workers": "1"})
    assert ws.run("ftp-sync").code == 0
    background = _results(ws)
    assert len(background) == 12
    assert {r[0] for r in ws.rows("SELECT parse_status FROM files")} == {"parsed"}
    ws.rows("DELETE FROM bench_runs")
    ws.rows("UPDATE files SET parse_status = 'pending'")
    ws.configure(limits={"parse_workers": "0"})
    assert ws.run("reparse", "--status", "pending").code == 0
    assert _results(ws) == background


def test_files_a_killed_run_left_unparsed_are_parsed_by_the_next_run(ws: Workspace) -> None:
    _put(ws, RUN_LOG)
    assert ws.run("ftp-sync").code == 0
    hour_ago = (datetime.now(UTC) - timedelta(minutes=61)).isoformat(timespec="microseconds")
    ws.rows("DELETE FROM bench_runs")
    ws.rows("UPDATE files SET parse_status = 'pending', first_seen_at = ?", (hour_ago,))
    assert ws.run("ftp-sync").code == 0  # nothing new in the queue: still catches up
    assert ws.rows("SELECT parse_status FROM files") == [("parsed",)]
    assert len(_results(ws)) == 6
    assert "parsing 1 files left unparsed by earlier runs" in ws.log_text()


def test_a_fresh_claim_is_left_to_its_owner_and_an_abandoned_one_is_taken(ws: Workspace) -> None:
    _put(ws, RUN_LOG)
    assert ws.run("ftp-sync").code == 0
    ws.rows("DELETE FROM bench_runs")
    ws.rows("UPDATE files SET parse_status = 'parsing'")
    assert ws.run("ftp-sync").code == 0
    assert ws.rows("SELECT parse_status FROM files") == [("parsing",)], "claimed a moment ago"
    long_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="microseconds")
    ws.rows("UPDATE files SET first_seen_at = ?", (long_ago,))
    assert ws.run("ftp-sync").code == 0
    assert ws.rows("SELECT parse_status FROM files") == [("parsed",)]


def test_only_one_collector_wins_a_claim(ws: Workspace) -> None:
    _put(ws, RUN_LOG)
    assert ws.run("ftp-sync").code == 0
    ws.rows("UPDATE files SET parse_status = 'pending'")
    [(file_id,)] = ws.rows("SELECT id FROM files")
    a, b = connect(ws.db_url), connect(ws.db_url)
    try:
        assert [r[0] for r in claim_pending(a, [file_id])] == [file_id]
        assert claim_pending(b, [file_id]) == []
    finally:
        a.close()
        b.close()


def test_verify_reports_a_file_left_unparsed_for_over_an_hour(ws: Workspace) -> None:
    _put(ws, RUN_LOG)
    assert ws.run("ftp-sync").code == 0
    long_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="microseconds")
    ws.rows("UPDATE files SET parse_status = 'parsing', first_seen_at = ?", (long_ago,))
    assert ws.run("verify").code == 1
    [(kind, detail)] = ws.rows(
        "SELECT kind, detail FROM discrepancies WHERE resolved_run_id IS NULL AND kind = 'parse'"
    )
    assert "still not parsed" in detail
