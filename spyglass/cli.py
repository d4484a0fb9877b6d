"""`spyglass`: index folders, search them, and report on the index."""

from __future__ import annotations

import errno
import json
import logging
import sys
import time
from pathlib import Path

import click

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


def database_failure(exc: Exception, database_url: str | None = None) -> str | None:
    """One line for a failure of the catalog database, or None when exc is not one.

    Only a failure to reach the database is blamed on SPYGLASS_DATABASE_URL: a full disk says
    so, and a broken constraint is a fault of Spyglass's, reported as one.
    """
    from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if not isinstance(exc, (OperationalError, ProgrammingError, DBAPIError, PoolTimeout)):
        return None
    orig = getattr(exc, "orig", None)
    reason = str(orig or exc).strip().splitlines()[0] if str(orig or exc).strip() else type(exc).__name__
    where = _sqlite_file(database_url)
    if _disk_full(orig, where):
        return (f"the disk is full writing the catalog database{f' {printable(where)}' if where else ''}: "
                f"{printable(reason, 200)}; everything published before this is kept (free some space and "
                "run again)")
    if isinstance(exc, IntegrityError):
        return (f"the catalog database refused a write: {printable(reason, 300)} (a fault of Spyglass's, "
                "not of your settings: please report it; nothing of this write was kept)")
    return (f"the catalog database failed: {printable(reason, 300)} (check SPYGLASS_DATABASE_URL, "
            "and that the server is running)")


def _disk_full(orig, sqlite_file: str | None) -> bool:
    """SQLite's "database or disk is full", PostgreSQL's disk_full (53100) and friends, or SQLite's
    "disk I/O error" on a disk with no room left (what it says when the journal cannot grow)."""
    text = str(orig or "").lower()
    if ("database or disk is full" in text or "no space left on device" in text
            or getattr(orig, "sqlstate", None) in ("53100", "53400")):
        return True
    if "disk i/o error" in text and sqlite_file:
        import os

        try:
            disk = os.statvfs(os.path.dirname(os.path.abspath(sqlite_file)))
        except OSError:
            return False
        return disk.f_bavail * disk.f_frsize < 1024 * 1024
    return False


def _sqlite_file(database_url: str | None) -> str | None:
    if database_url and database_url.startswith("sqlite:///"):
        return database_url[len("sqlite:///"):]
    return None


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


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--rebuild", is_flag=True,
              help="Re-embed every item of every indexed folder (needed after changing the model).")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Images per encoder batch [SPYGLASS_BATCH_SIZE; default 256 on CUDA, 32 on a CPU].")
@click.option("--workers", type=click.IntRange(min=1), help="Decoding threads [SPYGLASS_DECODE_WORKERS].")
@click.option("--runner", type=click.Choice(["local", "ray"]),
              help="Embed in this process (local) or on a Ray cluster (ray; pip install 'spyglass[ray]') "
                   "[SPYGLASS_RUNNER; default local].")
@click.option("--address", help="With --runner ray: the cluster (auto, or ray://host:10001); none starts a "
                                "Ray on this machine for the run [SPYGLASS_RAY_ADDRESS].")
@click.option("--no-progress", is_flag=True, help="No progress bar (e.g. for cron logs).")
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
    from spyglass.indexer.jobs import run_index

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
@click.option("--no-progress", is_flag=True, help="No progress bar (e.g. for cron logs).")
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
@click.option("--runner", type=click.Choice(["local", "ray"]),
              help="Embed in this process (local) or on a Ray cluster (ray; pip install 'spyglass[ray]') "
                   "[SPYGLASS_RUNNER; default local].")
@click.option("--address", help="With --runner ray: the cluster (auto, or ray://host:10001); none starts a "
                                "Ray on this machine for the run [SPYGLASS_RAY_ADDRESS].")
@click.option("--no-progress", is_flag=True, help="No progress bar (e.g. for cron logs).")
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
    from spyglass.indexer.jobs import run_reindex

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


_DATA_OPTIONS = [
    click.argument("data", type=click.Path(exists=True)),
    click.option("--image-key", default="filepath", show_default=True, help="Image column of a CSV/TSV."),
    click.option("--caption-key", default="title", show_default=True, help="Caption column of a CSV/TSV."),
    click.option("--separator", help="Column separator of the table [tab for .tsv, else a comma]."),
    click.option("--model", "model_override", help="open_clip architecture or config JSON [SPYGLASS_MODEL]."),
    click.option("--pretrained", "pretrained_override", help="Weights: tag, file or folder [SPYGLASS_PRETRAINED]."),
    click.option("--batch-size", type=click.IntRange(min=1),
                 help="Images per batch [eval: SPYGLASS_BATCH_SIZE; finetune: 64, also the negatives per step]."),
    click.option("--no-progress", is_flag=True, help="No progress bar."),
]


def _data_options(function):
    for option in reversed(_DATA_OPTIONS):
        function = option(function)
    return function


def _read_data(data, image_key, caption_key, separator):
    from spyglass.indexer.datasets import load_dataset

    dataset = load_dataset(data, image_key=image_key, caption_key=caption_key, separator=separator)
    for problem in dataset.skipped[:20]:
        click.echo(f"skipping {problem}", err=True)
    if len(dataset.skipped) > 20:
        click.echo(f"... and {len(dataset.skipped) - 20:,} more skipped", err=True)
    return dataset


@cli.command("eval")
@_data_options
@click.option("--template", "templates", multiple=True,
              help="Prompt template for class folders, with {label} (repeatable) [a photo of a {label}.].")
@click.option("--json", "as_json", is_flag=True, help="Print open_clip's metric names as JSON.")
@click.pass_obj
def eval_command(settings: Settings, data, image_key, caption_key, separator, model_override,
                 pretrained_override, batch_size, no_progress, templates, as_json) -> None:
    """Measure how well the model retrieves your own captioned images (or labels class folders).

    \b
    DATA is one of:
      a CSV/TSV with an image column and a caption column (filepath, title; paths relative to it),
      a folder where x.jpg has x.txt beside it (one caption per line, several allowed),
      class folders, DATA/<label>/*.jpg (zero-shot labelling: accuracy, macro precision/recall/F1).
    Prints text-to-image and image-to-text R@1/5/10 and mean and median rank. Uses the
    configured model, or --model/--pretrained (a fine-tuned folder, say). Never touches the index.
    """
    from spyglass.indexer.evaluate import evaluate
    from spyglass.search.model.encoder import load_encoder
    from spyglass.search.model.zero_shot import check_templates

    settings = settings.override(model=model_override, pretrained=pretrained_override, batch_size=batch_size)
    templates = check_templates(templates) if templates else None
    dataset = _read_data(data, image_key, caption_key, separator)
    encoder = load_encoder(settings.model, settings.pretrained or None, settings.device, settings.model_cache,
                           settings.precision)
    report = evaluate(dataset, encoder, settings, templates, progress=not no_progress)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)


@cli.command()
@_data_options
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder to write the model to (SPYGLASS_PRETRAINED=<it> loads it).")
@click.option("--lock-image/--unlock-image", "lock_image", default=True, show_default=True,
              help="Train only the text side (the index stays valid: no re-embedding), or the image side too.")
@click.option("--unlocked-blocks", type=click.IntRange(min=0), default=0,
              help="With --unlock-image: train only the last N image blocks (0: all of it).")
@click.option("--from-scratch", is_flag=True, help="Train from random weights (--model names the architecture).")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs at most [10; 5 unlocked; 60 from scratch].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help="Peak learning rate, after a warm-up [1e-5; 5e-6 unlocked; 1e-3 from scratch].")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1,
              show_default=True, help="Images held out to measure each epoch on.")
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True,
              help="Stop after this many epochs without better held-out recall (mean of R@1, R@5, R@10).")
@click.option("--blend", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Blend with the base weights (WiSE-FT): 0.5 is halfway; 1 keeps the trained weights.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split, the order and the weights.")
@click.option("--force", is_flag=True, help="Write the model even if it is no better than the base, or replace DIR.")
@click.pass_obj
def finetune(settings: Settings, data, image_key, caption_key, separator, model_override, pretrained_override,
             batch_size, no_progress, out, lock_image, unlocked_blocks, from_scratch, epochs, lr, val_fraction,
             patience, blend, seed, force) -> None:
    """Fine-tune the model on your captioned images (contrastive, with open_clip's ClipLoss).

    \b
    Holds out --val-fraction of the images, measures the base model and every epoch on them,
    stops early, and writes --out as a folder that SPYGLASS_PRETRAINED loads, with metrics.json
    (before, every epoch, after). The default --lock-image trains the text side only: the
    image vectors of the live index stay valid, and `spyglass reindex` makes the new model live
    without re-embedding a single image. An output no better than the base is refused unless --force.
    """
    from pathlib import Path

    from spyglass.indexer.finetune import FinetuneOptions, finetune as run_finetune

    mode = "from-scratch" if from_scratch else ("lock-image" if lock_image else "unlock-image")
    settings = settings.override(model=model_override, pretrained=pretrained_override)
    options = FinetuneOptions(out=Path(out), mode=mode, epochs=epochs, batch_size=batch_size or 64, lr=lr,
                              val_fraction=val_fraction, seed=seed, patience=patience, unlocked_blocks=unlocked_blocks,
                              blend=blend, force=force, progress=not no_progress)
    dataset = _read_data(data, image_key, caption_key, separator)
    result = run_finetune(dataset, settings, options, echo=lambda m: click.echo(m, err=True))
    click.echo(f"wrote {printable(str(result.out))}: held-out text-to-image R@5 {result.before['text_to_image_R@5']:.3f} "
               f"-> {result.after['text_to_image_R@5']:.3f}, R@1 {result.before['text_to_image_R@1']:.3f} -> "
               f"{result.after['text_to_image_R@1']:.3f} in {result.seconds:.0f} s "
               f"(best epoch {result.best_epoch}); use it with SPYGLASS_PRETRAINED={printable(str(result.out))}")


@cli.command()
@click.argument("query", required=False)
@click.option("--image", "image", type=click.Path(dir_okay=False), help="Find images like this one.")
@click.option("-k", "--limit", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many results.")
@click.option("--label", help="Only items whose best zero-shot label is this (SPYGLASS_LABELS).")
@click.option("--kind", type=click.Choice(["image", "video"]), help="Only images, or only videos.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@click.pass_obj
def search(settings: Settings, query, image, k, label, kind, as_json) -> None:
    """Search by text (QUERY) or by example (--image); prints score and path, best first.

    A video prints once a moment that matches (at most 3), with its time range:
    `0.3120  /media/beach.mp4  01:12–01:19`.
    """
    from spyglass.search.engine import SearchEngine
    from spyglass.search.moments import format_range
    from spyglass.search.query import Filters

    if bool(query) == bool(image):
        raise click.UsageError("give either a QUERY text or --image PATH (one of them)")
    engine = SearchEngine(settings)
    filters = Filters(label=label, kind=kind) if label or kind else None
    try:
        result = (engine.search_image(image, k, filters) if image else engine.search_text(query, k, filters))
    finally:
        engine.close()
    if as_json:
        click.echo(json.dumps({"query": query, "image": image, "generation": result.generation_id,
                               "total": result.total, "results": [h.as_dict() for h in result.hits]},
                              indent=2, ensure_ascii=False))
        return
    if not result.hits:
        click.echo("no results", err=True)
    for hit in result.hits:
        if not hit.moments:
            click.echo(f"{hit.score:.4f}  {printable(hit.item.path)}")
        for moment in hit.moments:
            click.echo(f"{moment.score:.4f}  {printable(hit.item.path)}  {format_range(moment.start_s, moment.end_s)}")


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
@click.pass_obj
def serve(settings: Settings, host, port, workers, threads, dev) -> None:
    """Serve the search page and the JSON API (http://127.0.0.1:8000 by default).

    A production server (gunicorn, threaded). Each worker loads the index and the model once,
    and switches to a newly published index generation between requests, without a restart.
    """
    from spyglass.web.serve import serve as run_server

    settings = settings.override(host=host, port=port, web_workers=workers, web_threads=threads)
    click.echo(f"Serving on http://{settings.host}:{settings.port}", err=True)
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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="spyglass")


if __name__ == "__main__":
    sys.exit(main())
