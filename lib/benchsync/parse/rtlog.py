"""The per-model log that `rt` writes on stderr (`moss.log` …), old and new forms.

Newer logs open with one version banner per library (`BRL-CAD Release 7.32.6 …`, compile
date line, `user@host:path` line), then `Running on <host>`, `Planning to run with N
processors`, `opendb <path>/moss.g;`, `db title:`; timing lines are `SHOT: cpu = … sec,
elapsed = … sec`, and the frame summary has `rays/sec (RTFM)`, `rays/CPU_sec` and
`(wallclock)` lines. 1989–1991 logs time with `SHOT: 2503.7user 184.1sys 1:20:23real …`
and 1989 ones have no banner at all.
"""

from __future__ import annotations

import re

from .model import (
    MAX_RESULTS,
    BenchRun,
    Machine,
    ModelResult,
    clip,
    hms_seconds,
    model_from_name,
    model_from_title,
    to_float,
    to_int,
)

_NUM = r"([\d.]+(?:[eE][+-]?\d+)?)"
_BANNER = re.compile(r"BRL-CAD Release\s+(\d+(?:\.\d+)*)")
_COMPILED = re.compile(r"^\s+(.*?),\s*Compilation\s+\d+")
_BUILT_BY = re.compile(r"^\s+[^\s@]*@([A-Za-z0-9][A-Za-z0-9.\-_]*)")
_PLANNING = re.compile(r"Planning to run with\s+(\d+)\s+processors")
_SHOT_NEW = re.compile(rf"cpu\s*=\s*{_NUM}\s*sec,\s*elapsed\s*=\s*{_NUM}\s*sec")
_SHOT_OLD = re.compile(rf"{_NUM}user\s+{_NUM}sys\s+([\d:.]+)real")
_HITS = re.compile(r"solid/ray intersections:\s*(\d+)\s+hits\s*\+\s*(\d+)\s+miss")
_FRAME = re.compile(
    rf"Frame\s+(\d+):\s+(\d+)\s+(rays|pixels)\s+in\s+{_NUM}\s+sec\s*=\s*{_NUM}\s+(.*)"
)
_OPENDB = re.compile(r"([^/\s;]+)\.g\b")
_OUTPUT = re.compile(r"Output file is '([^']*)'")


class RtLogParser:
    """Line-by-line reader of one rt log (a second model in the same text starts a new result)."""

    def __init__(self, name: str | None) -> None:
        self.run = BenchRun(kind="rt_log", machine=Machine(hostname=None))
        self.name_model = model_from_name(name)
        self.res = ModelResult(model="")
        self.hints: dict[str, str] = {}
        self.after_banner = 0
        self.frames: set[str] = set()
        self.build_host: str | None = None

    def feed(self, line: str) -> None:
        """Take one line (no newline) of the log."""
        if self.after_banner:
            self.after_banner -= 1
            if line.startswith((" ", "\t")):
                self._banner_detail(line)
                return
        first = line[:1]
        if first == "F" and line.startswith("Frame"):
            self._frame(line)
        elif first == "S" and line.startswith("SHOT:"):
            self._shot(line)
        elif first == "B" and line.startswith("BRL-CAD Release"):
            match = _BANNER.search(line)
            if match and self.run.brlcad_version is None:
                self.run.brlcad_version = match.group(1)
            self.after_banner = 2
        elif line.startswith("db title:"):
            self._hint("title", model_from_title(line[9:]))
        elif line.startswith("opendb "):
            match = _OPENDB.search(line)
            self._hint("db", match.group(1).lower() if match else None)
        elif line.startswith("Output file is"):
            match = _OUTPUT.search(line)
            self._hint("output", model_from_name(match.group(1)) if match else None)
        elif line.startswith("Planning to run with"):
            match = _PLANNING.search(line)
            self.run.processors = to_int(match.group(1)) if match else self.run.processors
        elif line.startswith("Running on "):
            self.run.machine.hostname = self.run.machine.hostname or clip(line[11:])
        elif "solid/ray intersections" in line:
            match = _HITS.search(line)
            if match:
                self.res.hits, self.res.misses = to_int(match.group(1)), to_int(match.group(2))

    def _banner_detail(self, line: str) -> None:
        match = _COMPILED.match(line)
        if match:
            if self.run.compile_date is None:
                self.run.compile_date = clip(match.group(1))
            return
        match = _BUILT_BY.match(line)
        if match and self.build_host is None:
            self.build_host = clip(match.group(1))

    def _hint(self, source: str, model: str | None) -> None:
        if model is None:
            return
        if source in self.hints and self.res.rays_per_sec is not None:
            self._next_result()
        self.hints.setdefault(source, model)

    def _next_result(self) -> None:
        self._store_result()
        self.res = ModelResult(model="")
        self.hints = {}
        self.frames = set()

    def _shot(self, line: str) -> None:
        match = _SHOT_NEW.search(line)
        if match:
            self.res.cpu_seconds = to_float(match.group(1))
            self.res.wall_seconds = to_float(match.group(2))
            return
        match = _SHOT_OLD.search(line)
        if match:
            user, system = to_float(match.group(1)), to_float(match.group(2))
            if user is not None and system is not None:
                self.res.cpu_seconds = round(user + system, 3)
            self.res.wall_seconds = hms_seconds(match.group(3))

    def _frame(self, line: str) -> None:
        match = _FRAME.search(line)
        if not match:
            return
        frame, count, unit, seconds, rate, tail = match.groups()
        res = self.res
        if unit == "pixels":
            res.pixels_per_sec = to_float(rate)
        elif "(RTFM)" in tail:
            self.frames.add(frame)
            res.frames = len(self.frames)
            res.rays, res.rays_per_sec = to_int(count), to_float(rate)
        elif "CPU_sec" in tail and res.cpu_seconds is None:
            res.cpu_seconds = to_float(seconds)
        elif "wallclock" in tail and res.wall_seconds is None:
            res.wall_seconds = to_float(seconds)

    def _store_result(self) -> None:
        res = self.res
        if not (res.frames or res.cpu_seconds is not None or self.hints):
            return
        hints = self.hints
        res.model = (
            hints.get("db") or hints.get("title") or hints.get("output") or self.name_model or ""
        )
        if not res.model:
            res.model = "unknown"
            self.run.note("model name not found in the log or its file name")
        if res.rays_per_sec is None:
            self.run.complete = False
        results = self.run.results
        if len(results) < MAX_RESULTS and all(r.model != res.model for r in results):
            results.append(res)

    def finish(self) -> BenchRun:
        """Close the log and return its run."""
        self._store_result()
        if not self.run.results:
            self.run.complete = False
        if self.run.machine.hostname is None and self.build_host:
            self.run.machine.hostname = self.build_host
            self.run.note("host name taken from the build banner (user@host)")
        if not self.run.complete:
            self.run.note("rt log has no RTFM line")
        return self.run


def parse_rt_log(lines: list[str], name: str | None) -> BenchRun:
    """Parse one rt per-model log into a run with one result."""
    parser = RtLogParser(name)
    for line in lines:
        parser.feed(line)
    return parser.finish()
