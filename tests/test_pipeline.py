"""The batch pipeline: decoding off the main thread, order kept, bad files skipped, batches full."""

from __future__ import annotations

import threading
import time
from functools import partial

import numpy as np
import pytest

from spyglass.indexer.decode import LoadedFile, load_file
from spyglass.indexer.pipeline import EmbeddedBatch, PipelineStats, embed_files
from spyglass.indexer.scan import FoundFile, Skipped, walk
from spyglass.search.media.files import MediaRoots


def test_pipeline_decodes_in_threads_and_keeps_order(media, encoder):
    files = [f for f in walk(media) if isinstance(f, FoundFile)]
    decode_threads = set()

    def load(found):
        decode_threads.add(threading.current_thread().name)
        return load_file(found, encoder.preprocess, 89_478_485, encoder.image_size, lambda *_: True,
                         MediaRoots((str(media),)))

    events = list(embed_files(files, load, encoder.encode_pixels, batch_size=3, workers=2))

    batches = [e for e in events if isinstance(e, EmbeddedBatch)]
    skipped = [e for e in events if isinstance(e, Skipped)]
    assert [s.path.rsplit("/", 1)[-1] for s in skipped] == ["corrupt.jpg"]
    assert [len(b.files) for b in batches] == [3, 3, 2]  # the bad file did not stop its batch
    embedded = [f.file.path for b in batches for f in b.files]
    assert embedded == [f.path for f in files if not f.path.endswith("corrupt.jpg")]
    assert all(b.vectors.shape == (len(b.files), encoder.dim) for b in batches)
    assert decode_threads and threading.main_thread().name not in decode_threads
    assert all(name.startswith("spyglass-decode") for name in decode_threads)


def test_vectors_match_embedding_each_image_alone(media, encoder):
    files = [f for f in walk(media) if isinstance(f, FoundFile) and not f.path.endswith("corrupt.jpg")]
    load = partial(load_file, preprocess=encoder.preprocess, max_pixels=89_478_485,
                   draft_size=encoder.image_size, needs_pixels=lambda *_: True, media=MediaRoots((str(media),)))
    events = embed_files(files, load, encoder.encode_pixels, batch_size=4, workers=2)
    batches = [e for e in events if isinstance(e, EmbeddedBatch)]
    single = encoder.encode_pixels(load(files[5]).pixels[None])
    together = np.concatenate([b.vectors for b in batches])
    assert np.allclose(together[5], single[0], atol=1e-5)


def test_files_that_need_no_embedding_pass_through_without_decoding(media, encoder):
    files = [f for f in walk(media) if isinstance(f, FoundFile)]
    load = partial(load_file, preprocess=encoder.preprocess, max_pixels=89_478_485,
                   draft_size=encoder.image_size, needs_pixels=lambda *_: False,
                   media=MediaRoots((str(media),)))
    events = list(embed_files(files, load, encoder.encode_pixels, 3, 2))
    # Even the corrupt file is only hashed: nothing is decoded when nothing needs a vector.
    assert all(isinstance(e, LoadedFile) and e.pixels is None for e in events)
    assert len({e.content_hash for e in events}) == len(files)


def test_the_caller_writes_while_the_encoder_embeds_the_next_batch(media, encoder):
    files = [f for f in walk(media) if isinstance(f, FoundFile) and not f.path.endswith("corrupt.jpg")]
    load = partial(load_file, preprocess=encoder.preprocess, max_pixels=89_478_485,
                   draft_size=encoder.image_size, needs_pixels=lambda *_: True, media=MediaRoots((str(media),)))
    encoded_while_writing = []
    writing = threading.Event()
    encode_threads = set()

    def encode(pixels):
        encode_threads.add(threading.current_thread().name)
        encoded_while_writing.append(writing.is_set())
        return encoder.encode_pixels(pixels)

    stats = PipelineStats()
    for event in embed_files(files, load, encode, batch_size=2, workers=2, stats=stats):
        if isinstance(event, EmbeddedBatch):
            writing.set()  # a slow SQL write: the encoder must not wait for it
            time.sleep(0.2)
            writing.clear()
    assert encode_threads == {"spyglass-encoder"}
    assert any(encoded_while_writing[1:]), "no batch was embedded while the caller was writing"
    assert stats.batches == len(encoded_while_writing) == 4
    assert 0 < stats.encode_seconds <= stats.seconds
    assert "encoder busy" in stats.line()


def test_a_failure_in_the_encoder_reaches_the_caller_and_stops_the_threads(media, encoder):
    files = [f for f in walk(media) if isinstance(f, FoundFile)]
    load = partial(load_file, preprocess=encoder.preprocess, max_pixels=89_478_485,
                   draft_size=encoder.image_size, needs_pixels=lambda *_: True, media=MediaRoots((str(media),)))

    def encode(pixels):
        raise MemoryError("out of memory in the encoder")

    with pytest.raises(MemoryError, match="out of memory"):
        list(embed_files(files, load, encode, batch_size=2, workers=2))
    time.sleep(0.2)
    assert not [t for t in threading.enumerate() if t.name.startswith(("spyglass-encoder", "spyglass-decode"))]


def test_a_caller_that_stops_early_stops_the_threads(media, encoder):
    files = [f for f in walk(media) if isinstance(f, FoundFile)] * 20
    load = partial(load_file, preprocess=encoder.preprocess, max_pixels=89_478_485,
                   draft_size=encoder.image_size, needs_pixels=lambda *_: True, media=MediaRoots((str(media),)))
    events = embed_files(files, load, encoder.encode_pixels, batch_size=2, workers=2)
    next(events)
    events.close()  # what an interrupt in the caller does
    time.sleep(0.2)
    assert not [t for t in threading.enumerate() if t.name.startswith(("spyglass-encoder", "spyglass-decode"))]
