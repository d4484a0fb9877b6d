"""Embed a run's files on Ray Data: partitions read and decoded in CPU tasks, embedded by encoder actors.

The driver (the `spyglass index` process) plans the run and cuts the files to embed into
partitions; Ray Data streams each partition through a decode task and one of a pool of
stateful encoder actors (the model loaded once per actor), and hands the finished partition
back to the driver, which commits it to staged_vectors whole. Workers only read media and
compute: they never write the catalog or the index.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import socket
import statistics
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterator

import numpy as np

from spyglass.search.failpoints import CRASH_ENV, crashpoint
from spyglass.search.media.images import decode_gate
from spyglass.search.media.files import MediaRoots
from spyglass.search.model.precision import PrecisionCheck
from spyglass.search.settings import Settings

from spyglass.search.media.audio import is_audio
from spyglass.search.media.video_frames import VideoRefused, is_video

from ..decode import LoadedFile, VideoDecoding, load_file
from ..pipeline import load_or_skip
from ..plan import PixelRule
from ..scan import FoundFile, Skipped
from ..video_vectors import VideoAccumulator, VideoRules
from .ray_cluster import check_shared_paths, connect, describe, encoder_plan, require_ray

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Partition:
    """A slice of a run's files, embedded, retried and committed whole."""

    index: int
    key: str  # of its files' paths and stat facts: the same files give the same key
    files: tuple[FoundFile, ...]


def partitions(files: list[FoundFile], size: int) -> list[Partition]:
    """The files in path order, cut every `size` files: the same files give the same partitions."""
    ordered = sorted(files, key=lambda f: f.path)
    cut = []
    for index, start in enumerate(range(0, len(ordered), size)):
        members = tuple(ordered[start:start + size])
        digest = hashlib.blake2b(digest_size=8)
        for f in members:
            digest.update(f"{f.path}\0{f.size}\0{f.mtime_ns}\n".encode("utf-8", "surrogateescape"))
        cut.append(Partition(index, digest.hexdigest(), members))
    return cut


@dataclass(frozen=True)
class WorkerJob:
    """What every worker of a run needs: settings, media rules, the model's input transform."""

    settings: Settings
    media: MediaRoots
    preprocess: Callable
    image_size: int
    vanished: frozenset[str]
    every: bool


@dataclass(frozen=True)
class PartitionTask:
    """One partition as sent to the workers, with the catalog hashes of its files."""

    partition: Partition
    known: dict[str, str]
    attempt: int


@dataclass
class PartitionStats:
    """Where one partition's time went, on the workers and on the driver."""

    files: int = 0
    embedded: int = 0
    read_seconds: float = 0.0
    decode_seconds: float = 0.0
    embed_seconds: float = 0.0
    write_seconds: float = 0.0  # on the driver: committing it
    worker: str = ""  # host:pid of the encoder actor
    attempt: int = 1

    @property
    def images_per_second(self) -> float:
        """Embedded files per second of the encoder actor's time."""
        return self.embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0


@dataclass
class Decoded:
    """A partition after its decode task: images as one pixel array, videos left to the actor."""

    task: PartitionTask
    images: list[LoadedFile] = field(default_factory=list)  # row i of pixels
    pixels: np.ndarray | None = None
    videos: list[FoundFile] = field(default_factory=list)
    kept: list[LoadedFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    stats: PartitionStats = field(default_factory=PartitionStats)


@dataclass
class PartitionResult:
    """A finished (or failed) partition as it comes back to the driver."""

    partition: Partition
    embedded: list[LoadedFile]
    vectors: np.ndarray
    kept: list[LoadedFile]
    skipped: list[Skipped]
    stats: PartitionStats
    precision: PrecisionCheck | None = None
    error: str | None = None

    @classmethod
    def failed(cls, partition: Partition, error: str, attempt: int) -> "PartitionResult":
        """A partition that came back without results."""
        return cls(partition, [], np.zeros((0, 0), np.float32), [], [],
                   PartitionStats(files=len(partition.files), attempt=attempt), error=error)

    def given_up(self, reason: str) -> "PartitionResult":
        """Every file of the partition skipped with this reason, like any file that could not be read."""
        return PartitionResult(self.partition, [], np.zeros((0, 0), np.float32), [],
                               [Skipped(f.path, reason, lasting=False) for f in self.partition.files], self.stats)


def decode_partitions(batch: dict, job: WorkerJob) -> dict:
    """Ray Data stage one (CPU tasks): read, hash, decode and preprocess each partition's images."""
    payloads = [pickle.dumps(_decode(pickle.loads(blob), job), protocol=5) for blob in batch["task"]]
    return {"partition": batch["partition"], "payload": payloads}


def _decode(task: PartitionTask, job: WorkerJob) -> Decoded:
    settings = job.settings
    wants = PixelRule(task.known, job.vanished, job.every)
    decoded = Decoded(task, stats=PartitionStats(files=len(task.partition.files), attempt=task.attempt))
    gate = decode_gate(settings.decode_memory)
    hashed = [0.0]

    def timed_wants(f: FoundFile, digest: str) -> bool:
        hashed[0] = time.perf_counter()  # load_file asks once the bytes are read and hashed
        return wants(f, digest)

    load = partial(load_file, preprocess=job.preprocess, max_pixels=settings.max_image_pixels,
                   draft_size=job.image_size, needs_pixels=timed_wants, media=job.media, gate=gate)
    pixels = []
    for found in task.partition.files:
        if is_video(found.path) or is_audio(found.path):
            decoded.videos.append(found)  # sampled and embedded by the actor, which holds the model
            continue
        began = hashed[0] = time.perf_counter()
        result = load_or_skip(load, found)
        done = time.perf_counter()
        decoded.stats.read_seconds += hashed[0] - began
        decoded.stats.decode_seconds += done - hashed[0]
        if isinstance(result, Skipped):
            decoded.skipped.append(result)
        elif result.pixels is None:
            decoded.kept.append(result)
        else:
            pixels.append(result.pixels.numpy())
            result.pixels = None
            decoded.images.append(result)
    if pixels:
        decoded.pixels = np.stack(pixels)
    return decoded


class EncoderActor:
    """Ray Data stage two (a pool of actors): the model loaded once, each partition embedded."""

    def __init__(self, job: WorkerJob):
        from spyglass.search.model.encoder import encoder_for

        self.job = job
        self.encoder = encoder_for(job.settings)
        self.batch_size = job.settings.batch_for(self.encoder.device)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict) -> dict:
        payloads = []
        for blob in batch["payload"]:
            decoded: Decoded = pickle.loads(blob)
            crashpoint("ray-actor")
            try:
                crashpoint("ray-partition")
                result = self._embed(decoded)
            except Exception as exc:  # noqa: BLE001 - the driver retries the partition, then reports it
                result = PartitionResult.failed(decoded.task.partition, f"{type(exc).__name__}: {exc}",
                                                decoded.task.attempt)
            payloads.append(pickle.dumps(result, protocol=5))
        return {"partition": batch["partition"], "payload": payloads}

    def _embed(self, decoded: Decoded) -> PartitionResult:
        import torch

        stats = decoded.stats
        stats.worker = self.worker
        began = time.perf_counter()
        parts = []
        if decoded.pixels is not None:
            for start in range(0, len(decoded.pixels), self.batch_size):
                parts.append(self.encoder.encode_pixels(torch.from_numpy(decoded.pixels[start:start + self.batch_size])))
        embedded, kept, skipped = list(decoded.images), list(decoded.kept), list(decoded.skipped)
        for found in decoded.videos:
            result = self._video(found, decoded.task.known)
            if isinstance(result, Skipped):
                skipped.append(result)
            elif result.text is not None:  # an audio file: its name through the text tower
                embedded.append(result)
                parts.append(np.asarray(self.encoder.encode_texts([result.text]), np.float32))
            elif result.video is None:
                kept.append(result)
            else:
                embedded.append(result)
                parts.append(result.vector[None, :].astype(np.float32))
        stats.embed_seconds = time.perf_counter() - began
        stats.embedded = len(embedded)
        vectors = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        return PartitionResult(decoded.task.partition, embedded, vectors, kept, skipped, stats,
                               precision=self.encoder.precision_check)

    def _video(self, found: FoundFile, known: dict[str, str]) -> LoadedFile | Skipped:
        """A video sampled and embedded chunk by chunk in this actor, which holds the model (an audio
        file is read here too, and comes back with the text its vector is embedded from)."""
        settings = self.job.settings
        rules = VideoRules.of(settings)
        accumulator = VideoAccumulator(rules)
        load = partial(load_file, preprocess=self.encoder.preprocess, max_pixels=settings.max_image_pixels,
                       draft_size=self.encoder.image_size,
                       needs_pixels=PixelRule(known, self.job.vanished, self.job.every), media=self.job.media,
                       gate=decode_gate(settings.decode_memory), video=VideoDecoding(rules, self.batch_size),
                       emit=lambda chunk: accumulator.add(chunk, self.encoder.encode_pixels(chunk.pixels)))
        result = load_or_skip(load, found)
        if isinstance(result, LoadedFile) and result.sampling is not None:
            try:
                result.video = accumulator.finish(result.sampling)
            except VideoRefused as exc:
                return Skipped(found.path, str(exc))
        return result


class RayRunner:
    """A connection to a Ray cluster for one run; use as a context manager."""

    def __init__(self, settings: Settings, echo: Callable[[str], None]):
        self.settings = settings
        self.echo = echo
        self.ray = require_ray()
        self._started = False
        self.retried = 0  # partition attempts that failed and were tried again
        self.first_seconds: float | None = None  # from the first round's start to its first partition back

    def __enter__(self) -> "RayRunner":
        self._started = connect(self.ray, self.settings.ray_address)
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            self.ray.shutdown()

    def describe(self) -> str:
        """'2 nodes, 16 CPUs, 8 GPUs'."""
        return describe(self.ray)

    def encoders(self) -> tuple[int, float]:
        """(actors, GPUs per actor): one actor per GPU of the cluster, or SPYGLASS_RAY_ENCODERS."""
        return encoder_plan(self.ray, self.settings.ray_encoders)

    def check_shared_paths(self, sample: FoundFile) -> None:
        """Every node sees this file as the driver does; else the run stops before embedding anything."""
        check_shared_paths(self.ray, sample)

    def run(self, parts: list[Partition], job: WorkerJob, known: dict[str, str]) -> Iterator[PartitionResult]:
        """Yield each partition once, as it finishes: embedded, or with every file skipped after
        its retries were spent. Failed partitions go round again, up to SPYGLASS_RAY_RETRIES times."""
        budget = self.settings.ray_retries
        began = time.perf_counter()
        attempts = {p.index: 0 for p in parts}
        todo = list(parts)
        while todo:
            for p in todo:
                attempts[p.index] += 1
            again, seen = [], set()
            for result in self._round(todo, job, known, attempts):
                if self.first_seconds is None:
                    self.first_seconds = time.perf_counter() - began
                seen.add(result.partition.index)
                tries = attempts[result.partition.index]
                if result.error is None:
                    yield result
                elif tries <= budget:
                    self.echo(f"Ray partition {result.partition.index} failed ({result.error}); "
                              f"trying again ({tries} of {budget + 1} tries)")
                    self.retried += 1
                    again.append(result.partition)
                else:
                    yield result.given_up(f"its Ray partition failed {tries} times: {result.error}")
            for p in todo:
                if p.index not in seen:  # the actor died on each of Ray's own retries
                    yield PartitionResult.failed(p, "", attempts[p.index]).given_up(
                        f"the Ray worker embedding it died {budget + 1} times (the Ray logs say why)")
            todo = again

    def _round(self, todo: list[Partition], job: WorkerJob, known: dict[str, str],
               attempts: dict[int, int]) -> Iterator[PartitionResult]:
        ray = self.ray
        context = ray.data.DataContext.get_current()
        # A partition whose actor died on every retry is dropped, not the whole run: run() reports it.
        context.max_errored_blocks = len(todo)
        rows = [{"partition": p.index, "task": pickle.dumps(PartitionTask(
            p, {f.path: known[f.path] for f in p.files if f.path in known}, attempts[p.index]), protocol=5)}
            for p in todo]
        actors, gpus = self.encoders()
        # Failpoints named in this process reach the actors too (crash tests).
        env = {CRASH_ENV: os.environ[CRASH_ENV]} if os.environ.get(CRASH_ENV) else None
        with warnings.catch_warnings():
            # Ray 2.5x names the actor's retry budget only among its generic remote arguments.
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = (ray.data.from_items(rows, override_num_blocks=len(rows))
                       .map_batches(decode_partitions, batch_size=1, num_cpus=1, fn_kwargs={"job": job})
                       .map_batches(EncoderActor, batch_size=1, fn_constructor_kwargs={"job": job},
                                    compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=gpus,
                                    num_cpus=0 if gpus else 1, runtime_env={"env_vars": env} if env else None,
                                    max_restarts=-1, max_task_retries=self.settings.ray_retries))
        for row in dataset.iter_rows():
            yield pickle.loads(row["payload"])


def stats_line(stats: list[PartitionStats], resumed: int, retried: int, where: str,
               first_seconds: float | None = None) -> str:
    """'Ray (1 node, 2 CPUs, 0 GPUs): 4 partitions (1 finished by an earlier run, 0 retried), the first
    back after 9.8 s; median per partition read 0.01 s, decode 0.20 s, embed 0.31 s, write 0.02 s;
    38.7 files/s per encoder'."""
    head = (f"Ray ({where}): {len(stats) + resumed:,} partitions ({resumed:,} finished by an earlier run, "
            f"{retried:,} retried)")
    if first_seconds is not None:
        head += f", the first back after {first_seconds:.1f} s"
    if not stats:
        return head
    median = {name: statistics.median(getattr(s, name) for s in stats)
              for name in ("read_seconds", "decode_seconds", "embed_seconds", "write_seconds")}
    embedded = sum(s.embedded for s in stats)
    embed_seconds = sum(s.embed_seconds for s in stats)
    rate = embedded / embed_seconds if embed_seconds > 0 else 0.0
    return (f"{head}; median per partition read {median['read_seconds']:.2f} s, decode "
            f"{median['decode_seconds']:.2f} s, embed {median['embed_seconds']:.2f} s, write "
            f"{median['write_seconds']:.2f} s; {rate:.1f} files/s per encoder")
