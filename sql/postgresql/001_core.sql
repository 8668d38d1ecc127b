-- Core tables: distinct contents, deliveries, what each source delivered, runs, discrepancies.
CREATE TABLE files (
    id            BIGSERIAL PRIMARY KEY,
    md5           TEXT    NOT NULL UNIQUE,
    size          BIGINT  NOT NULL,
    stored_path   TEXT    NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL,
    parse_status  TEXT,
    parse_detail  TEXT
);

CREATE TABLE runs (
    id          BIGSERIAL PRIMARY KEY,
    job         TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    pid         BIGINT  NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    status      TEXT    NOT NULL DEFAULT 'running',
    n_seen      BIGINT  NOT NULL DEFAULT 0,
    n_new       BIGINT  NOT NULL DEFAULT 0,
    n_dup       BIGINT  NOT NULL DEFAULT 0,
    n_failed    BIGINT  NOT NULL DEFAULT 0,
    n_skipped   BIGINT  NOT NULL DEFAULT 0,
    log_path    TEXT,
    detail      TEXT
);
CREATE INDEX runs_job_id ON runs (job, id);

CREATE TABLE receipts (
    id            BIGSERIAL PRIMARY KEY,
    file_id       BIGINT  NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    channel       TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    item          TEXT    NOT NULL,
    original_name TEXT,
    submitter     TEXT,
    received_at   TIMESTAMPTZ NOT NULL,
    run_id        BIGINT  REFERENCES runs (id) ON DELETE SET NULL,
    meta          TEXT,
    UNIQUE (source, item, file_id)
);
CREATE INDEX receipts_file_id ON receipts (file_id);

CREATE TABLE source_items (
    id            BIGSERIAL PRIMARY KEY,
    source        TEXT    NOT NULL,
    item          TEXT    NOT NULL,
    name          TEXT,
    size          BIGINT,
    mtime         DOUBLE PRECISION,
    status        TEXT    NOT NULL,
    reason        TEXT,
    file_id       BIGINT  REFERENCES files (id) ON DELETE SET NULL,
    first_seen_at TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (source, item)
);

CREATE TABLE source_state (
    source TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT,
    PRIMARY KEY (source, key)
);

CREATE TABLE discrepancies (
    id              BIGSERIAL PRIMARY KEY,
    kind            TEXT NOT NULL,
    subject         TEXT NOT NULL,
    detail          TEXT,
    found_run_id    BIGINT  REFERENCES runs (id) ON DELETE SET NULL,
    resolved_run_id BIGINT  REFERENCES runs (id) ON DELETE SET NULL,
    first_found_at  TIMESTAMPTZ NOT NULL,
    last_found_at   TIMESTAMPTZ NOT NULL,
    resolution      TEXT
);
CREATE UNIQUE INDEX discrepancies_open ON discrepancies (kind, subject) WHERE resolved_run_id IS NULL;
