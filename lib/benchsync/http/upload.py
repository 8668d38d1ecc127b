"""An upload's body as a pipeline source: streamed, size-limited, hashed for its item key.

The WSGI application (`app`) decides what a request is; this module turns its body, or
one multipart field of it, into payloads the pipeline files, refusing a hostile file
name (400) or more bytes than the limit (413) while the body streams in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from ..errors import ItemRejected
from ..sources.base import Item, Payload, Source, Writer, name_problem, printable

CHUNK = 64 * 1024


class TooLarge(ItemRejected):
    """An upload over the size limit (answered with 413)."""


class BadRequest(Exception):
    """A request the API cannot take as it is (answered with 400)."""


class HttpSource(Source):
    """The request body as a source of one item: the payloads of one upload.

    `fetch` hashes what it streams so it can key the item `<submitter>:<md5>` once the
    content is known (the pipeline reads the key only when it commits).
    """

    channel = "http"
    url = "http"

    def __init__(self, payloads: Iterable[tuple[str | None, Callable[[Writer], None]]]) -> None:
        self._payloads = payloads

    def list(self) -> list[Item]:
        return []

    def fetch(self, item: Item) -> Iterator[Payload]:
        for name, stream in self._payloads:

            def write_to(writer: Writer, stream: Callable[[Writer], None] = stream) -> None:
                tee = _HashingWriter(writer)
                stream(tee)
                item.key = f"{item.submitter or 'anonymous'}:{tee.md5.hexdigest()}"
                item.size = tee.size

            yield Payload(name, write_to)  # type: ignore[arg-type]  # None: no name given


class _HashingWriter:
    """Passes chunks on to the store while hashing them for the item key."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self.md5 = hashlib.md5()
        self.size = 0

    def write(self, chunk: bytes) -> int:
        self.md5.update(chunk)
        self.size += len(chunk)
        return self._writer.write(chunk)


def limited(stream: BinaryIO, length: int | None, limit: int) -> Callable[[Writer], None]:
    """Copy up to `length` bytes of `stream` to a writer, refusing more than `limit`."""

    def copy(writer: Writer) -> None:
        left = length
        size = 0
        while left is None or left > 0:
            chunk = stream.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"too large: over {limit} bytes")
            if left is not None:
                left -= len(chunk)
            writer.write(chunk)

    return copy


def part_copier(write_to: Callable, limit: int) -> Callable[[Writer], None]:
    """Stream one multipart part into a writer, refusing it once it passes `limit` bytes."""

    def copy(writer: Writer) -> None:
        size = 0

        def sink(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"too large: over {limit} bytes")
            writer.write(chunk)

        write_to(sink)

    return copy


def client_name(raw: str | None) -> str | None:
    """A client-given file name as text; BadRequest for a hostile one (`../x`, control chars)."""
    if raw is None or raw == "":
        return None
    try:
        text = raw.encode("latin-1").decode("utf-8")  # header bytes arrive as latin-1 (PEP 3333)
    except UnicodeEncodeError:
        text = raw
    except UnicodeDecodeError:
        raise BadRequest("file name is not valid UTF-8") from None
    problem = name_problem(text)
    if problem:
        raise BadRequest(f"file name {printable(text)!r}: {problem}")
    return text
