"""`spyglass index`: scan, diff, embed and publish, with progress and a summary."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable, Iterator

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from spyglass.search.store.ann import check_factory
from spyglass.search.catalog.queries import live_generation
from spyglass.search.catalog.db import create_db_engine, session_factory
from spyglass.search.display import printable
from spyglass.search.model.encoder import Encoder, load_encoder, model_identity
from spyglass.search.errors import ConfigError, ModelMismatch, SpyglassError
from spyglass.search.failpoints import failpoint
from spyglass.search.media.images import decode_gate
from spyglass.search.store.index_choice import is_auto
from spyglass.search.model.zero_shot import LabelSet
from spyglass.search.catalog.lock import indexer_lock
from spyglass.search.media.files import MediaRoots
from spyglass.search.catalog.migrate import upgrade
from spyglass.search.media.paths import inside
from spyglass.search.model.precision import PrecisionMix
from spyglass.search.catalog.schema import EmbeddingModel, IndexRun, MediaItem, MediaRoot, SkippedFile, utcnow
from spyglass.search.settings import Settings
from spyglass.search.store.segmented import SegmentedStore

from .decode import LoadedFile, VideoRules, load_file
from .labels import update_labels
from .pipeline import EmbeddedBatch, PipelineStats, embed_files, serialised
from .plan import Plan, plan_run, under
from .ann_build import build_to_target, wanted_factory
from .ann_carry import GROWTH_FACTOR, CarriedAnn, worn
from .publish import PendingChanges, publish, publish_index
from .scan import FoundFile, ScanCounts, Skipped, video_support, walk
from .ray_runner import Partition, PartitionResult, PartitionStats, RayRunner, WorkerJob, partitions, stats_line
from .staging import drop_staged, model_key, stage, stage_partition, staged_vectors


log = logging.getLogger(__name__)


@dataclass
class IndexSummary:
    """What one run did."""

    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    embedded: int = 0
    resumed: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    generation_id: int | None = None
    labelled: int = 0
    videos: int = 0  # embedded this run
    video_seconds: float = 0.0
    frames_kept: int = 0
    frames_sampled: int = 0
    ray_line: str = ""  # the Ray runner's partitions and their timings, when it ran

    def line(self) -> str:
        """'12 added, 1 updated, 0 moved, 2 skipped, 0 removed, 40 unchanged (3.1 s, 9.7 images/s)'."""
        images = self.embedded - self.videos
        rate = (f", {images / self.embed_seconds:.1f} images/s"
                if images and self.embed_seconds else "")
        if self.videos:
            rate += (f", {self.videos:,} videos ({self.video_seconds / 60:.1f} min): {self.frames_kept:,} "
                     f"frames kept of {self.frames_sampled:,} sampled")
        resumed = f", {self.resumed:,} taken from an interrupted run" if self.resumed else ""
        labelled = f", {self.labelled:,} labelled" if self.labelled else ""
        ray = f"\n{self.ray_line}" if self.ray_line else ""
        return (f"{self.added:,} added, {self.updated:,} updated, {self.moved:,} moved, "
                f"{len(self.skipped):,} skipped, {self.removed:,} removed, "
                f"{self.unchanged:,} unchanged ({self.seconds:.1f} s{rate}{resumed}{labelled}){ray}")


class IndexJob:
    """One run over some media roots; call run().

    roots=None means every recorded root plus SPYGLASS_MEDIA (the nightly reindex); those are
    read under the lock, and the ones that are missing (an unmounted disk) keep their items.
    """

    def __init__(self, settings: Settings, roots: list[str] | None, rebuild: bool = False,
                 encoder: Encoder | None = None, progress: bool = True,
                 echo: Callable[[str], None] | None = None, rebuild_on_model_change: bool = False,
                 drop_missing: bool = False):
        self.settings = settings
        self.echo = echo or _to_stderr
        self._recorded_roots = roots is None
        self.roots = [] if roots is None else [_check_root(root) for root in roots]
        self.drop_missing = drop_missing
        self.rebuild = rebuild
        self.rebuild_on_model_change = rebuild_on_model_change
        self._encoder = encoder
        self.progress = progress
        self.db = create_db_engine(settings.db_url, writer=True)
        self.sessions: sessionmaker[Session] = session_factory(self.db)
        self.identity = model_identity(settings.model, settings.pretrained)
        self.model_key = model_key(self.identity)
        self.summary = IndexSummary()
        self._text_swap = False
        self._index: SegmentedStore | None = None
        self._ann: CarriedAnn | None = None
        self._model_id: int | None = None
        self._precision = PrecisionMix()  # of the vectors in the index being built
        self._partition_stats: list[PartitionStats] = []  # of the Ray runner's partitions, as they finish
        self._unclaimed: list[FoundFile] = []  # Ray: copies of a moved file that lost the claim

    def run(self) -> IndexSummary:
        """Bring the catalog and index in step with the roots."""
        started = time.monotonic()
        # The lock first: migrations, like everything else that writes, run one indexer at a time.
        with indexer_lock(self.db, self.settings.home):
            before, after = upgrade(self.db)
            if before != after:
                self.echo(f"Catalog database migrated from {before or 'empty'} to {after}.")
            return self._run_locked(started)

    def _run_locked(self, started: float) -> IndexSummary:
        interrupted = mark_interrupted_runs(self.sessions)
        if interrupted:
            self.echo(f"{interrupted} earlier run(s) had been killed before they finished; "
                      "this run carries on from what they staged.")
        if self._recorded_roots:
            self.roots = self._present_recorded_roots()
        self._check_model()
        self._check_index_setting()
        if self.settings.labels:
            LabelSet.read(self.settings.labels)  # a bad labels file stops the run before any work
        run_id = self._start_run()
        try:
            self._index_roots()
        except BaseException as exc:
            self._finish_run(run_id, "failed", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.summary.seconds = time.monotonic() - started
        self._finish_run(run_id, "done")
        return self.summary

    def _present_recorded_roots(self) -> list[str]:
        """Recorded roots and SPYGLASS_MEDIA; a missing one is skipped and its items kept."""
        with self.sessions() as session:
            recorded = list(session.scalars(select(MediaRoot.path).order_by(MediaRoot.path)))
        wanted = dict.fromkeys(recorded + [os.path.abspath(os.path.expanduser(r))
                                           for r in self.settings.media_roots])
        if not wanted:
            raise ConfigError("no folders to reindex",
                              "give the folders, run `spyglass index <folder>` first, or set SPYGLASS_MEDIA")
        present = []
        for root in wanted:
            if os.path.isdir(root):
                present.append(root)
            elif self.drop_missing and root in recorded:
                present.append(root)  # walked as empty: its items leave the index
                self.echo(f"folder {printable(root)} is missing: dropping its items (--drop-missing)")
            else:
                # An unmounted disk must not look like a library whose every file was deleted.
                self.echo(f"skipping folder {printable(root)}: it is missing; its items stay in the index")
        return present

    def _check_model(self) -> None:
        with self.sessions() as session:
            live = live_generation(session)
            if self.rebuild:
                self.roots = sorted(set(self.roots) | set(self._rebuild_roots(session)))
        if live is None or self.rebuild:
            return
        if (live.model.architecture, live.model.pretrained) != self.identity:
            arch, weights = self.identity
            if self._same_image_tower(live.model):
                self.echo(f"The model changed from {live.model.describe()} to {arch} ({weights or 'random weights'}), "
                          f"but its image tower is the live one's: the new model takes over the "
                          f"{live.vector_count:,} vectors of the live index, and no image is embedded again.")
                self._text_swap = True
                return
            if self.rebuild_on_model_change:
                self.echo(f"The model changed from {live.model.describe()} to {arch} "
                          f"({weights or 'random weights'}): building a new index beside the live one.")
                self.rebuild = True
                self._check_model()  # again, as a rebuild: it covers every recorded root
                return
            raise ModelMismatch(
                f"the index was built with {live.model.describe()}, this run asks for "
                f"{arch} ({weights or 'random weights'}); one index never mixes two models",
                "run `spyglass index --rebuild` to re-embed everything with the new model, or "
                "set SPYGLASS_MODEL / SPYGLASS_PRETRAINED back")

    def _check_index_setting(self) -> None:
        """A factory string FAISS cannot build is refused before anything is embedded."""
        setting = self.settings.index_factory
        if is_auto(setting) or setting == "Flat":
            return
        with self.sessions() as session:
            live = live_generation(session)
        check_factory(setting, live.model.dim if live is not None and not self.rebuild else self.encoder().dim)

    def _same_image_tower(self, live_model: EmbeddingModel) -> bool:
        """Whether the configured model embeds images exactly as the live index's model did.

        True after a text-side fine-tune (`spyglass finetune --lock-image`): the image tower's
        weights are the same, so are its vectors. A model row recorded before checksums were
        kept gets one now, if its weights are at hand.
        """
        recorded = live_model.image_tower
        if recorded is None:
            try:
                old = load_encoder(live_model.architecture, live_model.pretrained or None, self.settings.device,
                                   self.settings.model_cache)
            except SpyglassError:
                return False
            recorded = old.image_tower if live_model.pretrained else None  # random weights are never the same twice
            with self.sessions.begin() as session:
                session.get(EmbeddingModel, live_model.id).image_tower = recorded
        encoder = self.encoder()
        return recorded is not None and recorded == getattr(encoder, "image_tower", None) and encoder.dim == live_model.dim

    def _rebuild_roots(self, session: Session) -> list[str]:
        """Every recorded root, for a rebuild; refused while one that holds items is missing.

        A rebuild re-embeds every item with the configured model: the items of an unmounted
        folder could not be, and would drop out of the new index.
        """
        roots = []
        for root in session.scalars(select(MediaRoot.path).order_by(MediaRoot.path)):
            if os.path.isdir(root) or self.drop_missing:
                roots.append(root)
                continue
            held = session.scalar(select(func.count(MediaItem.id)).where(inside(MediaItem.path, root)))
            if held:
                raise ConfigError(
                    f"folder {printable(root)} is missing (an unmounted disk?) and holds {held:,} "
                    "items; a rebuild re-embeds every item with the new model and cannot re-embed "
                    "these, so it would drop them",
                    "mount the folder and run again, or run `spyglass reindex --drop-missing` to "
                    "drop its items (they come back when the folder does)")
        return roots

    def _index_roots(self) -> None:
        found: dict[str, FoundFile] = {}
        videos, counts = video_support(), ScanCounts()
        with tqdm(unit=" files", desc="Scanning", file=sys.stderr, disable=not self.progress,
                  leave=False) as bar:
            for root in self.roots:
                for entry in walk(root, self.media, videos, counts):
                    if isinstance(entry, Skipped):
                        self._skip(entry, bar)
                    else:
                        found.setdefault(entry.path, entry)
                        bar.update(1)
        if counts.unindexable_videos:
            self.echo(f"{counts.unindexable_videos:,} videos left out: indexing videos needs PyAV "
                      "(pip install 'spyglass[video]')")
        failpoint("scan")
        with self.sessions() as session:
            plan = plan_run(session, list(found.values()), self.roots, self.rebuild)
        self.summary.unchanged = plan.unchanged
        skipped_files = {}
        for found_file, reason in plan.still_skipped:
            self._skip(Skipped(found_file.path, reason))
            skipped_files[found_file.path] = (found_file, reason)
        pending = PendingChanges(staged_model=self.model_key)
        planned = list(plan.to_read)  # the Ray runner's partitions are cut from all of them
        self._resume_staged(plan, pending)
        if plan.to_read:
            self._embed(plan, pending, planned)
            # Only what is about the file is remembered: a skip for want of memory is retried.
            skipped_files.update((s.path, (found[s.path], s.reason)) for s in self.summary.skipped
                                 if s.path in found and s.lasting)
        pending.removed |= set(plan.vanished)
        self.summary.removed += len(plan.vanished)
        if pending or self.rebuild or self._text_swap:
            self._publish(pending, force=self.rebuild or self._text_swap)
        self._remember_skips(skipped_files)
        drop_staged(self.sessions, self.roots)
        self._maintain_index()
        self._update_labels()

    def _maintain_index(self) -> None:
        """At the end of a run: compact the segments when the deltas have grown, and build (or
        drop) the approximate index when the type for this library has changed or the live one
        has worn. Both after the run's vectors are live, so search never waits for them.

        Decided from the live generation's row: a run with nothing to do reads no index file.
        """
        with self.sessions() as session:
            live = live_generation(session)
        if live is None:
            return
        count = live.vector_count
        options = wanted_factory(self.settings.index_factory, count, live.model.dim, self.settings.index_memory)
        build = True
        if live.ann_factory:
            if live.ann_factory in options and not worn(live.ann_built_vectors, live.ann_stale, count):
                build = False  # the preferred type, or the fallback an earlier build settled on
        elif options[0] == "Flat":
            build = False
        elif (live.ann_built_vectors and count <= GROWTH_FACTOR * live.ann_built_vectors
              and live.factory == self.settings.index_factory):
            build = False  # an earlier build for this setting fell back to exact search at about this size
        manifest = live.manifest()
        if not build and not manifest.deltas and not manifest.tombstones:
            return
        store, _ = self._target_index()
        if not build and not store.compaction_due():
            return
        if build:
            self._ann = None  # rebuilt below: no point carrying the old one
        self._compact(store)
        if build:
            built = build_to_target(self._index, self.settings.index_factory, self.settings.index_memory,
                                    self.settings.index_recall, self.echo, self.progress)
            self._ann = CarriedAnn.of_build(built) if built else None
            tried_at = None if built or options[0] == "Flat" else count
        else:
            tried_at = live.ann_built_vectors if not live.ann_factory else None
        self.summary.generation_id = publish_index(self.sessions, live, self._index, self._ann,
                                                   self.settings.index_dir, self.settings.index_factory, tried_at)
        if build and self._ann is None:
            self.echo("Index: searching exactly (Flat).")

    def _compact(self, store: SegmentedStore) -> None:
        """One base of every live vector; the approximate index gets the deltas' changes."""
        if len(store.segments) <= 1 and not store.removed:
            return
        self.echo(f"Index: compacting {len(store.segments)} segments ({store.dead_count():,} dead entries) "
                  f"into one base of {len(store):,} vectors.")
        if self._ann is not None:
            base = store.segments[0].ids()
            gone = base[~store.live_in_base(base)]  # removed, or re-embedded into a delta
            moved = [(ids, vectors) for position in range(1, len(store.segments))
                     for ids, vectors in store.segments[position].all_vectors()]
            ids = np.concatenate([i for i, _ in moved]) if moved else np.zeros(0, np.int64)
            vectors = np.concatenate([v for _, v in moved]) if moved else None
            if len(ids):
                alive = store.contains(ids) & ~store.live_in_base(ids)
                ids, vectors = ids[alive], vectors[alive]
            self._ann.update(gone.tolist(), ids, vectors)
        self._index = store.compacted()

    def _update_labels(self) -> None:
        """Zero-shot labels for what this run embedded, or for everything when the labels or model changed."""
        label_set = LabelSet.read(self.settings.labels) if self.settings.labels else None
        labelled = update_labels(self.sessions, label_set, lambda: self._target_index()[0], self.encoder)
        self.summary.labelled = labelled

    def _resume_staged(self, plan: Plan, pending: PendingChanges) -> None:
        """Take the vectors an interrupted run embedded (and staged) instead of embedding again."""
        with self.sessions() as session:
            staged = staged_vectors(session, self.model_key, self.roots)
        if not staged:
            return
        still_to_read = []
        for found in plan.to_read:
            entry = staged.get(found.path)
            if entry is None or not entry.matches(found):
                still_to_read.append(found)
            elif entry.skip_reason is not None:  # a file of a finished Ray partition that failed
                self._skip(Skipped(found.path, entry.skip_reason))
                self._drop_old_vector(plan, pending, found.path)
            elif entry.embedded:
                self._record_embedded(plan, pending, entry.as_loaded(found), entry.vector)
                self.summary.resumed += 1
            elif not plan.wants_pixels(found, entry.content_hash):  # kept its vector (a move claims its row here)
                self._record_kept(plan, pending, LoadedFile(found, entry.content_hash))
            else:
                still_to_read.append(found)
        plan.to_read = still_to_read

    def _remember_skips(self, skipped: dict[str, tuple[FoundFile, str]]) -> None:
        """Replace the skip records under the roots with this run's."""
        with self.sessions.begin() as session:
            for root in self.roots:
                session.execute(under(delete(SkippedFile), SkippedFile.path, root))
            session.add_all(SkippedFile(path=f.path, size=f.size, mtime_ns=f.mtime_ns, reason=reason)
                            for f, reason in skipped.values())

    def _embed(self, plan: Plan, pending: PendingChanges, planned: list[FoundFile]) -> None:
        encoder = self.encoder()
        self._target_index()  # so that the live generation's precisions are read before they are added to
        bar = tqdm(total=len(plan.to_read), unit="img", desc="Indexing", file=sys.stderr,
                   disable=not self.progress, dynamic_ncols=True)
        started = time.monotonic()
        stats = PipelineStats()
        if self.settings.runner == "ray":
            events = self._ray_events(plan, planned, encoder)
        else:
            events = self._local_events(plan, encoder, stats)
        with bar:
            for event in events:
                if isinstance(event, PartitionResult):
                    self._take_partition(plan, pending, event, bar)
                elif isinstance(event, Skipped):
                    self._skip(event, bar)
                    self._drop_old_vector(plan, pending, event.path)
                    bar.update(1)
                elif isinstance(event, EmbeddedBatch):
                    failpoint("embed")
                    # Committed before it counts: a kill from here on costs no more than this batch.
                    stage(self.sessions, self.model_key, event.files, event.vectors)
                    for loaded, vector in zip(event.files, event.vectors, strict=True):
                        self._record_embedded(plan, pending, loaded, vector)
                        self._count_video(loaded)
                    self.summary.embedded += len(event.files)
                    bar.update(len(event.files))
                else:
                    self._record_kept(plan, pending, event)
                    bar.update(1)
                # Checkpoints keep a long first run's work if it is killed; a rebuild publishes
                # once, at the end, so search never sees a half-built index of the new model.
                if not self.rebuild and pending.vector_count >= self.settings.checkpoint_items:
                    self._publish(pending)
                    pending.clear()
        self.summary.embed_seconds = time.monotonic() - started
        if stats.batches:
            log.debug("Indexing: %s.", stats.line())

    def _local_events(self, plan: Plan, encoder: Encoder, stats: PipelineStats) -> Iterator:
        """The pipeline of this process: decode threads, one encoder thread, batches."""
        device = getattr(encoder, "device", "cpu")
        check = getattr(encoder, "precision_check", None)
        if check is not None:
            self._precision = self._precision.with_check(check)
        encode = serialised(encoder.encode_pixels)
        batch_size = self.settings.batch_for(device)
        video = VideoRules(encode, batch_size, self.settings.video_max_gap, self.settings.max_video_seconds,
                           self.settings.video_duplicate_cosine, self.settings.max_image_pixels)
        load = partial(load_file, preprocess=encoder.preprocess,
                       max_pixels=self.settings.max_image_pixels,
                       draft_size=encoder.image_size, wants_pixels=plan.wants_pixels, media=self.media,
                       gate=decode_gate(self.settings.decode_memory), video=video)
        return embed_files(plan.to_read, load, encode, batch_size, self.settings.workers_for(device), stats=stats)

    def _drop_old_vector(self, plan: Plan, pending: PendingChanges, path: str) -> None:
        """A rebuild's skipped file: its old vector is of the old model, and without a new one it must go."""
        if self.rebuild and path in plan.known:
            pending.removed.add(plan.known[path].id)
            self.summary.removed += 1

    def _ray_events(self, plan: Plan, planned: list[FoundFile], encoder: Encoder) -> Iterator[PartitionResult]:
        """The partitions of this run that are not finished yet, embedded on Ray as they come back.

        Cut from every file the plan had to read, before staged ones were taken, so that a
        rerun cuts the same partitions and skips the finished ones.
        """
        waiting = {f.path for f in plan.to_read}
        every = partitions(planned, self.settings.ray_partition_files)
        todo = [Partition(p.index, p.key, tuple(f for f in p.files if f.path in waiting)) for p in every]
        todo = [p for p in todo if p.files]
        resumed = len(every) - len(todo)
        known = {path: item.content_hash for path, item in plan.known.items()}
        vanished = frozenset(item.content_hash for item in plan.vanished.values())
        with RayRunner(self.settings, self.echo) as runner:
            where = runner.describe()
            actors, gpus = runner.encoders()
            self.echo(f"Ray: {len(todo):,} partitions of up to {self.settings.ray_partition_files:,} files "
                      f"on {where}, {actors} encoder{'s' * (actors != 1)}"
                      f"{f' ({gpus:g} GPU each)' if gpus else ''}"
                      f"{f'; {resumed:,} finished by an earlier run' if resumed else ''}.")
            runner.check_shared_paths(todo[0].files[0])
            job = WorkerJob(self.settings, self.media, encoder.preprocess, encoder.image_size, vanished,
                            every=self.rebuild)
            self._partition_stats = []
            yield from runner.run(todo, job, known)
            if self._unclaimed:
                # Copies of a moved file whose row another copy claimed: they need vectors of their own.
                extra = partitions(self._unclaimed, self.settings.ray_partition_files)
                self._unclaimed = []
                yield from runner.run(extra, replace(job, every=True), known)
            self.summary.ray_line = stats_line(self._partition_stats, resumed, runner.retried, where,
                                               runner.first_seconds)

    def _take_partition(self, plan: Plan, pending: PendingChanges, result: PartitionResult, bar: tqdm) -> None:
        """Commit a finished partition whole, then count it like the local runner's events."""
        began = time.perf_counter()
        if result.precision is not None:
            self._precision = self._precision.with_check(result.precision)
        kept, unclaimed = [], []
        for loaded in result.kept:
            (unclaimed if plan.wants_pixels(loaded.file, loaded.content_hash) else kept).append(loaded)
        facts = {f.path: f for f in result.partition.files}
        stage_partition(self.sessions, self.model_key, result.embedded, result.vectors, kept,
                        [(facts[s.path], s.reason) for s in result.skipped if s.lasting])
        result.stats.write_seconds = time.perf_counter() - began
        self._partition_stats.append(result.stats)
        failpoint("partition")
        log.info("Ray partition %d: %d files, %d embedded on %s (try %d): read %.2f s, decode %.2f s, "
                 "embed %.2f s, write %.2f s, %.1f files/s", result.partition.index, result.stats.files,
                 result.stats.embedded, result.stats.worker or "-", result.stats.attempt,
                 result.stats.read_seconds, result.stats.decode_seconds, result.stats.embed_seconds,
                 result.stats.write_seconds, result.stats.images_per_second)
        for skipped in result.skipped:
            self._skip(skipped, bar)
            self._drop_old_vector(plan, pending, skipped.path)
        for loaded, vector in zip(result.embedded, result.vectors, strict=True):
            self._record_embedded(plan, pending, loaded, vector)
            self._count_video(loaded)
        self.summary.embedded += len(result.embedded)
        for loaded in kept:
            self._record_kept(plan, pending, loaded)
        self._unclaimed.extend(loaded.file for loaded in unclaimed)
        bar.update(len(result.partition.files) - len(unclaimed))

    def _count_video(self, loaded: LoadedFile) -> None:
        video = loaded.video
        if video is not None:
            self.summary.videos += 1
            self.summary.video_seconds += video.duration_s
            self.summary.frames_kept += len(video.starts)
            self.summary.frames_sampled += video.sampled

    def _record_embedded(self, plan: Plan, pending: PendingChanges, loaded: LoadedFile,
                         vector) -> None:
        if loaded.video is not None:
            pending.videos[loaded.file.path] = None if self.rebuild else loaded.video
        if self.rebuild:
            vector = None  # staged already: a rebuild publishes once, reading them back in chunks
        fields = _item_fields(loaded, self._root_id(loaded.file.root))
        known = plan.known.get(loaded.file.path)
        if known is None:
            pending.new.append((fields, vector))
            self.summary.added += 1
        else:
            pending.reembedded.append((known.id, fields, vector))
            self.summary.updated += 1

    def _record_kept(self, plan: Plan, pending: PendingChanges, loaded: LoadedFile) -> None:
        found = loaded.file
        stat_fields = {"size": found.size, "mtime_ns": found.mtime_ns}
        if found.path in plan.moves:
            stat_fields.update(path=found.path, root_id=self._root_id(found.root))
            pending.touched.append((plan.moves[found.path], stat_fields))
            self.summary.moved += 1
        else:
            pending.touched.append((plan.known[found.path].id, stat_fields))
            self.summary.unchanged += 1

    def _publish(self, pending: PendingChanges, force: bool = False) -> None:
        index, model_id = self._target_index()
        generation = publish(self.sessions, index, self.settings.index_dir, model_id,
                             self.settings.index_factory, pending, force_generation=force, ann=self._ann,
                             precision=self._precision)
        self.summary.generation_id = generation or self.summary.generation_id

    def _target_index(self) -> tuple[SegmentedStore, int]:
        """The index being built: the live one, or a new one for a first run or a rebuild."""
        if self._index is None:
            with self.sessions() as session:
                live = live_generation(session)
            if live is not None and not self.rebuild:
                # Mapped, not read: the written segments are never changed, only added to.
                self._index = SegmentedStore.load(self.settings.index_dir, live.base_file(), live.manifest(),
                                                  mmap=True)
                self._ann = CarriedAnn.of_generation(live, self.settings.index_dir)
                self._precision = live.precision_mix()
                # After a text-side fine-tune, the same vectors go live under the new model.
                self._model_id = self._model_row(live.model.dim) if self._text_swap else live.model_id
            else:
                encoder = self.encoder()
                self._index = SegmentedStore.empty(encoder.dim)
                self._ann = None  # built once the new vectors are live
                self._model_id = self._model_row(encoder.dim)
        return self._index, self._model_id

    def encoder(self) -> Encoder:
        """The encoder, loaded on first use: an unchanged folder never loads it."""
        if self._encoder is None:
            self.echo(f"Loading model {self.settings.model} ({self.settings.pretrained})...")
            self._encoder = load_encoder(self.settings.model, self.settings.pretrained,
                                         self.settings.device, self.settings.model_cache,
                                         self.settings.precision)
            self.echo(f"Encoder precision: {self._encoder.precision_check.describe()}.")
        return self._encoder

    def _model_row(self, dim: int) -> int:
        arch, weights = self.identity
        # Random weights (tests, benchmarks) differ at every load: no checksum can vouch for them.
        tower = getattr(self.encoder(), "image_tower", None) if weights else None
        with self.sessions.begin() as session:
            model = session.scalar(select(EmbeddingModel).where(
                EmbeddingModel.architecture == arch, EmbeddingModel.pretrained == weights))
            if model is None:
                model = EmbeddingModel(architecture=arch, pretrained=weights, dim=dim, image_tower=tower)
                session.add(model)
                session.flush()
            elif model.image_tower is None:
                model.image_tower = tower
            return model.id

    def _root_id(self, root: str) -> int:
        return self._root_ids[root]

    def _start_run(self) -> int:
        with self.sessions.begin() as session:
            self._root_ids = {}
            for root in self.roots:
                row = session.scalar(select(MediaRoot).where(MediaRoot.path == root))
                if row is None:
                    row = MediaRoot(path=root)
                    session.add(row)
                    session.flush()
                self._root_ids[root] = row.id
            run = IndexRun(roots=json.dumps(self.roots))
            session.add(run)
            session.flush()
            # Links may point into any recorded media folder, not only the ones of this run.
            self.media = MediaRoots.of(session.scalars(select(MediaRoot.path)), self.settings)
            return run.id

    def _finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        with self.sessions.begin() as session:
            run = session.get(IndexRun, run_id)
            run.status, run.error, run.finished_at = status, error, utcnow()
            s = self.summary
            run.added, run.updated, run.removed, run.skipped = s.added, s.updated, s.removed, len(s.skipped)
            if status == "done":
                for root in session.scalars(select(MediaRoot).where(MediaRoot.path.in_(self.roots))):
                    root.last_indexed_at = run.finished_at

    def _skip(self, skipped: Skipped, bar: tqdm | None = None) -> None:
        self.summary.skipped.append(skipped)
        message = f"skipping {printable(skipped.path)}: {printable(skipped.reason)}"
        (bar.write(message, file=sys.stderr) if bar is not None and not bar.disable else self.echo(message))


def mark_interrupted_runs(sessions: sessionmaker[Session]) -> int:
    """Runs still marked running when the lock is free were killed: say so. Call under the lock."""
    with sessions.begin() as session:
        return session.execute(update(IndexRun).where(IndexRun.status == "running").values(
            status="interrupted", error="killed before it finished")).rowcount


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)  # sys.stderr looked up now: it may have been replaced


def _item_fields(loaded: LoadedFile, root_id: int) -> dict:
    found, video = loaded.file, loaded.video
    return {"path": found.path, "root_id": root_id, "size": found.size, "mtime_ns": found.mtime_ns,
            "content_hash": loaded.content_hash, "kind": "image" if video is None else "video", "origin": "index",
            "format": loaded.format, "width": loaded.width, "height": loaded.height, "indexed_at": utcnow(),
            "duration_s": None if video is None else video.duration_s,
            "poster_s": None if video is None else video.poster_s}


def _check_root(root: str | os.PathLike) -> str:
    path = os.path.abspath(os.path.expanduser(os.fspath(root)))
    if not os.path.exists(path):
        raise ConfigError(f"no such folder: {printable(path)}", "check the path you gave to `spyglass index`")
    if not os.path.isdir(path):
        raise ConfigError(f"{printable(path)} is a file, not a folder", "give the folder that holds it")
    return path


def run_index(settings: Settings, roots: list[str], **options) -> IndexSummary:
    """Index these folders with these settings (see IndexJob for the options)."""
    return IndexJob(settings, roots, **options).run()


def run_reindex(settings: Settings, roots: list[str] | None = None, **options) -> IndexSummary:
    """Bring the index in step with these folders, or with every recorded one and SPYGLASS_MEDIA.

    A changed model rebuilds the whole index beside the live one, then swaps. Recorded
    folders that are missing (an unmounted disk) are skipped, and their items kept.
    """
    return IndexJob(settings, roots or None, rebuild_on_model_change=True, **options).run()
