-- Parsed BRL-CAD benchmark results (benchsync.parse): machines, runs, per-model results.
-- machines.match_key is benchsync.parse.machine_key(): host, CPU model, cores, OS, arch.
CREATE TABLE machines (
    id            BIGSERIAL PRIMARY KEY,
    match_key     TEXT    NOT NULL UNIQUE,
    hostname      TEXT,
    os            TEXT,
    os_release    TEXT,
    arch          TEXT,
    cpu_model     TEXT,
    cpu_vendor    TEXT,
    cpu_mhz       DOUBLE PRECISION,
    cores         INTEGER,
    sockets       INTEGER,
    first_seen_at TIMESTAMPTZ NOT NULL
);

-- One run log, summary Abs/*vgr pair, per-model rt log or table row; seq orders it in its file.
CREATE TABLE bench_runs (
    id                BIGSERIAL PRIMARY KEY,
    file_id           BIGINT  NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    seq               INTEGER NOT NULL,
    machine_id        BIGINT  REFERENCES machines (id),
    kind              TEXT    NOT NULL,
    brlcad_version    TEXT,
    compile_date      TEXT,
    run_date          TEXT,
    run_at            TIMESTAMPTZ,
    processors        INTEGER,
    mean_rays_per_sec DOUBLE PRECISION,
    mean_vgr          DOUBLE PRECISION,
    vgr_metric        DOUBLE PRECISION,
    log_vgr           DOUBLE PRECISION,
    rt_args           TEXT,
    complete          BOOLEAN NOT NULL,
    parser_version    INTEGER NOT NULL,
    UNIQUE (file_id, seq)
);
CREATE INDEX bench_runs_machine_id ON bench_runs (machine_id);

-- One benchmark model in one run; every per-model *vgr ratio is kept.
CREATE TABLE bench_results (
    id             BIGSERIAL PRIMARY KEY,
    run_id         BIGINT  NOT NULL REFERENCES bench_runs (id) ON DELETE CASCADE,
    model          TEXT    NOT NULL,
    rays_per_sec   DOUBLE PRECISION,
    vgr_ratio      DOUBLE PRECISION,
    cpu_seconds    DOUBLE PRECISION,
    wall_seconds   DOUBLE PRECISION,
    pixels_per_sec DOUBLE PRECISION,
    rays           BIGINT,
    hits           BIGINT,
    misses         BIGINT,
    verdict        TEXT,
    frames         INTEGER,
    UNIQUE (run_id, model)
);
CREATE INDEX bench_results_model ON bench_results (model);
