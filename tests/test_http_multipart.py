"""The streaming multipart/form-data reader, fed in pieces of every size (RFC 7578)."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchsync.http.multipart import MultipartError, MultipartReader, boundary_of, parse_options


class Trickle(io.RawIOBase):
    """A stream that returns at most `step` bytes a read, as a slow socket would."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = data
        self._pos = 0
        self._step = step

    def read(self, n: int = -1) -> bytes:
        n = self._step if n < 0 else min(n, self._step)
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk


def form(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0UND") -> bytes:
    out = b"preamble to ignore\r\n"
    for name, filename, body in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + body + b"\r\n"
    return out + f"--{boundary}--\r\nepilogue".encode()


def read_all(data: bytes, step: int, boundary: bytes = b"b0UND") -> list[tuple]:
    got = []
    for part in MultipartReader(Trickle(data, step), boundary).parts():
        chunks: list[bytes] = []
        part.write_to(chunks.append)
        got.append((part.name, part.filename, b"".join(chunks)))
    return got


@pytest.mark.parametrize("step", [1, 2, 7, 64, 65536])
def test_parts_come_out_whole_however_the_body_is_cut(step: int) -> None:
    parts = [
        ("file", "a.log", b"line 1\r\n--b0UN not a boundary\r\n"),
        ("note", None, b""),
        ("file", "summary", b"\r\n\r\n"),
    ]
    assert read_all(form(parts), step) == parts


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300), step=st.integers(1, 40))
def test_any_body_bytes_survive_the_round_trip(body: bytes, step: int) -> None:
    assert read_all(form([("file", "x", body)]), step) == [("file", "x", body)]


def test_a_part_left_unread_is_skipped() -> None:
    data = form([("a", None, b"x" * 1000), ("file", "f", b"kept")])
    names = []
    for part in MultipartReader(Trickle(data, 100), b"b0UND").parts():
        names.append(part.name)
        if part.name == "file":
            out: list[bytes] = []
            part.write_to(out.append)
            assert out == [b"kept"]
    assert names == ["a", "file"]


def test_the_reader_stops_at_the_content_length() -> None:
    data = form([("file", "f", b"abc")])
    stream = io.BytesIO(data + b"NEXT REQUEST BYTES")
    reader = MultipartReader(stream, b"b0UND", limit=len(data))
    assert [p.name for p in reader.parts()] == ["file"]
    assert stream.read() == b"NEXT REQUEST BYTES"
    assert reader.bytes_read == len(data)


def test_utf8_and_rfc5987_file_names_are_decoded() -> None:
    data = (
        b'--q\r\nContent-Disposition: form-data; name="file"; filename="r\xc3\xa9sum\xc3\xa9.log"'
        b'\r\n\r\nA\r\n--q\r\nContent-Disposition: form-data; name="file"; filename="x";'
        b" filename*=UTF-8''%E2%82%AC.log\r\n\r\nB\r\n--q--"
    )
    got = [(p.filename) for p in MultipartReader(io.BytesIO(data), b"q").parts()]
    assert got == ["résumé.log", "€.log"]


@pytest.mark.parametrize(
    "data",
    [
        b"no boundary at all",
        b"--b0UND\r\nContent-Disposition: form-data; name=file\r\n\r\ncut off",
        b"--b0UND\r\nContent-Disposition: form-data; name=file",
        b"--b0UND\r\nX-Other: 1\r\n\r\nbody\r\n--b0UND--",
        b"--b0UND\r\n" + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n",
    ],
)
def test_malformed_bodies_raise_multipart_error(data: bytes) -> None:
    with pytest.raises(MultipartError):
        read_all(data, 1000)


def test_the_boundary_parameter_is_read_and_checked() -> None:
    assert boundary_of('multipart/form-data; boundary="a b:c"') == b"a b:c"
    assert boundary_of("multipart/form-data; charset=x; boundary=----WebKit123") == (
        b"----WebKit123"
    )
    assert parse_options('form-data; name="a\\"b"; filename=x.log') == (
        "form-data",
        {"name": 'a"b', "filename": "x.log"},
    )
    for bad in ("multipart/form-data", "multipart/form-data; boundary=" + "x" * 71):
        with pytest.raises(MultipartError):
            boundary_of(bad)
