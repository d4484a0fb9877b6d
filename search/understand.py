"""Dates and places typed into a text query become filters: "beach July 2023" is "beach", taken in
July 2023; "Paris 2019" is taken in 2019 in a place named Paris; "last summer" is June to August of
last year. What is understood comes back as chips a person can remove.

Dates are found by dateparser (in the languages of SPYGLASS_QUERY_LANGUAGES), and only phrases it
can pin down are taken: one with a number in it ("July 2023", "14/07/2023", "3 weeks ago") or a
relative day ("yesterday", "last month"). "a second dog", "march of the penguins" and "in May" stay
words. Seasons are the northern hemisphere's meteorological ones, in English.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Iterable

from spyglass.search.query import Filters, QueryPart

# Phrases with no digit dateparser may take, and only these (in any of its languages they mean the same).
_RELATIVE = re.compile(r"\b(yesterday|today|last (week|month|year)|this (week|month|year))\b", re.IGNORECASE)
_SEASON = re.compile(r"\b(?:(last|this) )?(spring|summer|autumn|fall|winter)(?: (\d{4}))?\b", re.IGNORECASE)
_SEASON_MONTHS = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}
_EARLIEST_YEAR = 1900
MAX_PLACE_WORDS = 3
# A query longer than this is a description, not "beach July 2023": it is searched as it is typed.
# It bounds what dateparser costs per request too (a 1,000-byte "1 1 1 …" took it 0.46 s; 12
# words take it at most ~0.04 s in three languages).
MAX_UNDERSTOOD_WORDS = 12


@dataclass(frozen=True)
class Chip:
    """One thing understood: its words as typed, and the filter they became."""

    kind: str  # "date" or "place"
    text: str
    taken_from: datetime | None = None
    taken_to: datetime | None = None
    place: str | None = None

    def as_dict(self) -> dict:
        """The chip as the API shows it."""
        found = {"kind": self.kind, "text": self.text}
        if self.kind == "date":
            found.update(taken_from=self.taken_from.isoformat(), taken_to=self.taken_to.isoformat())
        else:
            found.update(place=self.place)
        return found


@dataclass
class Understood:
    """A query split into the words to search for and the chips taken out of it."""

    text: str
    chips: list[Chip] = field(default_factory=list)

    def date(self) -> Chip | None:
        """The date chip, if one was found."""
        return next((chip for chip in self.chips if chip.kind == "date"), None)

    def place(self) -> Chip | None:
        """The place chip, if one was found."""
        return next((chip for chip in self.chips if chip.kind == "place"), None)


def understand(text: str, places: Iterable[str] | dict[str, str] = (), languages: tuple[str, ...] = ("en",),
               now: datetime | None = None) -> Understood:
    """The dates and known place names in a query; the rest is the text to search for.

    When nothing but dates and places was typed, the text stays whole, so it still ranks.
    """
    now = now or datetime.now()
    chips: list[Chip] = []
    rest = text
    if len(text.split()) > MAX_UNDERSTOOD_WORDS:
        return Understood(" ".join(text.split()))
    season = _season(rest, now)
    if season is not None:
        chips.append(season)
        rest = rest.replace(season.text, " ", 1)
    elif re.search(r"\d", rest) or _RELATIVE.search(rest):  # nothing else can become a date: skip the parser
        found = _date(rest, languages, now)
        if found is not None:
            chips.append(found)
            rest = rest.replace(found.text, " ", 1)
    place = _place(rest, places)
    if place is not None:
        chips.append(place)
        rest = re.sub(rf"(?i)\b{re.escape(place.text)}\b", " ", rest, count=1)
    rest = " ".join(re.sub(r"\s+(in|on|at|from|during|en|à|au|im|in der)\s*$", "", rest).split())
    return Understood(rest if rest.strip() else " ".join(text.split()), chips)


def _date(text: str, languages: tuple[str, ...], now: datetime) -> Chip | None:
    from dateparser.date import DateDataParser
    from dateparser.search import search_dates

    settings = {"RELATIVE_BASE": now, "PREFER_DATES_FROM": "past"}
    try:
        found = search_dates(text, languages=list(languages), settings=settings) or []
    except Exception:  # noqa: BLE001 - dateparser meets text it was never tested on: the words stay words
        return None
    for phrase, _moment in found:
        phrase = phrase.strip()
        if not (re.search(r"\d", phrase) or _RELATIVE.search(phrase)):
            continue
        data = DateDataParser(languages=list(languages), settings=settings).get_date_data(phrase)
        if data.date_obj is None or not _EARLIEST_YEAR <= data.date_obj.year <= now.year:
            continue
        start, end = _span(data.date_obj.replace(tzinfo=None), data.period or "day")
        return Chip("date", phrase, taken_from=start, taken_to=end)
    return None


def _span(moment: datetime, period: str) -> tuple[datetime, datetime]:
    """The whole day, week, month or year a parsed date stands for, inclusive."""
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "year":
        start, end = day.replace(month=1, day=1), day.replace(month=12, day=31)
    elif period == "month":
        start = day.replace(day=1)
        end = day.replace(day=calendar.monthrange(day.year, day.month)[1])
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=6)
    else:
        start = end = day
    return start, end.replace(hour=23, minute=59, second=59, microsecond=999999)


def _season(text: str, now: datetime) -> Chip | None:
    match = _SEASON.search(text)
    if match is None or not (match[1] or match[3]):  # "summer" alone is a word ("summer dress")
        return None
    first_month = _SEASON_MONTHS[match[2].lower()]
    if match[3]:
        year = int(match[3])
    elif match[1].lower() == "last":  # the latest that has ended
        year = next(y for y in range(now.year, now.year - 3, -1) if _season_span(y, first_month)[1] < now)
    else:  # "this": the latest that has begun
        year = next(y for y in range(now.year, now.year - 3, -1) if _season_span(y, first_month)[0] <= now)
    if not _EARLIEST_YEAR <= year <= now.year:
        return None
    start, end = _season_span(year, first_month)
    return Chip("date", match[0], taken_from=start, taken_to=end)


def _season_span(year: int, first_month: int) -> tuple[datetime, datetime]:
    """Three months from first_month of year (winter runs into the next year), inclusive."""
    last = datetime(year + (first_month + 2 > 12), (first_month + 2 - 1) % 12 + 1, 1)
    end = last.replace(day=calendar.monthrange(last.year, last.month)[1], hour=23, minute=59, second=59,
                       microsecond=999999)
    return datetime(year, first_month, 1), end


def place_names(places: Iterable[str]) -> dict[str, str]:
    """Every town, region and country named in these places, by its case-folded form."""
    names: dict[str, str] = {}
    for place in places:
        for part in place.split(", "):
            names.setdefault(part.casefold(), part)
    return names


def _place(text: str, places: Iterable[str] | dict[str, str]) -> Chip | None:
    """A run of up to three words naming a known place (a town, a region or a country of the library's)."""
    names = places if isinstance(places, dict) else place_names(places)
    if not names:
        return None
    words = text.split()
    for size in range(MAX_PLACE_WORDS, 0, -1):
        for start in range(len(words) - size + 1):
            phrase = " ".join(words[start:start + size]).strip(".,;:!?")
            if phrase.casefold() in names:
                return Chip("place", phrase, place=names[phrase.casefold()])
    return None


# The library's place names, per catalog, for this long: a GROUP BY over every item is not per query.
PLACES_TTL_SECONDS = 60.0
_places: dict[int, tuple[float, dict[str, str]]] = {}


def known_places(catalog) -> dict[str, str]:
    """The names in the catalog's places (place_names), read at most once a minute per process."""
    now = time.monotonic()
    cached = _places.get(id(catalog))
    if cached is None or now - cached[0] > PLACES_TTL_SECONDS:
        cached = (now, place_names(catalog.places()))
        _places[id(catalog)] = cached
    return cached[1]


def interpreted(parts: list[QueryPart], filters: Filters, catalog, languages: tuple[str, ...],
                now: datetime | None = None) -> tuple[list[QueryPart], Filters, Understood | None]:
    """The dates and places of the query's one text that pulls towards (its "without" texts and items
    stay as they are) as filters; a filter given outright wins over a typed one."""
    asking = [i for i, part in enumerate(parts) if part.text is not None and part.weight > 0]
    if len(asking) != 1:
        return parts, filters, None
    at = asking[0]
    understood = understand(parts[at].text, known_places(catalog), languages, now)
    chips = []
    for chip in understood.chips:
        if chip.kind == "date" and filters.taken_from is None and filters.taken_to is None:
            filters = replace(filters, taken_from=chip.taken_from, taken_to=chip.taken_to)
        elif chip.kind == "place" and filters.place is None and filters.near is None:
            filters = replace(filters, place=chip.place)
        else:
            continue
        chips.append(chip)
    understood = Understood(understood.text if chips else parts[at].text, chips)
    return [*parts[:at], replace(parts[at], text=understood.text), *parts[at + 1:]], filters, understood
