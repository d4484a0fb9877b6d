"""When and where a photo or video was taken, and with what: EXIF and XMP of images, container tags of videos.

Only headers are read: Pillow opens an image without decoding its pixels, PyAV a video without
decoding a frame. Every value is checked (a date in the calendar, a latitude in [-90, 90]) because
cameras and editors write garbage: a mangled block gives no fact, never an error.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
MAKE, MODEL, DATE_TIME = 0x010F, 0x0110, 0x0132
DATE_ORIGINAL, DATE_DIGITIZED, OFFSET_ORIGINAL, OFFSET_DIGITIZED, LENS_MAKE, LENS_MODEL = (
    0x9003, 0x9004, 0x9011, 0x9012, 0xA433, 0xA434)
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON = 1, 2, 3, 4
MAX_XMP_BYTES = 1024 * 1024
MAX_TEXT = 100
# XMP dates, as attributes (exif:DateTimeOriginal="...") or elements (<xmp:CreateDate>...</xmp:CreateDate>).
_XMP_DATE = re.compile(rb"(exif:DateTimeOriginal|photoshop:DateCreated|xmp:CreateDate)\s*(?:=\s*\"([^\"]{4,40})\"|>"
                       rb"\s*([^<]{4,40})<)")
_ISO6709 = re.compile(r"^([+-]\d{1,2}(?:\.\d+)?)([+-]\d{1,3}(?:\.\d+)?)")
# Where cameras and phones put a video's facts (QuickTime's Apple keys first: they carry the offset).
_VIDEO_DATES = ("com.apple.quicktime.creationdate", "creation_time", "date")
_VIDEO_PLACES = ("com.apple.quicktime.location.ISO6709", "location", "location-eng")
_VIDEO_MAKES, _VIDEO_MODELS = ("com.apple.quicktime.make", "make"), ("com.apple.quicktime.model", "model")
# Before this, a timestamp is a reset clock (1904-01-01 and 1970-01-01 are MP4's and Unix's zero).
_EARLIEST = datetime(1971, 1, 1)


@dataclass
class PhotoFacts:
    """What a file's own metadata says: taken_at is the wall-clock time where it was taken, with its
    UTC offset in minutes when known; source is "exif", "xmp" or "container" (None: no date in it)."""

    taken_at: datetime | None = None
    offset_min: int | None = None
    source: str | None = None
    camera: str | None = None
    lens: str | None = None
    latitude: float | None = None
    longitude: float | None = None


def image_facts(handle: BinaryIO) -> PhotoFacts:
    """The facts in an image's EXIF and XMP (HEIC via pillow-heif); an unreadable header gives none."""
    from PIL import Image

    from .images import register_heif

    register_heif()
    facts = PhotoFacts()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(handle) as image:
                exif = image.getexif()
                details = exif.get_ifd(EXIF_IFD)
                _exif_date(facts, details, exif)
                facts.camera = camera_name(_clean(exif.get(MAKE)), _clean(exif.get(MODEL)))
                facts.lens = _clean(details.get(LENS_MODEL))
                _exif_gps(facts, exif.get_ifd(GPS_IFD))
                if facts.taken_at is None:
                    xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp") or b""
                    _xmp_date(facts, xmp.encode("utf-8", "replace") if isinstance(xmp, str) else xmp)
    except Exception:  # noqa: BLE001 - EXIF parsers raise anything on a mangled block: what was read stands
        pass
    return facts


def video_facts(tags: dict[str, str]) -> PhotoFacts:
    """The facts in a video's container tags (PyAV's container.metadata)."""
    lowered = {key.lower(): value for key, value in tags.items()}
    facts = PhotoFacts()
    for key in _VIDEO_DATES:
        parsed = parse_date(lowered.get(key.lower(), ""))
        if parsed is not None:
            facts.taken_at, facts.offset_min = parsed
            facts.source = "container"
            break
    for key in _VIDEO_PLACES:
        match = _ISO6709.match(lowered.get(key.lower(), "").strip())
        if match:
            _set_position(facts, float(match[1]), float(match[2]))
            break
    make = next((_clean(lowered[k.lower()]) for k in _VIDEO_MAKES if k.lower() in lowered), None)
    model = next((_clean(lowered[k.lower()]) for k in _VIDEO_MODELS if k.lower() in lowered), None)
    facts.camera = camera_name(make, model)
    return facts


def camera_name(make: str | None, model: str | None) -> str | None:
    """'Apple iPhone 15'; a model that already names its maker ('Canon EOS R5') is kept as it is."""
    if not model:
        return make
    if make and not model.lower().startswith(make.split()[0].lower()):
        return f"{make} {model}"[:MAX_TEXT]
    return model


def parse_date(text: str) -> tuple[datetime, int | None] | None:
    """('2023:07:14 10:00:00' | '2023-07-14T10:00:00+02:00' | ...Z) -> (wall time, offset minutes or None)."""
    text = (text or "").strip().rstrip("\x00")
    match = re.match(r"^(\d{4})[:-](\d\d)[:-](\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d))?(?:\.\d+)?)?\s*"
                     r"(Z|[+-]\d\d:?\d\d)?$", text)
    if not match:
        return None
    try:
        wall = datetime(*(int(part or 0) for part in match.groups()[:6]))
    except ValueError:
        return None  # 0000:00:00 00:00:00, a 31st of February
    offset = _offset_minutes(match[7]) if match[7] else None
    if wall < _EARLIEST or wall > datetime.now() + timedelta(days=2):
        return None
    if match[7] == "Z":  # a UTC instant (MP4's creation_time): the wall time where it was taken is unknown
        return wall, 0
    return wall, offset


def _exif_date(facts: PhotoFacts, details, exif) -> None:
    for date_tag, offset_tag, where in ((DATE_ORIGINAL, OFFSET_ORIGINAL, details),
                                        (DATE_DIGITIZED, OFFSET_DIGITIZED, details), (DATE_TIME, None, exif)):
        parsed = parse_date(_clean(where.get(date_tag)) or "")
        if parsed is not None:
            facts.taken_at, facts.offset_min = parsed[0], parsed[1]
            if facts.offset_min is None and offset_tag is not None:
                facts.offset_min = _offset_minutes(_clean(details.get(offset_tag)) or "")
            facts.source = "exif"
            return


def _xmp_date(facts: PhotoFacts, packet: bytes) -> None:
    for _name, attribute, element in _XMP_DATE.findall(packet[:MAX_XMP_BYTES]):
        parsed = parse_date((attribute or element).decode("ascii", "replace"))
        if parsed is not None:
            facts.taken_at, facts.offset_min = parsed
            facts.source = "xmp"
            return


def _exif_gps(facts: PhotoFacts, gps) -> None:
    if not gps or GPS_LAT not in gps or GPS_LON not in gps:
        return
    latitude = _degrees(gps[GPS_LAT]) * (-1 if str(gps.get(GPS_LAT_REF, "N")).upper().startswith("S") else 1)
    longitude = _degrees(gps[GPS_LON]) * (-1 if str(gps.get(GPS_LON_REF, "E")).upper().startswith("W") else 1)
    _set_position(facts, latitude, longitude)


def _set_position(facts: PhotoFacts, latitude: float, longitude: float) -> None:
    # (0, 0) is what a phone writes without a fix; a position off the globe is garbage.
    if -90 <= latitude <= 90 and -180 <= longitude <= 180 and (latitude, longitude) != (0.0, 0.0):
        facts.latitude, facts.longitude = round(latitude, 6), round(longitude, 6)


def _degrees(value) -> float:
    """EXIF's (degrees, minutes, seconds) rationals as decimal degrees."""
    parts = [float(part) for part in (value if isinstance(value, (tuple, list)) else (value,))]
    parts += [0.0] * (3 - len(parts))
    return parts[0] + parts[1] / 60 + parts[2] / 3600


def _offset_minutes(text: str) -> int | None:
    match = re.match(r"^([+-])(\d\d):?(\d\d)$", text.strip())
    if not match:
        return None
    minutes = int(match[2]) * 60 + int(match[3])
    return (minutes if match[1] == "+" else -minutes) if minutes <= 14 * 60 else None


def _clean(value) -> str | None:
    """An EXIF text value, printable and bounded; None when empty."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = "".join(ch for ch in str(value) if ch.isprintable()).strip()
    return text[:MAX_TEXT] or None
