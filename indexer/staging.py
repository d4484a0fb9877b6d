"""Embedded but unpublished vectors, committed batch by batch, so a killed run loses one batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from spyglass.search.failpoints import failpoint
from spyglass.search.catalog.schema import StagedVector

from .decode import LoadedFile
from .plan import under
from .scan import FoundFile
from .video_vectors import VideoVectors

_CHUNK = 500


@dataclass(frozen=True)
class Staged:
    """A staged vector and the file facts it was embedded from."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str
    format: str
    width: int
    height: int
    vector: np.ndarray  # empty when the file needed no new vector (or was skipped)
    video: VideoVectors | None = None
    skip_reason: str | None = None  # set when the file was skipped
    duration_s: float | None = None  # an audio file's (a video's is in `video`)

    @property
    def embedded(self) -> bool:
        """Whether this row holds a new vector (not an outcome of a file that needed none)."""
        return self.skip_reason is None and len(self.vector) > 0

    def matches(self, found: FoundFile) -> bool:
        """Whether the file is still the one that was embedded."""
        return (self.size, self.mtime_ns) == (found.size, found.mtime_ns)

    def as_loaded(self, found: FoundFile) -> LoadedFile:
        """The LoadedFile this vector came from, without reading the file again."""
        return LoadedFile(found, self.content_hash, None, self.format, self.width, self.height, video=self.video,
                          duration_s=self.duration_s if self.video is None else None)


def model_key(identity: tuple[str, str]) -> str:
    """The model column value for an (architecture, weights) pair."""
    return "\n".join(identity)


def stage(sessions: sessionmaker[Session], model: str, files: list[LoadedFile], vectors: np.ndarray) -> None:
    """Commit one embedded batch."""
    stage_partition(sessions, model, files, vectors, [], [])


def stage_partition(sessions: sessionmaker[Session], model: str, files: list[LoadedFile], vectors: np.ndarray,
                    kept: list[LoadedFile], skipped: list[tuple[FoundFile, str]]) -> None:
    """Commit one finished partition whole: its vectors, and rows for the files that kept
    theirs or were skipped, so a rerun finds every file of it done."""
    with sessions.begin() as session:
        paths = [f.file.path for f in files + kept] + [found.path for found, _ in skipped]
        unstage(session, model, paths)
        session.add_all(StagedVector(
            model=model, path=f.file.path, size=f.file.size, mtime_ns=f.file.mtime_ns,
            content_hash=f.content_hash, format=f.format, width=f.width, height=f.height,
            vector=np.ascontiguousarray(v, dtype="<f4").tobytes(),
            **({"duration_s": f.duration_s} | _video_columns(f.video)))
            for f, v in zip(files, vectors, strict=True))
        session.add_all(StagedVector(model=model, path=f.file.path, size=f.file.size, mtime_ns=f.file.mtime_ns,
                                     content_hash=f.content_hash, format="", width=0, height=0, vector=b"")
                        for f in kept)
        session.add_all(StagedVector(model=model, path=found.path, size=found.size, mtime_ns=found.mtime_ns,
                                     content_hash="", format="", width=0, height=0, vector=b"",
                                     skip_reason=reason)
                        for found, reason in skipped)
        session.flush()
        failpoint("stage")


def staged_vectors(session: Session, model: str, roots: list[str]) -> dict[str, Staged]:
    """What earlier, unfinished runs of this model embedded under the roots."""
    found: dict[str, Staged] = {}
    query = select(StagedVector).where(StagedVector.model == model)
    for root in roots:
        for row in session.scalars(under(query, StagedVector.path, root)):
            vector = np.frombuffer(row.vector, dtype="<f4")
            found[row.path] = Staged(row.path, row.size, row.mtime_ns, row.content_hash, row.format,
                                     row.width, row.height, vector, _video_of(row, vector), row.skip_reason,
                                     row.duration_s)
    return found


def staged_videos(session: Session, model: str, paths: list[str]) -> dict[str, VideoVectors]:
    """The staged frames of these video paths."""
    found = {}
    for start in range(0, len(paths), _CHUNK):
        query = select(StagedVector).where(StagedVector.model == model,
                                           StagedVector.path.in_(paths[start:start + _CHUNK]))
        for row in session.scalars(query):
            found[row.path] = _video_of(row, np.frombuffer(row.vector, dtype="<f4"))
    return found


def _video_columns(video: VideoVectors | None) -> dict:
    if video is None:
        return {}
    return {"duration_s": video.duration_s, "poster_s": video.poster_s,
            "frame_times": np.ascontiguousarray(video.starts, dtype="<f8").tobytes(),
            "frame_vectors": np.ascontiguousarray(video.vectors, dtype="<f4").tobytes(),
            "frame_shots": None if video.shots is None else np.ascontiguousarray(video.shots, dtype="<i4").tobytes()}


def _video_of(row: StagedVector, pooled: np.ndarray) -> VideoVectors | None:
    """The frames staged with a video (None for an image)."""
    if row.frame_times is None:
        return None
    starts = np.frombuffer(row.frame_times, dtype="<f8")
    vectors = np.frombuffer(row.frame_vectors, dtype="<f4").reshape(len(starts), -1)
    ends = np.append(starts[1:], row.duration_s)
    shots = None if row.frame_shots is None else np.frombuffer(row.frame_shots, dtype="<i4")
    return VideoVectors(starts, ends, vectors, pooled, row.poster_s, row.duration_s, row.width, row.height,
                        shots=shots)


def staged_by_path(session: Session, model: str, paths: list[str]) -> dict[str, np.ndarray]:
    """The staged vectors of these paths (KeyError later for a path that has none)."""
    found = {}
    for start in range(0, len(paths), _CHUNK):
        query = select(StagedVector.path, StagedVector.vector).where(
            StagedVector.model == model, StagedVector.path.in_(paths[start:start + _CHUNK]))
        found.update((path, np.frombuffer(vector, dtype="<f4")) for path, vector in session.execute(query))
    return found


def unstage(session: Session, model: str, paths: list[str]) -> None:
    """Forget staged vectors of these paths (they were published, or re-embedded)."""
    for start in range(0, len(paths), _CHUNK):
        session.execute(delete(StagedVector).where(StagedVector.model == model,
                                                   StagedVector.path.in_(paths[start:start + _CHUNK])))


def drop_staged(sessions: sessionmaker[Session], roots: list[str]) -> None:
    """Forget every staged vector under the roots, after a run finished."""
    with sessions.begin() as session:
        for root in roots:
            session.execute(under(delete(StagedVector), StagedVector.path, root))
