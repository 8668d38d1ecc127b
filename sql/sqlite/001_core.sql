-- Core tables: distinct contents, deliveries, what each source delivered, runs, discrepancies.
CREATE TABLE files (
    id            INTEGER PRIMARY KEY,
    md5           TEXT    NOT NULL UNIQUE,
    size          INTEGER NOT NULL,
    stored_path   TEXT    NOT NULL,
    first_seen_at TEXT    NOT NULL,
    parse_status  TEXT,
    parse_detail  TEXT
);

CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    job         TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    started_at  TEXT    NOT NULL,
    finished_at TEXT,
    status      TEXT    NOT NULL DEFAULT 'running',
    n_seen      INTEGER NOT NULL DEFAULT 0,
    n_new       INTEGER NOT NULL DEFAULT 0,
    n_dup       INTEGER NOT NULL DEFAULT 0,
    n_failed    INTEGER NOT NULL DEFAULT 0,
    n_skipped   INTEGER NOT NULL DEFAULT 0,
    log_path    TEXT,
    detail      TEXT
);
CREATE INDEX runs_job_id ON runs (job, id);

CREATE TABLE receipts (
    id            INTEGER PRIMARY KEY,
    file_id       INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    channel       TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    item          TEXT    NOT NULL,
    original_name TEXT,
    submitter     TEXT,
    received_at   TEXT    NOT NULL,
    run_id        INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    meta          TEXT,
    UNIQUE (source, item, file_id)
);
CREATE INDEX receipts_file_id ON receipts (file_id);

CREATE TABLE source_items (
    id            INTEGER PRIMARY KEY,
    source        TEXT    NOT NULL,
    item          TEXT    NOT NULL,
    name          TEXT,
    size          INTEGER,
    mtime         REAL,
    status        TEXT    NOT NULL,
    reason        TEXT,
    file_id       INTEGER REFERENCES files (id) ON DELETE SET NULL,
    first_seen_at TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    UNIQUE (source, item)
);

CREATE TABLE source_state (
    source TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT,
    PRIMARY KEY (source, key)
);

CREATE TABLE discrepancies (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,
    subject         TEXT NOT NULL,
    detail          TEXT,
    found_run_id    INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    resolved_run_id INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    first_found_at  TEXT NOT NULL,
    last_found_at   TEXT NOT NULL,
    resolution      TEXT
);
CREATE UNIQUE INDEX discrepancies_open ON discrepancies (kind, subject) WHERE resolved_run_id IS NULL;
