"""One `Database` over psycopg2 or sqlite3: same SQL text (`?` placeholders), same tables."""

from __future__ import annotations

import re
import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError, DatabaseUnreachable

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_MIGRATION = re.compile(r"^(\d+)_[\w-]+\.sql$")
_MIGRATE_LOCK = 0x62656E6368  # advisory lock key held while migrating ("bench")
# bound parameters per statement: SQLite's limit (32766 since 3.32), PostgreSQL's is 65535
_MAX_PARAMS = {"sqlite": 30000, "postgresql": 30000}


def now_iso() -> str:
    """The current UTC time as ISO 8601, the one timestamp format both dialects take."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def as_iso(value: Any) -> str | None:
    """A timestamp read back from either dialect, as ISO 8601 text."""
    if value is None or isinstance(value, str):
        return value
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def redact_url(url: str) -> str:
    """The URL with any password removed, safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class Database:
    """A connection plus the dialect it speaks; statements use `?` placeholders."""

    def __init__(self, conn: Any, dialect: str, display_url: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self.display_url = display_url
        self._in_tx = False
        if dialect == "postgresql":
            import psycopg2

            self._errors: tuple[type[BaseException], ...] = (
                psycopg2.OperationalError,
                psycopg2.InterfaceError,
            )
        else:
            self._errors = ()

    # -- statements -------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s") if self.dialect == "postgresql" else sql

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except self._errors as e:
            raise DatabaseUnreachable(f"database {self.display_url}: {_first_line(e)}") from None
        except sqlite3.OperationalError as e:
            text = str(e)
            if any(w in text for w in ("locked", "unable to open", "disk I/O", "readonly")):
                raise DatabaseUnreachable(f"database {self.display_url}: {text}") from None
            raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement and return the cursor."""
        with self._guard():
            cur = self.conn.cursor()
            cur.execute(self._sql(sql), tuple(params))
            return cur

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run a SELECT and return all rows."""
        with self._guard():
            cur = self.conn.cursor()
            cur.execute(self._sql(sql), tuple(params))
            return cur.fetchall() if cur.description is not None else []

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many rows in as few round trips as the driver allows."""
        rows = [tuple(r) for r in rows]
        if not rows:
            return
        with self._guard():
            cur = self.conn.cursor()
            if self.dialect == "postgresql":
                from psycopg2.extras import execute_batch

                execute_batch(cur, self._sql(sql), rows, page_size=200)
            else:
                cur.executemany(sql, rows)

    def insert_rows(
        self,
        table: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        tail: str = "",
        returning: str | None = None,
    ) -> list[tuple]:
        """Insert many rows in a few statements; `tail` may say ON CONFLICT, and RETURNING.

        SQLite gets multi-row VALUES. PostgreSQL gets the rows by COPY into a temporary
        staging table and one INSERT … SELECT from it: psycopg2 quotes every parameter
        of a VALUES list in Python, which made 60,000 result rows cost 1.5 s; COPY 0.3 s.
        `table`, `columns` and `tail` are code constants, never user input.
        """
        rows = [tuple(r) for r in rows]
        out: list[tuple] = []
        if not rows:
            return out
        if self.dialect == "postgresql" and len(rows) > 20:
            return self._copy_insert(table, columns, rows, tail, returning)
        per = max(1, _MAX_PARAMS[self.dialect] // len(columns))
        one = "(" + ", ".join("?" * len(columns)) + ")"
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608 - constants
        end = f"{tail} RETURNING {returning}" if returning else tail
        for i in range(0, len(rows), per):
            part = rows[i : i + per]
            sql = head + ", ".join([one] * len(part)) + end
            params = [v for row in part for v in row]
            if returning:
                out += self.query(sql, params)
            else:
                self.execute(sql, params)
        return out

    def _copy_insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: list[tuple],
        tail: str,
        returning: str | None,
    ) -> list[tuple]:
        names = ", ".join(columns)
        stage = f"stage_{table}"
        with self.transaction(), self._guard():
            cur = self.conn.cursor()
            create = f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS"
            cur.execute(f"{create} SELECT {names} FROM {table} WITH NO DATA")  # noqa: S608
            cur.copy_expert(f"COPY {stage} ({names}) FROM STDIN", _CopyRows(rows))
            sql = f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage}{tail}"  # noqa: S608
            if returning:
                sql += f" RETURNING {returning}"
            cur.execute(sql)
            out = cur.fetchall() if returning else []
            cur.execute(f"TRUNCATE {stage}")
            return out

    def insert_id(self, sql: str, params: Sequence[Any] = ()) -> int | None:
        """Run an INSERT … RETURNING id; None when ON CONFLICT DO NOTHING skipped it."""
        row = self.query(sql + " RETURNING id", params)
        return row[0][0] if row else None

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """One transaction: committed when the block ends, rolled back on any error."""
        if self._in_tx:
            yield self
            return
        begin = "BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN"
        self.execute(begin)
        self._in_tx = True
        try:
            yield self
        except BaseException:
            self._in_tx = False
            try:
                self.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise
        self._in_tx = False
        self.execute("COMMIT")

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection must not mask errors
            pass

    # -- locks ------------------------------------------------------------------------
    def try_source_lock(self, source: str) -> bool:
        """Hold a PostgreSQL advisory lock for `source` for this session.

        Two collectors on two hosts sharing one database then never poll the same
        source at once. SQLite is single-host; the job's flock already serialises it.
        """
        if self.dialect != "postgresql":
            return True
        key = zlib.crc32(source.encode()) | (0x5B << 32)
        row = self.query_one("SELECT pg_try_advisory_lock(?)", (key,))
        return bool(row and row[0])

    # -- schema -----------------------------------------------------------------------
    def _has_migrations_table(self) -> bool:
        if self.dialect == "postgresql":
            row = self.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL")
        else:
            row = self.query_one(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            )
        return bool(row and row[0])

    def migrate(self, sql_dir: Path = SQL_DIR) -> list[int]:
        """Apply the numbered migrations not yet applied; return the versions applied."""
        files = sorted(
            (int(m.group(1)), p)
            for p in (sql_dir / self.dialect).glob("*.sql")
            if (m := _MIGRATION.match(p.name))
        )
        applied: list[int] = []
        if self._has_migrations_table():
            done = {r[0] for r in self.query("SELECT version FROM schema_migrations")}
            if all(v in done for v, _ in files):
                return applied
        with self.transaction():
            if self.dialect == "postgresql":  # two collectors starting at once: one migrates
                self.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATE_LOCK,))
            self.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            done = {r[0] for r in self.query("SELECT version FROM schema_migrations")}
            for version, path in files:
                if version in done:
                    continue
                for statement in _statements(path.read_text(encoding="utf-8")):
                    self.execute(statement)
                self.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, path.name, now_iso()),
                )
                applied.append(version)
        return applied


class _CopyRows:
    """Rows as PostgreSQL COPY text, produced as COPY reads (a file-like `read`)."""

    _ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

    def __init__(self, rows: list[tuple]) -> None:
        self._lines = ("\t".join(map(self._field, row)) + "\n" for row in rows)
        self._buf = b""

    @classmethod
    def _field(cls, v: Any) -> str:
        if v is None:
            return "\\N"
        if isinstance(v, bool):
            return "t" if v else "f"
        if isinstance(v, str):
            return v.translate(cls._ESCAPES)
        return str(v)

    def read(self, size: int = 65536) -> bytes:
        while len(self._buf) < size:
            line = next(self._lines, None)
            if line is None:
                break
            self._buf += line.encode("utf-8")
        chunk, self._buf = self._buf[:size], self._buf[size:]
        return chunk


def _statements(script: str) -> list[str]:
    lines = [ln for ln in script.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def connect(url: str, password: str | None = None, migrate: bool = True) -> Database:
    """Open the database named by `url` (sqlite:///path or postgresql://…) and migrate it."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        db = _connect_sqlite(url)
    elif scheme in ("postgresql", "postgres"):
        db = _connect_postgresql(url, password)
    else:
        raise ConfigError(f"[database] url: unknown database {scheme!r} (use sqlite or postgresql)")
    if migrate:
        db.migrate()
    return db


def _connect_sqlite(url: str) -> Database:
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
    if not path:
        raise ConfigError(f"[database] url = {url!r}: write sqlite:///relative or sqlite:////abs")
    if path != ":memory:":
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatabaseUnreachable(f"database {url}: {e.strerror}") from None
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as e:
        raise DatabaseUnreachable(f"database {url}: {e}") from None
    return Database(conn, "sqlite", url)


def _connect_postgresql(url: str, password: str | None) -> Database:
    import psycopg2

    display = redact_url(url)
    kwargs: dict[str, Any] = {"connect_timeout": 10, "application_name": "benchsync"}
    if password is not None:
        kwargs["password"] = password
    try:
        conn = psycopg2.connect(url, **kwargs)
    except psycopg2.Error as e:
        raise DatabaseUnreachable(f"database {display}: {_first_line(e)}") from None
    conn.autocommit = True
    return Database(conn, "postgresql", display)
