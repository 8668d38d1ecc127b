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
