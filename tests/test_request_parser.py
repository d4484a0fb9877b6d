"""Property tests of the search request parser: any input becomes a bounded request or a BadQuery."""

from __future__ import annotations

import json

from flask import Flask
from hypothesis import given, settings, strategies as st

from spyglass.search.errors import BadQuery
from spyglass.search.query import MAX_TEXT_BYTES
from spyglass.web.search_request import MAX_K, MAX_RESULTS_DEEP, parse_search_request

APP = Flask(__name__)
FIELDS = ["q", "text", "image_id", "k", "offset", "min_score", "folder", "kind", "mtime_from", "mtime_to",
          "image_base64", "embedding", "query", "filters", "weight"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5),
                                                                inner, max_size=5),
    max_leaves=25)


def check_bounded(request) -> None:
    """What the parser lets through is inside every documented bound."""
    assert 1 <= request.k <= MAX_K and 0 <= request.offset <= MAX_RESULTS_DEEP - request.k
    assert 1 <= len(request.parts)
    for part in request.parts:
        if part.text is not None:
            assert part.text.strip() and len(part.text.encode()) <= MAX_TEXT_BYTES
    for bound in (request.filters.mtime_from_ns, request.filters.mtime_to_ns):
        assert bound is None or -2**63 <= bound < 2**63


def parse(**request_kwargs):
    with APP.test_request_context(**request_kwargs):
        from flask import request

        try:
            return parse_search_request(request)
        except BadQuery as exc:
            assert str(exc)  # always says what is wrong
            return None


@settings(max_examples=400, deadline=None)
@given(body=JSON_VALUES)
def test_any_json_body_is_a_bounded_request_or_a_bad_query(body):
    parsed = parse(path="/api/v1/search", method="POST", data=json.dumps(body), content_type="application/json")
    if parsed is not None:
        check_bounded(parsed)


@settings(max_examples=400, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=30), max_size=6))
def test_any_query_string_is_a_bounded_request_or_a_bad_query(fields):
    parsed = parse(path="/api/v1/search", method="GET", query_string=fields)
    if parsed is not None:
        check_bounded(parsed)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_any_bytes_posted_as_json_are_a_bad_query_at_worst(raw):
    parsed = parse(path="/api/v1/search", method="POST", data=raw, content_type="application/json")
    if parsed is not None:
        check_bounded(parsed)
