"""clip-retrieval's own ClipClient, unchanged, against `spyglass serve`."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest
import requests


def load_clip_client():
    """clip_retrieval.clip_client, loaded from the installed package file.

    The package's __init__ imports its whole back end (pyspark-era dependencies that clash with
    ours), so the module is loaded on its own; it needs only requests.
    """
    try:
        path = importlib.metadata.distribution("clip-retrieval").locate_file("clip_retrieval/clip_client.py")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("clip-retrieval is not installed (make setup installs it)")
    spec = importlib.util.spec_from_file_location("clip_client", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_clip_client_text_image_and_embedding_queries(live_server):
    clip_client = load_clip_client()
    client = clip_client.ClipClient(url=live_server["url"] + "/knn-service", indice_name="laion5B",
                                    num_images=5, deduplicate=False)

    by_text = client.query(text="a red bicycle")
    assert len(by_text) == 5
    assert {"id", "similarity", "url", "caption"} <= set(by_text[0])
    assert [r["similarity"] for r in by_text] == sorted((r["similarity"] for r in by_text), reverse=True)

    red = str(live_server["media"] / "red.jpg")
    by_image = client.query(image=red)
    assert by_image[0]["caption"] in ("red.jpg", "nested/red copy.jpg")  # identical files
    assert by_image[0]["similarity"] == pytest.approx(1.0, abs=1e-3)
    assert requests.get(by_image[0]["url"], timeout=10).content == open(red, "rb").read()

    embedding = [0.0] * 32
    embedding[3] = 1.0
    assert len(client.query(embedding_input=embedding)) == 5


def test_clip_client_deduplicates_like_clip_retrieval(live_server):
    clip_client = load_clip_client()
    red = str(live_server["media"] / "red.jpg")

    def captions(deduplicate: bool) -> list[str]:
        client = clip_client.ClipClient(url=live_server["url"] + "/knn-service", indice_name="spyglass",
                                        num_images=3, deduplicate=deduplicate)
        return [r["caption"] for r in client.query(image=red)]

    assert sorted(captions(False)[:2]) == ["nested/red copy.jpg", "red.jpg"]
    deduplicated = captions(True)
    assert len(deduplicated) == 3 and len({"red.jpg", "nested/red copy.jpg"} & set(deduplicated)) == 1


def test_indices_list_and_metadata_shapes(live_server):
    url = live_server["url"]
    assert requests.get(url + "/indices-list", timeout=10).json() == ["spyglass"]
    hits = requests.post(url + "/knn-service", data='{"text": "x", "num_images": 3, "modality": "image",'
                         ' "indice_name": "spyglass"}', timeout=10).json()
    ids = [h["id"] for h in hits]
    meta = requests.post(url + "/metadata", json={"ids": ids[::-1], "indice_name": "spyglass"}, timeout=10).json()
    assert [m["id"] for m in meta] == ids[::-1]
    assert {"url", "caption"} <= set(meta[0]["metadata"])


def test_image_url_is_refused_with_the_alternative(live_server):
    response = requests.post(live_server["url"] + "/knn-service", timeout=10,
                             json={"image_url": "http://example.invalid/x.jpg", "num_images": 3})
    assert response.status_code == 400 and "base64" in response.json()["message"]


def test_clip_client_with_a_token_in_the_url_and_revocation_in_every_worker(accounts_server):
    """ClipClient unchanged, credentials in its URL (basic auth, the token as the password), against
    `spyglass serve --workers 2` with accounts: alice gets her folder only, then a revoked token
    is refused by every worker from the next request on."""
    clip_client = load_clip_client()
    token_id, token = accounts_server["accounts"].create_token("alice")
    base = accounts_server["url"].replace("http://", f"http://alice:{token}@")
    client = clip_client.ClipClient(url=base + "/knn-service", indice_name="spyglass", num_images=20)
    found = client.query(text="a red square")
    assert found and all(row["caption"].startswith("nested/") for row in found)
    anonymous = requests.post(accounts_server["url"] + "/knn-service", json={"text": "red"}, timeout=30)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    accounts_server["accounts"].revoke_token(token_id)
    # Twenty requests spread over both workers' connections: none gets through.
    answers = {requests.get(accounts_server["url"] + "/api/v1/status", headers={"Authorization": f"Bearer {token}",
                                                                               "Connection": "close"},
                            timeout=30).status_code for _ in range(20)}
    assert answers == {401}
