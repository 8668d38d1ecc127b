"""The contract every source keeps, and the rules all sources share.

A source is a thin protocol layer over a drop folder or mailbox. It knows nothing of the
database or the store: the pipeline asks it for items, streams each item's payloads
into the store, commits, and only then tells the source to acknowledge the item.

    with source:                       # open(): connect, or raise SourceUnreachable
        for item in source.list():     # one cheap listing; no content is read
            for payload in source.fetch(item):
                payload.write_to(sink) # stream the bytes; ItemError for this item only
            ...commit...
            source.ack(item)           # keep | delete | move:<folder> (mail: seen)

`list()` marks what can never be filed (symlink, folder, hostile name) in
`Item.problem`; `fetch()` raises `ItemError` for one item and `SourceUnreachable` when
the whole source is gone (the run stops, exit 3, nothing half-filed).
"""

from __future__ import annotations

import re
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ConfigError

IN_PROGRESS = re.compile(r"(^\.|\.part$|\.tmp$|\.filepart$|^\.pureftpd-upload\.)", re.IGNORECASE)
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME_BYTES = 255


class StateStore(Protocol):
    """Small values a source keeps between runs, e.g. UIDVALIDITY (kept in the database)."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...


class Writer(Protocol):
    """Where payload bytes go (the store's `Incoming`)."""

    def write(self, chunk: bytes) -> int: ...


@dataclass(slots=True)
class Item:
    """One thing in a source: a file, or a mail message."""

    key: str  # unique within the source, printable (relative path, "UIDVALIDITY:UID")
    name: str  # the name a person would recognise, printable
    size: int | None = None
    mtime: float | None = None
    problem: str | None = None  # why it can never be filed as it is (set by list())
    submitter: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    handle: Any = None  # the source's own reference (raw path bytes, remote path, UID)


@dataclass
class Payload:
    """One file inside an item, streamed by calling `write_to(writer)`."""

    name: str
    write_to: Callable[[Writer], None]
    expected_size: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AfterIngest:
    """What to do with a filed item: keep it, delete it, mark it seen, or move it."""

    action: str  # keep | delete | seen | move
    folder: str | None = None

    @classmethod
    def parse(cls, text: str | None, allowed: tuple[str, ...] = ("keep", "delete", "move")):
        """Read `after_ingest` (`keep`, `delete`, `seen`, `move:<folder>`)."""
        text = (text or "keep").strip()
        action, _, folder = text.partition(":")
        action = action.strip().lower()
        if action not in allowed or (action == "move") != bool(folder.strip()):
            choices = " | ".join(a if a != "move" else "move:<folder>" for a in allowed)
            raise ConfigError(f"after_ingest = {text!r}: use {choices}")
        return cls(action, folder.strip() or None)


def printable(name: str | bytes) -> str:
    """A name as text that any database and log line can hold (bad bytes escaped)."""
    if isinstance(name, bytes):
        return name.decode("utf-8", "backslashreplace")
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def name_problem(name: str | bytes) -> str | None:
    """Why a remote or local name is unsafe to take as it is, or None when it is fine."""
    raw = name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "hostile name: not valid UTF-8"
    if not text:
        return "hostile name: empty"
    if CONTROL_CHARS.search(text):
        return "hostile name: control characters (newline, tab, …)"
    if len(raw) > MAX_NAME_BYTES:
        return f"hostile name: longer than {MAX_NAME_BYTES} bytes"
    if text in (".", "..") or "/" in text or "\\" in text:
        return "hostile name: path separators or dot entries"
    return None


def mode_problem(mode: int) -> str | None:
    """Why an entry of this type is never filed: only regular files, nothing followed."""
    if stat.S_ISLNK(mode):
        return "symlink: not followed"
    if stat.S_ISDIR(mode):
        return "folder: not a file (set recursive = true to descend)"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None


def is_in_progress(name: str) -> bool:
    """True for names uploaders use while a transfer is still running."""
    return bool(IN_PROGRESS.search(name))


def submitter_from_key(key: str, enabled: bool) -> str | None:
    """With per-user drop folders (`user/file.log`), the folder names the submitter."""
    if not enabled or "/" not in key:
        return None
    return key.split("/", 1)[0] or None


class Source(ABC):
    """A drop folder or mailbox the pipeline reads from (contract in the module doc)."""

    channel: str = "manual"
    url: str = ""
    settle_seconds: float = 0.0
    after_ingest: AfterIngest = AfterIngest("keep")
    state: StateStore | None = None  # set by the pipeline before list()
    dry_run: bool = False  # set by the pipeline: change nothing at the source, not even a probe

    def open(self) -> None:  # noqa: B027 - optional hook
        """Connect; raise SourceUnreachable when the source cannot be reached."""

    def clock(self) -> float:
        """The source's idea of now, for settle times (a server's clock for remote files)."""
        return time.time()

    def fingerprint(self) -> tuple[str, int] | None:
        """(digest, count) of what `list()` would return, when cheaper than listing.

        None (the default) lets the pipeline fingerprint the listing itself.
        """
        return None

    @abstractmethod
    def list(self) -> Iterable[Item]:
        """Every item in the source, from one listing, without reading content."""

    @abstractmethod
    def fetch(self, item: Item) -> Iterator[Payload]:
        """The item's payloads; each streams its bytes when `write_to` is called."""

    def prefetch(self, items: list[Item]) -> None:  # noqa: B027 - optional hook
        """The pipeline is about to fetch these items, in this order; a source may start
        transfers early, bounded in memory. `fetch()` stays the one place errors surface:
        an item never fetched must cost nothing but what `close()` or the next call
        releases."""

    def ack(self, item: Item) -> None:  # noqa: B027 - keep is the default
        """Acknowledge a filed item as `after_ingest` says; called only after the commit."""

    def outcome(self, item: Item, status: str) -> None:  # noqa: B027 - optional hook
        """Told the status the pipeline gave an item this run (pending, filed, unacked,
        rejected, failed), after it was committed; IMAP moves its watermark with it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; must not raise."""

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
