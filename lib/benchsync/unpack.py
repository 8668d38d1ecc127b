"""Unpack the archives a user mails us: bytes in, the files inside them out.

Pure: no I/O beyond in-memory decompression. Archives are recognised by their magic
bytes (gzip with every member, bzip2, xz, zip, tar, and any of them nested, so
.tar.gz/.tgz/.tar.xz are two levels), never by the name a sender chose. Their content
is untrusted, so every limit is checked before memory is spent: one `Budget` per message
caps each decompressed stream or member, the total unpacked, the member count and the
nesting depth, and member paths that are absolute or climb out (`../`) are refused.
Every refusal raises `ItemRejected` with a reason a person can act on.
"""

from __future__ import annotations

import bz2
import io
import lzma
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import ItemRejected
from .sources.base import printable

MiB = 1024 * 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SUFFIXES = {".gz": "", ".tgz": ".tar", ".bz2": "", ".tbz2": ".tar", ".tbz": ".tar", ".xz": ""}
_SUFFIXES |= {".txz": ".tar"}


@dataclass(frozen=True)
class Limits:
    """How much one message may make us unpack (`[imap]` keys of the same names)."""

    max_attachment_bytes: int = 64 * MiB  # each attachment, decompressed stream or member
    max_unpacked_bytes: int = 256 * MiB  # everything unpacked from one message
    max_archive_members: int = 1000  # files in all archives of one message
    max_depth: int = 3  # archives inside archives (a .tar.gz is two levels)


@dataclass
class Found:
    """One file to be filed: its receipt name, its bytes, and where it came from."""

    name: str
    data: bytes
    meta: dict[str, Any] = field(default_factory=dict)


class Budget:
    """Limits shared by every part of one message, so many small archives add up."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.unpacked = 0
        self.members = 0

    def check_size(self, size: int, label: str) -> None:
        """Refuse one stream, member or part over max_attachment_bytes before reading it."""
        if size > self.limits.max_attachment_bytes:
            raise ItemRejected(
                f"{label} is over max_attachment_bytes ({self.limits.max_attachment_bytes} bytes)"
            )

    def take(self, size: int, label: str) -> None:
        """Count `size` unpacked bytes against the message; refuse a bomb at the limit."""
        self.check_size(size, label)
        self.unpacked += size
        if self.unpacked > self.limits.max_unpacked_bytes:
            raise ItemRejected(
                f"decompression bomb: {label} takes the message over"
                f" {self.limits.max_unpacked_bytes} unpacked bytes"
            )

    def member(self, label: str) -> None:
        """Count one archive member against the message; refuse past max_archive_members."""
        self.members += 1
        if self.members > self.limits.max_archive_members:
            raise ItemRejected(
                f"{label} has more than {self.limits.max_archive_members} members"
                " (max_archive_members)"
            )


def unpack(
    name: str,
    data: bytes,
    budget: Budget,
    name_of: Callable[[str], str],
    meta: dict[str, Any] | None = None,
) -> Iterator[Found]:
    """File `data` as is, or the files inside it when it is gzip, bzip2, xz, zip or tar.

    Archives inside archives are unpacked too, up to `budget.limits.max_depth` levels.
    `name_of` turns a member path into its receipt name (the caller's naming rules);
    each file inside an archive gets `meta` plus the outermost `archive` name and, for
    zip and tar, its `member` path. Raise ItemRejected for bombs, hostile member paths,
    encrypted or broken archives and nesting past the limit.
    """
    return _unpack(name, data, meta if meta is not None else {}, budget, name_of, 0)


def _unpack(
    name: str,
    data: bytes,
    meta: dict,
    budget: Budget,
    name_of: Callable[[str], str],
    depth: int,
) -> Iterator[Found]:
    kind = archive_kind(data)
    if kind is None:
        yield Found(name, data, meta)
        return
    if depth >= budget.limits.max_depth:
        raise ItemRejected(f"archive {name!r} nested more than {budget.limits.max_depth} deep")
    if kind in _STREAMS:
        inner = _stream_name(name)
        plain = inflate(kind, data, budget.limits.max_attachment_bytes, name)
        budget.take(len(plain), f"{kind} {name!r}")
        inner_meta = {**meta, "archive": meta.get("archive", name)}
        yield from _unpack(inner, plain, inner_meta, budget, name_of, depth + 1)
        return
    members = _zip_members if kind == "zip" else _tar_members
    for member, body in members(name, data, budget):
        inner_meta = {**meta, "archive": meta.get("archive", name), "member": member}
        yield from _unpack(name_of(member), body, inner_meta, budget, name_of, depth + 1)


def archive_kind(data: bytes) -> str | None:
    """Recognise an archive by its magic bytes, never by the name a sender chose.

    Return "gzip" (RFC 1952), "bzip2", "xz", "zip" (APPNOTE 4.3.7 local header or an
    empty archive's end record), "tar" (POSIX ustar magic at offset 257), or None.
    """
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if data[:3] == b"BZh" and data[4:10] == b"1AY&SY":
        return "bzip2"
    if data[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if data[257:262] == b"ustar":
        return "tar"
    return None


def _stream_name(name: str) -> str:
    lower = name.lower()
    for suffix, replacement in _SUFFIXES.items():
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)] + replacement
    return name


def inflate(kind: str, data: bytes, limit: int, name: str) -> bytes:
    """Decompress every stream of a gzip/bzip2/xz file, refusing more than `limit` bytes.

    Concatenated streams (multi-member gzip, RFC 1952 2.2) are all read, since tools
    append them; output is capped at limit+1 bytes, so a bomb costs no more memory than
    the limit. `kind` is what `archive_kind` returned; `name` is only for the reason.
    """
    out = bytearray()
    rest = data
    while rest:
        dec = _STREAMS[kind]()
        try:
            rest = _one_stream(dec, rest, out, limit)
        except (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError) as e:
            raise ItemRejected(f"broken {kind} data in {name!r}: {e}") from None
        if len(out) > limit:
            raise ItemRejected(
                f"decompression bomb: {name!r} unpacks to more than {limit} bytes"
                " (max_attachment_bytes)"
            )
        if not dec.eof:
            raise ItemRejected(f"broken {kind} data in {name!r}: truncated")
        if not rest.strip(b"\0"):
            break  # trailing zero padding (tape blocks) is not another stream
    return bytes(out)


def _one_stream(dec: Any, data: bytes, out: bytearray, limit: int) -> bytes:
    """Feed one stream to `dec` with output capped at limit+1; return the data after it."""
    if isinstance(dec, _ZlibStream):
        return dec.run(data, out, limit)
    out += dec.decompress(data, limit + 1 - len(out))
    while not dec.eof and len(out) <= limit and not dec.needs_input:
        out += dec.decompress(b"", limit + 1 - len(out))
    return dec.unused_data if dec.eof else b""


class _ZlibStream:
    """gzip member (RFC 1952) with zlib's max_length/unconsumed_tail interface."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)

    @property
    def eof(self) -> bool:
        return self._d.eof

    def run(self, data: bytes, out: bytearray, limit: int) -> bytes:
        out += self._d.decompress(data, limit + 1 - len(out))
        while not self._d.eof and len(out) <= limit:
            tail = self._d.unconsumed_tail
            if not tail:
                out += self._d.flush()
                break
            out += self._d.decompress(tail, limit + 1 - len(out))
        return self._d.unused_data if self._d.eof else b""


_STREAMS: dict[str, Callable[[], Any]] = {
    "gzip": _ZlibStream,
    "bzip2": bz2.BZ2Decompressor,
    "xz": lzma.LZMADecompressor,
}


def member_problem(name: str) -> str | None:
    """Why an archive member's path is hostile (absolute, `..`, drive letter), or None."""
    path = name.replace("\\", "/")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return "absolute path"
    if any(p == ".." for p in path.split("/")):
        return "path outside the archive (..)"
    if _CONTROL.search(path):
        return "control characters"
    return None


def _shown(text: str) -> str:
    """A member path for a reason: bad bytes escaped, control chars as '?' (as in mail)."""
    return _CONTROL.sub("?", printable(text)).strip()


def _zip_members(name: str, data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    """Regular files of a zip (APPNOTE 6.3): every name and size checked before reading."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > budget.limits.max_archive_members:
                raise ItemRejected(
                    f"zip {name!r} has {len(infos)} members, over max_archive_members"
                    f" ({budget.limits.max_archive_members})"
                )
            for info in infos:
                problem = member_problem(info.filename)
                if problem:
                    shown = _shown(info.filename)
                    raise ItemRejected(f"zip {name!r} member {shown!r}: {problem}")
            for info in infos:
                if info.is_dir() or stat.S_ISLNK(info.external_attr >> 16):
                    continue
                if info.flag_bits & 0x1:
                    raise ItemRejected(f"zip {name!r} member {info.filename!r} is encrypted")
                budget.member(f"zip {name!r}")
                label = f"zip {name!r} member {info.filename!r}"
                budget.take(info.file_size, label)
                with zf.open(info) as f:
                    body = f.read(budget.limits.max_attachment_bytes + 1)
                if len(body) != info.file_size:
                    raise ItemRejected(f"{label}: size does not match the zip directory")
                yield info.filename, body
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as e:
        raise ItemRejected(f"broken zip {name!r}: {e}") from None
    except (OSError, zlib.error, lzma.LZMAError, ValueError) as e:
        raise ItemRejected(f"broken zip {name!r}: {e}") from None


def _tar_members(name: str, data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    """Regular files of an uncompressed tar (POSIX ustar/pax); links and devices ignored."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            for info in tf:
                budget.member(f"tar {name!r}")
                problem = member_problem(info.name)
                if problem:
                    shown = _shown(info.name)
                    raise ItemRejected(f"tar {name!r} member {shown!r}: {problem}")
                if not info.isreg():
                    continue
                budget.take(info.size, f"tar {name!r} member {info.name!r}")
                f = tf.extractfile(info)
                if f is None:
                    continue
                yield info.name, f.read(info.size)
    except tarfile.TarError as e:
        raise ItemRejected(f"broken tar {name!r}: {e}") from None
