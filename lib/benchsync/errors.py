"""One hierarchy of errors; only `cli` turns them into exit codes.

A message names the thing that went wrong and, where one exists, the fix.
"""

EXIT_OK = 0
EXIT_ITEMS_FAILED = 1
EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3


class BenchsyncError(Exception):
    """Base of every error benchsync raises on purpose."""

    exit_code = EXIT_ITEMS_FAILED


class ConfigError(BenchsyncError):
    """The configuration is missing, malformed or unsafe (exit 2)."""

    exit_code = EXIT_CONFIG


class UnreachableError(BenchsyncError):
    """A source, the database or the store could not be reached (exit 3)."""

    exit_code = EXIT_UNREACHABLE


class SourceUnreachable(UnreachableError):
    """The source (server or folder) could not be reached or dropped the connection."""


class DatabaseUnreachable(UnreachableError):
    """The database could not be reached or refused the connection."""


class StoreUnreachable(UnreachableError):
    """The file store could not be written or read."""


class ItemError(BenchsyncError):
    """One item could not be filed now; the run goes on and the item stays in place.

    `permanent` says whether retrying the same unchanged item can succeed: a hostile
    name or an oversized file is remembered as rejected; a cut transfer is retried.
    """

    def __init__(self, reason: str, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class ItemRejected(ItemError):
    """The item can never be filed as it is (too large, empty, hostile name, not a file)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, permanent=True)
