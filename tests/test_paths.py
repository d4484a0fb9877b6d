"""Which paths lie inside a folder: exact (case matters, prefixes are not folders), on both databases."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from sqlalchemy import delete, func, insert, select

from conftest import MEDIA
from spyglass.indexer.job import run_index
from spyglass.indexer.staging import drop_staged, model_key
from spyglass.search.catalog.db import create_db_engine, session_factory
from spyglass.search.engine import SearchEngine
from spyglass.search.catalog.migrate import upgrade
from spyglass.search.media.paths import inside, is_inside
from spyglass.search.query import Filters, QueryPart
from spyglass.search.catalog.schema import MediaItem, SkippedFile, StagedVector

# Letters that differ only by case, the LIKE wildcards, and the characters either side of "/".
PATH_CHARS = st.sampled_from(list("aAbB/._-0%é猫"))
PATHS = st.lists(st.text(PATH_CHARS, min_size=1, max_size=8).map(lambda p: "/m/" + p),
                 min_size=1, max_size=25, unique=True)


@pytest.fixture
def catalog(database_url):
    engine = create_db_engine(database_url, writer=True)
    upgrade(engine)
    yield engine
    engine.dispose()


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths=PATHS, folder=st.text(PATH_CHARS, min_size=1, max_size=4).map(lambda f: "/m/" + f))
def test_sql_inside_is_exactly_the_python_rule(catalog, paths, folder):
    with catalog.begin() as connection:
        connection.execute(delete(SkippedFile))
        connection.execute(insert(SkippedFile), [dict(path=p, size=1, mtime_ns=1, reason="x") for p in paths])
        found = set(connection.scalars(select(SkippedFile.path).where(inside(SkippedFile.path, folder))))
    assert found == {p for p in paths if is_inside(p, folder)}
    assert all(p.startswith(folder.rstrip("/") + "/") for p in found)


def _library(tmp_path, *folders: str) -> list[str]:
    """Folders under tmp_path/m, each with one image of its own and one corrupt file."""
    roots = []
    for i, name in enumerate(folders):
        root = tmp_path / "m" / name
        root.mkdir(parents=True)
        shutil.copy(MEDIA / ("red.jpg" if i % 2 else "Blue Square.PNG"), root / f"only-in-{name}.png")
        shutil.copy(MEDIA / "corrupt.jpg", root / "corrupt.jpg")
        roots.append(str(root))
    return roots


def _items(settings) -> dict[str, list[str]]:
    engine = create_db_engine(settings.db_url)
    with session_factory(engine)() as session:
        paths = sorted(session.scalars(select(MediaItem.path)))
        skipped = sorted(session.scalars(select(SkippedFile.path)))
    engine.dispose()
    return {"items": paths, "skipped": skipped}


@pytest.mark.parametrize("names", [("photos", "Photos"), ("a", "ab"), ("a", "a0"), ("a", "a b")])
def test_indexing_one_folder_never_touches_a_sibling(settings, tmp_path, encoder, names):
    first, second = _library(tmp_path, *names)
    run_index(settings, [first], encoder=encoder, progress=False)
    run_index(settings, [second], encoder=encoder, progress=False)
    both = _items(settings)
    assert len(both["items"]) == 2 and len(both["skipped"]) == 2

    # Again, each alone: nothing removed, the other's items and skip records kept.
    for root in (first, second, first):
        summary = run_index(settings, [root], encoder=encoder, progress=False)
        assert (summary.removed, summary.added, summary.embedded) == (0, 0, 0), root
    assert _items(settings) == both


def test_staged_vectors_of_a_sibling_folder_survive(settings, tmp_path):
    lower, upper = _library(tmp_path, "photos", "Photos")
    engine = create_db_engine(settings.db_url, writer=True)
    upgrade(engine)
    sessions = session_factory(engine)
    key = model_key(("arch", "weights"))
    with sessions.begin() as session:
        session.add_all(StagedVector(model=key, path=f"{root}/x.png", size=1, mtime_ns=1, content_hash="0" * 64,
                                     format="PNG", width=1, height=1, vector=b"\0" * 8) for root in (lower, upper))
    drop_staged(sessions, [upper])
    with sessions() as session:
        assert list(session.scalars(select(StagedVector.path))) == [f"{lower}/x.png"]
    engine.dispose()


def test_folder_filter_is_exact(settings, tmp_path, encoder):
    roots = _library(tmp_path, "photos", "Photos", "photos2")
    run_index(settings, roots, encoder=encoder, progress=False)
    engine = SearchEngine(settings, encoder_loader=lambda a, p: encoder)
    probe = [QueryPart(embedding=np.ones(encoder.dim, dtype=np.float32))]

    def names(folder: str) -> list[str]:
        hits = engine.search(probe, k=10, filters=Filters(folder=folder)).hits
        return sorted(h.item.path.rsplit("/", 1)[1] for h in hits)

    assert names(roots[0]) == ["only-in-photos.png"]
    assert names(roots[1]) == ["only-in-Photos.png"]
    assert names(str(tmp_path / "m")) == ["only-in-Photos.png", "only-in-photos.png", "only-in-photos2.png"]
    with engine.catalog.sessions() as session:
        assert session.scalar(select(func.count(MediaItem.id))) == 3
    engine.close()
