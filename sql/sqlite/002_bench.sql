-- Parsed BRL-CAD benchmark results (benchsync.parse): machines, runs, per-model results.
-- machines.match_key is benchsync.parse.machine_key(): host, CPU model, cores, OS, arch.
-- SQLite: timestamps are ISO 8601 TEXT, complete is 0/1.
CREATE TABLE machines (
    id            INTEGER PRIMARY KEY,
    match_key     TEXT    NOT NULL UNIQUE,
    hostname      TEXT,
    os            TEXT,
    os_release    TEXT,
    arch          TEXT,
    cpu_model     TEXT,
    cpu_vendor    TEXT,
    cpu_mhz       REAL,
    cores         INTEGER,
    sockets       INTEGER,
    first_seen_at TEXT    NOT NULL
);

-- One run log, summary Abs/*vgr pair, per-model rt log or table row; seq orders it in its file.
CREATE TABLE bench_runs (
    id                INTEGER PRIMARY KEY,
    file_id           INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    seq               INTEGER NOT NULL,
    machine_id        INTEGER REFERENCES machines (id),
    kind              TEXT    NOT NULL,
    brlcad_version    TEXT,
    compile_date      TEXT,
    run_date          TEXT,
    run_at            TEXT,
    processors        INTEGER,
    mean_rays_per_sec REAL,
    mean_vgr          REAL,
    vgr_metric        REAL,
    log_vgr           REAL,
    rt_args           TEXT,
    complete          INTEGER NOT NULL,
    parser_version    INTEGER NOT NULL,
    UNIQUE (file_id, seq)
);
CREATE INDEX bench_runs_machine_id ON bench_runs (machine_id);

-- One benchmark model in one run; every per-model *vgr ratio is kept.
CREATE TABLE bench_results (
    id             INTEGER PRIMARY KEY,
    run_id         INTEGER NOT NULL REFERENCES bench_runs (id) ON DELETE CASCADE,
    model          TEXT    NOT NULL,
    rays_per_sec   REAL,
    vgr_ratio      REAL,
    cpu_seconds    REAL,
    wall_seconds   REAL,
    pixels_per_sec REAL,
    rays           INTEGER,
    hits           INTEGER,
    misses         INTEGER,
    verdict        TEXT,
    frames         INTEGER,
    UNIQUE (run_id, model)
);
CREATE INDEX bench_results_model ON bench_results (model);
