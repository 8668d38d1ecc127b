"""The gzip file store: `<root>/<md5[0:2]>/<md5>.gz`, written atomically and durably.

Content is hashed and compressed in one pass while it streams in (`Incoming`), so a
transfer is read once. Compressed output stays in memory until it passes a threshold,
which means a duplicate (the common case on a re-poll) never touches the disk at all.
A new file is written to `<root>/tmp/`, renamed into place, and made durable by
`Store.sync()` before the database commit that makes it visible.

The gzip stream is deterministic (no name, mtime 0, fixed header bytes, input fed to the
compressor in fixed-size blocks), so the same content always yields the same stored bytes.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import os
import re
import socket
import struct
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import ItemRejected, StoreUnreachable

try:  # ISA-L deflate: ~6x faster than zlib level 6, standard gzip output.
    from isal import isal_zlib as _zlib

    LEVEL = 2
except ImportError:  # pragma: no cover - isal is a dependency; zlib keeps us working
    import zlib as _zlib

    LEVEL = 6

BLOCK = 256 * 1024  # compressor input size; fixed so that ISA-L output is deterministic
SPILL = 4 * 1024 * 1024  # compressed bytes kept in memory before spilling to a temp file
KEEP_RAW = 8 * 1024 * 1024  # the parser reads at most this; larger files are not parsed
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no flags, mtime 0, OS unknown
TMP_SUFFIX = ".tmp"
_FIRST_READ = 64 * 1024  # md5_of_gzip_file: first read, and ...
_READ_WHOLE = 8 * 1024 * 1024  # ... stored files up to this are inflated in one call
_HOST = socket.gethostname().replace(".", "_")
_counter = itertools.count()
_TMP_NAME = re.compile(r"^(?P<host>[^.]+)\.(?P<pid>\d+)\.")
MD5_RE = re.compile(r"^[0-9a-f]{32}$")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return None


_syncfs = _load_syncfs()


class Incoming:
    """One item as it streams in: md5, size, deterministic gzip, and (small) raw bytes.

    Call `write()` with chunks as they arrive, then `finish()`. `max_bytes` is enforced
    while streaming, so an oversized item is refused before it fills memory or disk.
    """

    def __init__(self, store: Store, max_bytes: int, keep_raw: bool = False) -> None:
        self._store = store
        self._max = max_bytes
        self._md5 = hashlib.md5()
        self._crc = 0
        self._deflate = _zlib.compressobj(LEVEL, _zlib.DEFLATED, -15)
        self._pending = bytearray()
        self._out: list[bytes] = [GZIP_HEADER]
        self._out_len = len(GZIP_HEADER)
        self._spill: BinaryIO | None = None
        self._spill_path: Path | None = None
        self._raw: bytearray | None = bytearray() if keep_raw else None
        self.size = 0
        self.md5: str | None = None

    def write(self, chunk: bytes) -> int:
        """Take the next chunk of the item (file-like, so `getfo`/`retrbinary` can call it)."""
        n = len(chunk)
        self.size += n
        if self.size > self._max:
            raise ItemRejected(f"too large: over max_file_bytes ({self._max} bytes)")
        self._md5.update(chunk)
        self._crc = _zlib.crc32(chunk, self._crc)
        if self._raw is not None:
            if len(self._raw) + n <= KEEP_RAW:
                self._raw += chunk
            else:
                self._raw = None
        self._pending += chunk
        if len(self._pending) >= BLOCK:
            self._compress_blocks()
        return n

    def _compress_blocks(self) -> None:
        view = memoryview(self._pending)
        whole = len(view) - len(view) % BLOCK
        for start in range(0, whole, BLOCK):
            self._emit(self._deflate.compress(view[start : start + BLOCK]))
        view.release()
        del self._pending[:whole]

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        if self._spill is not None:
            self._spill.write(data)
            return
        self._out.append(data)
        self._out_len += len(data)
        if self._out_len > SPILL:
            self._spill_path = self._store.temp_path()
            self._spill = open(self._spill_path, "xb")
            self._spill.writelines(self._out)
            self._out = []

    def finish(self) -> str:
        """Close the stream and return its md5 (hex)."""
        if self._pending:
            self._emit(self._deflate.compress(bytes(self._pending)))
            self._pending.clear()
        self._emit(self._deflate.flush())
        self._emit(struct.pack("<II", self._crc & 0xFFFFFFFF, self.size & 0xFFFFFFFF))
        self.md5 = self._md5.hexdigest()
        return self.md5

    @property
    def raw(self) -> bytes | None:
        """The item's bytes when asked to keep them and they fit in KEEP_RAW, else None."""
        return bytes(self._raw) if self._raw is not None else None

    def discard(self) -> None:
        """Drop the item (a duplicate, or a failed transfer): remove any temp file."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        if self._spill_path is not None:
            self._spill_path.unlink(missing_ok=True)
            self._spill_path = None
        self._out = []

    def place(self) -> Path:
        """Rename the finished gzip into `<root>/<md5[0:2]>/<md5>.gz` (not yet synced)."""
        assert self.md5 is not None, "finish() first"
        final = self._store.path_for(self.md5)
        try:
            if self._spill is None:
                tmp = self._store.temp_path()
                with open(tmp, "xb") as f:
                    f.writelines(self._out)
            else:
                tmp = self._spill_path
                self._spill.close()
                self._spill = None
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
        except OSError as e:
            self.discard()
            raise StoreUnreachable(f"cannot write to store {self._store.root}: {e}") from None
        self._spill_path = None
        self._out = []
        return final


class Store:
    """The content-addressed gzip store under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"

    def open(self) -> Store:
        """Make sure the store is there and writable; raise StoreUnreachable if not."""
        try:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            probe = self.temp_path()
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise StoreUnreachable(f"store {self.root} is not writable: {e.strerror}") from None
        return self

    def path_for(self, md5: str) -> Path:
        """Where the content with this md5 lives; md5 only, so no name can escape the root."""
        if not MD5_RE.match(md5):
            raise ValueError(f"not an md5: {md5!r}")
        return self.root / md5[:2] / f"{md5}.gz"

    @staticmethod
    def relpath(md5: str) -> str:
        """The stored path as recorded in `files.stored_path` (relative to the root)."""
        return f"{md5[:2]}/{md5}.gz"

    def temp_path(self) -> Path:
        """A fresh temp name that says which host and process owns it."""
        name = f"{_HOST}.{os.getpid()}.{next(_counter)}.{time.time_ns()}{TMP_SUFFIX}"
        return self.tmp_dir / name

    def incoming(self, max_bytes: int, keep_raw: bool = False) -> Incoming:
        """Start receiving one item; `keep_raw` also keeps its bytes (up to KEEP_RAW) in memory.

        Filing does not need them (the parser reads the store after the commit), so by
        default nothing is copied.
        """
        return Incoming(self, max_bytes, keep_raw)

    def sync(self, paths: Iterable[Path]) -> None:
        """Make placed files and their folder entries durable before the DB commit.

        One `syncfs` flushes a whole batch with a single journal commit; where it is
        not available every file and folder is fsynced.
        """
        paths = list(paths)
        if not paths:
            return
        try:
            if _syncfs is not None:
                fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    if _syncfs(fd) == 0:
                        return
                finally:
                    os.close(fd)
            for p in paths:
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
            for d in {p.parent for p in paths}:
                _fsync_dir(d)
        except OSError as e:
            raise StoreUnreachable(f"cannot sync store {self.root}: {e.strerror}") from None

    def exists(self, md5: str) -> bool:
        return self.path_for(md5).is_file()

    def read(self, md5: str) -> bytes:
        """The original bytes of a stored file."""
        with open(self.path_for(md5), "rb") as f:
            return gunzip(f.read())

    def iter_temp(self) -> Iterator[Path]:
        """Temp files of any process (all live in tmp/, on the store's filesystem)."""
        if self.tmp_dir.is_dir():
            for entry in os.scandir(self.tmp_dir):
                if entry.name.endswith(TMP_SUFFIX):
                    yield Path(entry.path)

    def clean_temp(self, max_age: float | None = None) -> list[Path]:
        """Remove temp files left by dead processes of this host (or older than max_age)."""
        removed = []
        now = time.time()
        for p in self.iter_temp():
            m = _TMP_NAME.match(p.name)
            mine_and_dead = bool(m) and m["host"] == _HOST and not _pid_alive(int(m["pid"]))
            try:
                too_old = max_age is not None and now - p.stat().st_mtime > max_age
                if mine_and_dead or too_old:
                    p.unlink()
                    removed.append(p)
            except FileNotFoundError:
                continue
        return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gunzip(data: bytes) -> bytes:
    """Decompress a whole gzip member (stored files are one member)."""
    return _zlib.decompress(data, 31)


def md5_of_gzip_file(path: str | os.PathLike) -> str:
    """md5 of a stored file's content, without following a symlink.

    Small files are read and inflated in one call (per-call overhead dominates 100,000s
    of 20 KB files); large ones are streamed so memory stays flat. Raises OSError,
    the compressor's error, EOFError (truncated) or ValueError for a broken file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        data = os.read(fd, _FIRST_READ)
        if len(data) == _FIRST_READ:
            size = os.fstat(fd).st_size
            if size > _READ_WHOLE:
                return _stream_md5(fd, data)
            rest = [data]
            while chunk := os.read(fd, size):
                rest.append(chunk)
            data = b"".join(rest)
        return hashlib.md5(_zlib.decompress(data, 31)).hexdigest()
    finally:
        os.close(fd)


def _stream_md5(fd: int, first: bytes) -> str:
    d = _zlib.decompressobj(31)
    h = hashlib.md5(d.decompress(first))
    while chunk := os.read(fd, 1024 * 1024):
        h.update(d.decompress(chunk))
    h.update(d.flush())
    if not d.eof:
        raise EOFError("truncated gzip stream")
    return h.hexdigest()
