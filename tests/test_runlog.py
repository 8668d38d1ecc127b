"""Run logs: the line format, reopening after logrotate, no duplicates from cron's >>."""

from __future__ import annotations

import logging
import re
import subprocess

from benchsync import runlog
from conftest import REPO, Workspace, sample_log

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ftp_sync\[\d+\] (INFO|WARNING|ERROR) .+$")


def test_every_line_has_time_job_pid_and_level(ws_sqlite: Workspace) -> None:
    (ws_sqlite.queue / "a.log").write_bytes(sample_log(1))
    ws_sqlite.run("ftp-sync")
    lines = ws_sqlite.log_text().splitlines()
    assert lines and all(LINE.match(line) for line in lines)
    assert re.search(r"INFO new md5=[0-9a-f]{32} size=2000 item=a.log$", lines[0])


def test_log_is_reopened_after_logrotate_moves_it(tmp_path) -> None:
    logger = runlog.setup("ftp_sync", tmp_path, quiet=True)
    logger.info("before")
    (tmp_path / "ftp_sync.log").rename(tmp_path / "ftp_sync.log.1")
    logger.info("after")
    logging.getLogger("benchsync").handlers.clear()
    assert "before" in (tmp_path / "ftp_sync.log.1").read_text()
    assert "after" in (tmp_path / "ftp_sync.log").read_text()
    assert "after" not in (tmp_path / "ftp_sync.log.1").read_text()


def test_output_appended_to_the_run_log_by_cron_is_not_written_twice(ws_sqlite: Workspace) -> None:
    ws = ws_sqlite
    ws.configure(ftp={"source": "missing-folder"})
    ws.logs.mkdir()
    log = ws.logs / "ftp_sync.log"
    with open(log, "a") as out:
        p = subprocess.run(
            ["bin/benchsync", "ftp-sync", "--config", str(ws.config)],
            stdout=out,
            stderr=out,
            cwd=str(REPO),
        )
    assert p.returncode == 3
    assert log.read_text().count("queue folder") == 1
