"""Filters at any selectivity over 50,000 items: exact top k of the filtered set, no SQL variable limit."""

import numpy as np
import pytest

from spyglass.indexer.publish import PendingChanges, publish
from spyglass.search.catalog.db import create_db_engine, session_factory
from spyglass.search.engine import SearchEngine
from spyglass.search.catalog.migrate import upgrade
from spyglass.search.query import Filters
from spyglass.search.catalog.schema import EmbeddingModel, MediaRoot
from spyglass.search.settings import Settings
from spyglass.search.store.segmented import SegmentedStore
from synthetic_vectors import clustered_vectors

COUNT = 50_000
DIM = 32
# Folder -> every how many-th item lies in it: 2 items, 0.1 %, 5 % and 50 % of the library.
FOLDERS = {"two": 25_000, "rare": 1_000, "some": 20, "half": 2}


def folder_of(i: int) -> str:
    return next((name for name, every in FOLDERS.items() if i % every == 7 % every), "other")


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_model):
    home = tmp_path_factory.mktemp("scale")
    settings = Settings(runtime="torch", vector_storage="float32", home=home, model=str(tiny_model[0]), pretrained=str(tiny_model[1]), device="cpu")
    engine = create_db_engine(settings.db_url, writer=True)
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        model = EmbeddingModel(architecture=settings.model, pretrained=settings.pretrained, dim=DIM)
        root = MediaRoot(path="/big")
        session.add_all([model, root])
        session.flush()
        model_id, root_id = model.id, root.id
    vectors = clustered_vectors(COUNT, DIM, clusters=50, seed=4)
    changes = PendingChanges(new=[({"path": f"/big/{folder_of(i)}/{i}.jpg", "root_id": root_id, "size": 1,
                                    "mtime_ns": i, "content_hash": f"{i:064x}", "kind": "image",
                                    "format": "JPEG", "width": 1, "height": 1}, vectors[i]) for i in range(COUNT)])
    publish(sessions, SegmentedStore.empty(DIM), settings.index_dir, model_id, "Flat", changes)
    engine.dispose()
    search = SearchEngine(settings)
    yield search
    search.close()


def brute_force(search: SearchEngine, query: np.ndarray, folder: str, k: int) -> list[int]:
    stored = search.live().stored
    ids = stored.ids()
    with search.catalog.sessions() as session:
        from sqlalchemy import select
        from spyglass.search.catalog.schema import MediaItem

        paths = {i: p for i, p in session.execute(select(MediaItem.id, MediaItem.path))}
    members = np.array([i for i in ids if paths[int(i)].startswith(f"/big/{folder}/")])
    scores = stored.vectors(members) @ query
    order = np.lexsort((members, -scores))
    return members[order][:k].tolist()


@pytest.mark.parametrize("folder", list(FOLDERS))
def test_the_filtered_top_k_is_exact_at_every_selectivity(library, folder):
    queries = clustered_vectors(3, DIM, clusters=50, seed=4)  # near the library's own clusters
    for query in queries:
        result = library.search_in(library.live(), query, k=10, filters=Filters(folder=folder))
        expected = brute_force(library, query, folder, 10)
        assert [hit.item.id for hit in result.hits] == expected
        assert all(hit.item.path.startswith(f"/big/{folder}/") for hit in result.hits)


def test_paging_through_a_selective_filter_is_exact(library):
    query = clustered_vectors(1, DIM, clusters=50, seed=5)[0]
    first = library.search_in(library.live(), query, k=20, filters=Filters(folder="rare"))
    second = library.search_in(library.live(), query, k=20, offset=20, filters=Filters(folder="rare"))
    expected = brute_force(library, query, "rare", 50)
    assert [h.item.id for h in first.hits + second.hits] == expected[:40]
    assert second.next_offset == 40
    last = library.search_in(library.live(), query, k=20, offset=40, filters=Filters(folder="rare"))
    assert [h.item.id for h in last.hits] == expected[40:] and last.next_offset is None


@pytest.mark.parametrize("subset_limit", [200_000, 1_000])
def test_filters_over_an_approximate_index(library, monkeypatch, subset_limit):
    """Filters that few enough items meet are scored exactly; broader ones keep the recall target."""
    from spyglass.indexer.ann_build import build
    from spyglass.search import engine as engine_module
    from spyglass.search.engine import Snapshot

    monkeypatch.setattr(engine_module, "SUBSET_LIMIT", subset_limit)
    broad = {name for name, every in FOLDERS.items() if COUNT // every > subset_limit}
    live = library.live()
    built = build(live.stored, "IVF64,PQ8x4fs", 0.9, lambda _: None, progress=False)
    approximate = Snapshot(live.generation, built.ann, live.stored)
    queries = clustered_vectors(5, DIM, clusters=50, seed=4)
    overlap = []
    for folder in FOLDERS:
        for query in queries:
            found = [h.item.id for h in library.search_in(approximate, query, k=10, filters=Filters(folder=folder)).hits]
            expected = brute_force(library, query, folder, 10)
            if folder in broad:
                overlap.append(len(set(found) & set(expected)) / 10)
            else:
                assert found == expected, folder
    assert not overlap or np.mean(overlap) >= 0.9, overlap


@pytest.mark.parametrize("folder", ["two", "rare", "some", "half"])
def test_a_person_who_sees_one_folder_gets_its_exact_top_k(library, folder):
    """The access rule (SPYGLASS_AUTH=accounts) is a condition of the search: someone who sees 2
    items, 0.1 %, 5 % or 50 % of the library gets the exact top k of what they see, and the count
    of it, through search() as the API calls it; a relative grant reads as under every root."""
    from spyglass.search.query import QueryPart

    for grant in (f"/big/{folder}", folder):
        query = clustered_vectors(1, DIM, clusters=50, seed=6)[0]
        result = library.search([QueryPart(embedding=query.tolist())], k=10, filters=Filters(within=(grant,)))
        assert [hit.item.id for hit in result.hits] == brute_force(library, query, folder, 10)
        assert result.total == sum(1 for i in range(COUNT) if folder_of(i) == folder)
