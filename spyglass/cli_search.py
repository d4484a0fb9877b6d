"""`spyglass search` and `spyglass duplicates`: asking the index from the command line."""

from __future__ import annotations

import json
import sys
from datetime import datetime

import click

from spyglass.search.display import printable
from spyglass.search.settings import Settings


def _day(text: str | None, end: bool) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO date such as 2023-07-14") from None
    if end and len(text.strip()) == 10:
        moment = moment.replace(hour=23, minute=59, second=59, microsecond=999999)
    return moment.replace(tzinfo=None)


def _near(text: str | None) -> tuple[float, float, float] | None:
    if not text:
        return None
    try:
        latitude, longitude, km = (float(piece) for piece in text.split(","))
    except ValueError:
        raise click.BadParameter("give LATITUDE,LONGITUDE,KM such as 48.8584,2.2945,5") from None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180 and 0 < km <= 20_000):
        raise click.BadParameter("a latitude in [-90, 90], a longitude in [-180, 180] and km in (0, 20000]")
    return latitude, longitude, km


@click.command()
@click.argument("query", required=False)
@click.option("--image", "image", type=click.Path(dir_okay=False), help="Find images like this one.")
@click.option("-k", "--limit", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many results.")
@click.option("--label", help="Only items whose best zero-shot label is this (SPYGLASS_LABELS).")
@click.option("--kind", type=click.Choice(["image", "video", "audio"]), help="Only images, videos or recordings.")
@click.option("--taken-from", help="Only items taken on or after this date (2023-07-01), by EXIF or else mtime.")
@click.option("--taken-to", help="Only items taken on or before this date (2023-07-31).")
@click.option("--camera", help="Only items whose camera's name holds this (any case): iphone, 'EOS R5'.")
@click.option("--place", help="Only items whose place name holds this: Paris, Japan.")
@click.option("--near", help="Only items taken within KM of a point: LATITUDE,LONGITUDE,KM.")
@click.option("--sort", type=click.Choice(["relevance", "date"]), default="relevance", show_default=True,
              help="date: the best matches (within --cutoff), newest first.")
@click.option("--cutoff", type=click.FloatRange(0, 1, min_open=True),
              help="Leave out results scoring under this share of the best one's score (0.8: close matches only).")
@click.option("--collapse", is_flag=True, help="Fold near-duplicates into one result (SPYGLASS_DUPLICATE_COSINE).")
@click.option("--literal", is_flag=True,
              help="Take the QUERY as words only: do not read dates (\"July 2023\") and places (\"Paris\") out of it.")
@click.option("--mode", type=click.Choice(["hybrid", "visual", "words"]),
              help="For a text: hybrid (default) fuses what the images show with the words the media holds "
                   "(names, captions, text read from images, subtitles); visual or words alone.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@click.pass_obj
def search(settings: Settings, query, image, k, label, kind, taken_from, taken_to, camera, place, near, sort,
           cutoff, collapse, literal, mode, as_json) -> None:
    """Search by text (QUERY) or by example (--image); prints score and path, best first.

    Dates and places typed into QUERY become filters, and the line `understood:` says so:
    `spyglass search "beach July 2023"` searches "beach" among items taken in July 2023
    (SPYGLASS_QUERY_LANGUAGES sets the languages dates are read in).

    A video prints once a moment that matches (at most 3), with its time range:
    `0.3120  /media/beach.mp4  01:12–01:19`. A result found by its words prints the text that
    matched under it, the words in [brackets]: `    ocr: Wi-Fi password: [tangerine42]`.
    """
    from spyglass.search.arrange import Arrangement, arranged_search
    from spyglass.search.engine import SearchEngine
    from spyglass.search.moments import format_range
    from spyglass.search.query import Filters, QueryPart
    from spyglass.search.results import hit_record
    from spyglass.search.understand import interpreted
    from spyglass.search.words.snippets import plain_snippet

    if bool(query) == bool(image):
        raise click.UsageError("give either a QUERY text or --image PATH (one of them)")
    if image and mode == "words":
        raise click.UsageError("--mode words needs a QUERY text: an image is searched visually")
    filters = Filters(label=label, kind=kind, taken_from=_day(taken_from, False), taken_to=_day(taken_to, True),
                      camera=camera, place=place, near=_near(near))
    arrangement = Arrangement(sort, cutoff, collapse, settings.duplicate_cosine)
    engine = SearchEngine(settings)
    understood = None
    try:
        if image:
            result = engine.search_image(image, k, filters)
        else:
            parts = [QueryPart(text=query)]
            if not literal:
                engine.live()
                parts, filters, understood = interpreted(parts, filters, engine.catalog, settings.languages())
            result = arranged_search(engine, parts, k, 0, arrangement, filters=filters, mode=mode)
    finally:
        engine.close()
    if as_json:
        click.echo(json.dumps({"query": query, "image": image, "generation": result.generation_id,
                               "total": result.total, "understood": None if understood is None else {
                                   "text": understood.text, "chips": [c.as_dict() for c in understood.chips]},
                               "results": [hit_record(h, expose_paths=True) for h in result.hits]},
                              indent=2, ensure_ascii=False))
        return
    if understood is not None and understood.chips:
        said = "; ".join(f"{chip.kind} {chip.text!r}" for chip in understood.chips)
        click.echo(f"understood: {said}; searching for {understood.text!r} (--literal to turn this off)", err=True)
    if not result.hits:
        click.echo("no results", err=True)
    for hit in result.hits:
        copies = f"  (+{len(hit.duplicates)} near-duplicates)" if hit.duplicates else ""
        if not hit.moments:
            click.echo(f"{hit.score:.4f}  {printable(hit.item.path)}{copies}")
        for moment in hit.moments:
            score = moment.score or hit.score  # a moment found by its words has no cosine of its own
            click.echo(f"{score:.4f}  {printable(hit.item.path)}  {format_range(moment.start_s, moment.end_s)}")
        for match in hit.matches:
            click.echo(f"    {match.field}: {printable(plain_snippet(match.snippet))}")


@click.command()
@click.option("--min-cosine", type=click.FloatRange(0, 1, min_open=True),
              help="How alike two photos' vectors must be [SPYGLASS_DUPLICATE_COSINE, default 0.97].")
@click.option("--bytes-only", is_flag=True, help="Only files with the same bytes (no vectors compared).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_obj
def duplicates(settings: Settings, min_cosine, bytes_only, as_json, no_progress) -> None:
    """List sets of duplicates: the same bytes, then near-identical photos (burst shots, re-saved or
    resized copies), then videos that match frame by frame (never by their first frame alone).

    Each set prints as its paths, one per line, after a line saying why; sets are apart by a blank
    line. Nothing is deleted: what to keep is yours to choose.
    """
    from tqdm import tqdm

    from spyglass.search.duplicates import look_alike, same_bytes
    from spyglass.search.engine import SearchEngine

    engine = SearchEngine(settings)
    try:
        snapshot = engine.live()
        sets = same_bytes(engine.catalog.sessions)
        if not bytes_only:
            with tqdm(total=len(snapshot.stored), unit=" vectors", desc="Comparing", file=sys.stderr,
                      disable=no_progress or as_json, leave=False) as bar:
                sets += look_alike(engine, min_cosine or settings.duplicate_cosine, bar.update)
        rows = engine.catalog.items_by_id(sorted({i for found in sets for i in found.item_ids}))
    finally:
        engine.close()
    if as_json:
        click.echo(json.dumps([{"reason": found.reason, "items": [
            {"id": i, "path": rows[i].path, "size": rows[i].size} for i in found.item_ids if i in rows]}
            for found in sets], indent=2, ensure_ascii=False))
        return
    if not sets:
        click.echo("no duplicates", err=True)
    for number, found in enumerate(sets):
        if number:
            click.echo("")
        click.echo(f"# {found.reason}: {len(found.item_ids)} items")
        for item_id in found.item_ids:
            if item_id in rows:
                click.echo(f"{printable(rows[item_id].path)}  ({rows[item_id].size:,} bytes)")
    paths = sum(len(found.item_ids) - 1 for found in sets)
    click.echo(f"{len(sets):,} sets; {paths:,} items could go, keeping one of each", err=True)
