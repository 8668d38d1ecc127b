"""Bearer tokens (RFC 6750 §2.1): one `name token` pair a line in a 0600 file.

The name is the submitter recorded on every receipt of that token's uploads. Tokens are
kept only as SHA-256 digests, so a lookup compares digests, never the secret itself.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import read_secret
from ..errors import ConfigError

MIN_TOKEN_CHARS = 16
_NAME = re.compile(r"^[A-Za-z0-9._@+-]{1,64}$")
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # RFC 6750 b64token is a subset; any visible ASCII


class Unauthorized(Exception):
    """The request carries no valid token (answered with 401)."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


@dataclass
class Tokens:
    """Who may post: token digests mapped to submitter names, and the anonymous switch."""

    names: dict[bytes, str] = field(default_factory=dict)
    allow_anonymous: bool = False

    @classmethod
    def load(cls, path: Path | None, allow_anonymous: bool) -> Tokens:
        """Read `path` (refused unless 0600); ConfigError names the line that is wrong."""
        tokens = cls(allow_anonymous=allow_anonymous)
        if path is None:
            if not allow_anonymous:
                raise ConfigError(
                    "[http] token_file is not set: list `name token` pairs in a 0600 file,"
                    " or set allow_anonymous = true for a public deployment"
                )
            return tokens
        text = read_secret(path)
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            tokens._add(path, number, line.split())
        if not tokens.names and not allow_anonymous:
            raise ConfigError(f"{path}: no tokens (one `name token` pair a line)")
        return tokens

    def _add(self, path: Path, number: int, words: list[str]) -> None:
        where = f"{path} line {number}"
        if len(words) != 2:
            raise ConfigError(f"{where}: expected `name token`")
        name, token = words
        if not _NAME.match(name):
            raise ConfigError(f"{where}: name may hold only letters, digits and ._@+-")
        if not _TOKEN.match(token) or len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"{where}: token for {name} must be at least {MIN_TOKEN_CHARS} visible"
                " ASCII characters (e.g. from: openssl rand -hex 24)"
            )
        digest = _digest(token)
        if digest in self.names:
            raise ConfigError(f"{where}: token of {name} is already given to {self.names[digest]}")
        self.names[digest] = name

    def submitter(self, authorization: str | None) -> str | None:
        """The token's name, or None for an anonymous request where allowed.

        Raises Unauthorized for a missing token (unless anonymous posts are allowed) and
        for any token that is not listed, also when anonymous posts are allowed.
        """
        if not authorization:
            if self.allow_anonymous:
                return None
            raise Unauthorized("a token is required: send Authorization: Bearer <token>")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or not _TOKEN.match(token):
            raise Unauthorized("malformed Authorization header: use Bearer <token>")
        name = self.names.get(_digest(token))
        if name is None:
            raise Unauthorized("unknown token")
        return name
