"""Find the benchmark logs in one mail: bytes of an RFC 5322 message in, files out.

Pure: no I/O, no network, no database. What a user mails us is untrusted, so every
limit is checked before memory is spent: attachment sizes, archive members (count,
paths, unpacked size) and nesting depth; archives are unpacked by `benchsync.unpack`.
Anything that cannot be trusted raises `ItemRejected` with a reason a person can act
on; parts that are simply not logs (images, signatures, HTML twins of text bodies) are
noted and ignored.

The parser is the stdlib `email` package with its `compat32` policy: about 3x faster
than `policy.default` on typical mails (see bench/bench_imap.py), and everything it
does not decode (encoded-word names, charsets) is decoded here.
"""

from __future__ import annotations

import email
import email.errors
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.utils import collapse_rfc2231_value, parseaddr
from typing import Any

from .errors import ItemRejected
from .parse import looks_like_benchmark_log
from .sources.base import printable
from .unpack import Budget, Found, Limits, unpack
from .unpack import MiB as MiB  # re-exported: these lived here before benchsync.unpack
from .unpack import member_problem as member_problem

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
    budget = Budget(limits)
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


def _attachment(part: Message, budget: Budget, notes: list[str]) -> list[Found]:
    raw_name = filename(part)
    name = safe_name(raw_name)
    meta: dict[str, Any] = {}
    shown = _printable_text(decode_words(raw_name or ""))
    if shown != name:
        meta["attachment_name"] = _clip(shown, 1000)
        notes.append(f"attachment name {_clip(shown, 300)!r} filed as {name!r}")
    data = _decoded(part, f"attachment {name!r}")
    budget.check_size(len(data), f"attachment {name!r}")
    return list(unpack(name, data, budget, safe_name, meta))


def _pasted_logs(bodies: list[Message], budget: Budget, notes: list[str]) -> list[Found]:
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
