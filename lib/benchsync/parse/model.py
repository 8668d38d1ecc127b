"""Result types of the BRL-CAD benchmark log parser and the small helpers they share."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

# Bump whenever the parser's output for the same input changes.
PARSER_VERSION = 1

# The benchmark models in the order `bench/run.sh` runs them and `perf.sh` prints them.
MODELS: tuple[str, ...] = ("moss", "world", "star", "bldg391", "m35", "sphflake")

# Longest text value kept; longer ones are cut so that a garbage line cannot bloat a row.
MAX_TEXT = 255
_INT64_MAX = 2**63 - 1
# Caps that keep hostile input linear: models per run, notes per run.
MAX_RESULTS = 64
MAX_NOTES = 50


@dataclass
class Machine:
    """Stable attributes used to group runs of the same node."""

    hostname: str | None  # uname -a, else sysctl kernel.hostname, else the Abs line's host
    os: str | None = None  # e.g. "Linux"
    os_release: str | None = None  # kernel release
    arch: str | None = None  # e.g. "x86_64"
    cpu_model: str | None = None
    cpu_vendor: str | None = None
    cpu_mhz: float | None = None
    cores: int | None = None  # logical CPUs
    sockets: int | None = None


@dataclass
class ModelResult:
    """One benchmark model (moss, world, star, bldg391, m35, sphflake) in one run."""

    model: str
    rays_per_sec: float | None = None  # Abs value, else the last `(RTFM)` frame
    vgr_ratio: float | None = None  # this model's *vgr ratio
    cpu_seconds: float | None = None  # SHOT cpu=, or user+sys of old SHOT lines
    wall_seconds: float | None = None  # SHOT elapsed=, or `real` of old SHOT lines
    pixels_per_sec: float | None = None
    rays: int | None = None  # rays of the last RTFM frame
    hits: int | None = None  # solid/ray intersection hits (rt logs)
    misses: int | None = None
    verdict: str | None = None  # "RIGHT", "WRONG", "BENCHMARK COMPARISON FAILURE", ...
    frames: int | None = None  # number of RTFM frame lines


@dataclass
class BenchRun:
    """One run log, one summary Abs/*vgr pair, one per-model rt log or one table row."""

    kind: str  # "run_log" | "summary" | "rt_log" | "table"
    machine: Machine
    brlcad_version: str | None = None  # e.g. "7.32.6"
    compile_date: str | None = None  # as reported (rt log banner)
    run_date: str | None = None  # as reported
    run_at: str | None = None  # ISO 8601; with an offset only when the zone is known
    processors: int | None = None  # "Planning to run with N", CPU column, or rt `-P N`
    mean_rays_per_sec: float | None = None  # the Abs line's mean
    mean_vgr: float | None = None  # the *vgr line's mean
    vgr_metric: float | None = None  # "approximate VGR performance metric of 8320"
    log_vgr: float | None = None  # "Logarithmic VGR metric is 3.92"
    rt_args: str | None = None  # trailing "-P1" etc. of the *vgr line
    complete: bool = True  # False when truncated or "DID NOT COMPLETE"
    results: list[ModelResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def result(self, model: str) -> ModelResult:
        """Return the result for `model`, creating it in run order if it is new.

        Past MAX_RESULTS models a detached result is returned, so hostile input with
        thousands of sections stays linear and small.
        """
        for res in self.results:
            if res.model == model:
                return res
        res = ModelResult(model=model)
        if len(self.results) < MAX_RESULTS:
            self.results.append(res)
        return res

    def note(self, text: str) -> None:
        """Record a warning about this run once (at most MAX_NOTES of them)."""
        if len(self.notes) < MAX_NOTES and text not in self.notes:
            self.notes.append(text)


@dataclass
class ParseResult:
    """What `parse_log` found in one file: a status, why, and the runs."""

    status: str
    reason: str | None
    runs: list[BenchRun]


def machine_key(m: Machine) -> str:
    """Fingerprint a machine from its stable attributes so runs of one node group together."""
    parts = (
        ("host", (m.hostname or "").rstrip(".")),
        ("cpu", m.cpu_model or ""),
        ("cores", "" if m.cores is None else str(m.cores)),
        ("os", m.os or ""),
        ("arch", m.arch or ""),
    )
    return ";".join(f"{k}={' '.join(v.lower().split())}" for k, v in parts)[:1000]


def clip(text: str | None, limit: int = MAX_TEXT) -> str | None:
    """Strip a reported text value, cut it to `limit`, and map empty to None."""
    if text is None:
        return None
    text = text.strip()
    return text[:limit] or None


def to_float(text: str | None) -> float | None:
    """Read a reported number; None when absent, malformed or not finite."""
    if not text:
        return None
    try:
        value = float(text)
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def to_int(text: str | None) -> int | None:
    """Read a reported integer; None when absent, malformed or beyond a 64-bit column."""
    if not text or len(text) > 19:
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if -_INT64_MAX <= value <= _INT64_MAX else None


def hms_seconds(text: str) -> float | None:
    """Turn `1:20:23` / `49:59` / `0:07` (time(1) `real`) into seconds."""
    total = 0.0
    for part in text.split(":"):
        number = to_float(part)
        if number is None:
            return None
        total = total * 60 + number
    return total


_P_ARG = re.compile(r"-P\s*(\d{1,6})\b")


def processors_from_args(args: str | None) -> int | None:
    """Read the CPU count from an rt `-P N` argument, as the benchmark passes it on."""
    if not args:
        return None
    match = _P_ARG.search(args)
    return to_int(match.group(1)) if match else None


_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_ZONES = {
    "UTC": 0, "GMT": 0, "Z": 0, "UT": 0,
    "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
    "AKST": -9, "AKDT": -8, "HST": -10, "CET": 1, "CEST": 2, "BST": 1, "WET": 0, "WEST": 1,
    "EET": 2, "EEST": 3, "MSK": 3, "IST": None, "JST": 9, "KST": 9, "AEST": 10, "AEDT": 11,
}  # fmt: skip
# `date` in the C locale: "Fri Dec  4 19:44:39 UTC 2026" (weekday and zone optional).
_CTIME = re.compile(
    r"(?:[A-Za-z]{3}[a-z]*,?\s+)?([A-Za-z]{3})[a-z]*\s+(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    r"(?:\s+([A-Z]{1,5}|[+-]\d{4}))?\s+(\d{4})\b"
)
# RFC 2822 style: "Fri, 04 Dec 2026 19:32:48 UTC".
_RFC = re.compile(
    r"(\d{1,2})\s+([A-Za-z]{3})[a-z]*\s+(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    r"(?:\s+([A-Z]{1,5}|[+-]\d{4}))?"
)
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?\s*(Z|UTC|[+-]\d{2}:?\d{2})?"
)
_DMY = re.compile(r"^(\d{1,2})-([A-Za-z]{3})[a-z]*-(\d{4})$")  # "19-June-1989"


def _zone(text: str | None) -> timezone | None:
    if not text:
        return None
    if text[0] in "+-":
        digits = text[1:].replace(":", "")
        if len(digits) != 4 or not digits.isdigit():
            return None
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        return timezone(-delta if text[0] == "-" else delta)
    hours = _ZONES.get(text.upper())
    return None if hours is None else timezone(timedelta(hours=hours))


def _iso(
    y: str, mo: int | None, d: str, h: str | None, mi: str | None, s: str | None, zone: str | None
) -> str | None:
    if mo is None:
        return None
    try:
        if h is None:
            return datetime(int(y), mo, int(d)).date().isoformat()
        stamp = datetime(int(y), mo, int(d), int(h), int(mi or 0), int(s or 0), tzinfo=_zone(zone))
    except (ValueError, OverflowError):
        return None
    return stamp.isoformat()


def iso_date(text: str | None) -> str | None:
    """Turn a reported date into ISO 8601 (with offset only when the zone is known), else None."""
    if not text or len(text) > 200:
        return None
    match = _CTIME.search(text)
    if match:
        mon, day, h, mi, s, zone, year = match.groups()
        return _iso(year, _MONTHS.get(mon.lower()), day, h, mi, s, zone)
    match = _RFC.search(text)
    if match:
        day, mon, year, h, mi, s, zone = match.groups()
        return _iso(year, _MONTHS.get(mon.lower()), day, h, mi, s, zone)
    match = _ISO.search(text)
    if match:
        year, mon, day, h, mi, s, zone = match.groups()
        return _iso(year, int(mon), day, h, mi, s, zone)
    match = _DMY.match(text.strip())
    if match:
        day, mon, year = match.groups()
        return _iso(year, _MONTHS.get(mon.lower()), day, None, None, None, None)
    return None


_MODEL_WORD = re.compile(r"(?<![a-z0-9])(" + "|".join(MODELS) + r"|sflake)(?![a-z0-9])")


def model_from_name(text: str | None) -> str | None:
    """Recognise a benchmark model in a file name or path (the last one named wins)."""
    if not text:
        return None
    found = _MODEL_WORD.findall(text[-300:].lower())
    if not found:
        return None
    return "sphflake" if found[-1] == "sflake" else found[-1]


def model_from_title(title: str | None) -> str | None:
    """Recognise a benchmark model from the `db title:` of its database."""
    if not title:
        return None
    norm = " ".join(title.lower().split())
    for known, model in _TITLES.items():
        if norm.startswith(known):
            return model
    found = {"sphflake" if f == "sflake" else f for f in _MODEL_WORD.findall(norm)}
    return found.pop() if len(found) == 1 else None


# `db title:` of each benchmark database (from the reference logs).
_TITLES = {
    'gary moss\'s "world on a platter"': "moss",
    "colorful version of the moss world": "world",
    "the enterprise and shuttlecraft": "star",
    "building 391, with mirrored floors": "bldg391",
    "m35 2 1/2 ton truck": "m35",
    "sphereflake": "sphflake",
}
