"""Fixtures shared by every test: a workspace (config, queue, store, database) per test.

Database tests run twice, against SQLite and against a real PostgreSQL started by the
`server_fixtures` plugin (or `BENCHSYNC_TEST_PG`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest_plugins = ["server_fixtures"]

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / "bin"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/benchsync.sqlite"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/benchsync.sqlite"


@dataclass
class Result:
    """What one command run did: exit code and its output."""

    code: int
    out: str
    err: str


@dataclass
class Workspace:
    """A throwaway deployment: config file, drop folder, store, logs, database."""

    root: Path
    db_url: str
    sections: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def queue(self) -> Path:
        return self.root / "queue"

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def logs(self) -> Path:
        return self.root / "log"

    @property
    def config(self) -> Path:
        return self.root / "benchsync.ini"

    def configure(self, **sections: dict[str, str]) -> Path:
        """(Re)write the config file; keyword arguments add or replace sections' keys."""
        for name, values in sections.items():
            self.sections.setdefault(name, {}).update(values)
        lines = []
        for name, values in self.sections.items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {v}" for k, v in values.items()]
            lines.append("")
        self.config.write_text("\n".join(lines))
        return self.config

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        prefix: list[str] | None = None,
    ) -> Result:
        """Run `bin/benchsync ARGS --config <ws>` as a real process, as cron would."""
        cmd = [*(prefix or []), sys.executable, str(BIN / "benchsync"), *args]
        cmd += ["--config", str(self.config)]
        full_env = {**os.environ, "BENCHSYNC_NO_VENV": "1", **(env or {})}
        p = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
        return Result(p.returncode, p.stdout, p.stderr)

    def log_text(self, job: str = "ftp_sync") -> str:
        path = self.logs / f"{job}.log"
        return path.read_text() if path.exists() else ""

    def db(self):
        from benchsync.db import connect

        return connect(self.db_url)

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        db = self.db()
        try:
            return db.query(sql, params)
        finally:
            db.close()

    def count(self, table: str) -> int:
        return self.rows(f"SELECT COUNT(*) FROM {table}")[0][0]  # noqa: S608 - test helper


@pytest.fixture
def ws(tmp_path: Path, db_url: str) -> Workspace:
    """A workspace on each database dialect, with the FTP channel on a local queue."""
    return _workspace(tmp_path, db_url)


@pytest.fixture
def ws_sqlite(tmp_path: Path, sqlite_url: str) -> Workspace:
    """A workspace on SQLite only (for tests about files, not databases)."""
    return _workspace(tmp_path, sqlite_url)


def _workspace(tmp_path: Path, url: str) -> Workspace:
    w = Workspace(tmp_path / "ws", url)
    w.root.mkdir()
    w.queue.mkdir()
    w.configure(
        database={"url": url},
        store={"root": "store"},
        logs={"dir": "log"},
        locks={"dir": "lock"},
        ftp={"source": "queue", "settle_seconds": "0", "after_ingest": "keep"},
    )
    return w


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def stored_bytes(store: Path, digest: str) -> bytes:
    """The original bytes of a stored file, read with the stdlib gzip (not our code)."""
    return gzip.decompress((store / digest[:2] / f"{digest}.gz").read_bytes())


def sample_log(i: int, size: int = 2000) -> bytes:
    """A distinct log-like text of about `size` bytes."""
    line = f"Frame {i:5d}:  4398624 rays in 2.53 sec = 1738586.57 rays/sec (RTFM)\n".encode()
    return (b"B R L - C A D   B E N C H M A R K\n" + line * (size // len(line) + 1))[:size]
