"""Property tests: random damage to the real logs never makes the parser raise."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchsync.parse import ParseResult, decode, parse_log
from benchsync.parse import _parse_text as parse_text_unguarded
from samples_path import samples_dir

SAMPLES = [
    p.read_bytes()
    for p in sorted(samples_dir().iterdir())
    if p.is_file() and p.name != "SOURCES.md"
]
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NOISE = st.binary(max_size=120) | st.sampled_from(
    [
        b"+++++ moss",
        b"Frame 3: 12 rays in 0.0 sec = 1e309 rays/sec (RTFM)",
        b"Abs  host",
        b"*vgr host - ? \\(dg 1.0",
        b"moss.pix: answers are",
        b"Collecting system CPU information (via lscpu)",
        b"CPU(s): 99999999999999999999999",
        b"SHOT: 1user 2sys :::real",
        b"RELEASE 9 STATISTICS (31-Feb-0000)",
        b".TS\nA/*\tH/W\tMoss\tMean\nAbs\tx\t1\t2\n.TE",
        b"B R L - C A D   B E N C H M A R K",
    ]
)


def check(data: bytes) -> None:
    """Run both the guarded API and the unguarded core; neither may raise."""
    result = parse_log(data, "moss.log")
    assert isinstance(result, ParseResult)
    assert result.status in ("parsed", "partial", "not_a_benchmark_log")
    if result.status == "parsed":
        assert all(run.complete for run in result.runs)
    parse_text_unguarded(decode(data), "moss.log")


@FUZZ
@given(sample=st.sampled_from(SAMPLES), data=st.data())
def test_byte_flips_never_raise(sample, data):
    mutable = bytearray(sample)
    for _ in range(data.draw(st.integers(1, 40))):
        pos = data.draw(st.integers(0, len(mutable) - 1))
        mutable[pos] = data.draw(st.integers(0, 255))
    check(bytes(mutable))


@FUZZ
@given(sample=st.sampled_from(SAMPLES), data=st.data())
def test_truncations_never_raise_and_are_never_reported_complete_early(sample, data):
    cut = data.draw(st.integers(0, len(sample)))
    check(sample[:cut])
    check(sample[cut:])


@FUZZ
@given(sample=st.sampled_from(SAMPLES), seed=st.randoms(use_true_random=False))
def test_line_shuffles_never_raise(sample, seed):
    lines = sample.split(b"\n")
    seed.shuffle(lines)
    check(b"\n".join(lines))


@FUZZ
@given(sample=st.sampled_from(SAMPLES), data=st.data())
def test_inserted_noise_lines_never_raise(sample, data):
    lines = sample.split(b"\n")
    for _ in range(data.draw(st.integers(1, 10))):
        lines.insert(data.draw(st.integers(0, len(lines))), data.draw(NOISE))
    check(b"\n".join(lines))


@FUZZ
@given(sample=st.sampled_from(SAMPLES), ending=st.sampled_from([b"\r\n", b"\r", b"\n\n"]))
def test_other_line_endings_never_raise(sample, ending):
    check(sample.replace(b"\n", ending))


@FUZZ
@given(data=st.binary(max_size=4000))
def test_arbitrary_bytes_never_raise(data):
    check(data)


@pytest.mark.parametrize("sample", SAMPLES[:3] + SAMPLES[-3:])
def test_every_prefix_of_a_sample_at_line_boundaries_never_claims_more_than_the_whole(sample):
    whole = parse_log(sample, "moss.log")
    ends = [i for i, byte in enumerate(sample) if byte == 10]
    for end in ends[:: max(1, len(ends) // 40)]:
        result = parse_log(sample[:end], "moss.log")
        assert len(result.runs) <= max(1, len(whole.runs))
