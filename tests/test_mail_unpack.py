"""benchsync.unpack: the archive API mail.py uses, called directly (pure; no server)."""

from __future__ import annotations

import bz2
import gzip
import lzma

import pytest

from benchsync import mail
from benchsync.errors import ItemRejected
from benchsync.unpack import Budget, Limits, archive_kind, inflate, member_problem, unpack
from test_mail import tar_of, zip_of


def test_archive_kind_goes_by_magic_bytes_not_by_name() -> None:
    assert archive_kind(gzip.compress(b"x")) == "gzip"
    assert archive_kind(bz2.compress(b"x")) == "bzip2"
    assert archive_kind(lzma.compress(b"x")) == "xz"
    assert archive_kind(zip_of({"a": b"x"})) == "zip"
    assert archive_kind(tar_of({"a": b"x"})) == "tar"
    assert archive_kind(b"plain text named run.log.gz") is None


def test_inflate_reads_every_gzip_member_and_refuses_past_the_limit() -> None:
    two = gzip.compress(b"one\n") + gzip.compress(b"two\n")
    assert inflate("gzip", two, 100, "a.gz") == b"one\ntwo\n"
    with pytest.raises(ItemRejected, match="decompression bomb: 'a.gz' unpacks to more than 4"):
        inflate("gzip", two, 4, "a.gz")


@pytest.mark.parametrize(
    ("member", "problem"),
    [("/etc/passwd", "absolute path"), ("C:x", "absolute path"), ("a/../../b", "path outside")],
)
def test_member_problem_names_hostile_paths(member: str, problem: str) -> None:
    assert (member_problem(member) or "").startswith(problem)
    assert member_problem("dir/run.log") is None


def test_unpack_names_members_with_the_callers_rule_and_records_provenance() -> None:
    data = gzip.compress(tar_of({"dir/run.log": b"log"}))
    found = list(unpack("logs.tgz", data, Budget(Limits()), str.upper, {"k": 1}))
    assert [(f.name, f.data) for f in found] == [("DIR/RUN.LOG", b"log")]
    assert found[0].meta == {"k": 1, "archive": "logs.tgz", "member": "dir/run.log"}


def test_names_that_moved_out_of_mail_are_still_importable_from_it() -> None:
    assert mail.Limits is Limits
    assert mail.member_problem is member_problem
    assert mail.Found.__module__ == "benchsync.unpack"
