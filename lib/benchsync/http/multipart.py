"""A streaming `multipart/form-data` reader (RFC 7578 over the RFC 2046 §5.1 syntax).

Parts are yielded one at a time and each body is streamed to a writer in chunks, so an
upload of any size passes through in bounded memory (`cgi` is gone in Python 3.13 and
`email` parses whole messages in memory). Only what a form upload needs is understood:
the `Content-Disposition` name and filename (RFC 7578 §4.2, with RFC 5987 `filename*`)
and the part's `Content-Type`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import unquote

CHUNK = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_PARTS = 1000
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{1,70}$")  # RFC 2046 §5.1.1 bchars
_PARAM = re.compile(
    r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)', re.DOTALL
)


class MultipartError(ValueError):
    """The body is not a well-formed multipart message (answered with 400)."""


@dataclass
class Part:
    """One form field: its name, the file name the client gave, and its content type."""

    name: str | None
    filename: str | None
    content_type: str | None
    write_to: Callable[[Callable[[bytes], object] | None], int]


def parse_options(value: str) -> tuple[str, dict[str, str]]:
    """Split `type; key=value; key="quoted"` into the lower-case first word and its params."""
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for m in _PARAM.finditer(";" + rest):
        key, raw = m.group(1).lower(), m.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[key] = raw
    return head.strip().lower(), params


def boundary_of(content_type: str) -> bytes:
    """The boundary of a `multipart/form-data` content type; MultipartError if unusable."""
    _, params = parse_options(content_type)
    boundary = params.get("boundary", "")
    if not _BOUNDARY.match(boundary) or boundary.endswith(" "):
        raise MultipartError("multipart/form-data without a valid boundary parameter")
    return boundary.encode("ascii")


def _filename(params: dict[str, str]) -> str | None:
    """`filename*=UTF-8''…` (RFC 5987) wins over `filename` (RFC 7578 §4.2)."""
    extended = params.get("filename*")
    if extended and "''" in extended:
        charset, _, encoded = extended.partition("''")
        try:
            return unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            raise MultipartError("filename* is not valid in its charset") from None
    name = params.get("filename")
    if name is None:
        return None
    try:  # header bytes arrive as latin-1; clients send UTF-8 names (RFC 7578 §5.1.3)
        return name.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return name


class MultipartReader:
    """Reads parts from `stream` as the caller consumes them; nothing is held whole."""

    def __init__(self, stream: BinaryIO, boundary: bytes, limit: int | None = None) -> None:
        self._stream = stream
        self._left = limit  # bytes the stream may still give (Content-Length), None: to EOF
        self._delim = b"\r\n--" + boundary
        self._buf = bytearray(b"\r\n")  # so that a body starting with the delimiter matches
        self._eof = False
        self.bytes_read = 0

    def _fill(self) -> bool:
        """Read the next chunk into the buffer; False at the end of the body."""
        if self._eof:
            return False
        want = CHUNK if self._left is None else min(CHUNK, self._left)
        chunk = self._stream.read(want) if want > 0 else b""
        if not chunk:
            self._eof = True
            return False
        self.bytes_read += len(chunk)
        if self._left is not None:
            self._left -= len(chunk)
        self._buf += chunk
        return True

    def _find(self, needle: bytes, max_scan: int | None = None) -> int:
        """Index of `needle` in the buffer, reading more as needed; -1 at the end."""
        start = 0
        while True:
            i = self._buf.find(needle, start)
            if i >= 0:
                return i
            start = max(0, len(self._buf) - len(needle) + 1)
            if max_scan is not None and len(self._buf) > max_scan:
                raise MultipartError("part headers too long")
            if not self._fill():
                return -1

    def parts(self) -> Iterator[Part]:
        """Yield each part; its body must be written (or is skipped) before the next one."""
        if self._find(self._delim) < 0:
            raise MultipartError("no multipart boundary in the body")
        del self._buf[: self._buf.find(self._delim) + len(self._delim)]
        for _ in range(MAX_PARTS + 1):
            if self._after_delimiter_is_close():
                return
            part = self._read_headers()
            done = [False]

            def write_to(sink: Callable[[bytes], object] | None, _done: list = done) -> int:
                n = self._stream_body(sink)
                _done[0] = True
                return n

            part.write_to = write_to
            yield part
            if not done[0]:
                self._stream_body(None)
        raise MultipartError(f"more than {MAX_PARTS} parts")

    def _after_delimiter_is_close(self) -> bool:
        """After a delimiter: `--` closes the message, else padding and CRLF open a part."""
        while len(self._buf) < 2 and self._fill():
            pass
        if self._buf[:2] == b"--":
            return True
        eol = self._find(b"\r\n", MAX_HEADER_BYTES)
        if eol < 0 or self._buf[:eol].strip(b" \t"):
            raise MultipartError("malformed boundary line (or the body was cut off)")
        del self._buf[: eol + 2]
        return False

    def _read_headers(self) -> Part:
        if self._buf[:2] == b"\r\n":  # a part with no header lines at all
            del self._buf[:2]
            return Part(None, None, None, lambda sink: 0)
        end = self._find(b"\r\n\r\n", MAX_HEADER_BYTES)
        if end < 0:
            raise MultipartError("part headers are not terminated (the body was cut off)")
        block = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + 4]
        headers: dict[str, str] = {}
        for line in block.split("\r\n"):
            key, sep, value = line.partition(":")
            if not sep:
                raise MultipartError("malformed part header line")
            headers[key.strip().lower()] = value.strip()
        kind, params = parse_options(headers.get("content-disposition", ""))
        if kind != "form-data":
            raise MultipartError("part without Content-Disposition: form-data")
        name = params.get("name")
        return Part(name, _filename(params), headers.get("content-type"), lambda sink: 0)

    def _stream_body(self, sink: Callable[[bytes], object] | None) -> int:
        """Pass the part's body to `sink` up to the next delimiter; return its length."""
        total = 0
        keep = len(self._delim) - 1
        while True:
            i = self._buf.find(self._delim)
            if i >= 0:
                if sink is not None and i:
                    sink(bytes(self._buf[:i]))
                total += i
                del self._buf[: i + len(self._delim)]
                return total
            safe = len(self._buf) - keep
            if safe > 0:
                if sink is not None:
                    sink(bytes(self._buf[:safe]))
                total += safe
                del self._buf[:safe]
            if not self._fill():
                raise MultipartError("the body ends inside a part (no closing boundary)")
