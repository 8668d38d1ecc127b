"""Pure parser for BRL-CAD benchmark logs: bytes in, `ParseResult` out, no I/O.

Four kinds of file are recognised (see /work/shared/brlcad-log-format.md): the run log
written by `bench/run.sh` (`run_log`), the `summary` file of `Abs`/`*vgr` pairs
(`summary`), the per-model `rt` logs (`rt_log`) and the historical troff tables of
`doc/benchmark.tr` (`table`). Every value is kept as reported; what a file does not say
stays None. `parse_log` never raises.
"""

from __future__ import annotations

import re

from .model import (
    MODELS,
    PARSER_VERSION,
    BenchRun,
    Machine,
    ModelResult,
    ParseResult,
    machine_key,
)
from .rtlog import parse_rt_log
from .runlog import HEADER, parse_run_log
from .summary import close_summary_runs, parse_summary
from .table import looks_like_table, parse_tables

__all__ = [
    "MODELS",
    "PARSER_VERSION",
    "BenchRun",
    "Machine",
    "ModelResult",
    "ParseResult",
    "looks_like_benchmark_log",
    "machine_key",
    "parse_log",
]

_RUN_MARKERS = (
    HEADER,
    "Running the BRL-CAD Benchmark tests",
    "VGR performance metric",
    "answers are RIGHT",
    "WRONG WRONG WRONG",
    "BENCHMARK COMPARISON FAILURE",
    "DID NOT COMPLETE SUCCESSFULLY",
)
_RT_MARKERS = ("rays/sec (RTFM)", "\nSHOT:", "db title:", "Planning to run with")
_SUMMARY_LINE = re.compile(
    r"^[ \t>]*(?:Abs|\*vgr)[ \t]+\S+[ \t]+[-?\d.]+[ \t]+[-?\d.]+", re.MULTILINE
)
_SECTION = re.compile(r"^\+\+\+\+\+ (?:moss|world|star|bldg391|m35|sphflake)\b", re.MULTILINE)


def decode(data: bytes) -> str:
    """Decode log bytes (UTF-8, else Latin-1) with Unix newlines and no NULs."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


def _is_run_log(text: str) -> bool:
    return any(marker in text for marker in _RUN_MARKERS) or (
        "+++++ " in text and _SECTION.search(text) is not None
    )


def _is_rt_log(text: str) -> bool:
    if any(marker in text for marker in _RT_MARKERS) or text.startswith("SHOT:"):
        return True
    return "BRL-CAD Release" in text and ("Ray-Tracer" in text or "Raytracer" in text)


def looks_like_benchmark_log(text: str) -> bool:
    """Cheap check used to decide whether a pasted mail body is worth parsing as a log."""
    if not text:
        return False
    return (
        _is_run_log(text)
        or "rays/sec (RTFM)" in text
        or ("*vgr" in text and _SUMMARY_LINE.search(text) is not None)
    )


def _lines(text: str) -> list[str]:
    if "\f" in text or "\v" in text:
        text = text.replace("\f", "\n").replace("\v", "\n")
    return text.split("\n")


def _summary_lines(text: str) -> list[str]:
    # Mail clients indent or quote pasted lines; the summary format itself never starts so.
    return [line.lstrip(" \t>") for line in _lines(text)]


def _parse_text(text: str, name: str | None) -> tuple[str | None, list[BenchRun]]:
    """Pick the file kind from the content and run its parser; (kind label, runs)."""
    if _is_run_log(text):
        return "run log", parse_run_log(text)
    if looks_like_table(text):
        runs = parse_tables(_lines(text))
        if runs:
            return "troff table", runs
    if "*vgr" in text or "Abs" in text:
        runs = parse_summary(_summary_lines(text))
        if runs:
            close_summary_runs(runs)
            return "summary", runs
    if _is_rt_log(text):
        run = parse_rt_log(_lines(text), name)
        return "rt log", [run]
    return None, []


def _result(kind: str | None, runs: list[BenchRun]) -> ParseResult:
    if kind is None:
        return ParseResult("not_a_benchmark_log", "no BRL-CAD benchmark lines found", [])
    if not runs:
        return ParseResult("partial", f"{kind} with no benchmark results", [])
    incomplete = [run for run in runs if not run.complete]
    if incomplete:
        why = incomplete[0].notes[-1] if incomplete[0].notes else "incomplete"
        return ParseResult(
            "partial", f"{len(incomplete)} of {len(runs)} runs incomplete: {why}", runs
        )
    return ParseResult("parsed", None, runs)


def parse_log(data: bytes, name: str | None = None) -> ParseResult:
    """Parse any bytes believed to be a BRL-CAD benchmark file; never raises."""
    try:
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        text = decode(bytes(data))
        return _result(*_parse_text(text, name))
    except Exception as exc:  # noqa: BLE001 - the contract is to never raise on input
        return ParseResult("partial", f"parser error: {type(exc).__name__}", [])
