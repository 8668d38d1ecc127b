"""Read `benchsync.ini`, apply `BENCHSYNC_<SECTION>_<KEY>` overrides, read secrets safely.

Relative paths in the file are relative to the file's own folder, so a config and the
folders it names can move together (the shipped files say `../var/...`).
"""

from __future__ import annotations

import configparser
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

DEFAULTS: dict[str, dict[str, str]] = {
    "database": {"url": "sqlite:///../var/benchsync.sqlite"},
    "store": {"root": "../var/store"},
    "logs": {"dir": "../var/log"},
    "locks": {"dir": "../var/lock"},
    "limits": {"max_file_bytes": "64 MiB"},
}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def default_config_path() -> Path:
    """Where the config is when neither --config nor $BENCHSYNC_CONFIG says."""
    here = Path("etc/benchsync.ini")
    if here.exists():
        return here.resolve()
    return Path(__file__).resolve().parents[2] / "etc" / "benchsync.ini"


def parse_size(text: str) -> int:
    """Turn '64 MiB', '1G', '500000' into bytes (binary units for 'Ki/Mi/Gi')."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 64 MiB)")
    number, unit = float(m.group(1)), (m.group(2) or "").upper()
    base = 1024 if "I" in unit else 1000
    power = "KMGT".find(unit[:1]) + 1 if unit[:1] in "KMGT" and unit else 0
    return int(number * base**power)


def read_secret(path: Path) -> str:
    """Return a secret from a file only the owner can read, so leaked modes are caught."""
    try:
        st = path.stat()
    except OSError as e:
        raise ConfigError(f"cannot read secrets file {path}: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"refusing secrets file {path}: readable by group or others (run: chmod 600 {path})"
        )
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read secrets file {path}: {e}") from None


@dataclass
class Section:
    """One `[section]` of the config, with typed getters that name the key on error."""

    config: Config
    name: str

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.config.get(self.name, key, default)

    def require(self, key: str) -> str:
        value = self.get(key)
        if value in (None, ""):
            raise ConfigError(f"[{self.name}] {key} is not set in {self.config.origin}")
        return value

    def get_int(self, key: str, default: int) -> int:
        value = self.get(key)
        if value in (None, ""):
            return default
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"[{self.name}] {key} = {value!r} is not a whole number") from None

    def get_float(self, key: str, default: float) -> float:
        value = self.get(key)
        if value in (None, ""):
            return default
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"[{self.name}] {key} = {value!r} is not a number") from None

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value in (None, ""):
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(f"[{self.name}] {key} = {value!r} is not true/false")

    def get_size(self, key: str, default: str) -> int:
        value = self.get(key) or default
        try:
            return parse_size(value)
        except ValueError as e:
            raise ConfigError(f"[{self.name}] {key}: {e}") from None

    def get_path(self, key: str, default: str | None = None) -> Path | None:
        value = self.get(key, default)
        if value in (None, ""):
            return None
        return self.config.resolve(value)

    def get_secret(self, key: str) -> str | None:
        """Read the secret named by `key` (a path to a 0600 file); None when unset."""
        path = self.get_path(key)
        return read_secret(path) if path else None


class Config:
    """The parsed INI file plus environment overrides."""

    def __init__(
        self,
        parser: configparser.ConfigParser,
        base: Path,
        origin: str,
        environ: dict[str, str] | None = None,
    ) -> None:
        self._parser = parser
        self.base = base
        self.origin = origin
        self._environ = dict(os.environ if environ is None else environ)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, environ: dict[str, str] | None = None):
        """Load the config named by `path`, else $BENCHSYNC_CONFIG, else etc/benchsync.ini."""
        env = dict(os.environ if environ is None else environ)
        chosen = Path(path or env.get("BENCHSYNC_CONFIG") or default_config_path())
        parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
        try:
            with open(chosen, encoding="utf-8") as f:
                parser.read_file(f)
        except FileNotFoundError:
            raise ConfigError(
                f"no configuration at {chosen}: pass --config, set BENCHSYNC_CONFIG, "
                "or copy etc/benchsync.ini.example to etc/benchsync.ini"
            ) from None
        except (OSError, UnicodeDecodeError, configparser.Error) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(f"cannot read configuration {chosen}: {first}") from None
        return cls(parser, chosen.resolve().parent, str(chosen), env)

    @classmethod
    def from_dict(cls, sections: dict[str, dict[str, str]], base: Path) -> Config:
        """Build a config in code (tests, the demo), paths relative to `base`."""
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_dict(sections)
        return cls(parser, Path(base).resolve(), "<dict>", {})

    def get(self, section: str, key: str, default: str | None = None) -> str | None:
        """The value from the environment override, else the file, else DEFAULTS, else default."""
        env_key = f"BENCHSYNC_{section}_{key}".upper()
        if env_key in self._environ:
            return self._environ[env_key]
        if self._parser.has_option(section, key):
            return self._parser.get(section, key).strip()
        return DEFAULTS.get(section, {}).get(key, default)

    def has_section(self, section: str) -> bool:
        return self._parser.has_section(section) or any(
            k.startswith(f"BENCHSYNC_{section.upper()}_") for k in self._environ
        )

    def section(self, name: str) -> Section:
        return Section(self, name)

    def resolve(self, value: str) -> Path:
        """A path from the config: `~` expanded, relative ones taken from the config's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base / p).resolve()

    def database_url(self) -> str:
        """The database URL with a relative SQLite path made absolute."""
        url = self.section("database").require("url")
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            return "sqlite:///" + str(self.resolve(url[len("sqlite:///") :]))
        return url
