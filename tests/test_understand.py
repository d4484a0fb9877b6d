"""Dates and places read out of a query (search/understand.py): what becomes a filter, what stays
words, and that no text makes it fail or take long."""

from __future__ import annotations

import os
import time
from datetime import datetime

import pytest
from hypothesis import given, settings, strategies as st

from spyglass.search.understand import MAX_UNDERSTOOD_WORDS, understand

NOW = datetime(2026, 12, 4, 10, 0)
PLACES = ["Vanves, Paris, Île-de-France, France", "Ginza, Tokyo, Japan"]


@pytest.mark.parametrize(("typed", "text", "start", "end"), [
    ("dog last summer", "dog", datetime(2026, 6, 1), datetime(2026, 8, 31, 23, 59, 59, 999999)),
    ("snow winter 2022", "snow", datetime(2022, 12, 1), datetime(2023, 2, 28, 23, 59, 59, 999999)),
    ("cake yesterday", "cake", datetime(2026, 12, 3), datetime(2026, 12, 3, 23, 59, 59, 999999)),
    ("party 2019", "party", datetime(2019, 1, 1), datetime(2019, 12, 31, 23, 59, 59, 999999)),
])
def test_dates_become_spans(typed, text, start, end):
    understood = understand(typed, PLACES, ("en",), NOW)
    assert understood.text == text
    date = understood.date()
    assert (date.taken_from, date.taken_to) == (start, end)


@pytest.mark.parametrize("typed", ["a second dog", "march of the penguins", "sunset in may", "summer dress",
                                   "now and then", "the 3 musketeers 3000", "2999 a space odyssey"])
def test_words_that_only_look_like_dates_stay_words(typed):
    understood = understand(typed, PLACES, ("en",), NOW)
    assert understood.date() is None and understood.text == typed


def test_places_are_the_librarys_own_in_any_case():
    understood = understand("sushi in TOKYO", PLACES, ("en",), NOW)
    assert understood.text == "sushi" and understood.place().place == "Tokyo"
    assert understand("sushi in Osaka", PLACES, ("en",), NOW).place() is None
    both = understand("Paris 2019", PLACES, ("en",), NOW)
    assert both.text == "Paris 2019" and {chip.kind for chip in both.chips} == {"date", "place"}


def test_a_long_description_is_searched_as_typed():
    typed = "a red bicycle leaning on a wall in Paris in July 2023 next to a bakery"
    assert len(typed.split()) > MAX_UNDERSTOOD_WORDS
    understood = understand(typed, PLACES, ("en", "fr", "de"), NOW)
    assert understood.chips == [] and understood.text == typed


@settings(max_examples=int(os.environ.get("SPYGLASS_FUZZ_EXAMPLES", "150")), deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_understood_quickly_and_without_error(text):
    started = time.perf_counter()
    understood = understand(text, PLACES, ("en", "fr", "de"), NOW)
    assert time.perf_counter() - started < 2.0
    assert isinstance(understood.text, str)
    for chip in understood.chips:
        if chip.kind == "date":
            assert chip.taken_from <= chip.taken_to and chip.taken_from.year >= 1900 and chip.taken_to.year <= 2027
