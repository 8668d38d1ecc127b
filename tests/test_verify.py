"""verify → clean → verify: each kind of discrepancy caused for real, found, repaired, mailed."""

from __future__ import annotations

import email
import email.policy
import fcntl
import gzip
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchsync.verify import in_window, next_window
from conftest import BIN, Workspace, md5, sample_log, stored_bytes

HOUR_AGO = time.time() - 7200


def open_rows(ws: Workspace) -> set[tuple[str, str]]:
    return set(ws.rows("SELECT kind, subject FROM discrepancies WHERE resolved_run_id IS NULL"))


def wait_for_lock(path: Path, timeout: float = 30) -> None:
    """Wait until nobody holds the job's flock."""
    deadline = time.monotonic() + timeout
    with open(path, "a") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                assert time.monotonic() < deadline, f"{path} still locked"
                time.sleep(0.05)


def not_filed(ws: Workspace) -> set[tuple[str, str]]:
    return {row for row in open_rows(ws) if row[0] == "not_filed"}


def stored(ws: Workspace, digest: str) -> Path:
    return ws.store / digest[:2] / f"{digest}.gz"


def drop_into_store(ws: Workspace, data: bytes) -> Path:
    """A stored file with no files row, old enough not to be a commit in flight."""
    path = stored(ws, md5(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0))
    os.utime(path, (HOUR_AGO, HOUR_AGO))
    return path


def back_date_runs(ws: Workspace, job: str, hours: float) -> None:
    then = (datetime.now(UTC) - timedelta(hours=hours)).isoformat()
    db = ws.db()
    try:
        db.execute(
            "UPDATE runs SET started_at = ?, finished_at = ? WHERE job = ?", (then, then, job)
        )
    finally:
        db.close()


def sql(ws: Workspace, statement: str, params: tuple = ()) -> None:
    db = ws.db()
    try:
        db.execute(statement, params)
    finally:
        db.close()


def mail_to(ws: Workspace, sink) -> None:
    ws.configure(
        mail={
            "smtp_host": sink.host,
            "smtp_port": str(sink.port),
            "starttls": "false",
            "from": "benchsync@example.org",
            "to": "ops@example.org",
        }
    )


def flip_byte(path: Path, offset: int = 20) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_every_kind_is_found_then_repaired_and_mailed_then_verify_is_clean(
    ws: Workspace, smtp_sink
) -> None:
    smtp_sink.clear()
    mail_to(ws, smtp_sink)
    ws.configure(verify={"grace_seconds": "0"})
    logs = {f"run-{i}.log": sample_log(i, 3000) for i in range(4)}
    for name, data in logs.items():
        (ws.queue / name).write_bytes(data)
    assert ws.run("ftp-sync").code == 0
    m = [md5(d) for d in logs.values()]

    stored(ws, m[0]).unlink()  # missing
    flip_byte(stored(ws, m[1]))  # corrupt
    sql(ws, "DELETE FROM files WHERE md5 = ?", (m[2],))  # row gone: orphan .gz + not filed
    os.utime(stored(ws, m[2]), (HOUR_AGO, HOUR_AGO))
    sql(ws, "UPDATE files SET parse_status = 'failed' WHERE md5 = ?", (m[3],))  # parse
    adoptable = sample_log(100, 2500)
    drop_into_store(ws, adoptable)  # orphan, a real log
    junk = drop_into_store(ws, b"not a benchmark at all\n")  # orphan, junk
    temp = ws.store / "tmp" / "otherhost.4242.0.1.tmp"  # stale temp of another host
    temp.write_bytes(b"half a transfer")
    os.utime(temp, (HOUR_AGO, HOUR_AGO))
    late = sample_log(7, 2222)
    (ws.queue / "late.log").write_bytes(late)  # settled long ago, sync job did not run
    os.utime(ws.queue / "late.log", (HOUR_AGO, HOUR_AGO))
    back_date_runs(ws, "ftp_sync", 1)  # silent

    found = ws.run("verify", "--deep")
    assert found.code == 1, found.err
    expected = {
        ("missing", m[0]),
        ("corrupt", m[1]),
        ("orphan", f"{m[2][:2]}/{m[2]}.gz"),
        ("not_filed", "ftp:run-2.log"),
        ("parse", m[3]),
        ("orphan", f"{md5(adoptable)[:2]}/{md5(adoptable)}.gz"),
        ("orphan", f"{junk.parent.name}/{junk.name}"),
        ("orphan", f"tmp/{temp.name}"),
        ("not_filed", "ftp:late.log"),
        ("silent_job", "ftp_sync"),
    }
    assert open_rows(ws) == expected
    log = ws.log_text("verifier")
    for kind, subject in expected:
        assert re.search(rf"WARNING found kind={kind} subject={re.escape(subject)} ", log), kind
    assert re.search(r"INFO run=\d+ done seen=\d+ new=10 dup=0 failed=10 ", log)

    again = ws.run("verify", "--deep")
    assert again.code == 1
    assert ws.count("discrepancies") == 10, "found again: still one row per problem"

    cleaned = ws.run("clean")
    assert cleaned.code == 1, "parse and silent_job need a person"
    for i in range(4):
        assert stored_bytes(ws.store, m[i]) == logs[f"run-{i}.log"]
    assert stored_bytes(ws.store, md5(late)) == late
    assert not junk.exists() and not temp.exists()
    assert ws.rows(
        "SELECT r.channel, r.source FROM receipts r JOIN files f ON f.id = r.file_id WHERE md5 = ?",
        (md5(adoptable),),
    ) == [("manual", "store-orphan")]
    assert ws.rows(
        "SELECT item FROM receipts WHERE item IN ('late.log', 'run-2.log') ORDER BY item"
    )
    assert open_rows(ws) == {("parse", m[3]), ("silent_job", "ftp_sync")}

    [msg] = [
        email.message_from_bytes(e.content, policy=email.policy.default) for e in smtp_sink.messages
    ]
    assert msg["To"] == "ops@example.org"
    assert "8 repaired, 2 need a person" in msg["Subject"]
    body = msg.get_content().replace("\r\n", "\n")
    assert body.index("found:") < body.index("What was found") < body.index("What was done")
    assert re.search(r"found: +10\nrepaired: +8\nneeds a person: +2", body)
    assert f"restored from {ws.queue / 'run-0.log'}: {m[0]}" in body
    assert "filed: ftp:late.log" in body and "adopted" in body
    assert "silent_job (1): check cron" in body and "reparse --status failed" in body

    sync = ws.run("ftp-sync")
    assert sync.code == 0
    assert re.search(r"done seen=5 new=0 dup=0 failed=0", ws.log_text()), "the cleaner filed them"
    sql(ws, "UPDATE files SET parse_status = 'parsed' WHERE md5 = ?", (m[3],))
    clean = ws.run("verify", "--deep")
    assert clean.code == 0, clean.err
    assert open_rows(ws) == set()
    resolutions = dict(ws.rows("SELECT subject, resolution FROM discrepancies"))
    assert resolutions[m[3]] == "no longer found"
    assert resolutions["ftp:late.log"] == "filed"


def test_a_problem_no_longer_found_is_closed_with_the_run_that_saw_it_gone(
    ws_sqlite: Workspace,
) -> None:
    ws = ws_sqlite
    (ws.queue / "a.log").write_bytes(sample_log(1))
    assert ws.run("ftp-sync").code == 0
    path = stored(ws, md5(sample_log(1)))
    kept = path.read_bytes()
    path.unlink()
    assert ws.run("verify").code == 1
    assert ws.run("verify").code == 1
    path.write_bytes(kept)
    assert ws.run("verify").code == 0
    [(kind, found_run, resolved_run, resolution)] = ws.rows(
        "SELECT kind, found_run_id, resolved_run_id, resolution FROM discrepancies"
    )
    runs = [r[0] for r in ws.rows("SELECT id FROM runs WHERE job = 'verifier' ORDER BY id")]
    assert (kind, found_run, resolved_run, resolution) == (
        "missing",
        runs[0],
        runs[2],
        "no longer found",
    )


def test_items_still_settling_uploading_or_refused_are_not_reported_as_not_filed(
    ws_sqlite: Workspace,
) -> None:
    ws = ws_sqlite
    ws.configure(ftp={"settle_seconds": "60"}, verify={"grace_seconds": "600"})
    (ws.queue / "fresh.log").write_bytes(sample_log(1))
    old = [ws.queue / "upload.log.part", ws.queue / ".hidden.log", ws.queue / "empty.log"]
    for p in old:
        p.write_bytes(b"" if p.name == "empty.log" else sample_log(2))
        os.utime(p, (HOUR_AGO, HOUR_AGO))
    (ws.queue / "waiting.log").write_bytes(sample_log(3))
    os.utime(ws.queue / "waiting.log", (time.time() - 120,) * 2)  # settled, within the grace
    ws.run("verify")
    assert not_filed(ws) == set()


def test_items_left_unfiled_by_a_killed_run_are_found_and_filed_by_the_cleaner(
    ws_sqlite: Workspace,
) -> None:
    ws = ws_sqlite
    ws.configure(verify={"grace_seconds": "0"}, ftp={"after_ingest": "delete"})
    # forked parser workers of a SIGKILLed run outlive it and keep its flock (reported)
    ws.configure(limits={"parse_workers": "0"})
    for i in range(1500):
        (ws.queue / f"{i}.log").write_bytes(sample_log(i, 600))
    proc = subprocess.Popen(
        [sys.executable, str(BIN / "ftp_sync"), "--config", str(ws.config)],
        env={**os.environ, "BENCHSYNC_NO_VENV": "1"},
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if any(ws.store.glob("??/*.gz")):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    wait_for_lock(ws.root / "lock" / "ftp_sync.lock")
    left = {p.name for p in ws.queue.iterdir()}
    if not left:
        pytest.skip("the run finished before it could be killed")
    filed = {r[0] for r in ws.rows("SELECT item FROM receipts")}
    assert ws.run("verify").code == 1
    assert not_filed(ws) == {("not_filed", f"ftp:{n}") for n in left - filed}
    assert ws.run("clean").code in (0, 1)  # 1: ftp_sync is still silent
    assert not_filed(ws) == set()
    assert not any(ws.queue.iterdir()), "filed, then deleted as after_ingest says"
    assert ws.count("files") == 1500
    assert ws.run("ftp-sync").code == 0
    assert ws.run("verify").code == 0


def test_a_source_that_cannot_be_listed_is_logged_as_not_checked_and_keeps_its_rows(
    ws_sqlite: Workspace,
) -> None:
    ws = ws_sqlite
    ws.configure(verify={"grace_seconds": "0"})
    (ws.queue / "late.log").write_bytes(sample_log(1))
    os.utime(ws.queue / "late.log", (HOUR_AGO, HOUR_AGO))
    assert ws.run("verify").code == 1
    ws.queue.rename(ws.root / "elsewhere")
    result = ws.run("verify")
    assert result.code == 1
    assert re.search(
        r"WARNING not checked source=ftp reason=.*does not exist", ws.log_text("verifier")
    )
    assert not_filed(ws) == {("not_filed", "ftp:late.log")}, "not closed: it was not looked at"
    assert re.search(r"done seen=\d+ new=0 dup=\d+ failed=\d+ skipped=1", ws.log_text("verifier"))


def test_without_deep_a_corrupt_file_is_found_when_its_share_comes_round(
    ws_sqlite: Workspace,
) -> None:
    ws = ws_sqlite
    ws.configure(verify={"sample_share": "0.25"})
    for i in range(20):
        (ws.queue / f"{i}.log").write_bytes(sample_log(i))
    assert ws.run("ftp-sync").code == 0
    victim = md5(sample_log(5))
    flip_byte(stored(ws, victim))
    codes = [ws.run("verify").code for _ in range(4)]
    assert codes[-1] == 1 and ("corrupt", victim) in open_rows(ws), codes
    assert ws.count("discrepancies") == 1


def test_failing_runs_of_a_job_are_a_discrepancy(ws_sqlite: Workspace) -> None:
    ws = ws_sqlite
    now = datetime.now(UTC).isoformat()
    for _ in range(3):
        sql(
            ws,
            "INSERT INTO runs (job, host, pid, started_at, finished_at, status, detail)"
            " VALUES ('ftp_sync', 'h', 1, ?, ?, 'error', 'queue folder gone')",
            (now, now),
        )
    assert ws.run("verify").code == 1
    [(subject, detail)] = ws.rows(
        "SELECT subject, detail FROM discrepancies WHERE kind = 'failing_job'"
    )
    assert subject == "ftp_sync" and "last 3 runs failed, latest: queue folder gone" in detail


@pytest.mark.parametrize("share", [0.01, 0.3])
def test_the_sample_window_covers_every_md5_within_the_cycle(share: float) -> None:
    cycle = 7 * 86400.0
    pos, at, covered = 0.0, 0.0, []
    now = 1_000_000.0
    while now - 1_000_000.0 <= cycle:
        start, end = next_window(pos, at, now, share, cycle)
        covered.append((start, end))
        pos, at, now = end % 1.0, now, now + 3 * 3600  # a run every 3 hours
    probes = [f"{x:08x}" + "0" * 24 for x in range(0, 1 << 32, (1 << 32) // 997)]
    assert all(any(in_window(p, w) for w in covered) for p in probes)


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(x) for x in path.read_text().split()]
    except OSError:
        return []


def test_a_killed_deep_verify_leaves_no_worker_holding_its_lock(ws_sqlite: Workspace) -> None:
    ws = ws_sqlite
    ws.configure(verify={"workers": "2"})
    rows = []
    for i in range(8000):
        data = b"log %d\n" % i * 40
        path = stored(ws, md5(data))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data, compresslevel=1, mtime=0))
        rows.append((md5(data), len(data), f"{path.parent.name}/{path.name}", "2026-01-01"))
    db = ws.db()
    try:
        with db.transaction():
            db.executemany(
                "INSERT INTO files (md5, size, stored_path, first_seen_at) VALUES (?, ?, ?, ?)",
                rows,
            )
    finally:
        db.close()
    for _attempt in range(5):
        proc = subprocess.Popen(
            [sys.executable, str(BIN / "verifier"), "--deep", "--config", str(ws.config)],
            env={**os.environ, "BENCHSYNC_NO_VENV": "1"},
            stderr=subprocess.DEVNULL,
        )
        workers: list[int] = []
        deadline = time.monotonic() + 30
        while proc.poll() is None and not workers and time.monotonic() < deadline:
            workers = children_of(proc.pid)
            time.sleep(0.002)
        if workers and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            break
        proc.wait()
    else:
        pytest.skip("the verifier finished before its workers could be seen")
    wait_for_lock(ws.root / "lock" / "verifier.lock", timeout=10)
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        )
