"""Build the configured source of a channel; protocol modules load only when used."""

from __future__ import annotations

from ..config import Config
from ..errors import ConfigError
from .base import AfterIngest, Source
from .local import LocalFolderSource


def source_for(config: Config, channel: str) -> Source:
    """The source named by `[<channel>] source`: a local folder or a URL of its protocol."""
    section = config.section(channel)
    if channel == "imap":
        from .imap import ImapSource

        return ImapSource.from_config(section)
    spec = section.require("source")
    settle = section.get_float("settle_seconds", 60.0)
    after = AfterIngest.parse(section.get("after_ingest"))
    recursive = section.get_bool("recursive", False)
    by_path = section.get_bool("submitter_from_path", False)
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if not scheme:
        return LocalFolderSource(config.resolve(spec), channel, settle, after, recursive, by_path)
    if channel == "ftp" and scheme in ("ftp", "ftps"):
        from .ftp import FtpSource

        return FtpSource.from_config(section, spec, settle, after, recursive, by_path)
    if channel == "scp" and scheme == "sftp":
        from .sftp import SftpSource

        return SftpSource.from_config(section, spec, settle, after, recursive, by_path)
    raise ConfigError(f"[{channel}] source = {spec!r}: not a folder or a supported URL")
