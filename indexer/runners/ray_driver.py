"""The driver's side of a Ray run: partitions cut and sent, each committed whole as it comes back.

Partitions are cut from every file the plan had to read, before staged ones were taken, so a
rerun cuts the same partitions and skips those an earlier run finished.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Callable

from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from spyglass.search.failpoints import failpoint
from spyglass.search.media.files import MediaRoots
from spyglass.search.model.encoder import Encoder
from spyglass.search.settings import Settings

from ..plan import Plan
from ..recorder import Recorder
from ..scan import FoundFile, Skipped
from ..staging import stage_partition
from ..target import TargetIndex
from .ray import Partition, PartitionResult, PartitionStats, RayRunner, WorkerJob, partitions, stats_line

log = logging.getLogger(__name__)


class RayDriver:
    """Embeds a run's files on a Ray cluster and records each partition as it finishes."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], model_key: str,
                 echo: Callable[[str], None]):
        self.settings = settings
        self.sessions = sessions
        self.model_key = model_key
        self.echo = echo
        self.stats: list[PartitionStats] = []

    def embed(self, plan: Plan, to_read: list[FoundFile], recorder: Recorder, target: TargetIndex,
              media: MediaRoots, encoder: Encoder, skip: Callable[[Skipped, FoundFile], None], bar: tqdm,
              checkpoint: Callable[[], None]) -> None:
        """Send the partitions not finished yet; then, as a second round, the copies of moved files
        whose row another copy took (they need vectors of their own)."""
        waiting = {f.path for f in to_read}
        every = partitions(list(plan.to_read), self.settings.ray_partition_files)
        todo = [Partition(p.index, p.key, tuple(f for f in p.files if f.path in waiting)) for p in every]
        todo = [p for p in todo if p.files]
        resumed = len(every) - len(todo)
        rule = plan.pixel_rule()
        with RayRunner(self.settings, self.echo) as runner:
            where = runner.describe()
            actors, gpus = runner.encoders()
            self.echo(f"Ray: {len(todo):,} partitions of up to {self.settings.ray_partition_files:,} files "
                      f"on {where}, {actors} encoder{'s' * (actors != 1)}"
                      f"{f' ({gpus:g} GPU each)' if gpus else ''}"
                      f"{f'; {resumed:,} finished by an earlier run' if resumed else ''}.")
            runner.check_shared_paths(todo[0].files[0])
            job = WorkerJob(self.settings, media, encoder.preprocess, encoder.image_size, rule.vanished,
                            every=rule.every)
            for result in runner.run(todo, job, rule.known):
                self._take(result, recorder, target, skip, bar)
                checkpoint()
            if recorder.rereads:
                extra = partitions(recorder.rereads, self.settings.ray_partition_files)
                recorder.rereads = []
                for result in runner.run(extra, replace(job, every=True), rule.known):
                    self._take(result, recorder, target, skip, bar)
                    checkpoint()
            recorder.summary.ray_line = stats_line(self.stats, resumed, runner.retried, where, runner.first_seconds)

    def _take(self, result: PartitionResult, recorder: Recorder, target: TargetIndex,
              skip: Callable[[Skipped, FoundFile], None], bar: tqdm) -> None:
        """Commit a finished partition whole, then record it like the local runner's events."""
        began = time.perf_counter()
        target.embedded_with(result.precision)
        kept = [loaded for loaded in result.kept if recorder.keeps(loaded)]  # moves claimed here
        facts = {f.path: f for f in result.partition.files}
        stage_partition(self.sessions, self.model_key, result.embedded, result.vectors, kept,
                        [(facts[s.path], s.reason) for s in result.skipped if s.lasting])
        result.stats.write_seconds = time.perf_counter() - began
        self.stats.append(result.stats)
        failpoint("partition")
        log.info("Ray partition %d: %d files, %d embedded on %s (try %d): read %.2f s, decode %.2f s, "
                 "embed %.2f s, write %.2f s, %.1f files/s", result.partition.index, result.stats.files,
                 result.stats.embedded, result.stats.worker or "-", result.stats.attempt,
                 result.stats.read_seconds, result.stats.decode_seconds, result.stats.embed_seconds,
                 result.stats.write_seconds, result.stats.images_per_second)
        for skipped in result.skipped:
            skip(skipped, facts.get(skipped.path))
        for loaded, vector in zip(result.embedded, result.vectors, strict=True):
            recorder.embedded(loaded, vector)
        bar.update(len(result.partition.files) - (len(result.kept) - len(kept)))
