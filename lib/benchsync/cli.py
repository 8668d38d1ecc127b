"""`benchsync` and its subcommands: each loads the config and calls one library function.

This is the one place where errors become exit codes: 0 done, 1 some items failed,
2 usage or configuration error, 3 a source, the database or the store unreachable.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from . import __version__
from .config import Config
from .errors import EXIT_CONFIG, BenchsyncError
from .pipeline import Counts


class Options:
    """The options every command shares."""

    def __init__(self, config: str | None, dry_run: bool, verbose: int, quiet: bool) -> None:
        self.config_path = config
        self.dry_run = dry_run
        self.verbose = verbose
        self.quiet = quiet

    def load(self) -> Config:
        return Config.load(self.config_path)

    def run_job(self, job: str, body: Callable, config: Config | None = None) -> int:
        """Run `body` as one run of `job` with these options (see jobs.run_job)."""
        from .jobs import run_job

        return run_job(
            job,
            config or self.load(),
            body,
            verbose=self.verbose,
            quiet=self.quiet,
            dry_run=self.dry_run,
        )


def common_options(fn: Callable) -> Callable:
    """--config, --dry-run, -v, -q on every command, declared once."""

    @click.option(
        "--config",
        "config",
        type=click.Path(dir_okay=False),
        envvar="BENCHSYNC_CONFIG",
        help="INI file (default: $BENCHSYNC_CONFIG, else etc/benchsync.ini).",
    )
    @click.option("--dry-run", is_flag=True, help="Say what would happen; change nothing.")
    @click.option("-v", "--verbose", count=True, help="Print events (-vv: debug).")
    @click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
    @functools.wraps(fn)
    def wrapper(config, dry_run, verbose, quiet, **kwargs):
        return fn(Options(config, dry_run, verbose, quiet), **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, message="benchsync %(version)s")
def cli() -> None:
    """Collect BRL-CAD benchmark logs exactly once into a database and a gzip store.

    Example: benchsync --help; benchsync ftp-sync --config etc/benchsync.ini -v
    """


def _sync(channel: str, job: str, opts: Options) -> int:
    from .sources import source_for

    config = opts.load()
    source = source_for(config, channel)

    def body(ctx) -> Counts:
        with source:
            if not ctx.db.try_source_lock(source.url):
                import logging

                logging.getLogger("benchsync").info(
                    "skipped: source %s is being polled by another collector", source.url
                )
                return Counts()
            return ctx.pipeline().run(source, counts=ctx.counts)

    return opts.run_job(job, body, config)


@cli.command("ftp-sync")
@common_options
def ftp_sync(opts: Options) -> int:
    """Pull new logs from the [ftp] source (a local queue folder or ftp:// / ftps:// URL).

    Example: benchsync ftp-sync --config etc/benchsync.ini
    """
    return _sync("ftp", "ftp_sync", opts)


@cli.command("scp-sync")
@common_options
def scp_sync(opts: Options) -> int:
    """Pull new logs from the [scp] source (a local folder or sftp://user@host/path).

    Example: benchsync scp-sync -v
    """
    return _sync("scp", "scp_sync", opts)


@cli.command("initdb")
@common_options
def initdb(opts: Options) -> int:
    """Create or migrate the database schema.

    Example: benchsync initdb --config etc/benchsync.ini
    """
    from .jobs import open_database

    db = open_database(opts.load(), migrate=False)
    try:
        applied = db.migrate()
    finally:
        db.close()
    if not opts.quiet:
        click.echo(f"schema up to date (applied: {', '.join(map(str, applied)) or 'none'})")
    return 0


@cli.command("ingest")
@common_options
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def ingest(opts: Options, paths: tuple[Path, ...]) -> int:
    """File local files or folders by hand (backfill), with the same pipeline and dedup.

    Example: benchsync ingest /srv/old-logs/ run-5018-benchmark.log
    """
    from .sources.paths import PathsSource

    config = opts.load()
    source = PathsSource(list(paths))
    show_bar = sys.stderr.isatty() and not opts.quiet

    def body(ctx) -> Counts:
        pipeline = ctx.pipeline()
        if not show_bar:
            return pipeline.run(source, counts=ctx.counts)
        items = list(source.list())
        with click.progressbar(length=len(items), label="filing", file=sys.stderr) as bar:
            return pipeline.run(source, items=items, progress=bar.update, counts=ctx.counts)

    code = opts.run_job("ingest", body, config)
    return code


@cli.command("status")
@common_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(opts: Options, as_json: bool) -> int:
    """Show the last run of each job, files by channel and open discrepancies.

    Example: benchsync status --json
    """
    from .status import collect, render

    report = collect(opts.load())
    click.echo(json.dumps(report, indent=2) if as_json else render(report))
    return 1 if report.get("unhealthy") else 0


@cli.command("imap-sync")
@common_options
def imap_sync(opts: Options) -> int:
    """File the logs mailed to the [imap] mailbox (attachments, archives, pasted logs).

    Example: benchsync imap-sync -v
    """
    return _sync("imap", "imap_sync", opts)


@cli.command("verify")
@common_options
@click.option("--deep", is_flag=True, help="Re-read and re-hash every stored file.")
def verify(opts: Options, deep: bool) -> int:
    """Compare sources, database and store; record discrepancies (exit 1 while any is open).

    Example: benchsync verify --deep
    """
    from .verify import verify_job

    return opts.run_job("verifier", lambda ctx: verify_job(ctx, deep=deep))


@cli.command("clean")
@common_options
def clean(opts: Options) -> int:
    """Repair what verify found, remove stale temp files, and email ops a report.

    Example: benchsync clean --dry-run -v
    """
    from .clean import clean_job

    return opts.run_job("cleaner", clean_job)


@cli.command("serve")
@common_options
@click.option("--listen", help="HOST:PORT to listen on (default: [http] listen).")
def serve(opts: Options, listen: str | None) -> int:
    """Run the HTTP POST API (POST /api/v1/logs) until stopped.

    Example: benchsync serve --listen 127.0.0.1:8080
    """
    from .http.server import serve as run_server

    return run_server(opts.load(), listen, verbose=opts.verbose, quiet=opts.quiet)


@cli.command("reparse")
@common_options
@click.option("--all", "all_files", is_flag=True, help="Every stored file.")
@click.option("--status", "with_status", help="Files with this parse_status (e.g. failed).")
@click.argument("md5s", nargs=-1)
def reparse(opts: Options, all_files: bool, with_status: str | None, md5s: tuple[str, ...]) -> int:
    """Re-read stored files through the current parser, replacing their parsed rows.

    Example: benchsync reparse --status failed
    """
    from .reparse import reparse_job

    if not (all_files or with_status or md5s):
        raise click.UsageError("name files: --all, --status STATUS or MD5...")
    return opts.run_job("reparse", lambda ctx: reparse_job(ctx, all_files, with_status, list(md5s)))


@cli.command("show")
@common_options
@click.argument("md5")
def show(opts: Options, md5: str) -> int:
    """Print what was parsed from one stored file.

    Example: benchsync show 0123456789abcdef0123456789abcdef
    """
    from .reparse import show_file

    click.echo(show_file(opts.load(), md5))
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command and exit with its code; no traceback for known errors."""
    # A job is a short-lived process that allocates ~3 objects per listed file: collecting
    # cycles every 700 allocations costs a no-op poll of 100,000 files ~10%, for nothing.
    gc.set_threshold(200_000, 20, 20)
    try:
        code = cli.main(args=argv, prog_name="benchsync", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        code = 1
    except click.ClickException as e:
        e.show()
        code = EXIT_CONFIG
    except BenchsyncError as e:
        click.echo(f"benchsync: error: {e}", err=True)
        code = e.exit_code
    except Exception as e:  # a bug: one line for the user, the traceback on request
        if os.environ.get("BENCHSYNC_DEBUG"):
            raise
        click.echo(
            f"benchsync: internal error: {type(e).__name__}: {e}"
            " (run again with BENCHSYNC_DEBUG=1 for the traceback)",
            err=True,
        )
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
