"""Run logs: `<logs.dir>/<job>.log`, one event a line, safe under logrotate.

    2026-12-04T19:30:00Z ftp_sync[4242] INFO new md5=… size=… item=…

A `WatchedFileHandler` reopens the file when logrotate moves it. Errors also go to
stderr (cron mails them) unless stderr already is this run log (the crontab appends a
job's output to its run log, and the line must not appear twice).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from logging.handlers import WatchedFileHandler
from pathlib import Path

_PLAIN = re.compile(r"^[\w.,:/@+=~%-]+$")


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", self.converter(record.created))


def q(value: object) -> str:
    """A value for a `key=value` log field: as is when plain, else quoted with escapes."""
    text = str(value)
    if _PLAIN.match(text):
        return text
    return json.dumps(text, ensure_ascii=False).encode("utf-8", "backslashreplace").decode()


def _same_file(stream: object, path: Path) -> bool:
    try:
        a = os.fstat(stream.fileno())  # type: ignore[attr-defined]
        b = os.stat(path)
    except (OSError, AttributeError, ValueError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def setup(job: str, logs_dir: Path | None, verbose: int = 0, quiet: bool = False) -> logging.Logger:
    """Configure the `benchsync` logger for one job run and return it."""
    logger = logging.getLogger("benchsync")
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    fmt = _UTCFormatter(f"%(asctime)s {job}[{os.getpid()}] %(levelname)s %(message)s")
    path = None
    if logs_dir is not None:
        logs_dir.mkdir(parents=True, exist_ok=True)
        path = logs_dir / f"{job}.log"
        fh = WatchedFileHandler(path, encoding="utf-8")
        fh.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    if path is None or not _same_file(sys.stderr, path):
        sh = logging.StreamHandler(sys.stderr)
        if verbose > 1:
            sh.setLevel(logging.DEBUG)
        elif verbose:
            sh.setLevel(logging.INFO)
        else:
            sh.setLevel(logging.ERROR if quiet else logging.WARNING)
        sh.setFormatter(fmt)
        logger.addHandler(sh)
    logger.log_path = str(path) if path else None  # type: ignore[attr-defined]
    return logger
