"""Behaviour of the parser on hand-made variations of the real log formats."""

from __future__ import annotations

import pytest

from benchsync.parse import (
    PARSER_VERSION,
    Machine,
    looks_like_benchmark_log,
    machine_key,
    parse_log,
)
from benchsync.parse.model import iso_date
from samples_path import samples_dir

RUN_LOG = (
    samples_dir() / "run-local-rel7.32.6-epyc2cpu-default_run-22401-benchmark.log"
).read_bytes()
QUICK_LOG = (
    samples_dir() / "run-local-rel7.32.6-epyc2cpu-TIMEFRAME1-P1_run-5018-benchmark.log"
).read_bytes()

ABS_5 = (
    b"Abs  wax-2.arl.army.mil 62.28\t58.58\t65.24\t67.39\t59.31\t62.56"
    b"\tTue Jan  3 10:00:00 EST 1995\n"
)
VGR_5 = b"*vgr wax-2.arl.army.mil 0.45\t0.87\t1.16\t1.25\t0.86\t0.92\t-P1\n"


def test_parser_version_is_a_positive_int():
    assert isinstance(PARSER_VERSION, int) and PARSER_VERSION >= 1


def test_crlf_line_endings_give_the_same_result():
    plain = parse_log(RUN_LOG)
    crlf = parse_log(RUN_LOG.replace(b"\n", b"\r\n"))
    assert crlf == plain


def test_run_log_cut_before_the_summary_is_partial_and_incomplete():
    cut = RUN_LOG[: RUN_LOG.index(b"+++++ m35")]
    result = parse_log(cut)
    assert result.status == "partial"
    assert "summary" in result.reason
    (run,) = result.runs
    assert run.complete is False
    assert [res.model for res in run.results] == ["moss", "world", "star", "bldg391"]
    assert run.results[0].rays_per_sec == 1170205.52  # last RTFM frame of moss


def test_run_log_cut_inside_the_abs_line_is_partial():
    cut = RUN_LOG[: RUN_LOG.index(b"414687.52")]
    result = parse_log(cut)
    assert result.status == "partial"
    assert result.runs[0].complete is False


def test_run_log_header_alone_is_partial_not_a_non_log():
    result = parse_log(RUN_LOG[:200])
    assert result.status == "partial"


def test_benchmark_that_did_not_complete_is_partial_even_with_the_script_typo():
    text = QUICK_LOG.split(b"\nThe following files")[0]
    text = text.replace(b"m35.pix: answers are RIGHT", b"m35.pix:  WRONG WRONG WRONG WRONG")
    text += b"\n\nTHE BENCHARK ANALYSIS DID NOT COMPLETE SUCCESSFULLY.\nBenchmark testing failed.\n"
    result = parse_log(text)
    assert result.status == "partial"
    run = result.runs[0]
    assert run.complete is False
    assert {res.model: res.verdict for res in run.results}["m35"] == "WRONG"


def test_comparison_failure_and_raytrace_error_are_kept_as_verdicts():
    text = QUICK_LOG.replace(
        b"star.pix: answers are RIGHT", b"star.pix:  BENCHMARK COMPARISON FAILURE"
    ).replace(b"+++++ world\n", b"+++++ world\nRAYTRACE ERROR\n")
    run = parse_log(text).runs[0]
    verdicts = {res.model: res.verdict for res in run.results}
    assert verdicts["star"] == "BENCHMARK COMPARISON FAILURE"
    assert verdicts["world"] == "RIGHT"  # the pixcmp verdict comes after the error line


def test_two_concatenated_run_logs_give_two_runs():
    result = parse_log(RUN_LOG + b"\n" + QUICK_LOG)
    assert result.status == "parsed"
    assert [run.mean_vgr for run in result.runs] == [8320.32, 7304.08]
    assert result.runs[1].machine.cpu_model == "AMD EPYC"


def test_hostnames_with_digits_dots_and_dashes_are_kept_whole():
    text = QUICK_LOG.replace(b" vm ", b" node-07.lab2.example.org ")
    run = parse_log(text).runs[0]
    assert run.machine.hostname == "node-07.lab2.example.org"
    summary = parse_log(ABS_5 + VGR_5).runs[0]
    assert summary.machine.hostname == "wax-2.arl.army.mil"


def test_latin1_and_invalid_utf8_bytes_do_not_stop_parsing():
    text = QUICK_LOG.replace(b" vm ", b" m\xe4schine ").replace(b"Logging", b"\xff\xfeLogging")
    result = parse_log(text)
    assert result.status == "parsed"
    assert result.runs[0].machine.hostname == "m\xe4schine"


def test_noise_lines_between_sections_are_ignored():
    text = QUICK_LOG.replace(b"+++++ star\n", b"> quoted reply\n\t\trandom: 1 2 3\n+++++ star\n")
    assert parse_log(text) == parse_log(QUICK_LOG)


def test_five_model_summary_has_no_sphflake_and_keeps_the_date():
    result = parse_log(ABS_5 + VGR_5, "summary")
    assert result.status == "parsed"
    (run,) = result.runs
    assert [res.model for res in run.results] == ["moss", "world", "star", "bldg391", "m35"]
    assert run.mean_rays_per_sec == 62.56
    assert run.mean_vgr == 0.92
    assert run.run_date == "Tue Jan  3 10:00:00 EST 1995"
    assert run.run_at == "1995-01-03T10:00:00-05:00"
    assert run.rt_args == "-P1"
    assert run.processors == 1


def test_summary_lines_separated_by_spaces_instead_of_tabs_parse_the_same():
    spaced = (ABS_5 + VGR_5).replace(b"\t", b"   ")
    assert parse_log(spaced) == parse_log(ABS_5 + VGR_5)


def test_summary_file_with_several_runs_gives_one_run_per_pair():
    data = (samples_dir() / "run-local-rel7.32.6-epyc2cpu-default_summary").read_bytes()
    result = parse_log(data + ABS_5 + VGR_5 + data)
    assert len(result.runs) == 3
    assert [run.machine.hostname for run in result.runs] == ["vm", "wax-2.arl.army.mil", "vm"]


def test_summary_abs_line_without_its_vgr_line_is_partial():
    result = parse_log(VGR_5 + ABS_5)
    assert result.status == "partial"
    assert [run.complete for run in result.runs] == [False, False]


def test_rt_log_without_model_in_content_takes_it_from_the_file_name():
    data = b"Frame     0:   343042 rays   in    2503.79 sec =     137.01 rays/sec (RTFM)\n"
    result = parse_log(data, "bench/out/sphflake.log")
    assert result.status == "parsed"
    assert result.runs[0].results[0].model == "sphflake"
    unnamed = parse_log(data)
    assert unnamed.runs[0].results[0].model == "unknown"


def test_rt_log_cut_before_its_rtfm_line_is_partial():
    data = (samples_dir() / "ref-vgr-vax780-rel3.26-1991_moss.log").read_bytes()
    result = parse_log(data[: data.index(b"SHOT:")], "moss.log")
    assert result.status == "partial"
    assert result.runs[0].complete is False


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01\x02\xff" * 100,
        b"Hello Sean,\n\nthe benchmark was great, thanks!\n",
        b"Abs\n*vgr\n",
        b"+++++\nFrame\n",
        bytes(range(256)) * 8,
    ],
    ids=["empty", "binary", "mail", "bare-tags", "bare-markers", "all-bytes"],
)
def test_non_logs_are_reported_as_such_and_never_raise(data):
    result = parse_log(data)
    assert result.status in ("not_a_benchmark_log", "partial")
    assert all(not run.complete for run in result.runs)


def test_random_text_is_not_a_benchmark_log():
    result = parse_log(b"lorem ipsum dolor sit amet\n" * 50)
    assert result.status == "not_a_benchmark_log"
    assert result.runs == []
    assert result.reason


def test_str_input_is_accepted_too():
    assert parse_log(QUICK_LOG.decode()).status == "parsed"


def test_huge_numbers_become_none_instead_of_overflowing():
    data = b"Frame 0: " + b"9" * 5000 + b" rays in 1.0 sec = " + b"9" * 400 + b" rays/sec (RTFM)\n"
    result = parse_log(data, "moss.log")
    res = result.runs[0].results[0]
    assert res.rays is None
    assert res.rays_per_sec is None


def test_looks_like_benchmark_log_accepts_run_logs_and_pasted_summaries():
    assert looks_like_benchmark_log(RUN_LOG.decode())
    mail = "Hi,\nhere are my numbers:\n\n" + (ABS_5 + VGR_5).decode() + "\n-- \nJoe\n"
    assert looks_like_benchmark_log(mail)
    assert parse_log(mail.encode()).runs[0].mean_vgr == 0.92


def test_looks_like_benchmark_log_rejects_ordinary_mail():
    assert not looks_like_benchmark_log("")
    assert not looks_like_benchmark_log("Abs. Please vgr the meeting notes.\nThanks\n")
    assert not looks_like_benchmark_log("Subject: lunch\n\nAbsolutely, see you at noon.\n")


def test_machine_key_is_normalized_and_ignores_unstable_fields():
    one = Machine("VM.", os="Linux", arch="x86_64", cpu_model="AMD  EPYC", cores=2, cpu_mhz=2445.4)
    two = Machine("vm", os="linux", arch="x86_64", cpu_model="amd epyc", cores=2, cpu_mhz=2999.0)
    assert machine_key(one) == machine_key(two)
    assert machine_key(one) != machine_key(Machine("vm", cores=4))
    assert machine_key(Machine(None)) == machine_key(Machine(None))


def test_machine_key_of_the_sample_run_names_host_cpu_and_cores():
    key = machine_key(parse_log(RUN_LOG).runs[0].machine)
    assert key == "host=vm;cpu=amd epyc;cores=2;os=linux;arch=x86_64"


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("Fri Dec  4 19:44:39 UTC 2026", "2026-12-04T19:44:39+00:00"),
        ("Mon Aug 26 22:39:04 EDT 1991", "1991-08-26T22:39:04-04:00"),
        ("Fri Dec  4 19:44:39 XYZT 2026", "2026-12-04T19:44:39"),
        ("Fri, 04 Dec 2026 19:32:48 UTC", "2026-12-04T19:32:48+00:00"),
        ("2026-12-04 19:44:39", "2026-12-04T19:44:39"),
        ("19-June-1989", "1989-06-19"),
        ("Fri Feb 31 10:00:00 UTC 2026", None),
        ("sometime last week", None),
    ],
)
def test_dates_become_iso_8601_only_when_they_can_be_read(text, iso):
    assert iso_date(text) == iso


def test_quoted_summary_in_a_mail_reply_is_recognised_and_parsed():
    quoted = b"".join(b"> " + line + b"\n" for line in (ABS_5 + VGR_5).splitlines())
    assert looks_like_benchmark_log(quoted.decode())
    (run,) = parse_log(b"On Tuesday Joe wrote:\n" + quoted).runs
    assert run.machine.hostname == "wax-2.arl.army.mil"
    assert run.mean_vgr == 0.92


def test_thousands_of_sections_are_capped_so_hostile_input_stays_small():
    sections = b"".join(
        b"+++++ m%d\nFrame 0: 1 rays in 1 sec = 1 rays/sec (RTFM)\nWARNING: w%d\n" % (i, i)
        for i in range(5000)
    )
    (run,) = parse_log(b"B R L - C A D   B E N C H M A R K\n" + sections).runs
    assert len(run.results) == 64
    assert len(run.notes) == 50
    rt = b"".join(
        b"opendb /x/m%d.g;\nFrame 0: 1 rays in 1 sec = 1 rays/sec (RTFM)\n" % i for i in range(5000)
    )
    assert len(parse_log(rt).runs[0].results) == 64
