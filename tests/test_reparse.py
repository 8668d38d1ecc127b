"""Parsing in the pipeline, `reparse` over the store, and `show`."""

from __future__ import annotations

from conftest import Workspace
from samples_path import samples_dir

RUN_LOG = "run-local-rel7.32.6-epyc2cpu-default_run-22401-benchmark.log"


def _file_samples(ws: Workspace, *names: str) -> None:
    for name in names:
        (ws.queue / name).write_bytes((samples_dir() / name).read_bytes())
    assert ws.run("ftp-sync").code == 0


def test_filing_a_run_log_stores_its_machine_run_and_six_results(ws: Workspace) -> None:
    _file_samples(ws, RUN_LOG)
    [(host, version, vgr)] = ws.rows(
        "SELECT m.hostname, r.brlcad_version, r.vgr_metric FROM bench_runs r"
        " JOIN machines m ON m.id = r.machine_id"
    )
    assert (host, version, vgr) == ("vm", "7.32.6", 8320)
    rays = dict(ws.rows("SELECT model, rays_per_sec FROM bench_results"))
    assert rays["moss"] == 1170205.52 and rays["sphflake"] == 739747.74


def test_a_file_that_is_not_a_log_is_filed_and_marked_so(ws: Workspace) -> None:
    (ws.queue / "notes.txt").write_bytes(b"shopping list: milk, eggs\n")
    assert ws.run("ftp-sync").code == 0
    assert ws.rows("SELECT parse_status FROM files") == [("not_a_benchmark_log",)]
    assert ws.count("bench_runs") == 0


def test_reparse_all_replaces_rows_and_is_idempotent(ws: Workspace) -> None:
    _file_samples(ws, RUN_LOG, "run-local-rel7.32.6-epyc2cpu-default_summary")
    before = ws.rows("SELECT model, rays_per_sec FROM bench_results ORDER BY model, rays_per_sec")
    machines = ws.count("machines")
    ws.rows("UPDATE files SET parse_status = 'failed'")
    ws.rows("DELETE FROM bench_runs")
    for _ in range(2):
        result = ws.run("reparse", "--all")
        assert result.code == 0, result.err
        after = ws.rows(
            "SELECT model, rays_per_sec FROM bench_results ORDER BY model, rays_per_sec"
        )
        assert after == before
    assert {r[0] for r in ws.rows("SELECT parse_status FROM files")} == {"parsed"}
    assert ws.count("machines") == machines, "a reparse matches the machines it made before"


def test_reparse_by_status_and_unknown_md5(ws: Workspace) -> None:
    _file_samples(ws, RUN_LOG)
    ws.rows("UPDATE files SET parse_status = 'failed'")
    assert ws.run("reparse", "--status", "failed").code == 0
    assert ws.rows("SELECT parse_status FROM files") == [("parsed",)]
    result = ws.run("reparse", "0" * 32)
    assert result.code == 1
    assert "reparse failed md5=" + "0" * 32 + " reason=no such file" in ws.log_text("reparse")


def test_reparse_without_a_choice_is_a_usage_error(ws_sqlite: Workspace) -> None:
    result = ws_sqlite.run("reparse")
    assert result.code == 2
    assert "--all, --status STATUS or MD5" in result.err


def test_show_prints_receipt_and_parsed_values(ws_sqlite: Workspace) -> None:
    ws = ws_sqlite
    _file_samples(ws, RUN_LOG)
    [(digest,)] = ws.rows("SELECT md5 FROM files")
    result = ws.run("show", digest)
    assert result.code == 0
    assert f"item {RUN_LOG}" in result.out
    assert "BRL-CAD 7.32.6" in result.out
    assert "moss      rays/s 1170205.52" in result.out
    missing = ws.run("show", "f" * 32)
    assert missing.code == 1 and "no file with md5" in missing.err
