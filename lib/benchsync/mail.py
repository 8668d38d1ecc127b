"""Find the benchmark logs in one mail: bytes of an RFC 5322 message in, files out.

Pure: no I/O, no network, no database. What a user mails us is untrusted, so every
limit is checked before memory is spent: attachment sizes, archive members (count,
paths, unpacked size) and nesting depth. Anything that cannot be trusted raises
`ItemRejected` with a reason a person can act on; parts that are simply not logs
(images, signatures, HTML twins of text bodies) are noted and ignored.

The parser is the stdlib `email` package with its `compat32` policy: about 3x faster
than `policy.default` on typical mails (see bench/bench_imap.py), and everything it
does not decode (encoded-word names, charsets) is decoded here.
"""

from __future__ import annotations

import bz2
import email
import email.errors
import io
import lzma
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.utils import collapse_rfc2231_value, parseaddr
from typing import Any

from .errors import ItemRejected
from .parse import looks_like_benchmark_log
from .sources.base import printable

MiB = 1024 * 1024
MAX_NAME_BYTES = 255
MAX_HEADER_CHARS = 500
BODY_NAME = "body.txt"

# Parts never filed (RFC 2046 image/audio/video, RFC 3156 / RFC 8551 signatures, cards).
_IGNORED_TYPES = (
    "application/pgp-signature",
    "application/pkcs7-signature",
    "application/x-pkcs7-signature",
    "application/pgp-keys",
    "application/ms-tnef",
    "text/html",
    "text/x-vcard",
    "text/vcard",
    "text/calendar",
    "text/enriched",
    "text/rtf",
)
_IGNORED_MAJOR = ("image", "audio", "video", "font", "model")
_ARCHIVE_TYPES = (
    "application/gzip",
    "application/x-gzip",
    "application/x-gunzip",
    "application/x-bzip2",
    "application/x-bzip",
    "application/x-xz",
    "application/zip",
    "application/x-zip-compressed",
    "application/x-tar",
    "application/x-gtar",
    "application/x-compressed-tar",
    "application/x-bzip-compressed-tar",
    "application/x-xz-compressed-tar",
    "application/x-compressed",
)
_LOG_SUFFIX = re.compile(r"(\.(log|txt|out|text|csv)|summary)$", re.IGNORECASE)
_BROKEN_MIME = (
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
)
_BROKEN_BASE64 = (
    email.errors.InvalidBase64CharactersDefect,
    email.errors.InvalidBase64PaddingDefect,
    email.errors.InvalidBase64LengthDefect,
)
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


@dataclass
class Extracted:
    """What one message holds for us: its sender and headers, its files, and notes."""

    submitter: str | None
    meta: dict[str, str]
    files: list[Found]
    notes: list[str]  # parts ignored and names sanitised, for the debug log


def parse(raw: bytes) -> Message:
    """The message tree (compat32: fast, tolerant, undecoded headers)."""
    return email.message_from_bytes(raw)


def extract(raw: bytes, limits: Limits | None = None) -> Extracted:
    """Every log in the message: attachments (archives unpacked), else a pasted body.

    Raise ItemRejected for malformed MIME, broken base64, oversized parts and
    archive bombs or traversal; the whole message is then left for a person.
    """
    limits = limits or Limits()
    msg = parse(raw)
    notes: list[str] = []
    budget = _Budget(limits)
    files: list[Found] = []
    bodies: list[Message] = []
    for part in _leaves(msg):
        kind = _classify(part)
        if kind == "attachment":
            files += _attachment(part, budget, notes)
        elif kind == "body":
            bodies.append(part)
        else:
            notes.append(f"ignored {kind}")
    if not files:
        files = _pasted_logs(bodies, budget, notes)
    for empty in [f for f in files if not f.data]:
        notes.append(f"ignored empty file {empty.name!r}")
    files = [f for f in files if f.data]
    return Extracted(_sender(msg), header_meta(msg), files, notes)


# -- headers ----------------------------------------------------------------------------
def header_meta(msg: Message) -> dict[str, str]:
    """Message-ID, Subject and Date for the receipt, decoded and printable."""
    meta = {}
    for key, header in (("message_id", "Message-ID"), ("subject", "Subject"), ("date", "Date")):
        value = raw_header(msg, header)
        if value is not None:
            meta[key] = _clip(_printable_text(decode_words(value)), MAX_HEADER_CHARS)
    return meta


def raw_header(msg: Message, name: str) -> str | None:
    """A header's text as sent (RFC 6532 UTF-8 allowed); other 8-bit bytes stay escaped.

    compat32 would wrap a header with 8-bit bytes in an `unknown-8bit` Header object.
    """
    raw = _raw_header_bytes(msg, name)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return printable(raw)


def _raw_header_bytes(msg: Message, name: str) -> bytes | None:
    wanted = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == wanted:
            return value.encode("utf-8", "surrogateescape")
    return None


def _sender(msg: Message) -> str | None:
    """The From address (RFC 5322 3.6.2), without the display name."""
    value = raw_header(msg, "From")
    if value is None:
        return None
    try:
        addr = parseaddr(value)[1]
    except (TypeError, ValueError, IndexError):
        return None
    return _clip(_printable_text(addr), MAX_HEADER_CHARS) or None


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words (compat32 leaves them as `=?utf-8?q?...?=`)."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        return value


def _printable_text(text: str) -> str:
    """Bad bytes escaped (non-UTF-8 headers arrive as surrogates), control chars as '?'."""
    return _CONTROL.sub("?", printable(text)).strip()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_name(raw: str | None) -> str:
    """A receipt name from an attachment name: last path element, printable, ≤255 bytes.

    Names are only names: the store files content by md5, so `../../x` becomes `x`
    and never reaches a file system.
    """
    text = _printable_text(decode_words(raw or ""))
    text = text.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if len(text) >= 2 and text[1] == ":":  # C:name (a drive-relative Windows path)
        text = text[2:]
    if text in ("", ".", ".."):
        return "attachment"
    data = text.encode("utf-8")
    if len(data) <= MAX_NAME_BYTES:
        return text
    stem, dot, ext = text.rpartition(".")
    ext = dot + ext if dot and len(ext) <= 16 else ""
    keep = MAX_NAME_BYTES - len(ext.encode())
    return data[:keep].decode("utf-8", "ignore") + ext


# -- walking the tree ---------------------------------------------------------------------
def _leaves(msg: Message) -> Iterator[Message]:
    """Every non-multipart part, inside forwarded messages too; broken structure rejected."""
    for part in msg.walk():
        for defect in part.defects:
            if isinstance(defect, _BROKEN_MIME):
                raise ItemRejected(f"malformed MIME: {_defect_text(defect)}")
        if part.is_multipart():
            continue  # multipart/* and message/rfc822 (compat32 walks into the latter)
        yield part


def filename(part: Message) -> str | None:
    """The part's file name (RFC 2183 filename, RFC 2046 name, RFC 2231 encoded).

    compat32 turns every 8-bit byte in a header into U+FFFD; re-read the raw header so
    raw UTF-8 names (RFC 6532) survive; other bytes stay U+FFFD (no guessing, and no
    backslash escapes that would read as a Windows path).
    """
    name = part.get_filename(None)
    if name is None or "\ufffd" not in name:
        return name
    for header, param in (("Content-Disposition", "filename"), ("Content-Type", "name")):
        raw = _raw_header_bytes(part, header)
        if raw is None:
            continue
        holder = Message()
        holder[header] = raw.decode("utf-8", "replace")
        value = holder.get_param(param, None, header)
        if value is not None:
            return collapse_rfc2231_value(value)
    return name


def _defect_text(defect: Exception) -> str:
    doc = (type(defect).__doc__ or type(defect).__name__).strip().rstrip(".")
    return doc[:1].lower() + doc[1:]


def _classify(part: Message) -> str:
    """'attachment', 'body', or what the ignored part is (for the debug note)."""
    ctype = part.get_content_type()
    name = filename(part)
    is_attachment = name is not None or part.get_content_disposition() == "attachment"
    major = ctype.split("/", 1)[0]
    if major in _IGNORED_MAJOR or ctype in _IGNORED_TYPES:
        return f"{ctype} part" + (f" {safe_name(name)!r}" if name else "")
    if not is_attachment:
        return "body" if ctype == "text/plain" else f"{ctype} body"
    if major == "text" or ctype == "application/octet-stream" or ctype in _ARCHIVE_TYPES:
        return "attachment"
    if name and (_LOG_SUFFIX.search(name) or _archive_suffix(name)):
        return "attachment"
    return f"{ctype} attachment {safe_name(name)!r}"


def _archive_suffix(name: str) -> bool:
    lower = name.lower()
    return lower.endswith((".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".zip", ".tar"))


def _decoded(part: Message, label: str) -> bytes:
    """The part's bytes (RFC 2045 6: base64 / quoted-printable undone); broken base64 refused."""
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        data = b""
    if any(isinstance(d, _BROKEN_BASE64) for d in part.defects):
        raise ItemRejected(f"broken base64 in {label}")
    if cte != "base64" and part.get_content_maintype() == "text":
        data = data.replace(b"\r\n", b"\n")  # RFC 2049 canonical CRLF back to the file's LF
    return data


def _attachment(part: Message, budget: _Budget, notes: list[str]) -> list[Found]:
    raw_name = filename(part)
    name = safe_name(raw_name)
    meta: dict[str, Any] = {}
    shown = _printable_text(decode_words(raw_name or ""))
    if shown != name:
        meta["attachment_name"] = _clip(shown, 1000)
        notes.append(f"attachment name {_clip(shown, 300)!r} filed as {name!r}")
    data = _decoded(part, f"attachment {name!r}")
    budget.check_size(len(data), f"attachment {name!r}")
    return list(_unpack(name, data, meta, budget, 0))


def _pasted_logs(bodies: list[Message], budget: _Budget, notes: list[str]) -> list[Found]:
    """Text bodies the benchmark parser recognises (users paste logs into the mail)."""
    found = []
    for part in bodies:
        data = _decoded(part, "the text body")
        budget.check_size(len(data), "the text body")
        text = _body_text(part, data)
        if looks_like_benchmark_log(text):
            found.append(Found(BODY_NAME, text.encode("utf-8"), {"pasted": True}))
        else:
            notes.append("ignored text body: not a benchmark log")
    return found


def _body_text(part: Message, data: bytes) -> str:
    charset = part.get_content_charset() or "us-ascii"
    try:
        text = data.decode(charset, "replace")
    except LookupError:
        text = data.decode("latin-1")
    if (part.get_param("format") or "").lower() == "flowed":
        text = unflow(text, (part.get_param("delsp") or "").lower() == "yes")
    return text


def unflow(text: str, delsp: bool = False) -> str:
    """Undo RFC 3676 format=flowed: join soft line breaks, remove space-stuffing."""
    out: list[str] = []
    pending = ""
    for line in text.split("\n"):
        if line.startswith(" "):
            line = line[1:]
        if line.endswith(" ") and line != "-- ":
            pending += line[:-1] if delsp else line
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return "\n".join(out)


# -- archives ---------------------------------------------------------------------------
class _Budget:
    """Limits shared by every part of one message."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.unpacked = 0
        self.members = 0

    def check_size(self, size: int, label: str) -> None:
        if size > self.limits.max_attachment_bytes:
            raise ItemRejected(
                f"{label} is over max_attachment_bytes ({self.limits.max_attachment_bytes} bytes)"
            )

    def take(self, size: int, label: str) -> None:
        self.check_size(size, label)
        self.unpacked += size
        if self.unpacked > self.limits.max_unpacked_bytes:
            raise ItemRejected(
                f"decompression bomb: {label} takes the message over"
                f" {self.limits.max_unpacked_bytes} unpacked bytes"
            )

    def member(self, label: str) -> None:
        self.members += 1
        if self.members > self.limits.max_archive_members:
            raise ItemRejected(
                f"{label} has more than {self.limits.max_archive_members} members"
                " (max_archive_members)"
            )


def _unpack(name: str, data: bytes, meta: dict, budget: _Budget, depth: int) -> Iterator[Found]:
    """File `data` as is, or the files inside it when it is gzip, bzip2, xz, zip or tar."""
    kind = _archive_kind(data)
    if kind is None:
        yield Found(name, data, meta)
        return
    if depth >= budget.limits.max_depth:
        raise ItemRejected(f"archive {name!r} nested more than {budget.limits.max_depth} deep")
    if kind in _STREAMS:
        inner = _stream_name(name)
        plain = _inflate(kind, data, budget.limits.max_attachment_bytes, name)
        budget.take(len(plain), f"{kind} {name!r}")
        inner_meta = {**meta, "archive": meta.get("archive", name)}
        yield from _unpack(inner, plain, inner_meta, budget, depth + 1)
        return
    members = _zip_members if kind == "zip" else _tar_members
    for member, body in members(name, data, budget):
        inner_meta = {**meta, "archive": meta.get("archive", name), "member": member}
        yield from _unpack(safe_name(member), body, inner_meta, budget, depth + 1)


def _archive_kind(data: bytes) -> str | None:
    """Recognise an archive by its magic bytes, never by the name a sender chose."""
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


def _inflate(kind: str, data: bytes, limit: int, name: str) -> bytes:
    """Decompress every stream of a gzip/bzip2/xz file, refusing more than `limit` bytes."""
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


def _zip_members(name: str, data: bytes, budget: _Budget) -> Iterator[tuple[str, bytes]]:
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
                    shown = _printable_text(info.filename)
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


def _tar_members(name: str, data: bytes, budget: _Budget) -> Iterator[tuple[str, bytes]]:
    """Regular files of an uncompressed tar (POSIX ustar/pax); links and devices ignored."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            for info in tf:
                budget.member(f"tar {name!r}")
                problem = member_problem(info.name)
                if problem:
                    shown = _printable_text(info.name)
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
