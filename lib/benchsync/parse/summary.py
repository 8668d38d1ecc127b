"""The two `summary` lines that `perf.sh` writes per run: `Abs <host> …` and `*vgr <host> …`.

They appear on their own in a `summary` file (one pair appended per run) and at the end of
a run log. Fields are separated by runs of spaces or tabs; values are the per-model numbers
in `MODELS` order followed by the mean, then the date (`Abs`) or the extra rt args (`*vgr`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .model import MODELS, BenchRun, Machine, clip, iso_date, processors_from_args, to_float

_TOKEN = re.compile(r"\S+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# Markers the historical tables put where a number would be.
NOT_RUN = "-"
NO_VALUE = "?"
WRONG = ("\\(dg", "\u2020")


@dataclass
class SummaryLine:
    """One `Abs`/`Rays` or `*vgr` line split into host, per-model values, mean and the rest."""

    tag: str
    host: str | None
    values: list[tuple[str, float | None, str | None]] = field(default_factory=list)
    mean: float | None = None
    rest: str | None = None
    whole: bool = True


def is_summary_line(line: str) -> bool:
    """Cheap gate: does this line start like an `Abs`, `Rays` or `*vgr` summary line?"""
    return line.startswith(("Abs ", "Abs\t", "*vgr ", "*vgr\t", "Rays ", "Rays\t"))


def _is_value(token: str) -> bool:
    return token in (NOT_RUN, NO_VALUE) or token in WRONG or _NUMBER.fullmatch(token) is not None


def cell(token: str) -> tuple[float | None, str | None]:
    """Read one table/summary cell: a number, or None plus a verdict for a dagger."""
    if token in WRONG:
        return None, "WRONG"
    return to_float(token), None


def split_summary_line(line: str) -> SummaryLine | None:
    """Split an `Abs`/`*vgr` line; None when it has no host."""
    tokens = [(m.group(), m.start()) for m in _TOKEN.finditer(line[:4000])]
    if len(tokens) < 2:
        return None
    tag, host = tokens[0][0], tokens[1][0]
    count = 2
    while count < len(tokens) and _is_value(tokens[count][0]):
        count += 1
    raw = [tok for tok, _ in tokens[2:count]]
    rest = clip(line[tokens[count][1] :]) if count < len(tokens) else None
    if len(raw) > len(MODELS) + 1:
        rest = clip(" ".join(raw[len(MODELS) + 1 :]) + (" " + rest if rest else ""))
        raw = raw[: len(MODELS) + 1]
    whole = 5 <= len(raw) <= len(MODELS) + 1
    per_model = raw[:-1] if whole else raw
    out = SummaryLine(tag=tag, host=clip(host), rest=rest, whole=whole)
    if whole:
        out.mean = cell(raw[-1])[0]
    for model, token in zip(MODELS, per_model, strict=False):
        if token not in (NOT_RUN, NO_VALUE):
            out.values.append((model, *cell(token)))
    return out


def apply_abs(run: BenchRun, line: SummaryLine) -> None:
    """Copy an `Abs` line's rays/s, mean and date into `run`."""
    for model, value, verdict in line.values:
        res = run.result(model)
        res.rays_per_sec = value if value is not None else res.rays_per_sec
        res.verdict = verdict or res.verdict
    run.mean_rays_per_sec = line.mean
    if line.rest and run.run_date is None:
        run.run_date = line.rest
        run.run_at = iso_date(line.rest)
    if not line.whole:
        run.complete = False
        run.note("Abs line is cut short")


def apply_vgr(run: BenchRun, line: SummaryLine) -> None:
    """Copy a `*vgr` line's per-model ratios, mean and trailing rt args into `run`."""
    for model, value, verdict in line.values:
        res = run.result(model)
        res.vgr_ratio = value
        res.verdict = verdict or res.verdict
    run.mean_vgr = line.mean
    if line.rest:
        run.rt_args = line.rest
        run.processors = run.processors or processors_from_args(line.rest)
    if not line.whole:
        run.complete = False
        run.note("*vgr line is cut short")


def parse_summary(lines: list[str]) -> list[BenchRun]:
    """Turn a `summary` file's lines into one run per `Abs`/`*vgr` pair."""
    runs: list[BenchRun] = []
    current: BenchRun | None = None
    for line in lines:
        if not is_summary_line(line):
            continue
        parsed = split_summary_line(line)
        if parsed is None:
            continue
        if parsed.tag == "*vgr":
            if current is None or current.mean_vgr is not None or current.rt_args is not None:
                current = _new_run(parsed, runs, paired=False)
            apply_vgr(current, parsed)
            current = None
        else:
            current = _new_run(parsed, runs, paired=True)
            apply_abs(current, parsed)
    return runs


def _new_run(line: SummaryLine, runs: list[BenchRun], paired: bool) -> BenchRun:
    run = BenchRun(kind="summary", machine=Machine(hostname=line.host))
    if not paired:
        run.complete = False
        run.note("*vgr line without its Abs line")
    runs.append(run)
    return run


def close_summary_runs(runs: list[BenchRun]) -> None:
    """Mark runs whose `Abs` line never got its `*vgr` line as incomplete."""
    for run in runs:
        if run.mean_vgr is None and not any(r.vgr_ratio is not None for r in run.results):
            run.complete = False
            run.note("Abs line without its *vgr line")
