"""Pure parsers for FTP directory listings: MLSD entries (RFC 3659 §7) and Unix `LIST` lines.

Listings are parsed as bytes, line by line, so a name that is not UTF-8 or that holds
control characters reaches `name_problem` as it is instead of breaking the listing.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass

FILE, DIR, LINK, OTHER, SKIP, UNPARSED = "file", "dir", "link", "other", "skip", "unparsed"

_MONTHS = {m.encode(): i for i, m in enumerate(calendar.month_abbr) if m}
_LIST = re.compile(
    rb"^(?P<type>[-dlpscbD])[-rwxsStTlL]{9}[.+@]?\s+\d+\s+\S+\s+(?:\S+\s+)?(?P<size>\d+)\s+"
    rb"(?P<mon>[A-Za-z]{3})\s+(?P<day>\d{1,2})\s+(?P<when>\d{1,2}:\d\d|\d{4})\s(?P<name>.+)$",
    re.S,
)
_TIME_VAL = re.compile(r"^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\.\d+)?$")


@dataclass(frozen=True)
class Entry:
    """One listed name: raw bytes, kind, size and modify time (None when not given)."""

    name: bytes
    kind: str  # file | dir | link | other | skip (cdir, pdir, "total") | unparsed
    size: int | None = None
    mtime: float | None = None
    unique: str | None = None


def split_lines(data: bytes) -> list[bytes]:
    """Listing lines end with CRLF (RFC 959 ASCII type); a bare LF stays inside a name."""
    lines = data.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def parse_time_val(text: str) -> float | None:
    """RFC 3659 §2.3 time-val `YYYYMMDDHHMMSS[.sss]`, always UTC, as seconds since the epoch."""
    m = _TIME_VAL.match(text.strip())
    if not m:
        return None
    parts = [int(g) for g in m.groups()[:6]]
    try:
        whole = calendar.timegm((*parts, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    return whole + (float(m.group(7)) if m.group(7) else 0.0)


def parse_mlsd_line(line: bytes) -> Entry:
    """One MLSD entry, `fact=value;fact=value; name` (RFC 3659 §7.2: facts hold no space)."""
    facts_raw, sep, name = line.partition(b" ")
    if not sep or (facts_raw and not facts_raw.endswith(b";")):
        return Entry(line, UNPARSED)
    facts: dict[str, str] = {}
    for fact in facts_raw.decode("ascii", "replace").split(";"):
        key, eq, value = fact.partition("=")
        if eq:
            facts[key.strip().lower()] = value
    kind = _mlsd_kind(facts.get("type", ""))
    size = facts.get("size", "")
    return Entry(
        name=name,
        kind=kind,
        size=int(size) if size.isdigit() else None,
        mtime=parse_time_val(facts.get("modify", "")),
        unique=facts.get("unique"),
    )


def _mlsd_kind(value: str) -> str:
    """RFC 3659 §7.5.1 `type`: file, dir, cdir, pdir, or an `OS.name=type` such as a symlink."""
    value = value.lower()
    if value == "file":
        return FILE
    if value == "dir":
        return DIR
    if value in ("cdir", "pdir"):
        return SKIP
    if "link" in value:  # OS.unix=slink, OS.unix=symlink, OS.unix=slink:/target
        return LINK
    return OTHER


def parse_list_line(line: bytes, now: float) -> Entry:
    """One `ls -l` style LIST line; `now` (server time) picks the year of recent entries.

    Times come in the server's zone with minute precision ("Mar 05 14:03") or day precision
    ("Mar 05  2023"); they are read as UTC and the clock probe measures the difference.
    """
    if line.startswith(b"total "):
        return Entry(line, SKIP)
    m = _LIST.match(line)
    if not m:
        return Entry(line, UNPARSED)
    kind = {b"-": FILE, b"d": DIR, b"l": LINK}.get(m["type"], OTHER)
    name = m["name"]
    if kind == LINK and b" -> " in name:
        name = name.split(b" -> ", 1)[0]
    if name in (b".", b".."):
        kind = SKIP
    return Entry(name, kind, int(m["size"]), _list_time(m, now))


def _list_time(m: re.Match[bytes], now: float) -> float | None:
    month = _MONTHS.get(m["mon"].capitalize())
    if month is None:
        return None
    day, when = int(m["day"]), m["when"]
    if b":" in when:
        hour, minute = (int(x) for x in when.split(b":"))
        year = time.gmtime(now).tm_year
        stamp = _timegm(year, month, day, hour, minute)
        if stamp is not None and stamp > now + 86400:  # "recent" means the last 6 months
            stamp = _timegm(year - 1, month, day, hour, minute)
        return stamp
    return _timegm(int(when), month, day, 0, 0)


def _timegm(year: int, month: int, day: int, hour: int, minute: int) -> float | None:
    try:
        return float(calendar.timegm((year, month, day, hour, minute, 0, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None
