"""All SQL lives in this package; the rest of benchsync calls its functions.

`connection` opens PostgreSQL (psycopg2) or SQLite behind one small `Database` class and
applies the numbered migrations in `sql/<dialect>/`; the other modules hold the queries
of one concern each (filing, runs, discrepancies, parsed benchmark rows).
"""

from .connection import Database, connect, redact_url

__all__ = ["Database", "connect", "redact_url"]
