"""The live generation, kept loaded and current: what a search worker answers from.

A newer generation is read, checked and mapped outside any lock that requests take, and the
reference swapped when it is ready; segments already loaded are reused; the worker's lease
(which generation it holds, so the indexer keeps its files) is written off the request path.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine

from spyglass.search.store.ann import AnnIndex, AnnParams, has_exact_codes
from spyglass.search.catalog.queries import Catalog
from spyglass.search.catalog.db import create_db_engine, session_factory
from spyglass.search.errors import EmptyDatabase, IndexFileError, NoIndex
from spyglass.search.catalog.migrate import require_current
from spyglass.search.catalog.schema import LEASE_REFRESH_SECONDS, IndexGeneration, IndexReader, utcnow
from spyglass.search.store.segmented import SegmentedStore
from spyglass.search.settings import Settings
from spyglass.search.store.flat import VectorIndex, read_faiss_file

log = logging.getLogger(__name__)
# When the newest generation's file is damaged, a starting worker tries this many older ones.
FALLBACK_GENERATIONS = 3


@dataclass(frozen=True)
class Snapshot:
    """One loaded generation; a request uses one snapshot from start to end."""

    generation: IndexGeneration
    searcher: VectorIndex | AnnIndex  # what searches: on the search device, exact or approximate
    stored: SegmentedStore  # the exact vectors, on the CPU: image_id lookups, scoring, filters


class LiveIndex:
    """Keeps the live generation loaded; hands each request the snapshot to answer from."""

    def __init__(self, settings: Settings, db: Engine, catalog: Catalog, background_reload: bool = False):
        self.settings = settings
        self.db = db
        self.catalog = catalog
        # Under a server, a newer generation is loaded by a background thread and no request
        # waits for it; in-process users (CLI, tests) get it on their next call.
        self.background_reload = background_reload
        self._loader: threading.Thread | None = None
        self._snapshot: Snapshot | None = None
        self._segment_cache: dict = {}
        self._schema_checked = False
        self._load_lock = threading.Lock()
        self._lease_lock = threading.Lock()
        self._bad_generations: set[int] = set()
        self.reader_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._lease_db = None
        self._lease_written = 0.0
        self._leased: int | None = None

    def current(self) -> Snapshot:
        """The live generation, loaded; reloaded when the catalog names a newer one.

        A newer generation is read, checked and mapped outside any lock that requests take:
        by a background thread (background_reload), or by the first request that sees it while
        the others go on with the loaded one.
        """
        generation = self.catalog.live_generation() if self.schema_ready() else None
        if generation is None:
            raise NoIndex("nothing is indexed yet", "run `spyglass index <folder>` first")
        current = self._snapshot
        newer = current is not None and current.generation.id < generation.id \
            and generation.id not in self._bad_generations
        if newer and self.background_reload:
            self._load_in_background(generation)
        elif current is None or newer:
            # Only the very first load makes others wait: there is nothing to serve before it.
            if self._load_lock.acquire(blocking=current is None):
                try:
                    current = self._snapshot
                    if current is None or current.generation.id < generation.id:
                        current = self._load(generation, current)
                finally:
                    self._load_lock.release()
            current = self._snapshot or current
        current = self._intact(current)
        self._announce(current.generation.id)
        return current

    def _intact(self, snapshot: Snapshot) -> Snapshot:
        """The snapshot, when its mapped files still have their recorded sizes; else an older
        intact generation, or IndexFileError (503) until `spyglass check --repair` publishes one.

        Reading a mapped file that was truncated kills the worker (SIGBUS): the sizes are checked
        before every request, so a damaged file costs a logged line and a 503, not a worker.
        """
        damaged = snapshot.stored.damaged_files(self.settings.index_dir)
        if not damaged:
            return snapshot
        with self._load_lock:
            if self._snapshot is snapshot:
                return self._fall_back(snapshot, damaged)
        replacement = self._snapshot  # what another request loaded in its place, if anything could be
        if replacement is None:
            raise IndexFileError(f"the index file {damaged[0]} is damaged", "run `spyglass check --repair`")
        return self._intact(replacement)

    def _fall_back(self, snapshot: Snapshot, damaged: list[str]) -> Snapshot:
        """Stop searching a damaged snapshot: load an older intact generation, or raise. Call under the load lock."""
        log.error("index generation %s: %s changed size on disk since it was loaded; not searching it "
                  "(run `spyglass check --repair`)", snapshot.generation.id, ", ".join(damaged))
        self._bad_generations.add(snapshot.generation.id)
        self._segment_cache = {key: segment for key, segment in self._segment_cache.items()
                               if key[0] not in damaged}
        self._snapshot = None
        try:
            return self._load(snapshot.generation, None)
        except (IndexFileError, NoIndex):
            raise IndexFileError(f"the index file {damaged[0]} is damaged and no older intact generation "
                                 "is left", "run `spyglass check --repair`") from None

    def _load_in_background(self, generation: IndexGeneration) -> None:
        if not self._load_lock.acquire(blocking=False):
            return  # a load is under way
        def load() -> None:
            try:
                current = self._snapshot
                if current is None or current.generation.id < generation.id:
                    self._load(generation, current)
            except Exception:  # noqa: BLE001 - the loaded generation keeps serving
                log.exception("could not load index generation %s", generation.id)
            finally:
                self._load_lock.release()
        self._loader = threading.Thread(target=load, daemon=True, name="spyglass-reload")
        self._loader.start()

    def wait_for_reload(self, timeout: float = 60.0) -> None:
        """Block until a background load in flight has finished (tests, benchmarks)."""
        loader = self._loader
        if loader is not None:
            loader.join(timeout)

    def _load(self, generation: IndexGeneration, current: Snapshot | None) -> Snapshot:
        """Load a newer generation; on a damaged file keep serving what is loaded."""
        candidates = [generation] if current is not None else \
            self.catalog.recent_generations(FALLBACK_GENERATIONS + 1)
        error: IndexFileError | None = None
        for candidate in candidates:
            if candidate.id in self._bad_generations:
                continue
            try:
                snapshot = self._read(candidate)
            except IndexFileError as exc:
                log.error("not loading index generation %s: %s", candidate.id, exc)
                self._bad_generations.add(candidate.id)
                error = error or exc
                continue
            self._snapshot = snapshot  # one reference swap: requests hold whichever they took
            return snapshot
        if current is not None:
            return current
        raise error or IndexFileError("the files of every recent index generation are damaged",
                                      "run `spyglass check --repair`")

    def _read(self, generation: IndexGeneration) -> Snapshot:
        """A generation's stored vectors (segments, memory-mapped) and its approximate index, if any."""
        directory = self.settings.index_dir
        # Segments already loaded for the current generation are reused: a worker reads (and
        # checks) only the files a publish wrote.
        stored = SegmentedStore.load(directory, generation.base_file(), generation.manifest(),
                                     cache=self._segment_cache, mmap=True)
        stored.sorted_ids()  # computed now, not by the first query
        self._segment_cache = {(f.filename, f.checksum): segment
                               for f, segment in zip(stored.files, stored.segments, strict=True)}
        if generation.ann_filename:
            raw = read_faiss_file(directory / generation.ann_filename, generation.ann_size_bytes,
                                  generation.ann_checksum)
            searcher = AnnIndex(raw, stored, AnnParams.from_json(generation.ann_params),
                                exact_codes=has_exact_codes(generation.ann_factory),
                                duplicates=bool(generation.ann_stale)).on_search_device()
        else:
            searcher = stored.on_search_device()
        return Snapshot(generation, searcher, stored)

    def _announce(self, generation_id: int) -> None:
        """Record which generation this engine holds, so the indexer keeps its file.

        Written by a background thread: a slow or locked database never holds up a query.
        """
        now = time.monotonic()
        if now - self._lease_written < LEASE_REFRESH_SECONDS and self._leased == generation_id:
            return
        if not self._lease_lock.acquire(blocking=False):
            return  # another thread is writing it
        self._lease_written, self._leased = now, generation_id
        threading.Thread(target=self._write_lease, args=(generation_id,), daemon=True,
                         name="spyglass-lease").start()

    def _write_lease(self, generation_id: int) -> None:
        try:
            if self._lease_db is None:
                self._lease_db = create_db_engine(self.settings.db_url, writer=True)
            with session_factory(self._lease_db).begin() as session:
                session.merge(IndexReader(reader=self.reader_id, generation_id=generation_id,
                                          seen_at=utcnow()))
        except Exception:  # noqa: BLE001 - a lease is advice to the indexer, never worth a failed query
            self._lease_written = 0.0  # try again with the next query
            log.warning("could not record the index lease of %s", self.reader_id, exc_info=True)
        finally:
            self._lease_lock.release()

    def wait_for_lease(self, timeout: float = 10.0) -> None:
        """Block until a lease write in flight has finished (for tests and shutdown)."""
        if self._lease_lock.acquire(timeout=timeout):
            self._lease_lock.release()

    def schema_ready(self) -> bool:
        # Checked until it passes once: a running engine does not see its schema go backwards.
        if not self._schema_checked:
            try:
                require_current(self.db)
            except EmptyDatabase:
                return False
            self._schema_checked = True
        return True

    def close(self) -> None:
        """Withdraw this worker's lease."""
        self.wait_for_lease()
        if self._lease_db is not None:
            try:
                with session_factory(self._lease_db).begin() as session:
                    reader = session.get(IndexReader, self.reader_id)
                    if reader is not None:
                        session.delete(reader)
            except Exception:  # noqa: BLE001 - closing must not fail
                log.warning("could not withdraw the index lease", exc_info=True)
            self._lease_db.dispose()
