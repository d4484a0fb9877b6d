"""What a run has embedded, kept, moved and skipped: the changes waiting for the next publish, and the summary.

The recorder runs on the driver only. It is where a moved file takes over the row of the file
that vanished with its hash (each row once), and where skips are sorted into the ones to
remember (about the file) and the ones to retry (about the moment).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spyglass.search.media.audio import is_audio
from spyglass.search.catalog.schema import utcnow

from .decode import LoadedFile
from .plan import MoveClaims, Plan
from .publish import PendingChanges
from .scan import FoundFile, Skipped


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
    words_line: str = ""  # what the words stage read, when it read anything
    facts_line: str = ""  # what the facts stage read, when it read anything

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
        ray += f"\n{self.facts_line}" if self.facts_line else ""
        ray += f"\n{self.words_line}" if self.words_line else ""
        return (f"{self.added:,} added, {self.updated:,} updated, {self.moved:,} moved, "
                f"{len(self.skipped):,} skipped, {self.removed:,} removed, "
                f"{self.unchanged:,} unchanged ({self.seconds:.1f} s{rate}{resumed}{labelled}){ray}")

    def counts(self) -> tuple[int, int, int, int]:
        """(added, updated, removed, skipped), as the run's row keeps them."""
        return self.added, self.updated, self.removed, len(self.skipped)


class Recorder:
    """Collects a run's outcomes into PendingChanges and its summary (driver thread only).

    A rebuild's vectors are staged already and published once at the end, so it records them
    as None (publish reads them back in chunks).
    """

    def __init__(self, plan: Plan, root_ids: dict[str, int], staged_model: str, summary: IndexSummary):
        self.plan = plan
        self.root_ids = root_ids
        self.summary = summary
        self.pending = PendingChanges(staged_model=staged_model)
        self.claims = MoveClaims(plan.vanished)
        self.rereads: list[FoundFile] = []  # copies of a moved file whose row another copy took
        self.remembered: dict[str, tuple[FoundFile, str]] = {}  # skips about the file, by path

    def embedded(self, loaded: LoadedFile, vector: np.ndarray | None, resumed: bool = False) -> None:
        """A file with a new vector: a new item, or a re-embedded one (same id). `resumed`: its
        vector was embedded and staged by an earlier, interrupted run."""
        if loaded.video is not None:
            self.pending.videos[loaded.file.path] = None if self.plan.rebuild else loaded.video
        if resumed:
            self.summary.resumed += 1
        else:
            self.summary.embedded += 1
            if loaded.video is not None:
                self._count_video(loaded)
        if self.plan.rebuild:
            vector = None  # staged already: a rebuild publishes once, reading them back in chunks
        fields = item_fields(loaded, self.root_ids[loaded.file.root])
        known = self.plan.known.get(loaded.file.path)
        if known is None:
            self.pending.new.append((fields, vector))
            self.summary.added += 1
        else:
            self.pending.reembedded.append((known.id, fields, vector))
            self.summary.updated += 1

    def keeps(self, loaded: LoadedFile) -> bool:
        """A file that needed no new vector: touched in place, or moved into a vanished row with its
        hash. False when that row was taken by another copy: the file is read again (rereads)."""
        found = loaded.file
        stat_fields = {"size": found.size, "mtime_ns": found.mtime_ns}
        known = self.plan.known.get(found.path)
        if known is not None:
            self.pending.touched.append((known.id, stat_fields))
            self.summary.unchanged += 1
            return True
        item_id = self.claims.claim(loaded.content_hash)
        if item_id is None:
            self.rereads.append(found)
            return False
        stat_fields.update(path=found.path, root_id=self.root_ids[found.root])
        self.pending.touched.append((item_id, stat_fields))
        self.summary.moved += 1
        return True

    def skipped(self, skipped: Skipped, found: FoundFile | None = None) -> None:
        """A path that could not be taken. A file that was read (`found`) is remembered when the
        reason is about the file, and in a rebuild loses its old vector, which is of the old model."""
        self.summary.skipped.append(skipped)
        if found is None:
            return  # seen by the scan only: a broken link, a folder that cannot be read
        if skipped.lasting:
            self.remembered[found.path] = (found, skipped.reason)
        known = self.plan.known.get(found.path)
        if self.plan.rebuild and known is not None:
            self.pending.removed.add(known.id)
            self.summary.removed += 1

    def vanished(self) -> None:
        """The rows whose files are gone and that no moved file took over leave the index."""
        gone = self.claims.unclaimed()
        self.pending.removed |= gone
        self.summary.removed += len(gone)

    def _count_video(self, loaded: LoadedFile) -> None:
        video = loaded.video
        self.summary.videos += 1
        self.summary.video_seconds += video.duration_s
        self.summary.frames_kept += len(video.starts)
        self.summary.frames_sampled += video.sampled


def item_fields(loaded: LoadedFile, root_id: int) -> dict:
    """The catalog row of an embedded file."""
    found, video = loaded.file, loaded.video
    return {"path": found.path, "root_id": root_id, "size": found.size, "mtime_ns": found.mtime_ns,
            "content_hash": loaded.content_hash, "kind": _kind(loaded), "origin": "index",
            "format": loaded.format, "width": loaded.width, "height": loaded.height, "indexed_at": utcnow(),
            "duration_s": loaded.duration_s if video is None else video.duration_s,
            "poster_s": None if video is None else video.poster_s}


def _kind(loaded: LoadedFile) -> str:
    return "video" if loaded.video is not None else "audio" if is_audio(loaded.file.path) else "image"
