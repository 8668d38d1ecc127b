"""PostgreSQL: a throwaway cluster per session (``start-postgres.sh``) or an external server."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._proc import (
    LOOPBACK,
    ServerUnavailable,
    as_root,
    register,
    start_script,
    tail,
    wait_gone,
)
from .daemon import Daemon

if TYPE_CHECKING:
    import psycopg2.extensions


@dataclass(eq=False)
class PgServer(Daemon):
    """A PostgreSQL server: a throwaway cluster (``dir`` set) or an external one (``dir`` None).

    ``dsn(dbname)`` gives a libpq URL. ``kill_hard()``/``restart()`` simulate "database down"
    and back on the same port; they need a cluster started here. ``stop()`` shuts the cluster
    down (fast mode) and deletes its directory; it is a no-op for an external server.
    """

    host: str
    port: int
    user: str = "postgres"
    dir: Path | None = None
    password: str | None = None
    maintenance_db: str = "postgres"
    bin_dir: Path | None = None
    pid_file = "data/postmaster.pid"
    log_file = "postgres.log"

    @property
    def external(self) -> bool:
        """True for a server given by BENCHSYNC_TEST_PG: never stopped or killed here."""
        return self.dir is None

    def dsn(self, dbname: str | None = None) -> str:
        """libpq URL for ``dbname`` (default: the maintenance database)."""
        user = urllib.parse.quote(self.user, safe="")
        if self.password is not None:
            user += ":" + urllib.parse.quote(self.password, safe="")
        host = urllib.parse.quote(self.host, safe="") if self.host.startswith("/") else self.host
        db = urllib.parse.quote(dbname or self.maintenance_db, safe="")
        return f"postgresql://{user}@{host}:{self.port}/{db}"

    def connect(self, dbname: str | None = None) -> psycopg2.extensions.connection:
        """Open a psycopg2 connection (the caller closes it)."""
        import psycopg2

        return psycopg2.connect(self.dsn(dbname), connect_timeout=5)

    def _admin(self, statement: Any) -> None:
        conn = self.connect()
        try:
            conn.autocommit = True  # CREATE/DROP DATABASE refuse to run in a transaction
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        from psycopg2 import sql

        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` even if a failed test left connections open (PG 13+ ``FORCE``)."""
        from psycopg2 import sql

        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _pg_ctl(self, *args: str) -> Any:
        assert self.dir is not None and self.bin_dir is not None and self._keeper is not None
        pre = ["runuser", "-u", "postgres", "--"] if as_root() else []
        cmd = [*pre, str(self.bin_dir / "pg_ctl"), "-D", str(self.dir / "data"), *args]
        return self._keeper.run(cmd)  # under the keeper: a restarted postmaster stays ours

    def _local(self, what: str) -> Path:
        if self.dir is None or self._keeper is None:
            raise ServerUnavailable(f"{what} needs a cluster started by the tests, not external")
        return self.dir

    def kill_hard(self) -> None:
        """SIGKILL the postmaster and every backend: clients see the database vanish mid-query."""
        d = self._local("kill_hard()")
        super().kill()
        # as after a host crash: stale lock files (postgres would also cope, given time)
        (d / "data" / "postmaster.pid").unlink(missing_ok=True)
        (d / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)

    def restart(self) -> None:
        """Start the cluster again on the same port (after :meth:`kill_hard`: crash recovery)."""
        d = self._local("restart()")
        if self.pid is not None:
            return
        res = self._pg_ctl("-l", str(d / "postgres.log"), "-w", "-t", "30", "start")
        if res.returncode != 0:
            raise ServerUnavailable(
                f"postgres restart failed:\n{res.stdout}{res.stderr}\n{tail(d / 'postgres.log')}"
            )

    def kill(self) -> None:
        """The same as :meth:`kill_hard`: a bare SIGKILL would leave stale lock files."""
        self.kill_hard()

    def _shutdown(self) -> None:
        """Shut the cluster down (fast mode) before the keeper kills what is left."""
        pid = self.pid
        if pid is not None:
            self._pg_ctl("-m", "fast", "-w", "-t", "10", "stop")
            wait_gone(pid, 5)


def start_postgres() -> PgServer:
    """Start a throwaway cluster (initdb, trust auth, fsync off) on a free port: ≈0.7 s."""
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        raise ServerUnavailable("no /usr/lib/postgresql/*/bin/initdb: apt-get install postgresql")
    keeper, info = start_script("postgres", "PGDIR")
    pg = PgServer(
        host=info["PGHOST"],
        port=int(info["PGPORT"]),
        user=info["PGUSER"],
        dir=Path(info["PGDIR"]),
        bin_dir=Path(info["PGBIN"]),
        _keeper=keeper,
    )
    register(pg)
    return pg


def external_postgres(url: str) -> PgServer:
    """Handle for an existing server given as a libpq URL or ``key=value`` DSN."""
    from psycopg2.extensions import parse_dsn

    try:
        params = parse_dsn(url)
    except Exception as exc:
        raise ServerUnavailable(f"BENCHSYNC_TEST_PG is not a valid DSN: {exc}") from exc
    return PgServer(
        host=params.get("host") or LOOPBACK,
        port=int(params.get("port") or 5432),
        user=params.get("user") or "postgres",
        password=params.get("password"),
        maintenance_db=params.get("dbname") or "postgres",
    )
