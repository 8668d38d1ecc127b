"""Files named on the command line (`benchsync ingest PATH...`), for backfills by hand."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .base import Item, Payload, Source
from .local import LocalFolderSource, copy_file, file_item


class PathsSource(Source):
    """Every regular file under the given files and folders; nothing is moved or deleted.

    Items are keyed by absolute path, so ingesting the same folder twice files nothing new.
    """

    channel = "manual"
    url = "manual"

    def __init__(self, paths: list[Path]) -> None:
        self.paths = [Path(p).absolute() for p in paths]

    def list(self) -> Iterator[Item]:
        for path in self.paths:
            if path.is_dir() and not path.is_symlink():
                for item in LocalFolderSource(path, "manual", recursive=True).list():
                    item.key = os.fsdecode(item.handle)
                    yield item
            else:
                raw = os.fsencode(path)
                try:
                    st = os.lstat(raw)
                except OSError as e:
                    yield Item(key=str(path), name=path.name, problem=f"unreadable: {e.strerror}")
                    continue
                item = file_item(raw, os.path.basename(raw), st)
                item.key = str(path)
                yield item

    def fetch(self, item: Item) -> Iterator[Payload]:
        yield Payload(item.name, lambda w: copy_file(item.handle, w))
