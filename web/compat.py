"""clip-retrieval's back-end endpoints, so its ClipClient and front end work against Spyglass.

Spyglass serves one index of images under any `indice_name`. Their safety, violence, aesthetic
and mclip options have no meaning here and are accepted and ignored; `image_url` is refused,
because the server fetching URLs it is given would let any client make it reach any host.
"""

from __future__ import annotations

import numpy as np
from flask import Blueprint, jsonify, request

from spyglass.search.errors import BadQuery
from spyglass.search.query import Filters, QueryPart

from .auth import principal, within
from .limits import costly, known_costly
from .present import at_moment, item_json, media_fragment
from .search_request import MAX_K, decode_base64, embedding, json_object
from .state import state

INDEX_NAME = "spyglass"
DUPLICATE_SIMILARITY = 0.94  # clip-retrieval's own deduplication threshold
MAX_METADATA_IDS = 10_000

blueprint = Blueprint("compat", __name__)


@blueprint.get("/indices-list")
def indices_list():
    """The names of the indices: just one."""
    return jsonify([INDEX_NAME])


@blueprint.post("/knn-service")
def knn_service():
    """Nearest neighbours as clip-retrieval answers them: [{id, similarity, url, caption, ...}]."""
    web = state()
    early = known_costly(request.content_length)  # an image or an embedding: refused before it is read
    with web.metrics.timed("knn-service"), web.limits.costly(principal().key, when=early):
        body = _json_body()
        part = _query_part(body)
        num_images = _count(body.get("num_images", 40), "num_images")
        engine = web.engine()
        snapshot = engine.live()
        deduplicate = body.get("deduplicate", False) is True
        fetch = min(MAX_K, num_images * 2 if deduplicate else num_images)
        found = within()
        with web.limits.costly(principal().key, when=not early and costly([part], fetch, 0)):
            vector = engine.embed([part], snapshot)
            result = engine.search_in(snapshot, vector, k=fetch,
                                      filters=None if found is None else Filters(within=found))
        hits = _deduplicated(snapshot, result.hits) if deduplicate else result.hits
    return jsonify([_knn_result(hit) for hit in hits[:num_images]])


@blueprint.post("/metadata")
def metadata():
    """[{id, metadata: {url, caption, ...}}] for the given ids, in their order."""
    body = _json_body()
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise BadQuery("ids must be a list of whole numbers")
    if not all(-2**63 <= i < 2**63 for i in ids):
        raise BadQuery("ids must be 64-bit whole numbers")
    if len(ids) > MAX_METADATA_IDS:
        raise BadQuery(f"ids holds {len(ids):,} ids; the limit is {MAX_METADATA_IDS:,} a request")
    engine = state().engine()
    engine.live()  # 503 while nothing is indexed
    rows = {row.id: row for row in engine.visible(list(engine.catalog.items_by_id(ids).values()), within())}
    return jsonify([{"id": i, "metadata": _metadata(rows[i])} for i in ids if i in rows])


def _json_body() -> dict:
    # clip-retrieval's client posts JSON without a content type, so the body is parsed regardless.
    return json_object(request)


def _query_part(body: dict) -> QueryPart:
    if body.get("image_url"):
        raise BadQuery("image_url is not supported: Spyglass does not fetch URLs",
                       "send the image itself, base64-encoded, as `image`")
    if body.get("text"):
        if not isinstance(body["text"], str):
            raise BadQuery("text must be a string")
        return QueryPart(text=body["text"])
    if body.get("image"):
        return QueryPart(image=decode_base64(body["image"], "image"))
    if body.get("embedding_input"):
        return QueryPart(embedding=embedding(body["embedding_input"], "embedding_input"))
    raise BadQuery("must fill one of text, image and embedding_input")


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_K:
        raise BadQuery(f"{name} must be a whole number from 1 to {MAX_K}")
    return value


def _deduplicated(snapshot, hits):
    """Drop results nearly identical to a better one, as clip-retrieval's deduplicate does."""
    kept, vectors = [], []
    for hit in hits:
        vector = snapshot.stored.vector(hit.item.id)
        if all(float(np.dot(vector, v)) < DUPLICATE_SIMILARITY for v in vectors):
            kept.append(hit)
            vectors.append(vector)
    return kept


def _metadata(item) -> dict:
    meta = item_json(item)
    return {"url": meta["file_url"], "caption": meta["caption"] or meta["path"], "thumbnail_url": meta["thumbnail_url"],
            "width": meta["width"], "height": meta["height"], "mtime": meta["mtime"]}


def _knn_result(hit) -> dict:
    """A result; a video's `url` carries its best moment as a media fragment (#t=start,end)."""
    found = {**_metadata(hit.item), "id": hit.item.id, "similarity": round(hit.score, 6)}
    if hit.moments:
        best = hit.moments[0]
        found.update(url=found["url"] + media_fragment(best.start_s, best.end_s),
                     thumbnail_url=at_moment(found["thumbnail_url"], best.best_s),
                     start_s=round(best.start_s, 3), end_s=round(best.end_s, 3))
    return found
