"""The cleaner: dry run, restores from where content still is, lost files, orphans, quiet."""

from __future__ import annotations

import email
import email.policy
import gzip
import os
import time
from pathlib import Path

from conftest import Workspace, md5, sample_log, stored_bytes

OLD = time.time() - 7200


def stored(ws: Workspace, digest: str) -> Path:
    return ws.store / digest[:2] / f"{digest}.gz"


def open_rows(ws: Workspace) -> dict[tuple[str, str], str | None]:
    rows = ws.rows(
        "SELECT kind, subject, resolution FROM discrepancies WHERE resolved_run_id IS NULL"
    )
    return {(k, s): r for k, s, r in rows}


def mail_to(ws: Workspace, sink) -> None:
    sink.clear()
    ws.configure(
        mail={
            "smtp_host": sink.host,
            "smtp_port": str(sink.port),
            "starttls": "false",
            "to": "ops@example.org",
        }
    )


def messages(sink) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(e.content, policy=email.policy.default) for e in sink.messages]


def file_some(ws: Workspace, n: int = 3) -> list[bytes]:
    data = [sample_log(i, 2500) for i in range(n)]
    for i, d in enumerate(data):
        (ws.queue / f"run-{i}.log").write_bytes(d)
    assert ws.run("ftp-sync").code == 0
    return data


def test_dry_run_says_what_it_would_do_and_changes_nothing(ws_sqlite: Workspace, smtp_sink) -> None:
    ws = ws_sqlite
    mail_to(ws, smtp_sink)
    [a, *_] = file_some(ws)
    stored(ws, md5(a)).unlink()
    junk = stored(ws, md5(b"junk\n"))
    junk.parent.mkdir(exist_ok=True)
    junk.write_bytes(gzip.compress(b"junk\n"))
    os.utime(junk, (OLD, OLD))
    assert ws.run("verify").code == 1
    before = open_rows(ws)
    result = ws.run("clean", "--dry-run", "-v")
    assert result.code == 1
    out = result.err
    assert f"dry run: would repair kind=missing subject={md5(a)} by=" in out
    assert f"restored from {ws.queue / 'run-0.log'}" in out
    assert "kind=orphan" in out and "removed (not a benchmark log)" in out
    assert "would email the report to ops@example.org" in out
    assert not stored(ws, md5(a)).exists() and junk.exists()
    assert open_rows(ws) == before
    assert smtp_sink.messages == []


def test_content_no_source_holds_is_marked_lost_reported_once_and_kept_open(
    ws_sqlite: Workspace, smtp_sink
) -> None:
    ws = ws_sqlite
    mail_to(ws, smtp_sink)
    ws.configure(ftp={"after_ingest": "delete"})
    [a, *_] = file_some(ws)
    stored(ws, md5(a)).unlink()
    assert ws.run("verify").code == 1
    assert ws.run("clean").code == 1
    assert open_rows(ws) == {("missing", md5(a)): "lost"}
    assert f"lost kind=missing md5={md5(a)}" in ws.log_text("cleaner")
    [msg] = messages(smtp_sink)
    body = msg.get_content()
    assert "needs a person:     1" in body and f"{md5(a)} (lost)" in body
    assert ws.run("clean").code == 1
    assert len(smtp_sink.messages) == 1, "an unchanged report is not mailed every 5 minutes"
    assert "report unchanged" in ws.log_text("cleaner")
    assert ws.run("verify").code == 1
    assert open_rows(ws) == {("missing", md5(a)): "lost"}, "found again: still the lost row"


def test_a_corrupt_file_is_restored_from_the_move_folder(ws_sqlite: Workspace) -> None:
    ws = ws_sqlite
    ws.configure(ftp={"after_ingest": "move:done"})
    [a, *_] = file_some(ws)
    path = stored(ws, md5(a))
    good = path.read_bytes()
    path.write_bytes(good[:-8] + b"\0" * 8)
    assert ws.run("verify", "--deep").code == 1
    assert ws.run("clean").code == 0
    assert path.read_bytes() == good, "the same deterministic bytes as first stored"
    [resolution] = ws.rows("SELECT resolution FROM discrepancies WHERE kind = 'corrupt'")
    assert resolution == (f"restored from {ws.queue / 'done' / 'run-0.log'}",)
    assert ws.run("verify", "--deep").code == 0


def test_a_missing_file_is_restored_from_the_path_it_was_ingested_from(
    ws_sqlite: Workspace, tmp_path: Path
) -> None:
    ws = ws_sqlite
    backfill = tmp_path / "old-logs"
    backfill.mkdir()
    data = sample_log(42, 4000)
    (backfill / "old.log").write_bytes(data)
    assert ws.run("ingest", str(backfill)).code == 0
    assert ws.run("ftp-sync").code == 0  # not silent
    stored(ws, md5(data)).unlink()
    assert ws.run("verify").code == 1
    assert ws.run("clean").code == 0
    assert stored_bytes(ws.store, md5(data)) == data


def test_orphans_are_adopted_only_when_they_are_logs_matching_their_name(
    ws_sqlite: Workspace,
) -> None:
    ws = ws_sqlite
    log_data = sample_log(9, 3000)
    adopt = stored(ws, md5(log_data))
    misnamed = stored(ws, "0" * 32)
    not_gzip = stored(ws, "f" * 32)
    for path, content in (
        (adopt, gzip.compress(log_data, compresslevel=9)),
        (misnamed, gzip.compress(log_data)),
        (not_gzip, b"plain text"),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.utime(path, (OLD, OLD))
    fresh = stored(ws, md5(b"young"))
    fresh.parent.mkdir(exist_ok=True)
    fresh.write_bytes(gzip.compress(b"young"))
    assert ws.run("verify").code == 1
    assert {s for k, s in open_rows(ws) if k == "orphan"} == {
        f"{p.parent.name}/{p.name}" for p in (adopt, misnamed, not_gzip)
    }, "a young .gz may be a commit in flight"
    ws.run("clean")
    assert not misnamed.exists() and not not_gzip.exists() and fresh.exists()
    assert stored_bytes(ws.store, md5(log_data)) == log_data
    [(channel, source, item)] = ws.rows("SELECT channel, source, item FROM receipts")
    assert (channel, source, item) == (
        "manual",
        "store-orphan",
        f"{adopt.parent.name}/{adopt.name}",
    )
    resolutions = {
        r[0] for r in ws.rows("SELECT resolution FROM discrepancies WHERE kind = 'orphan'")
    }
    assert len(resolutions) == 3 and "adopted" in resolutions
    assert "removed: content does not match its name" in resolutions
    assert any(r.startswith("removed: not a valid gzip file") for r in resolutions)


def test_no_email_when_all_is_well(ws_sqlite: Workspace, smtp_sink) -> None:
    ws = ws_sqlite
    mail_to(ws, smtp_sink)
    file_some(ws)
    assert ws.run("verify").code == 0
    result = ws.run("clean")
    assert result.code == 0 and result.err == ""
    assert "all well: no report" in ws.log_text("cleaner")
    assert smtp_sink.messages == []
