"""Run the benchmark parser on new content without ever letting it block filing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("benchsync")


@dataclass
class Unparsed:
    """A parse outcome with no rows: too large to parse, or the parser failed."""

    status: str
    reason: str | None
    runs: list[Any] = field(default_factory=list)


def analyze(raw: bytes | None, name: str | None) -> Any:
    """Parse `raw`; a parser exception becomes status `failed` with its reason, never a raise."""
    if raw is None:
        return Unparsed("not_a_benchmark_log", "larger than the parser reads (8 MiB)")
    try:
        from .parse import parse_log

        return parse_log(raw, name)
    except Exception as e:  # noqa: BLE001 - a parser bug must not stop filing
        log.warning("parse failed name=%r reason=%s: %s", name, type(e).__name__, e)
        return Unparsed("failed", f"{type(e).__name__}: {e}"[:500])
