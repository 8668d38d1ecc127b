"""A drop folder on this host (the FTP or SSH daemon's upload folder)."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from array import array
from collections.abc import Iterator
from operator import attrgetter
from pathlib import Path

from ..errors import ItemError, ItemRejected, SourceUnreachable
from .base import (
    CONTROL_CHARS,
    AfterIngest,
    Item,
    Payload,
    Source,
    Writer,
    mode_problem,
    printable,
    submitter_from_key,
)

CHUNK = 1024 * 1024


class LocalFolderSource(Source):
    """Files in one folder (optionally its subfolders); symlinks are never followed."""

    def __init__(
        self,
        root: Path,
        channel: str = "ftp",
        settle_seconds: float = 60.0,
        after_ingest: AfterIngest = AfterIngest("keep"),
        recursive: bool = False,
        submitter_from_path: bool = False,
    ) -> None:
        self.root = Path(root)
        self.channel = channel
        self.url = str(self.root)
        self.settle_seconds = settle_seconds
        self.after_ingest = after_ingest
        self.recursive = recursive
        self.submitter_from_path = submitter_from_path
        self._move_to = self._resolve_move_folder()
        self._scanned: list | None = None

    def _resolve_move_folder(self) -> Path | None:
        if self.after_ingest.action != "move" or not self.after_ingest.folder:
            return None
        folder = Path(self.after_ingest.folder)
        return folder if folder.is_absolute() else self.root / folder

    def open(self) -> None:
        if not self.root.is_dir():
            raise SourceUnreachable(f"queue folder {self.root} does not exist or is not a folder")
        if self._move_to is not None:
            try:
                self._move_to.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SourceUnreachable(f"cannot create {self._move_to}: {e.strerror}") from None

    def fingerprint(self) -> tuple[str, int] | None:
        """(digest, count) of every entry's path, size, mtime and mode.

        A no-op poll of a big queue is this and nothing more, so it is made cheap: names
        from one listdir, lstat in two processes at once, every loop in C. A recursive
        queue is scanned instead, and the scan kept for the `list()` that follows.
        """
        if self.recursive:
            self._scanned = scanned = self._scan()
            paths = [entry[0] for entry, _ in scanned]
            return _digest(paths, [st for _, st in scanned]), len(paths)
        root = os.fsencode(self.root)
        move_to = os.fsencode(self._move_to) if self._move_to is not None else None
        try:
            paths = [p for p in (root + b"/" + name for name in os.listdir(root)) if p != move_to]
            return _split_digest(paths), len(paths)
        except OSError:  # gone while being looked at, or no fork: list() will scan
            return None

    def list(self) -> Iterator[Item]:
        """Every entry of the folder as an item (symlinks and folders marked, never followed)."""
        scanned, self._scanned = self._scanned or self._scan(), None
        for (path, name, prefix), st in scanned:
            item = file_item(path, name, st, prefix)
            if self.submitter_from_path:
                item.submitter = submitter_from_key(item.key, True)
            yield item

    def _scan(self) -> list[tuple[tuple[bytes, bytes, str], os.stat_result]]:
        move_to = os.fsencode(self._move_to) if self._move_to is not None else None
        found: list[tuple[tuple[bytes, bytes, str], os.stat_result]] = []
        try:
            self._walk(os.fsencode(self.root), "", move_to, found)
        except OSError as e:
            raise SourceUnreachable(f"cannot list {self.root}: {e.strerror}") from None
        return found

    def _walk(self, folder: bytes, prefix: str, move_to: bytes | None, found: list) -> None:
        """lstat every entry once with scandir; descend only into real folders."""
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.path == move_to:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed while listing
                if self.recursive and stat.S_ISDIR(st.st_mode):
                    sub = f"{prefix}{printable(entry.name)}/"
                    self._walk(entry.path, sub, move_to, found)
                else:
                    found.append(((entry.path, entry.name, prefix), st))

    def fetch(self, item: Item) -> Iterator[Payload]:
        yield Payload(item.name, lambda w: copy_file(item.handle, w))

    def ack(self, item: Item) -> None:
        """Delete or move the file, but only if it is still the version that was filed."""
        if self.after_ingest.action == "keep":
            return
        path = item.handle
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return
        if st.st_size != item.size or st.st_mtime != item.mtime:
            raise ItemError("changed after it was filed: left in place, it will be filed again")
        if self.after_ingest.action == "delete":
            os.unlink(path)
        elif self._move_to is not None:
            rel = os.fsencode(item.key)
            dest = os.path.join(os.fsencode(self._move_to), rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.rename(path, _free_name(dest))


def file_item(path: bytes, name: bytes, st: os.stat_result, prefix: str = "") -> Item:
    """An item for one directory entry, with the reason it can never be filed, if any.

    Kept cheap: a no-op poll of 100,000 filed files calls this 100,000 times.
    """
    try:
        text = name.decode("utf-8")
        problem = mode_problem(st.st_mode)
        if problem is None and CONTROL_CHARS.search(text):
            problem = "hostile name: control characters (newline, tab, …)"
    except UnicodeDecodeError:
        text = printable(name)
        problem = mode_problem(st.st_mode) or "hostile name: not valid UTF-8"
    return Item(prefix + text, text, st.st_size, st.st_mtime, problem, handle=path)


def copy_file(path: bytes, writer: Writer) -> None:
    """Stream the file; O_NOFOLLOW so a file swapped for a symlink is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ItemRejected("symlink: not followed") from None
        if e.errno == errno.ENOENT:
            raise ItemError("vanished before it could be read") from None
        raise ItemError(f"unreadable: {e.strerror}") from None
    with os.fdopen(fd, "rb", buffering=0) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ItemRejected("not a regular file")
        try:
            while chunk := f.read(CHUNK):
                writer.write(chunk)
        except OSError as e:
            raise ItemError(f"read failed: {e.strerror}") from None


def _digest(paths: list[bytes], stats: list[os.stat_result]) -> str:
    digest = hashlib.md5(b"\0".join(paths))
    for field in ("st_size", "st_mtime_ns", "st_mode"):
        digest.update(array("q", map(attrgetter(field), stats)).tobytes())
    return digest.hexdigest()


def _split_digest(paths: list[bytes], min_split: int = 20_000) -> str:
    """Digest of the paths and their lstat, the second half done by a forked child.

    lstat is a system call per file and Python cannot run two at once in one process;
    a fork that hashes its half and sends back 32 hex digits halves a 100,000-file poll.
    """
    if len(paths) < min_split:
        return _digest(paths, list(map(os.lstat, paths)))
    half = len(paths) // 2
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns, never runs the parent's cleanup
        try:
            os.close(read_end)
            tail = paths[half:]
            os.write(write_end, _digest(tail, list(map(os.lstat, tail))).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            head = _digest(paths[:half], list(map(os.lstat, paths[:half])))
            other = pipe.read().decode()
    finally:
        os.waitpid(pid, 0)
    if len(other) != 32:
        raise OSError("fingerprint child failed")
    return head + other


def _free_name(path: bytes) -> bytes:
    """`path`, or `path.1`, `path.2`… so that a move never overwrites an earlier file."""
    candidate, n = path, 0
    while os.path.lexists(candidate):
        n += 1
        candidate = path + b".%d" % n
    return candidate
