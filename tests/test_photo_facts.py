"""Photos as phones keep them: HEIC and AVIF indexed, RAW counted, EXIF/XMP dates with their offset,
camera, lens and GPS read (and place names from GeoNames, offline), video container tags; the
filters over them in the API, and thumbnails made at index time. Every file is made here, with
the EXIF the test writes."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational
from sqlalchemy import select

from spyglass.indexer.job import run_index
from spyglass.search.catalog.db import create_db_engine, session_factory
from spyglass.search.catalog.schema import MediaItem
from spyglass.search.media.images import register_heif
from spyglass.search.media.photo_facts import image_facts, parse_date, video_facts
from spyglass.search.media.thumbnails import PREVIEW_SIZE, THUMBNAIL_SIZE, thumbnail_name
from spyglass.web import create_app

EIFFEL = (48.8584, 2.2945)
SHIBUYA = (35.6595, 139.7005)


def dms(value: float) -> tuple:
    """Decimal degrees as EXIF's degrees, minutes, seconds rationals."""
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round(((value - degrees) * 60 - minutes) * 60 * 100)
    return IFDRational(degrees), IFDRational(minutes), IFDRational(seconds, 100)


def exif_block(taken: str | None = None, offset: str | None = None, make: str | None = None,
               model: str | None = None, lens: str | None = None, position: tuple | None = None) -> Image.Exif:
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    details = exif.get_ifd(0x8769)
    if taken:
        details[0x9003] = taken
    if offset:
        details[0x9011] = offset
    if lens:
        details[0xA434] = lens
    if position:
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2] = "N" if position[0] >= 0 else "S", dms(position[0])
        gps[3], gps[4] = "E" if position[1] >= 0 else "W", dms(position[1])
    return exif


def photo(path: Path, colour: tuple, size=(96, 64), **exif) -> Path:
    register_heif()
    image = Image.new("RGB", size, colour)
    for x in range(0, size[0], 8):  # some texture, so vectors differ between colours
        image.paste((colour[1], colour[2], colour[0]), (x, 0, x + 3, size[1]))
    fmt = {".heic": "HEIF", ".avif": "AVIF", ".png": "PNG"}.get(path.suffix.lower(), "JPEG")
    image.save(path, fmt, exif=exif_block(**exif)) if exif else image.save(path, fmt)
    return path


@pytest.fixture
def library(tmp_path) -> Path:
    folder = tmp_path / "phone"
    folder.mkdir()
    photo(folder / "IMG_0001.HEIC", (200, 40, 40), taken="2023:07:14 18:30:00", offset="+02:00", make="Apple",
          model="iPhone 15 Pro", lens="iPhone 15 Pro back camera 6.86mm f/1.78", position=EIFFEL)
    photo(folder / "beach.jpg", (30, 120, 220), taken="2019:08:02 09:15:00", make="Canon", model="Canon EOS R5",
          position=SHIBUYA)
    photo(folder / "cat.avif", (90, 200, 60))
    os.utime(folder / "cat.avif", (1_600_000_000, 1_600_000_000))  # 2020-09-13 12:26:40 UTC
    (folder / "DSC_0002.NEF").write_bytes(b"II*\x00 not decoded")
    (folder / "DSC_0003.cr2").write_bytes(b"II*\x00 not decoded")
    return folder


def test_a_phone_folder_is_indexed_with_dates_cameras_and_places(settings, library, capsys):
    summary = run_index(settings, [str(library)], progress=False)
    assert summary.added == 3 and not summary.skipped
    said = capsys.readouterr()
    assert "2 camera RAW files left out" in said.out + said.err
    assert "Photo facts: 3 read, 2 with a date taken, 2 with a place" in summary.line()
    with session_factory(create_db_engine(settings.db_url))() as session:
        items = {os.path.basename(i.path): i for i in session.scalars(select(MediaItem))}
    heic = items["IMG_0001.HEIC"]
    assert heic.format == "HEIF" and (heic.width, heic.height) == (96, 64)
    assert heic.taken_at == datetime(2023, 7, 14, 18, 30) and heic.taken_offset_min == 120
    assert heic.taken_source == "exif" and heic.camera == "Apple iPhone 15 Pro" and heic.lens.startswith("iPhone 15")
    assert heic.latitude == pytest.approx(EIFFEL[0], abs=1e-4) and "Paris" in heic.place and "France" in heic.place
    beach = items["beach.jpg"]
    assert beach.camera == "Canon EOS R5" and beach.taken_offset_min is None and "Tokyo" in beach.place
    cat = items["cat.avif"]
    assert cat.format == "AVIF" and cat.taken_source == "mtime" and cat.taken_at == datetime(2020, 9, 13, 12, 26, 40)
    assert cat.camera is None and cat.place is None
    # Both thumbnail sizes were made by the run, before anyone asked for them.
    cache = settings.home / "thumbnails"
    for item in items.values():
        for size in (THUMBNAIL_SIZE, PREVIEW_SIZE):
            name = thumbnail_name(item, size)
            assert (cache / name[:2] / name).is_file(), (item.path, size)

    # A run with nothing changed reads no facts again; a file touched is read again.
    assert "Thumbnails: 3 items" in summary.line()
    assert "Photo facts" not in run_index(settings, [str(library)], progress=False).line()
    os.utime(library / "beach.jpg", (1_700_000_000, 1_700_000_000))
    assert "Photo facts: 1 read" in run_index(settings, [str(library)], progress=False).line()


def test_the_api_filters_by_date_camera_place_and_distance(settings, library):
    run_index(settings, [str(library)], progress=False)
    client = create_app(settings).test_client()

    def names(**params) -> set[str]:
        response = client.get("/api/v1/search", query_string={"q": "a photo", "k": 10, "mode": "visual", **params})
        assert response.status_code == 200, response.json
        return {hit["name"] for hit in response.json["results"]}

    assert names() == {"IMG_0001.HEIC", "beach.jpg", "cat.avif"}
    assert names(taken_from="2023-07-14", taken_to="2023-07-14") == {"IMG_0001.HEIC"}
    assert names(taken_to="2020-12-31") == {"beach.jpg", "cat.avif"}
    assert names(camera="iphone") == {"IMG_0001.HEIC"}
    assert names(camera="EOS") == {"beach.jpg"}
    assert names(place="tokyo") == {"beach.jpg"}
    assert names(near=f"{EIFFEL[0]},{EIFFEL[1] + 0.05},5") == {"IMG_0001.HEIC"}  # 3.7 km east of it
    assert names(near=f"{EIFFEL[0]},{EIFFEL[1] + 0.1},5") == set()  # 7.3 km
    hit = client.get("/api/v1/search", query_string={"q": "x", "camera": "iphone"}).json["results"][0]
    assert hit["taken_at"] == "2023-07-14T18:30:00" and hit["taken_offset_min"] == 120
    assert hit["place"].startswith("Vanves, Paris") and hit["lens"].startswith("iPhone")
    # The original HEIC is served as what it is; browsers, which cannot show it, get JPEG thumbnails.
    heic = client.get(f"/api/v1/items/{hit['id']}/file")
    assert heic.status_code == 200 and heic.mimetype == "image/heic"
    preview = client.get(f"/api/v1/items/{hit['id']}/thumbnail?size=preview")
    assert preview.mimetype == "image/jpeg" and preview.data[:3] == b"\xff\xd8\xff"
    assert client.get(f"/api/v1/items/{hit['id']}/thumbnail?size=huge").status_code == 400
    # The place and the camera are words too: the keyword half finds what the pixels cannot say.
    words = client.get("/api/v1/search", query_string={"q": "paris", "mode": "words"}).json["results"]
    assert [h["name"] for h in words] == ["IMG_0001.HEIC"] and words[0]["matches"][0]["field"] == "place"
    canon = client.get("/api/v1/search", query_string={"q": "canon", "mode": "words"}).json["results"]
    assert [(h["name"], h["matches"][0]["field"]) for h in canon] == [("beach.jpg", "camera")]
    for bad in ({"near": "91,0,5"}, {"near": "1,2"}, {"taken_from": "last week"}, {"sort": "size"},
                {"cutoff": "0"}, {"cutoff": "1.5"}):
        response = client.get("/api/v1/search", query_string={"q": "x", **bad})
        assert response.status_code == 400 and response.json["error"] == "bad_query", bad


def test_dates_typed_into_a_query_become_filters_in_three_phrasings(settings, library):
    run_index(settings, [str(library)], progress=False)
    client = create_app(settings).test_client()
    for typed, words in (("sunset July 2023", "sunset"), ("sunset 14 July 2023", "sunset"),
                         ("sunset 2023-07-14", "sunset")):
        answer = client.get("/api/v1/search", query_string={"q": typed, "mode": "visual"}).json
        assert [hit["name"] for hit in answer["results"]] == ["IMG_0001.HEIC"], typed
        assert answer["understood"]["text"] == words and answer["understood"]["chips"][0]["kind"] == "date"
    # A place the library holds is a filter too; the words stay whole when nothing else was typed.
    answer = client.get("/api/v1/search", query_string={"q": "Tokyo 2019", "mode": "visual"}).json
    assert [hit["name"] for hit in answer["results"]] == ["beach.jpg"]
    assert {chip["kind"] for chip in answer["understood"]["chips"]} == {"date", "place"}
    # interpret=false: the same words are only words.
    plain = client.get("/api/v1/search", query_string={"q": "Tokyo 2019", "interpret": "false"}).json
    assert len(plain["results"]) == 3 and plain["understood"] is None


def test_dates_in_another_locale(settings, library):
    from dataclasses import replace

    run_index(settings, [str(library)], progress=False)
    french = create_app(replace(settings, query_languages="en,fr")).test_client()
    answer = french.get("/api/v1/search", query_string={"q": "coucher de soleil juillet 2023"}).json
    assert [hit["name"] for hit in answer["results"]] == ["IMG_0001.HEIC"]
    assert answer["understood"]["text"] == "coucher de soleil"
    german = create_app(replace(settings, query_languages="de")).test_client()
    answer = german.get("/api/v1/search", query_string={"q": "Strand August 2019"}).json
    assert [hit["name"] for hit in answer["results"]] == ["beach.jpg"]


def test_video_container_tags_give_its_date_and_place(tmp_path):
    pytest.importorskip("av")  # ffmpeg writes the tags; PyAV reads them

    path = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=5:duration=1",
                    "-metadata", "creation_time=2021-05-01T08:00:00Z", "-metadata", "location=+35.6595+139.7005/",
                    "-c:v", "libx264", str(path)], check=True)
    from spyglass.indexer.facts import read_facts

    facts = read_facts(MediaItem(path=str(path), kind="video"))
    assert facts.taken_at == datetime(2021, 5, 1, 8, 0) and facts.offset_min == 0 and facts.source == "container"
    assert (facts.latitude, facts.longitude) == SHIBUYA
    apple = video_facts({"com.apple.quicktime.creationdate": "2024-02-10T21:05:09+0100",
                         "com.apple.quicktime.make": "Apple", "com.apple.quicktime.model": "iPhone 12"})
    assert apple.taken_at == datetime(2024, 2, 10, 21, 5, 9) and apple.offset_min == 60
    assert apple.camera == "Apple iPhone 12"


@pytest.mark.parametrize("text", ["0000:00:00 00:00:00", "2023:02:30 10:00:00", "    ", "garbage", "1904:01:01 00:00:00",
                                  "2999:01:01 00:00:00"])
def test_dates_cameras_write_when_their_clock_is_unset_are_no_date(text):
    assert parse_date(text) is None


def test_a_mangled_exif_block_gives_no_facts_and_no_error(tmp_path):
    good = photo(tmp_path / "a.jpg", (1, 2, 3), taken="2023:07:14 18:30:00", position=(0.0, 0.0))
    facts = image_facts(good.open("rb"))
    assert facts.taken_at == datetime(2023, 7, 14, 18, 30) and facts.latitude is None  # (0, 0): no fix
    data = bytearray(good.read_bytes())
    at = data.find(b"Exif")
    data[at + 10:at + 40] = b"\xff" * 30  # the IFD's entries overwritten
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(bytes(data))
    assert image_facts(broken.open("rb")).latitude is None


def test_the_cli_reads_dates_from_the_query_and_takes_the_filters(settings, library):
    from conftest import run_spyglass, spyglass_env

    run_index(settings, [str(library)], progress=False)
    env = spyglass_env(settings)
    typed = run_spyglass("search", "sunset July 2023", "--mode", "visual", env=env)
    assert typed.returncode == 0, typed.stderr
    assert "understood: date 'July 2023'; searching for 'sunset'" in typed.stderr
    assert [line.split("  ")[1] for line in typed.stdout.splitlines()] == [str(library / "IMG_0001.HEIC")]
    literal = run_spyglass("search", "sunset July 2023", "--literal", env=env)
    assert len(literal.stdout.splitlines()) == 3 and "understood" not in literal.stderr
    canon = run_spyglass("search", "a photo", "--camera", "eos", "--taken-to", "2019-12-31", "--json", env=env)
    assert [hit["name"] for hit in json.loads(canon.stdout)["results"]] == ["beach.jpg"]
    near = run_spyglass("search", "a photo", "--near", "48.86,2.29,10", "--sort", "date", env=env)
    assert near.stdout.count("\n") == 1 and "IMG_0001.HEIC" in near.stdout
    bad = run_spyglass("search", "a photo", "--near", "north", env=env)
    assert bad.returncode == 2 and "LATITUDE,LONGITUDE,KM" in bad.stderr


def test_thumbnails_can_wait_for_their_first_view(settings, library):
    from dataclasses import replace

    summary = run_index(replace(settings, index_thumbnails=False), [str(library)], progress=False)
    assert summary.added == 3 and "Thumbnails" not in summary.line()
    assert not list((settings.home / "thumbnails").rglob("*.jpg"))
