"""How a run ends when it is cut short: Ctrl-C, or folders that are all missing."""

from __future__ import annotations

import pytest
from PIL import Image

from conftest import GOOD_IMAGES
from spyglass.indexer.job import run_index


def test_ctrl_c_marks_the_run_interrupted_and_says_running_again_resumes(sqlite_settings, media, encoder):
    """Not "everything published is kept" when nothing was, and not a `failed` run."""
    from spyglass.search.errors import RunInterrupted
    from spyglass.search.status import status_report

    for i in range(12):
        Image.new("RGB", (32, 32), (i * 20, 255 - i * 20, 7)).save(media / f"extra-{i:02d}.png")
    calls = []

    class CtrlCAfterTwoBatches:
        def __getattr__(self, name):
            return getattr(encoder, name)

        def encode_pixels(self, pixels):
            calls.append(len(pixels))
            if len(calls) == 3:
                raise KeyboardInterrupt
            return encoder.encode_pixels(pixels)

    with pytest.raises(RunInterrupted) as stopped:
        run_index(sqlite_settings, [str(media)], encoder=CtrlCAfterTwoBatches(), progress=False)
    assert str(stopped.value) == ("interrupted before this run published anything; the batches it embedded are "
                                  "staged (run the same command again: it resumes from them)")
    assert status_report(sqlite_settings)["last_run"]["status"] == "interrupted"
    summary = run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False)
    assert summary.resumed == 6 and summary.added == len(GOOD_IMAGES) + 12
    # A run that published a checkpoint before Ctrl-C says which generation it kept.
    for i in range(12, 24):
        Image.new("RGB", (32, 32), (i * 10, 7, 255 - i * 10)).save(media / f"extra-{i:02d}.png")
    calls.clear()
    with pytest.raises(RunInterrupted, match=r"what this run published is kept \(generation \d+\)"):
        run_index(sqlite_settings.override(checkpoint_items=3), [str(media)], encoder=CtrlCAfterTwoBatches(),
                  progress=False)


def test_the_words_stage_of_no_folders_reads_no_items(sqlite_settings, media, encoder):
    """A run whose recorded folders are all missing covers no items, not every item."""
    from sqlalchemy import delete

    from spyglass.indexer.texts.stage import update_texts
    from spyglass.search.catalog.db import create_db_engine, session_factory
    from spyglass.search.catalog.schema import TextExtraction

    run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False)
    engine = create_db_engine(sqlite_settings.db_url, writer=True)
    sessions = session_factory(engine)
    with sessions.begin() as session:  # every item's names would be read again, if it were covered
        session.execute(delete(TextExtraction))
    assert update_texts(sessions, sqlite_settings, [], print, progress=False).read == {}
    assert sum(update_texts(sessions, sqlite_settings, [str(media)], print, progress=False).read.values()) > 0
    engine.dispose()
