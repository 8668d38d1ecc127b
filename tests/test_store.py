"""The gzip store: deterministic, streamed, atomic, and never outside its root."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import pytest

from benchsync.errors import ItemRejected
from benchsync.store import Store, md5_of_gzip_file
from conftest import md5


def _file(store: Store, data: bytes, chunk: int) -> Path:
    inc = store.incoming(1 << 40)
    for i in range(0, len(data), chunk):
        inc.write(data[i : i + chunk])
    assert inc.finish() == md5(data)
    path = inc.place()
    store.sync([path])
    return path


@pytest.mark.parametrize("size", [1, 1000, 300_000, 5_000_000])
def test_same_content_gives_the_same_stored_bytes_whatever_the_chunking(
    tmp_path: Path, size: int
) -> None:
    data = os.urandom(size // 2) + b"rays/sec " * (size // 18)
    a = _file(Store(tmp_path / "a").open(), data, 65536).read_bytes()
    b = _file(Store(tmp_path / "b").open(), data, 1000).read_bytes()
    assert a == b
    assert gzip.decompress(a) == data


def test_stored_file_is_named_by_md5_and_readable_by_gzip(tmp_path: Path) -> None:
    store = Store(tmp_path).open()
    data = b"Abs vm 1 2 3\n"
    path = _file(store, data, 3)
    assert path == tmp_path / md5(data)[:2] / f"{md5(data)}.gz"
    out = subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True).stdout
    assert out == data
    assert md5_of_gzip_file(path) == md5(data)


def test_incoming_over_the_limit_is_refused_while_streaming(tmp_path: Path) -> None:
    inc = Store(tmp_path).open().incoming(10)
    inc.write(b"12345")
    with pytest.raises(ItemRejected, match="too large"):
        inc.write(b"678901")


def test_large_content_spills_to_a_temp_file_and_discard_removes_it(tmp_path: Path) -> None:
    store = Store(tmp_path).open()
    inc = store.incoming(1 << 40)
    for _ in range(64):
        inc.write(os.urandom(128 * 1024))
    assert list(store.iter_temp()), "compressed output over the threshold goes to tmp/"
    inc.discard()
    assert list(store.iter_temp()) == []


def test_path_for_refuses_anything_but_an_md5(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for bad in ("../../etc/passwd", "/etc/passwd", "0" * 31, "Z" * 32):
        with pytest.raises(ValueError):
            store.path_for(bad)


def test_clean_temp_removes_files_of_dead_processes_only(tmp_path: Path) -> None:
    store = Store(tmp_path).open()
    mine = store.temp_path()
    mine.write_bytes(b"in use")
    host = mine.name.split(".")[0]
    dead = store.tmp_dir / f"{host}.999999999.0.1.tmp"
    dead.write_bytes(b"left by a killed run")
    store.clean_temp()
    assert mine.exists() and not dead.exists()


def test_incoming_keeps_the_bytes_in_memory_only_when_asked(tmp_path: Path) -> None:
    store = Store(tmp_path).open()
    plain, kept = store.incoming(1 << 20), store.incoming(1 << 20, keep_raw=True)
    for inc in (plain, kept):
        inc.write(b"Abs vm 1 2 3\n")
        inc.finish()
    assert plain.raw is None
    assert kept.raw == b"Abs vm 1 2 3\n"


def test_a_truncated_stored_file_does_not_hash_as_its_content(tmp_path: Path) -> None:
    data = os.urandom(9 * 1024 * 1024)  # above the one-call size: the streamed path
    path = _file(Store(tmp_path).open(), data, 1 << 20)
    assert md5_of_gzip_file(path) == md5(data)
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(EOFError):
        md5_of_gzip_file(path)
