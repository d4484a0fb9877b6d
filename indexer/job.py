"""`spyglass index` and `reindex`: scan, plan, embed, record, publish, maintain, label, with progress and a summary.

The stages live in their own modules; this one wires them for one run, the way rclip's main.py
and clip-retrieval's runner.py wire theirs.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from spyglass.search.catalog.db import create_db_engine, session_factory
from spyglass.search.catalog.queries import live_generation
from spyglass.search.catalog.schema import SkippedFile, utcnow
from spyglass.search.display import printable
from spyglass.search.failpoints import failpoint
from spyglass.search.model.encoder import Encoder, encoder_for, model_identity
from spyglass.search.model.zero_shot import LabelSet
from spyglass.search.settings import Settings
from spyglass.search.store.ann import check_factory
from spyglass.search.store.index_choice import is_auto

from .decode import LoadedFile
from .facts import update_facts
from .thumbnails import make_run_thumbnails
from .labelling import update_labels
from .maintain import maintain_index
from .model_check import decide_model
from .pipeline import EmbeddedBatch
from .plan import Plan, PixelRule, plan_run, under
from .recorder import IndexSummary, Recorder
from .runners.local import LocalRunner
from .runs import RunStart, checked_root, finish_run, interrupted, locked, present_recorded_roots, start_run
from .scan import FoundFile, ScanCounts, Skipped, video_support, walk
from .staging import drop_staged, model_key, stage, staged_vectors
from .target import TargetIndex
from .texts.stage import text_sources, update_texts

log = logging.getLogger(__name__)


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
        self.given_roots = None if roots is None else [checked_root(root) for root in roots]
        self.rebuild = rebuild
        self.rebuild_on_model_change = rebuild_on_model_change
        self.drop_missing = drop_missing
        self.progress = progress
        self._encoder = encoder
        self.db = create_db_engine(settings.db_url, writer=True)
        self.sessions: sessionmaker[Session] = session_factory(self.db)
        self.identity = model_identity(settings.model, settings.pretrained)
        self.model_key = model_key(self.identity)
        self.summary = IndexSummary()

    def run(self) -> IndexSummary:
        """Bring the catalog and index in step with the roots."""
        started = time.monotonic()
        with locked(self.db, self.sessions, self.settings, self.echo):
            roots = self.given_roots if self.given_roots is not None else \
                present_recorded_roots(self.sessions, self.settings, self.drop_missing, self.echo)
            decision = decide_model(self.sessions, self.settings, self.identity, roots, self.rebuild,
                                    self.rebuild_on_model_change, self.drop_missing, self.encoder, self.echo)
            self._check_index_setting(decision.rebuild)
            if self.settings.labels:
                LabelSet.read(self.settings.labels)  # a bad labels file stops the run before any work
            text_sources(self.settings)  # so does SPYGLASS_OCR=on without RapidOCR
            target = TargetIndex(self.sessions, self.settings, self.identity, lambda: self.encoder().dim,
                                 lambda: self.encoder().image_tower, fresh=decision.rebuild,
                                 new_model=decision.text_swap)
            run = start_run(self.sessions, decision.roots, self.settings)
            try:
                self._index(run, decision.roots, decision.rebuild, decision.text_swap, target)
            except KeyboardInterrupt:
                raise interrupted(self.sessions, run.run_id, decision.roots, self.summary.counts(),
                                  self.summary.generation_id) from None
            except BaseException as exc:
                finish_run(self.sessions, run.run_id, decision.roots, self.summary.counts(), "failed",
                           f"{type(exc).__name__}: {exc}")
                raise
            finally:
                self.summary.seconds = time.monotonic() - started
            finish_run(self.sessions, run.run_id, decision.roots, self.summary.counts(), "done")
        return self.summary

    def encoder(self) -> Encoder:
        """The encoder, loaded on first use: an unchanged folder never loads it."""
        if self._encoder is None:
            self.echo(f"Loading model {self.settings.model} ({self.settings.pretrained})...")
            self._encoder = encoder_for(self.settings)
            self.echo(f"Encoder precision: {self._encoder.precision_check.describe()}.")
            if self._encoder.runtime is not None:
                self.echo(f"Encoder runtime: {self._encoder.runtime.describe()}.")
        return self._encoder

    def _check_index_setting(self, rebuild: bool) -> None:
        """A factory string FAISS cannot build is refused before anything is embedded."""
        setting = self.settings.index_factory
        if is_auto(setting) or setting == "Flat":
            return
        with self.sessions() as session:
            live = live_generation(session)
        check_factory(setting, live.model.dim if live is not None and not rebuild else self.encoder().dim)

    def _index(self, run: RunStart, roots: list[str], rebuild: bool, text_swap: bool, target: TargetIndex) -> None:
        started = utcnow()
        found = self._scan(roots, run)
        with self.sessions() as session:
            plan = plan_run(session, list(found.values()), roots, rebuild)
        self.summary.unchanged = plan.unchanged
        recorder = Recorder(plan, run.root_ids, self.model_key, self.summary)
        for found_file, reason in plan.still_skipped:
            self._say_skip(recorder, Skipped(found_file.path, reason), found_file)
        to_read = self._resume_staged(plan, recorder, roots)
        if to_read:
            self._embed(plan, to_read, recorder, target, run)
        recorder.vanished()
        if recorder.pending or rebuild or text_swap:
            self._publish(target, recorder, force=rebuild or text_swap)
        self._remember_skips(roots, recorder)
        drop_staged(self.sessions, roots)
        generation = maintain_index(self.sessions, self.settings, target, self.echo, self.progress)
        self.summary.generation_id = generation or self.summary.generation_id
        label_set = LabelSet.read(self.settings.labels) if self.settings.labels else None
        self.summary.labelled = update_labels(self.sessions, label_set, lambda: target.store, self.encoder)
        self.summary.facts_line = "\n".join(filter(None, [
            update_facts(self.sessions, roots, self.echo, self.progress).line(),
            make_run_thumbnails(self.sessions, self.settings, roots, started, run.media, self.progress).line()
            if self.settings.index_thumbnails else ""]))
        self.summary.words_line = update_texts(self.sessions, self.settings, roots, self.echo, self.progress).line()

    def _scan(self, roots: list[str], run: RunStart) -> dict[str, FoundFile]:
        found: dict[str, FoundFile] = {}
        videos, counts = video_support(), ScanCounts()
        with tqdm(unit=" files", desc="Scanning", file=sys.stderr, disable=not self.progress,
                  leave=False) as bar:
            for root in roots:
                for entry in walk(root, run.media, videos, counts):
                    if isinstance(entry, Skipped):
                        self.summary.skipped.append(entry)
                        self._print_skip(entry, bar)
                    else:
                        found.setdefault(entry.path, entry)
                        bar.update(1)
        if counts.unindexable_audio:
            self.echo(f"{counts.unindexable_audio:,} audio files left out: indexing them needs PyAV "
                      "(pip install 'spyglass[video]')")
        if counts.unindexable_videos:
            self.echo(f"{counts.unindexable_videos:,} videos left out: indexing videos needs PyAV "
                      "(pip install 'spyglass[video]')")
        if counts.raw_photos:
            self.echo(f"{counts.raw_photos:,} camera RAW files left out: Spyglass reads the JPEG or HEIC a camera "
                      "saves beside them, not RAW")
        failpoint("scan")
        return found

    def _resume_staged(self, plan: Plan, recorder: Recorder, roots: list[str]) -> list[FoundFile]:
        """Take what an interrupted run staged instead of reading it again; returns what is left to read."""
        with self.sessions() as session:
            staged = staged_vectors(session, self.model_key, roots)
        if not staged:
            return list(plan.to_read)
        rule = plan.pixel_rule()
        still_to_read = []
        for found in plan.to_read:
            entry = staged.get(found.path)
            if entry is None or not entry.matches(found):
                still_to_read.append(found)
            elif entry.skip_reason is not None:  # a file of a finished Ray partition that was skipped
                self._say_skip(recorder, Skipped(found.path, entry.skip_reason), found)
            elif entry.embedded:
                recorder.embedded(entry.as_loaded(found), entry.vector, resumed=True)
            elif rule(found, entry.content_hash) or not recorder.keeps(LoadedFile(found, entry.content_hash)):
                still_to_read.append(found)  # needs a vector after all (a moved file's row was taken)
        recorder.rereads.clear()  # they are read with the rest
        return still_to_read

    def _embed(self, plan: Plan, to_read: list[FoundFile], recorder: Recorder, target: TargetIndex,
               run: RunStart) -> None:
        encoder = self.encoder()
        target.embedded_with(encoder.precision_check if self.settings.runner != "ray" else None)
        started = time.monotonic()
        with tqdm(total=len(to_read), unit="img", desc="Indexing", file=sys.stderr,
                  disable=not self.progress, dynamic_ncols=True) as bar:
            if self.settings.runner == "ray":
                from .runners.ray_driver import RayDriver

                RayDriver(self.settings, self.sessions, self.model_key, self.echo).embed(
                    plan, to_read, recorder, target, run.media, encoder,
                    lambda skipped, found: self._say_skip(recorder, skipped, found, bar), bar,
                    lambda: self._checkpoint(target, recorder))
            else:
                runner = LocalRunner(self.settings, encoder, run.media)
                rule = plan.pixel_rule()
                files = to_read
                while files:  # a second round: copies of a moved file whose row another copy took
                    by_path = {f.path: f for f in files}
                    self._take_local(runner.events(files, rule), recorder, target, bar, by_path)
                    files, recorder.rereads = recorder.rereads, []
                    rule = PixelRule({}, frozenset(), every=True)
                if runner.stats.batches:
                    log.debug("Indexing: %s.", runner.stats.line())
        self.summary.embed_seconds = time.monotonic() - started

    def _take_local(self, events, recorder: Recorder, target: TargetIndex, bar: tqdm,
                    files: dict[str, FoundFile]) -> None:
        for event in events:
            if isinstance(event, Skipped):
                self._say_skip(recorder, event, files.get(event.path), bar)
                bar.update(1)
            elif isinstance(event, EmbeddedBatch):
                failpoint("embed")
                # Committed before it counts: a kill from here on costs no more than this batch.
                stage(self.sessions, self.model_key, event.files, event.vectors)
                for loaded, vector in zip(event.files, event.vectors, strict=True):
                    recorder.embedded(loaded, vector)
                bar.update(len(event.files))
            elif recorder.keeps(event):
                bar.update(1)
            self._checkpoint(target, recorder)

    def _checkpoint(self, target: TargetIndex, recorder: Recorder) -> None:
        """Checkpoints keep a long first run's work if it is killed; a rebuild publishes once, at
        the end, so search never sees a half-built index of the new model."""
        if not recorder.plan.rebuild and recorder.pending.vector_count >= self.settings.checkpoint_items:
            self._publish(target, recorder)
            recorder.pending.clear()

    def _publish(self, target: TargetIndex, recorder: Recorder, force: bool = False) -> None:
        generation = target.publish(recorder.pending, force=force)
        self.summary.generation_id = generation or self.summary.generation_id

    def _remember_skips(self, roots: list[str], recorder: Recorder) -> None:
        """Replace the skip records under the roots with this run's (only those about the file)."""
        with self.sessions.begin() as session:
            for root in roots:
                session.execute(under(delete(SkippedFile), SkippedFile.path, root))
            session.add_all(SkippedFile(path=f.path, size=f.size, mtime_ns=f.mtime_ns, reason=reason)
                            for f, reason in recorder.remembered.values())

    def _say_skip(self, recorder: Recorder, skipped: Skipped, found: FoundFile | None, bar: tqdm | None = None) -> None:
        recorder.skipped(skipped, found)
        self._print_skip(skipped, bar)

    def _print_skip(self, skipped: Skipped, bar: tqdm | None = None) -> None:
        message = f"skipping {printable(skipped.path)}: {printable(skipped.reason)}"
        (bar.write(message, file=sys.stderr) if bar is not None and not bar.disable else self.echo(message))


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)  # sys.stderr looked up now: it may have been replaced


def run_index(settings: Settings, roots: list[str], **options) -> IndexSummary:
    """Index these folders with these settings (see IndexJob for the options)."""
    return IndexJob(settings, roots, **options).run()


def run_reindex(settings: Settings, roots: list[str] | None = None, **options) -> IndexSummary:
    """Bring the index in step with these folders, or with every recorded one and SPYGLASS_MEDIA.

    A changed model rebuilds the whole index beside the live one, then swaps. Recorded
    folders that are missing (an unmounted disk) are skipped, and their items kept.
    """
    return IndexJob(settings, roots or None, rebuild_on_model_change=True, **options).run()
