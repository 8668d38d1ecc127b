"""ftp_sync on a local queue folder, end to end through bin/, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import time

import pytest

from conftest import Workspace, md5, sample_log, stored_bytes

SUMMARY = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ftp_sync\[\d+\] INFO run=(\d+) done seen=(\d+) new=(\d+)"
    r" dup=(\d+) failed=(\d+) skipped=(\d+) seconds=[\d.]+ status=(\w+)$",
    re.M,
)


def summaries(ws: Workspace) -> list[tuple[str, ...]]:
    return SUMMARY.findall(ws.log_text())


def test_300_files_with_50_duplicate_contents_are_filed_exactly_once(ws: Workspace) -> None:
    contents = [sample_log(i % 250) for i in range(300)]
    for i, data in enumerate(contents):
        (ws.queue / f"run-{i}-benchmark.log").write_bytes(data)
    first = ws.run("ftp-sync")
    assert first.code == 0, first.err
    assert first.out == "" and first.err == "", "a sync job prints nothing on success"
    assert ws.count("files") == 250
    assert ws.count("receipts") == 300
    for data in contents[:250]:
        assert stored_bytes(ws.store, md5(data)) == data
    again = ws.run("ftp-sync")
    assert again.code == 0
    assert ws.count("files") == 250 and ws.count("receipts") == 300
    (run1, *c1), (run2, *c2) = summaries(ws)
    assert c1 == ["300", "250", "50", "0", "0", "ok"]
    assert c2 == ["300", "0", "0", "0", "0", "ok"], "the second run files nothing new"
    rows = ws.rows("SELECT status, n_seen, n_new, n_dup FROM runs ORDER BY id")
    assert rows == [("ok", 300, 250, 50), ("ok", 300, 0, 0)]


def test_receipts_record_channel_source_item_and_run(ws: Workspace) -> None:
    (ws.queue / "run-1-benchmark.log").write_bytes(sample_log(1))
    assert ws.run("ftp-sync").code == 0
    [(channel, source, item, name, run_id)] = ws.rows(
        "SELECT channel, source, item, original_name, run_id FROM receipts"
    )
    assert (channel, source, item, name) == (
        "ftp",
        str(ws.queue),
        "run-1-benchmark.log",
        "run-1-benchmark.log",
    )
    assert run_id == ws.rows("SELECT MAX(id) FROM runs")[0][0]
    [(stored, size)] = ws.rows("SELECT stored_path, size FROM files")
    assert stored == f"{md5(sample_log(1))[:2]}/{md5(sample_log(1))}.gz"
    assert size == len(sample_log(1))


@pytest.mark.parametrize("action", ["delete", "move:done"])
def test_after_ingest_removes_items_only_once_filed(ws: Workspace, action: str) -> None:
    ws.configure(ftp={"after_ingest": action})
    for i in range(5):
        (ws.queue / f"{i}.log").write_bytes(sample_log(i))
    assert ws.run("ftp-sync").code == 0
    left = sorted(p.name for p in ws.queue.iterdir())
    if action == "delete":
        assert left == []
    else:
        assert left == ["done"]
        assert sorted(p.name for p in (ws.queue / "done").iterdir()) == [
            f"{i}.log" for i in range(5)
        ]
    assert ws.count("files") == 5
    assert ws.rows("SELECT DISTINCT status FROM source_items") == [("filed",)]
    assert ws.run("ftp-sync").code == 0
    assert ws.count("receipts") == 5


def test_unsettled_file_waits_until_its_size_and_mtime_stop_changing(ws: Workspace) -> None:
    ws.configure(ftp={"settle_seconds": "3600"})
    growing = ws.queue / "run-9-benchmark.log"
    growing.write_bytes(sample_log(9)[:500])
    assert ws.run("ftp-sync").code == 0
    assert ws.count("files") == 0
    assert "waiting item=run-9-benchmark.log" in ws.log_text()
    growing.write_bytes(sample_log(9))  # still being written: changed since the last poll
    assert ws.run("ftp-sync").code == 0
    assert ws.count("files") == 0
    assert ws.run("ftp-sync").code == 0  # unchanged across two polls: settled
    assert ws.rows("SELECT md5 FROM files") == [(md5(sample_log(9)),)]


def test_old_enough_file_is_settled_on_first_sight(ws: Workspace) -> None:
    ws.configure(ftp={"settle_seconds": "60"})
    old = ws.queue / "old.log"
    old.write_bytes(sample_log(1))
    os.utime(old, (time.time() - 120, time.time() - 120))
    (ws.queue / "fresh.log").write_bytes(sample_log(2))
    assert ws.run("ftp-sync").code == 0
    assert ws.rows("SELECT item FROM receipts") == [("old.log",)]


def test_upload_in_progress_names_are_skipped(ws: Workspace) -> None:
    for name in (
        ".hidden.log",
        "run.log.part",
        "run.log.tmp",
        "x.filepart",
        ".pureftpd-upload.5f3a.log",
    ):
        (ws.queue / name).write_bytes(sample_log(len(name)))
    assert ws.run("ftp-sync").code == 0
    assert ws.count("files") == 0
    assert summaries(ws)[-1][1:] == ("5", "0", "0", "0", "5", "ok")


def test_file_replaced_with_new_content_under_the_same_name_is_filed_again(ws: Workspace) -> None:
    f = ws.queue / "summary"
    f.write_bytes(sample_log(1))
    assert ws.run("ftp-sync").code == 0
    f.write_bytes(sample_log(2))
    os.utime(f, (time.time() + 5, time.time() + 5))
    assert ws.run("ftp-sync").code == 0
    assert ws.count("files") == 2


def test_sample_logs_are_parsed_while_filed(ws: Workspace, tmp_path) -> None:
    from samples_path import samples_dir

    log = samples_dir() / "run-local-rel7.32.6-epyc2cpu-default_run-22401-benchmark.log"
    (ws.queue / log.name).write_bytes(log.read_bytes())
    assert ws.run("ftp-sync").code == 0
    assert ws.rows("SELECT parse_status FROM files") == [("parsed",)]
    models = {r[0] for r in ws.rows("SELECT model FROM bench_results")}
    assert models == {"moss", "world", "star", "bldg391", "m35", "sphflake"}


def test_a_poll_of_an_unchanged_queue_does_not_read_what_was_delivered(ws: Workspace) -> None:
    for i in range(3):
        (ws.queue / f"{i}.log").write_bytes(sample_log(i))
    assert ws.run("ftp-sync").code == 0
    second = ws.run("ftp-sync", "-vv")
    assert "listing unchanged since a run that left nothing open" in second.err
    assert summaries(ws)[-1][1:] == ("3", "0", "0", "0", "0", "ok")
    (ws.queue / "3.log").write_bytes(sample_log(3))
    third = ws.run("ftp-sync", "-vv")
    assert "listing unchanged" not in third.err
    assert ws.count("files") == 4


def test_a_failed_item_is_retried_even_when_the_listing_is_unchanged(ws_sqlite: Workspace) -> None:
    ws = ws_sqlite
    (ws.queue / "a.log").write_bytes(sample_log(1))
    ws.configure(limits={"max_file_bytes": "1 KiB"})
    assert ws.run("ftp-sync").code == 1  # too large: rejected for good, remembered
    ws.configure(limits={"max_file_bytes": "64 MiB"})
    (ws.queue / "a.log").touch()  # a person looked at it: changed, so looked at again
    assert ws.run("ftp-sync").code == 0
    assert ws.count("files") == 1


def test_the_split_fingerprint_sees_a_change_in_either_half(tmp_path) -> None:
    from benchsync.sources.local import _split_digest

    paths = []
    for i in range(40):
        p = tmp_path / f"{i}.log"
        p.write_bytes(b"x" * i)
        paths.append(os.fsencode(p))
    first = _split_digest(paths, min_split=10)
    assert _split_digest(paths, min_split=10) == first
    for index in (3, 33):  # one in the parent's half, one in the child's
        os.utime(paths[index], ns=(1, 10**9 * index))
        changed = _split_digest(paths, min_split=10)
        assert changed != first
        first = changed
    os.unlink(paths[35])
    with pytest.raises(OSError):
        _split_digest(paths, min_split=10)
