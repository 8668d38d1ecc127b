"""Configuration: defaults, relative paths, environment overrides, secrets files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchsync.config import Config, parse_size, read_secret
from benchsync.errors import ConfigError


def test_relative_paths_are_taken_from_the_config_files_folder(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    ini = tmp_path / "etc" / "b.ini"
    ini.write_text("[store]\nroot = ../var/store\n[database]\nurl = sqlite:///../var/x.sqlite\n")
    cfg = Config.load(ini, environ={})
    assert cfg.section("store").get_path("root") == tmp_path / "var" / "store"
    assert cfg.database_url() == f"sqlite:///{tmp_path}/var/x.sqlite"


def test_absolute_sqlite_url_with_four_slashes_is_kept(tmp_path: Path) -> None:
    ini = tmp_path / "b.ini"
    ini.write_text("[database]\nurl = sqlite:////srv/b.sqlite\n")
    assert Config.load(ini, environ={}).database_url() == "sqlite:////srv/b.sqlite"


def test_environment_overrides_any_key(tmp_path: Path) -> None:
    ini = tmp_path / "b.ini"
    ini.write_text("[ftp]\nsource = /a\n")
    cfg = Config.load(ini, environ={"BENCHSYNC_FTP_SOURCE": "/b"})
    assert cfg.get("ftp", "source") == "/b"


def test_config_path_comes_from_benchsync_config_when_not_given(tmp_path: Path) -> None:
    ini = tmp_path / "b.ini"
    ini.write_text("[ftp]\nsource = /q\n")
    assert Config.load(None, environ={"BENCHSYNC_CONFIG": str(ini)}).get("ftp", "source") == "/q"


def test_missing_config_is_a_config_error_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no configuration at .*copy etc/benchsync.ini.example"):
        Config.load(tmp_path / "nope.ini", environ={})


def test_malformed_config_is_a_config_error(tmp_path: Path) -> None:
    ini = tmp_path / "b.ini"
    ini.write_text("this is not ini\n")
    with pytest.raises(ConfigError, match="cannot read configuration"):
        Config.load(ini, environ={})


def test_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    os.chmod(secret, 0o644)
    with pytest.raises(ConfigError, match="chmod 600") as e:
        read_secret(secret)
    assert "hunter2" not in str(e.value)
    os.chmod(secret, 0o600)
    assert read_secret(secret) == "hunter2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("64 MiB", 64 * 1024**2), ("1G", 10**9), ("500000", 500000), ("2 KiB", 2048)],
)
def test_sizes_accept_binary_and_decimal_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_bad_numbers_name_the_key(tmp_path: Path) -> None:
    ini = tmp_path / "b.ini"
    ini.write_text("[ftp]\nsettle_seconds = soon\n")
    with pytest.raises(ConfigError, match=r"\[ftp\] settle_seconds"):
        Config.load(ini, environ={}).section("ftp").get_float("settle_seconds", 60)


REPO = Path(__file__).resolve().parent.parent
READERS = [
    "jobs.py", "status.py", "verify.py", "clean.py", "report.py", "http/server.py",
    "sources/__init__.py", "sources/ftp.py", "sources/sftp.py", "sources/ssh.py",
    "sources/imap.py",
]  # fmt: skip


def test_every_key_the_code_reads_is_documented_in_the_example() -> None:
    import re

    example = (REPO / "etc" / "benchsync.ini.example").read_text()
    documented = set(re.findall(r"^;?\s*([a-z_]+)\s*=", example, re.M))
    getter = r"get|get_int|get_float|get_bool|get_size|get_path|get_secret|require"
    call = re.compile(rf"\.(?:{getter})\(\s*\"([a-z_]+)\"")
    read = set()
    for name in READERS:
        read |= set(call.findall((REPO / "lib" / "benchsync" / name).read_text()))
    not_keys = {"imap", "subject"}  # config.get(SECTION, key) and a dict look-up
    assert read - documented - not_keys == set()


def test_the_example_config_reads_cleanly(tmp_path: Path) -> None:
    cfg = Config.load(REPO / "etc" / "benchsync.ini.example", environ={})
    assert cfg.section("limits").get_size("max_file_bytes", "1") == 64 * 1024**2
    assert cfg.section("imap").get_size("fetch_batch_bytes", "1") == 16 * 1024**2
    assert cfg.section("verify").get_float("sample_share", 0) == 0.01
    assert cfg.database_url().startswith("sqlite:////")
