"""benchsync.mail: which files one mail holds (pure; no server). Mails are built as clients do."""

from __future__ import annotations

import bz2
import email.policy
import gzip
import io
import lzma
import struct
import tarfile
import zipfile
import zlib
from email.message import EmailMessage

import pytest

from benchsync.errors import ItemRejected
from benchsync.mail import BODY_NAME, Limits, extract, safe_name, unflow
from samples_path import samples_dir

SAMPLES = samples_dir()
RUN_LOG = (SAMPLES / "run-local-rel7.32.6-epyc2cpu-default_run-22401-benchmark.log").read_bytes()
MOSS = (SAMPLES / "ref-vgr-vax780-rel3.26-1991_moss.log").read_bytes()
SUMMARY = (SAMPLES / "run-local-rel7.32.6-epyc2cpu-default_summary").read_bytes()


def wire(msg: EmailMessage) -> bytes:
    """The message as an IMAP server hands it out: CRLF line ends (RFC 5322 2.1)."""
    return msg.as_bytes(policy=email.policy.SMTP)


def mail(body: str = "Here is my benchmark run.", **headers: str) -> EmailMessage:
    m = EmailMessage()
    m["From"] = headers.get("sender", "Ada Lovelace <ada@example.org>")
    m["To"] = "benchmarks@example.org"
    m["Subject"] = headers.get("subject", "benchmark results")
    m["Date"] = "Fri, 04 Dec 2026 19:30:00 +0000"
    m["Message-ID"] = "<run-1@example.org>"
    m.set_content(body)
    return m


def names_and_data(raw: bytes, limits: Limits | None = None) -> list[tuple[str, bytes]]:
    return [(f.name, f.data) for f in extract(raw, limits).files]


def gzip_bomb(gib: int = 1) -> bytes:
    """A valid gzip of `gib` GiB of zeros in about 1 MB (each 1 MiB block full-flushed)."""
    zeros = b"\0" * (1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(1024 * gib):
        crc = zlib.crc32(zeros, crc)
    end = c.flush()[:-8] + struct.pack("<II", crc, (gib << 30) & 0xFFFFFFFF)
    return first + block * (1024 * gib - 1) + end


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_of(members: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# -- what is filed ---------------------------------------------------------------------------
def test_attachments_at_any_depth_are_filed_with_their_bytes_and_names() -> None:
    m = mail()
    m.add_alternative("<p>Here is my benchmark run.</p>", subtype="html")
    m.add_attachment(RUN_LOG, maintype="application", subtype="octet-stream", filename="run.log")
    m.add_attachment(MOSS.decode(), subtype="plain", filename="moss.log", cte="quoted-printable")
    m.add_attachment(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, maintype="image", subtype="png",
                     filename="screenshot.png")  # fmt: skip
    m.add_attachment(b"-----BEGIN PGP SIGNATURE-----", maintype="application",
                     subtype="pgp-signature", filename="signature.asc")  # fmt: skip
    found = extract(wire(m))
    assert [(f.name, f.data) for f in found.files] == [("run.log", RUN_LOG), ("moss.log", MOSS)]
    assert found.submitter == "ada@example.org"
    assert found.meta == {
        "message_id": "<run-1@example.org>",
        "subject": "benchmark results",
        "date": "Fri, 04 Dec 2026 19:30:00 +0000",
    }
    assert any("image/png" in n for n in found.notes)
    assert any("pgp-signature" in n for n in found.notes)


def test_a_forwarded_message_is_opened_and_the_log_inside_filed() -> None:
    inner = mail(subject="my run")
    inner.add_attachment(RUN_LOG, maintype="text", subtype="plain", filename="run.log")
    outer = mail("FYI, see the forwarded message.", subject="Fwd: my run")
    outer.add_attachment(inner)  # message/rfc822, as "forward as attachment" does
    assert names_and_data(wire(outer)) == [("run.log", RUN_LOG)]


def test_a_pasted_log_is_filed_only_when_there_is_no_attachment() -> None:
    text = RUN_LOG.decode()
    pasted = mail(f"Hi,\n\nmy results:\n\n{text}\n-- \nAda\n")
    files = extract(wire(pasted)).files
    assert [f.name for f in files] == [BODY_NAME]
    assert text in files[0].data.decode()
    with_attachment = mail(f"Pasted and attached:\n{text}")
    with_attachment.add_attachment(MOSS, maintype="text", subtype="plain", filename="moss.log")
    assert names_and_data(wire(with_attachment)) == [("moss.log", MOSS)]


def test_a_pasted_log_in_windows_1252_quoted_printable_is_decoded() -> None:
    text = "Grüße aus Köln – résultats:\n" + SUMMARY.decode()
    m = mail()
    m.set_content(text, charset="windows-1252", cte="quoted-printable")
    assert m.as_bytes().count(b"=E9") == 1, "really cp1252 + QP on the wire"
    (found,) = extract(wire(m)).files
    assert found.data.decode("utf-8") == text


def test_format_flowed_bodies_are_unflowed_before_recognising_a_log() -> None:
    assert unflow("a long \nline\n  indented\n", delsp=False) == "a long line\n indented\n"
    assert unflow("abc\ndef", delsp=True) == "abc\ndef"
    assert unflow("split wo \nrd", delsp=True) == "split word"


def test_a_chatty_mail_has_nothing_to_file() -> None:
    m = mail("Thanks for the benchmark suite! No logs yet.")
    m.add_alternative("<p>Thanks!</p>", subtype="html")
    found = extract(wire(m))
    assert found.files == []
    assert "ignored text body: not a benchmark log" in found.notes


def test_text_attachments_get_their_own_line_ends_back_but_base64_bytes_are_exact() -> None:
    crlf = b"line one\r\nline two\r\n"
    m = mail()
    m.add_attachment(crlf.decode(), subtype="plain", filename="a.txt", cte="7bit")
    m.add_attachment(crlf, maintype="text", subtype="plain", filename="b.txt")  # base64
    assert names_and_data(wire(m)) == [("a.txt", b"line one\nline two\n"), ("b.txt", crlf)]


def test_empty_attachments_are_skipped_not_filed() -> None:
    m = mail()
    m.add_attachment(b"", maintype="application", subtype="octet-stream", filename="empty.log")
    m.add_attachment(MOSS, maintype="application", subtype="octet-stream", filename="moss.log")
    assert names_and_data(wire(m)) == [("moss.log", MOSS)]


# -- archives ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "pack", "expected_name"),
    [
        ("run.log.gz", gzip.compress, "run.log"),
        ("run.log.bz2", bz2.compress, "run.log"),
        ("run.log.xz", lzma.compress, "run.log"),
        ("logs.zip", lambda d: zip_of({"dir/run.log": d}), "run.log"),
        ("logs.tar", lambda d: tar_of({"run.log": d}), "run.log"),
        ("logs.tar.gz", lambda d: gzip.compress(tar_of({"./run.log": d})), "run.log"),
        ("logs.tgz", lambda d: tar_of({"run.log": d}, "w:gz"), "run.log"),
        ("logs.tar.xz", lambda d: tar_of({"run.log": d}, "w:xz"), "run.log"),
    ],
)
def test_compressed_attachments_are_unpacked(name: str, pack, expected_name: str) -> None:
    m = mail()
    m.add_attachment(pack(RUN_LOG), maintype="application", subtype="octet-stream", filename=name)
    (found,) = extract(wire(m)).files
    assert (found.name, found.data) == (expected_name, RUN_LOG)
    assert found.meta["archive"] == name


def test_every_member_of_a_zip_is_filed_and_folders_are_skipped() -> None:
    data = zip_of(
        {"a/moss.log": MOSS, "a/": b"", "summary": SUMMARY, "run.log.gz": gzip.compress(RUN_LOG)}
    )
    m = mail()
    m.add_attachment(data, maintype="application", subtype="zip", filename="results.zip")
    files = extract(wire(m)).files
    assert [(f.name, f.data) for f in files] == [
        ("moss.log", MOSS),
        ("summary", SUMMARY),
        ("run.log", RUN_LOG),
    ]
    assert files[0].meta == {"archive": "results.zip", "member": "a/moss.log"}


def test_multi_member_gzip_is_read_to_the_end() -> None:
    m = mail()
    two = gzip.compress(MOSS) + gzip.compress(SUMMARY)
    m.add_attachment(two, maintype="application", subtype="gzip", filename="both.gz")
    assert names_and_data(wire(m)) == [("both", MOSS + SUMMARY)]


# -- refused -------------------------------------------------------------------------------------
def rejected(raw: bytes, limits: Limits | None = None) -> str:
    with pytest.raises(ItemRejected) as err:
        extract(raw, limits)
    return err.value.reason


def with_attachment(data: bytes, name: str, subtype: str = "octet-stream") -> bytes:
    m = mail()
    m.add_attachment(data, maintype="application", subtype=subtype, filename=name)
    return wire(m)


def test_a_1_gib_gzip_bomb_is_refused_without_unpacking_it() -> None:
    bomb = gzip_bomb()
    assert len(bomb) < 1_100_000
    reason = rejected(with_attachment(bomb, "results.log.gz"))
    assert reason.startswith("decompression bomb: 'results.log.gz' unpacks to more than")


def test_bombs_in_every_format_are_refused_at_the_limit() -> None:
    limits = Limits(max_attachment_bytes=1 << 20)
    big = b"\0" * (2 << 20)
    for name, data in [
        ("a.bz2", bz2.compress(big)),
        ("a.xz", lzma.compress(big)),
        ("a.zip", zip_of({"a.log": big})),
        ("a.tar.gz", gzip.compress(tar_of({"a.log": big}))),
    ]:
        assert "max_attachment_bytes" in rejected(with_attachment(data, name), limits), name


def test_the_unpacked_total_of_one_message_is_limited() -> None:
    limits = Limits(max_attachment_bytes=1 << 20, max_unpacked_bytes=3 << 20)
    data = zip_of({f"{i}.log": bytes([i]) * (900 << 10) for i in range(5)})
    assert "unpacked bytes" in rejected(with_attachment(data, "many.zip"), limits)


@pytest.mark.parametrize("member", ["../../etc/cron.d/x", "/etc/passwd", "C:/x.log", "a/../../b"])
def test_zip_and_tar_members_that_climb_out_are_refused(member: str) -> None:
    assert "zip 'evil.zip' member" in rejected(with_attachment(zip_of({member: MOSS}), "evil.zip"))
    tar = tar_of({member: MOSS})
    assert "tar 'evil.tar' member" in rejected(with_attachment(tar, "evil.tar"))


def test_a_zip_of_10000_members_is_refused() -> None:
    data = zip_of({f"f{i}.log": b"x" for i in range(10_000)})
    reason = rejected(with_attachment(data, "many.zip"))
    assert reason == "zip 'many.zip' has 10000 members, over max_archive_members (1000)"


def test_archives_nested_too_deep_are_refused() -> None:
    data = MOSS
    for _ in range(4):
        data = gzip.compress(data)
    assert "nested more than 3 deep" in rejected(with_attachment(data, "deep.gz"))


def test_a_truncated_or_corrupt_archive_is_refused() -> None:
    assert "broken gzip" in rejected(with_attachment(gzip.compress(RUN_LOG)[:-100], "a.gz"))
    assert "broken zip" in rejected(with_attachment(zip_of({"a": RUN_LOG})[:-30], "a.zip"))


def test_an_attachment_over_max_attachment_bytes_is_refused() -> None:
    reason = rejected(with_attachment(RUN_LOG, "run.log"), Limits(max_attachment_bytes=1000))
    assert reason == "attachment 'run.log' is over max_attachment_bytes (1000 bytes)"


def test_broken_base64_is_refused() -> None:
    raw = wire_multipart(
        b"Content-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="run.log"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        b"QlJMLUNBRCBiZW5jaG1hcmsK!!!!*&^%$\r\nQlJM\r\nQ\r\n"
    )
    assert rejected(raw) == "broken base64 in attachment 'run.log'"


def wire_multipart(part: bytes, boundary: bytes = b"XYZ") -> bytes:
    return (
        b"From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n"
        b"--XYZ\r\n" + part + b"\r\n--XYZ--\r\n"
    )


def test_a_multipart_without_boundary_is_malformed() -> None:
    raw = (
        b"From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed\r\n\r\n--XYZ\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
    )
    assert rejected(raw).startswith("malformed MIME:")
    never_seen = wire_multipart(b"Content-Type: text/plain\r\n\r\nhi", boundary=b"OTHER")
    assert rejected(never_seen).startswith("malformed MIME:")


# -- names and headers ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("../../x", "x"),
        ("/etc/passwd", "passwd"),
        ("C:\\x", "x"),
        ("C:x.log", "x.log"),
        ("", "attachment"),
        ("..", "attachment"),
        ("a\nb\tc.log", "a?b?c.log"),
        ("=?utf-8?b?Li4vLi4vw6l2aWwubG9n?=", "évil.log"),
        ("ordinary run-22401.log", "ordinary run-22401.log"),
    ],
)
def test_hostile_names_become_plain_receipt_names(raw: str, name: str) -> None:
    assert safe_name(raw) == name


def test_long_names_are_cut_to_255_bytes_keeping_the_extension() -> None:
    name = safe_name("é" * 300 + ".log")
    assert len(name.encode()) <= 255 and name.endswith(".log")


def test_hostile_attachment_names_are_filed_under_a_safe_name_with_the_original_kept() -> None:
    m = mail()
    m.add_attachment(MOSS, maintype="text", subtype="plain", filename="../../x")
    (found,) = extract(wire(m)).files
    assert (found.name, found.data) == ("x", MOSS)
    assert found.meta == {"attachment_name": "../../x"}


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (b'filename="caf\xc3\xa9.log"', "café.log"),  # raw UTF-8 (RFC 6532)
        (b'filename="caf\xe9.log"', "caf\ufffd.log"),  # some 8-bit charset: not guessed
        (b"filename*=iso-8859-1''caf%E9.log", "café.log"),  # RFC 2231
        (b'filename="=?iso-8859-1?q?caf=E9.log?="', "café.log"),  # RFC 2047, as Outlook does
    ],
)
def test_attachment_names_in_every_encoding_are_read(header: bytes, name: str) -> None:
    raw = wire_multipart(
        b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; "
        + header
        + b"\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8K"
    )
    assert names_and_data(raw) == [(name, b"hello\n")]


def test_non_utf8_headers_are_escaped_not_guessed_and_rfc2047_is_decoded() -> None:
    raw = (
        b"From: \xc9mile <emile@example.org>\r\n"
        b"Subject: r\xe9sultats =?utf-8?q?d=C3=A9j=C3=A0?=\r\n"
        b"Message-ID: <x@y>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + RUN_LOG.replace(b"\n", b"\r\n")
    )
    found = extract(raw)
    assert found.submitter == "emile@example.org"
    assert found.meta["subject"] == "r\\xe9sultats déjà"
    assert [f.name for f in found.files] == [BODY_NAME]


def test_a_message_that_is_not_mail_at_all_has_nothing_to_file() -> None:
    assert extract(bytes(range(256)) * 10).files == []


def test_extracting_a_mail_is_faster_than_parsing_it_with_policy_default() -> None:
    """policy.default costs ~3x; the module must keep using compat32 (perf-notes 3)."""
    import time

    m = mail()
    m.add_attachment(RUN_LOG, maintype="text", subtype="plain", filename="run.log")
    raw = wire(m)
    t = time.perf_counter()
    for _ in range(50):
        extract(raw)
    ours = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(50):
        email.message_from_bytes(raw, policy=email.policy.default).get_body()
    default = time.perf_counter() - t
    assert ours < default, (ours, default)
