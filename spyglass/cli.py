"""`spyglass`: index folders, search them, and report on the index."""

from __future__ import annotations

import errno
import json
import logging
import sys
import time
from pathlib import Path

import click

from spyglass.search.catalog.outage import database_failure
from spyglass.search.display import printable
from spyglass.search.errors import SpyglassError
from spyglass.search.settings import PRECISIONS, Settings


class _SpyglassAndErrors(logging.Filter):
    """Spyglass's own records, and errors from anyone: open_clip and huggingface_hub chatter freely."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("spyglass") or record.levelno >= logging.ERROR


def configure_logging(verbose: bool) -> None:
    """Log to stderr: Spyglass's messages and every error; with -v, the libraries' too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if not verbose:
        handler.addFilter(_SpyglassAndErrors())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("spyglass").setLevel(logging.DEBUG if verbose else logging.INFO)


class SpyglassGroup(click.Group):
    """A click group that shows domain errors as one line with the fix, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SpyglassError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; everything published before this is kept") from None
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = f" writing {printable(exc.filename)}" if exc.filename else ""
            raise click.ClickException(f"the disk is full{where}; everything published before this is kept "
                                       "(free some space and run again)") from None
        except Exception as exc:
            settings = ctx.obj if isinstance(ctx.obj, Settings) else None
            message = database_failure(exc, settings.db_url if settings else None)
            if message is None:
                raise
            raise click.ClickException(message) from None


@click.group(cls=SpyglassGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False), help="Data folder [SPYGLASS_HOME].")
@click.option("--database-url", help="Catalog database URL [SPYGLASS_DATABASE_URL].")
@click.option("--model", help="open_clip architecture, or a model-config JSON [SPYGLASS_MODEL].")
@click.option("--pretrained", help="Pretrained tag, or local checkpoint file/folder [SPYGLASS_PRETRAINED].")
@click.option("--device", help="auto, cpu, cuda, cuda:N [SPYGLASS_DEVICE].")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="Encoder number format; a reduced one must pass a fidelity check [SPYGLASS_PRECISION].")
@click.option("-v", "--verbose", is_flag=True, help="Show the libraries' log messages.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, **overrides) -> None:
    """Spyglass: search your images by text or by example.

    \b
    Index a folder, then search it:
      spyglass index ~/Pictures
      spyglass search "a red bicycle leaning on a wall"
      spyglass search --image ./query.jpg -k 20 --json
      spyglass status

    Every option here can also be set as a SPYGLASS_* environment variable (shown in
    brackets); an option given on the command line wins. Offline, point --pretrained at a
    local open_clip checkpoint: SPYGLASS_PRETRAINED=/path/to/open_clip_model.safetensors.
    """
    configure_logging(verbose)
    try:
        ctx.obj = Settings.from_env(**overrides)
    except SpyglassError as exc:
        raise click.ClickException(str(exc)) from None


def _run_options(function):
    """--runner, --address and --no-progress, which `index` and `reindex` share."""
    for option in reversed([
        click.option("--runner", type=click.Choice(["local", "ray"]),
                     help="Embed in this process (local) or on a Ray cluster (ray; pip install 'spyglass[ray]') "
                          "[SPYGLASS_RUNNER; default local]."),
        click.option("--address", help="With --runner ray: the cluster (auto, or ray://host:10001); none starts "
                                        "a Ray on this machine, on loopback only, for the run [SPYGLASS_RAY_ADDRESS]."),
        _NO_PROGRESS,
    ]):
        function = option(function)
    return function


_NO_PROGRESS = click.option("--no-progress", is_flag=True, help="No progress bar (e.g. for cron logs).")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--rebuild", is_flag=True,
              help="Re-embed every item of every indexed folder (needed after changing the model).")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Images per encoder batch [SPYGLASS_BATCH_SIZE; default 256 on CUDA, 32 on a CPU].")
@click.option("--workers", type=click.IntRange(min=1), help="Decoding threads [SPYGLASS_DECODE_WORKERS].")
@_run_options
@click.pass_obj
def index(settings: Settings, paths, rebuild, batch_size, workers, runner, address, no_progress) -> None:
    """Index the images under PATHS (recursively), or bring the index up to date.

    New files are embedded, changed ones re-embedded, moved ones keep their vector, and
    files that are gone leave the index. A file that cannot be read is skipped with its
    reason; the run goes on. Running it again on an unchanged folder does nothing.

    With --runner ray the files are cut into partitions that a Ray cluster decodes and embeds
    (the media at the same path on every node); each finished partition is committed, so a
    killed run loses only the partitions in flight. Publishing stays here, as with local.
    """
    from spyglass.indexer.job import run_index

    settings = settings.override(batch_size=batch_size, decode_workers=workers, runner=runner,
                                 ray_address=address)
    summary = run_index(settings, list(paths), rebuild=rebuild, progress=not no_progress,
                        echo=lambda message: click.echo(message, err=True))
    click.echo(summary.line())


@cli.command("import")
@click.argument("source", type=click.Path())
@click.option("--media-root", type=click.Path(file_okay=False),
              help="Folder the imported local files lie in, recorded like an indexed folder so the "
                   "originals and thumbnails are served (its files are not scanned now).")
@_NO_PROGRESS
@click.pass_obj
def import_(settings: Settings, source, media_root, no_progress) -> None:
    """Import precomputed embeddings: clip-retrieval's output folder or .npy files.

    \b
    SOURCE is one of:
      clip-retrieval's `inference` output: img_emb/img_emb_N.npy + metadata/metadata_N.parquet
      a folder of x.npy files, each with x.parquet or x.csv beside it
      one such .npy file
    Metadata rows give image_path (a local file) and/or url, and caption; row N describes
    vector N. The vectors are recorded under the configured model (--model/--pretrained),
    which must be the one that made them: an embeddings folder does not say, and text
    queries are embedded by it. Rows with a local file become ordinary items; rows with only
    a url become remote items (results carry the url and caption). Everything is checked
    before anything is written: a wrong dimension, a missing column or a NaN vector imports
    nothing.

    
    Rows are read by the indexer's rules; a row that breaks one is skipped with its number:
      local files only inside a media folder (a recorded one, or --media-root), regular,
        images, within SPYGLASS_MAX_FILE_BYTES; an indexed item is never replaced
      urls only http:// or https://, at most 4,096 characters
      captions in UTF-8 (else read as Windows-1252), cut at 4,096 characters
      duplicate rows merged, the first kept
    Importing again replaces the vectors of rows already imported.
    """
    from spyglass.indexer.import_job import run_import

    summary = run_import(settings, Path(source), media_root, progress=not no_progress,
                         echo=lambda message: click.echo(message, err=True))
    click.echo(summary.line())


def _interval(text: str | None) -> float | None:
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise click.BadParameter(f"{text!r} is not an interval such as 30m, 24h or 3600") from None
    if seconds <= 0:
        raise click.BadParameter("the interval must be positive")
    return seconds


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--rebuild", is_flag=True, help="Re-embed everything, even with an unchanged model.")
@click.option("--every", help="Keep running: start a run this often (e.g. 24h, 30m, 3600 seconds).")
@click.option("--drop-missing", is_flag=True,
              help="Drop the items of recorded folders that are missing (they come back with the folder).")
@_run_options
@click.pass_obj
def reindex(settings: Settings, paths, rebuild, every, drop_missing, runner, address, no_progress) -> None:
    """Bring the index in step with the media folders: the nightly job.

    With no PATHS: every folder an earlier `spyglass index` recorded, plus SPYGLASS_MEDIA
    (colon-separated). Adds new files, re-embeds changed ones, removes deleted ones; a second
    run changes nothing. Killed at any moment, it loses at most the batch in flight and the
    next run carries on. After a change of SPYGLASS_MODEL / SPYGLASS_PRETRAINED it builds a
    whole new index beside the live one, and search swaps to it when it is complete; while a
    recorded folder is missing, that swap is refused (see --drop-missing). Only one indexer
    runs at a time; a second one exits at once. With --every, a failed run (a database
    restart, a full disk) is reported and the loop goes on.
    """
    from spyglass.indexer.job import run_reindex

    settings = settings.override(runner=runner, ray_address=address)
    interval = _interval(every)
    echo = lambda message: click.echo(message, err=True)  # noqa: E731
    while True:
        started = time.monotonic()
        try:
            summary = run_reindex(settings, list(paths) or None, rebuild=rebuild,
                                  progress=not no_progress, echo=echo, drop_missing=drop_missing)
            click.echo(summary.line())
        except Exception as exc:
            if interval is None:
                raise
            # A scheduled loop keeps going, whatever failed: the next run may well succeed.
            message = str(exc) if isinstance(exc, SpyglassError) else database_failure(exc, settings.db_url)
            click.echo(f"Error: {message or f'{type(exc).__name__}: {printable(str(exc), 300)}'}", err=True)
        if interval is None:
            return
        wait = max(0.0, interval - (time.monotonic() - started))
        click.echo(f"next run in {wait / 3600:.2f} h", err=True)
        time.sleep(wait)


@cli.command()
@click.option("--repair", is_flag=True, help="Publish a generation that fixes what can be fixed.")
@click.pass_obj
def check(settings: Settings, repair) -> None:
    """Verify the live index against the catalog and the files on disk.

    Checks the index file's size and checksum, vectors without a catalog row, rows without a
    vector, and items whose file is gone. Exits 1 when something is wrong. --repair drops
    what is orphaned or gone (falling back to the newest intact generation if the live file is
    damaged); `spyglass reindex` then embeds again what was dropped but still exists.
    """
    from spyglass.indexer.check import check_index

    report = check_index(settings, repair=repair)
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        raise click.ClickException("the index has problems; `spyglass check --repair` fixes what it can")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def status(settings: Settings, as_json) -> None:
    """Show what is indexed: items, model, index type and size, and the last run."""
    from spyglass.search.status import status_report

    report = status_report(settings)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for label, value in report.items():
            click.echo(f"{label.replace('_', ' ').capitalize() + ':':<12} {_plain(value)}")


def _plain(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


@cli.command()
@click.option("--host", help="Address to listen on [SPYGLASS_HOST, default 127.0.0.1].")
@click.option("--port", type=click.IntRange(1, 65535), help="Port [SPYGLASS_PORT, default 8000].")
@click.option("--workers", type=click.IntRange(min=1),
              help="Worker processes, each with its own model [SPYGLASS_WEB_WORKERS, default 1].")
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads per worker [SPYGLASS_WEB_THREADS, default 8].")
@click.option("--dev", is_flag=True, help="Flask's development server with the reloader, not gunicorn.")
@click.option("--insecure-no-auth", is_flag=True, default=None,
              help="Listen beyond loopback without accounts, behind a proxy that authenticates people "
                   "[SPYGLASS_INSECURE_NO_AUTH].")
@click.pass_obj
def serve(settings: Settings, host, port, workers, threads, dev, insecure_no_auth) -> None:
    """Serve the search page and the JSON API (http://127.0.0.1:8000 by default).

    A production server (gunicorn, threaded). Each worker loads the index and the model once,
    and switches to a newly published index generation between requests, without a restart.

    Beyond loopback (--host 0.0.0.0) it needs SPYGLASS_AUTH=accounts: people log in to the page
    and scripts send tokens (`spyglass user --help`, `spyglass token --help`).
    """
    from spyglass.web.serve import check_access_mode, serve as run_server

    settings = settings.override(host=host, port=port, web_workers=workers, web_threads=threads,
                                 insecure_no_auth=insecure_no_auth)
    if not dev:  # --dev refuses anything but loopback itself
        check_access_mode(settings)
    run_server(settings, dev=dev)


@cli.group()
def db() -> None:
    """Manage the catalog database's schema."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(settings: Settings) -> None:
    """Apply pending migrations (`spyglass index` does this by itself); waits for no indexer."""
    from spyglass.search.catalog.db import create_db_engine, redacted
    from spyglass.search.catalog.lock import indexer_lock
    from spyglass.search.catalog.migrate import upgrade

    engine = create_db_engine(settings.db_url, writer=True)
    with indexer_lock(engine, settings.home):  # never under a running indexer
        before, after = upgrade(engine)
    engine.dispose()
    if before == after:
        click.echo(f"{redacted(settings.db_url)} is up to date (revision {after}).")
    else:
        click.echo(f"{redacted(settings.db_url)} upgraded from {before or 'empty'} to {after}.")


def _add_commands() -> None:
    from spyglass.cli_accounts import token, user
    from spyglass.cli_search import duplicates, search
    from spyglass.cli_training import eval_command, finetune

    for command in (search, duplicates, eval_command, finetune, user, token):
        cli.add_command(command)


_add_commands()


def main() -> None:
    """Console-script entry point: exits without the interpreter's teardown (see spyglass.leave)."""
    from spyglass.leave import leave

    try:
        cli(prog_name="spyglass")
    except SystemExit as done:
        leave(done.code)
    leave(0)


if __name__ == "__main__":
    sys.exit(main())
