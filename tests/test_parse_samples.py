"""The parser on every real BRL-CAD sample, checked against values read by hand from the files."""

from __future__ import annotations

import pytest

from benchsync.parse import MODELS, BenchRun, ParseResult, parse_log
from samples_path import samples_dir

SAMPLES = sorted(p for p in samples_dir().iterdir() if p.is_file() and p.name != "SOURCES.md")
DEFAULT = "run-local-rel7.32.6-epyc2cpu-default"
QUICK = "run-local-rel7.32.6-epyc2cpu-TIMEFRAME1-P1"
TABLES = "doc-benchmark.tr_2005_historical-Abs-vgr-tables.tr"


def parse(name: str) -> ParseResult:
    path = samples_dir() / name
    return parse_log(path.read_bytes(), path.name)


def only_run(name: str) -> BenchRun:
    result = parse(name)
    assert result.status == "parsed", result.reason
    assert len(result.runs) == 1
    return result.runs[0]


def by_model(run: BenchRun) -> dict:
    return {res.model: res for res in run.results}


def test_samples_folder_holds_the_expected_files():
    assert len(SAMPLES) >= 23


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_parses_completely(path):
    result = parse_log(path.read_bytes(), path.name)
    assert result.status == "parsed", result.reason
    assert result.runs
    assert all(run.complete for run in result.runs)
    assert all(run.results for run in result.runs)


def test_run_log_reports_each_models_rays_per_second():
    run = only_run(f"{DEFAULT}_run-22401-benchmark.log")
    assert run.kind == "run_log"
    assert [res.model for res in run.results] == list(MODELS)
    rays = {res.model: res.rays_per_sec for res in run.results}
    assert rays == {
        "moss": 1170205.52,
        "world": 734097.32,
        "star": 642732.28,
        "bldg391": 414687.52,
        "m35": 788166.52,
        "sphflake": 739747.74,
    }


def test_run_log_keeps_every_vgr_ratio_including_sphflake():
    run = only_run(f"{DEFAULT}_run-22401-benchmark.log")
    ratios = [res.vgr_ratio for res in run.results]
    assert ratios == [8541.02, 10946.87, 11463.03, 7771.50, 11149.61, 49.91]


def test_run_log_reports_means_metric_and_logarithm():
    run = only_run(f"{DEFAULT}_run-22401-benchmark.log")
    assert run.mean_rays_per_sec == 748272.81
    assert run.mean_vgr == 8320.32
    assert run.vgr_metric == 8320
    assert run.log_vgr == 3.92
    assert run.rt_args is None


def test_run_log_reads_version_date_and_frames():
    run = only_run(f"{DEFAULT}_run-22401-benchmark.log")
    assert run.brlcad_version == "7.32.6"
    assert run.run_date == "Fri Dec  4 19:44:39 UTC 2026"
    assert run.run_at == "2026-12-04T19:44:39+00:00"
    models = by_model(run)
    assert models["moss"].frames == 11
    assert models["moss"].rays == 90808320
    assert models["m35"].frames == 12
    assert all(res.verdict == "RIGHT" for res in run.results)


def test_run_log_reads_machine_from_uname_and_system_blocks():
    machine = only_run(f"{DEFAULT}_run-22401-benchmark.log").machine
    assert machine.hostname == "vm"
    assert machine.os == "Linux"
    assert machine.os_release == "6.18.44-fc-v1252"
    assert machine.arch == "x86_64"
    assert machine.cpu_model == "AMD EPYC"
    assert machine.cpu_vendor == "AuthenticAMD"
    assert machine.cpu_mhz == 2445.412
    assert machine.cores == 2
    assert machine.sockets == 1


def test_quick_run_log_reports_rt_args_and_processors_from_the_vgr_line():
    run = only_run(f"{QUICK}_run-5018-benchmark.log")
    assert run.rt_args == "-P1"
    assert run.processors == 1
    assert run.vgr_metric == 7304
    assert run.log_vgr == 3.86
    assert run.mean_vgr == 7304.08
    models = by_model(run)
    assert models["moss"].rays_per_sec == 1190159.00
    assert models["sphflake"].vgr_ratio == 44.86
    assert all(res.frames == 1 for res in run.results)


def test_stdout_transcript_has_results_but_no_cpu_details():
    run = only_run(f"{DEFAULT}_stdout-transcript.txt")
    assert run.kind == "run_log"
    assert run.mean_vgr == 8320.32
    assert run.machine.hostname == "vm"
    assert run.machine.cpu_model is None
    assert run.machine.cores is None


def test_summary_file_gives_one_run_per_abs_vgr_pair():
    run = only_run(f"{DEFAULT}_summary")
    assert run.kind == "summary"
    assert run.machine.hostname == "vm"
    assert run.run_date == "Fri Dec  4 20:17:49 UTC 2026"
    assert run.run_at == "2026-12-04T20:17:49+00:00"
    assert run.mean_rays_per_sec == 748272.81
    assert run.mean_vgr == 8320.32
    assert by_model(run)["bldg391"].rays_per_sec == 414687.52
    assert by_model(run)["bldg391"].vgr_ratio == 7771.50


def test_quick_summary_file_keeps_the_trailing_rt_args():
    run = only_run(f"{QUICK}_summary")
    assert run.rt_args == "-P1"
    assert run.mean_rays_per_sec == 667972.44


def test_modern_rt_log_reads_timings_processors_and_compile_date():
    run = only_run(f"{DEFAULT}_moss.log")
    assert run.kind == "rt_log"
    assert run.brlcad_version == "7.32.6"
    assert run.compile_date == "Fri, 04 Dec 2026 19:32:48 UTC"
    assert run.processors == 2
    assert run.machine.hostname == "vm"
    (res,) = run.results
    assert res.model == "moss"
    assert res.rays_per_sec == 1170205.52
    assert res.rays == 90808320
    assert res.cpu_seconds == 155.201
    assert res.wall_seconds == 78.2836
    assert res.pixels_per_sec == 3378.13
    assert (res.hits, res.misses) == (81594880, 39363072)


@pytest.mark.parametrize("model", MODELS)
def test_modern_rt_logs_agree_with_the_run_logs_abs_line(model):
    run_log = only_run(f"{DEFAULT}_run-22401-benchmark.log")
    rt_log = only_run(f"{DEFAULT}_{model}.log")
    assert rt_log.results[0].model == model
    assert rt_log.results[0].rays_per_sec == by_model(run_log)[model].rays_per_sec


def test_1991_vax_rt_log_reads_old_shot_timing():
    run = only_run("ref-vgr-vax780-rel3.26-1991_moss.log")
    assert run.brlcad_version == "3.26"
    assert run.compile_date == "Mon Aug 26 22:39:04 EDT 1991"
    assert run.machine.hostname == "vgr.brl.mil"
    (res,) = run.results
    assert res.model == "moss"
    assert res.rays_per_sec == 137.01
    assert res.rays == 343042
    assert res.cpu_seconds == pytest.approx(2503.7 + 184.1)
    assert res.wall_seconds == 1 * 3600 + 20 * 60 + 23
    assert res.pixels_per_sec == 104.70
    assert (res.hits, res.misses) == (316743, 171967)


def test_1998_sphflake_rt_log_reads_two_processors_and_new_timing():
    run = only_run("ref-window-arl-rel4.6-1998-2cpu_sphflake.log")
    assert run.brlcad_version == "4.6"
    assert run.compile_date == "Wed Dec 30 23:53:51 EST 1998"
    assert run.processors == 2
    assert run.machine.hostname == "window.arl.mil"
    (res,) = run.results
    assert res.model == "sphflake"
    assert res.rays_per_sec == 14821.48
    assert res.cpu_seconds == 176.367
    assert res.wall_seconds == 90.6839


@pytest.mark.parametrize(
    ("model", "rtfm"),
    [("moss", 128.64), ("world", 54.47), ("star", 45.17), ("bldg391", 40.35), ("m35", 49.02)],
)
def test_1989_rt_logs_match_the_release_3_7_vgr_row(model, rtfm):
    run = only_run(f"ref-vgr-vax780-rel3.x-c1989_{model}.log")
    assert run.brlcad_version is None
    assert run.machine.hostname is None
    assert run.results[0].model == model
    assert run.results[0].rays_per_sec == rtfm
    table = parse(TABLES).runs
    vgr_row = next(r for r in table if r.brlcad_version == "3.7" and r.machine.hostname == "vgr")
    assert by_model(vgr_row)[model].rays_per_sec == rtfm


def test_1989_rt_log_takes_its_model_from_the_db_title_not_the_file_name():
    data = (samples_dir() / "ref-vgr-vax780-rel3.x-c1989_world.log").read_bytes()
    result = parse_log(data, "unrelated-name.txt")
    assert result.runs[0].results[0].model == "world"


def test_troff_tables_give_131_pairs_and_68_release_4_4_rows():
    runs = parse(TABLES).runs
    assert all(run.kind == "table" for run in runs)
    versions: dict[str, int] = {}
    for run in runs:
        versions[run.brlcad_version] = versions.get(run.brlcad_version, 0) + 1
    assert versions == {"1.20": 37, "2.3": 28, "3.0": 22, "3.7": 20, "4.0": 24, "4.4": 68}


def test_troff_table_pair_reads_rays_ratios_and_notes():
    first = next(r for r in parse(TABLES).runs if r.brlcad_version == "1.20")
    assert first.machine.hostname == "tek4132"
    assert first.run_date == "12-Feb-1987"
    assert first.run_at == "1987-02-12"
    assert [res.model for res in first.results] == ["moss", "world", "star", "bldg391"]
    assert [res.rays_per_sec for res in first.results] == [80.5, 44.0, 33.9, 31.4]
    assert [res.vgr_ratio for res in first.results] == [0.72, 0.69, 0.62, 0.62]
    assert first.mean_rays_per_sec is None
    assert first.mean_vgr is None
    assert first.notes == ["UTek 2.3"]


def test_troff_table_marks_dagger_as_wrong_and_dash_as_not_run():
    runs = [r for r in parse(TABLES).runs if r.brlcad_version == "1.20"]
    indigo = next(r for r in runs if r.machine.hostname == "indigo")
    assert by_model(indigo)["star"].verdict == "WRONG"
    assert by_model(indigo)["star"].rays_per_sec is None
    assert by_model(indigo)["bldg391"].rays_per_sec == 101.8
    ardec = next(r for r in runs if r.machine.hostname == "ardec-3")
    assert sorted(by_model(ardec)) == ["star", "world"]


def test_troff_table_reads_cpu_column_and_five_models_without_sphflake():
    runs = [r for r in parse(TABLES).runs if r.brlcad_version == "3.7"]
    ovoyage = next(r for r in runs if r.machine.hostname == "ovoyage")
    assert ovoyage.processors == 2
    assert ovoyage.run_at == "1989-06-19"
    assert [res.model for res in ovoyage.results] == ["moss", "world", "star", "bldg391", "m35"]
    assert ovoyage.mean_rays_per_sec == 1085.85
    assert ovoyage.mean_vgr == 17.77
    nova = next(r for r in runs if r.machine.hostname == "nova")
    assert "m35" not in by_model(nova)


def test_troff_table_keeps_dash_p_notes_of_the_vgr_row_as_rt_args():
    runs = [r for r in parse(TABLES).runs if r.brlcad_version == "3.0"]
    ardec = next(r for r in runs if r.machine.hostname == "ardec-3")
    assert ardec.rt_args == "-P 1"
    assert ardec.processors == 1


def test_release_4_4_rows_are_vgr_ratios():
    runs = [r for r in parse(TABLES).runs if r.brlcad_version == "4.4"]
    vapor = runs[0]
    assert vapor.machine.hostname == "vapor"
    assert vapor.rt_args == "-P18 static"
    assert vapor.processors == 18
    assert by_model(vapor)["moss"].vgr_ratio == 810.91
    assert vapor.mean_vgr == 1007
    vision = next(r for r in runs if r.machine.hostname == "vision")
    assert vision.mean_vgr == 1.22
    vgr = next(r for r in runs if r.machine.hostname == "vgr")
    assert {res.vgr_ratio for res in vgr.results} == {1.0}
