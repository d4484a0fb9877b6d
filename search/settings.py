"""One settings object, read from SPYGLASS_* environment variables; CLI flags override it."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from spyglass.search.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    """One documented setting: its field, environment variable, default and help."""

    field: str
    help: str
    parse: Callable[[str], Any] = str

    @property
    def env(self) -> str:
        return "SPYGLASS_" + self.field.upper()


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "spyglass"


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be a whole number, 0 or more")
    return value


def _path(text: str) -> Path:
    return Path(text).expanduser()


_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*$", re.IGNORECASE)


def _byte_size(text: str) -> int:
    """'536870912', '512M', '512MiB' or '1G' (units of 1024)."""
    match = _BYTES.match(text)
    if not match:
        raise ValueError("must be a number of bytes, e.g. 536870912, 512M or 1G")
    value = int(float(match[1]) * 1024 ** " kmg".index(match[2].lower() or " "))
    if value <= 0:
        raise ValueError("must be more than 0 bytes")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:  # NaN fails this too
        raise ValueError("must be a number above 0 and at most 1")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):  # NaN fails this too
        raise ValueError("must be a number of seconds above 0")
    return value


def _machine_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 8 * 1024**3


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return text
    return parse


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 1/true/yes/on or 0/false/no/off")


# SPYGLASS_PRECISION's values (search.precision says what each means on which device).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

SETTINGS: tuple[Setting, ...] = (
    Setting("home", "Data folder: the SQLite catalog and the index files live here "
            "(default: $XDG_DATA_HOME/spyglass, i.e. ~/.local/share/spyglass).", _path),
    Setting("database_url", "SQLAlchemy URL of the catalog, e.g. postgresql://user@host/db "
            "(default: sqlite:///$SPYGLASS_HOME/spyglass.db)."),
    Setting("model", "open_clip architecture name (see `open_clip.list_models()`), "
            "or a path to an open_clip model-config JSON file for a custom architecture."),
    Setting("pretrained", "Weights: an open_clip pretrained tag (downloaded "
            "once, needs the network), or a path to a local checkpoint file (.safetensors, .bin, "
            ".pt) or to a folder holding one (with open_clip_config.json for an hf-hub style folder)."),
    Setting("device", "Torch device for the encoder: auto (cuda when present, else cpu), "
            "cpu, cuda, cuda:1, ..."),
    Setting("precision", "Number format the encoder computes in: auto (fp16 on CUDA, bf16 on a CPU "
            "with AMX or AVX512-BF16, else fp32), fp32, bf16 or fp16. A reduced precision is used only "
            "if its vectors of a calibration batch stay within cosine 0.999 of fp32's.",
            _choice(*PRECISIONS)),
    Setting("index_factory", "FAISS index type: auto (chosen from the vector count, "
            "SPYGLASS_INDEX_MEMORY and SPYGLASS_INDEX_RECALL), or any FAISS index factory string "
            "(Flat is exact search; IVF4096,Flat, OPQ64,IVF16384_HNSW32,PQ64x4fsr and HNSW32 are trained and tuned at build)."),
    Setting("index_memory", "RAM the search index may take (4G, 512M, ...); default a quarter of "
            "this machine's memory. Larger libraries get more compressed codes.", _byte_size),
    Setting("index_recall", "Recall@10 against exact search that an approximate index must reach "
            "on held-out vectors (0 to 1); a build that cannot reach it falls back to a more exact type.",
            _fraction),
    Setting("batch_size", "Images per encoder batch while indexing (default: 256 on CUDA, 32 on a CPU).",
            _positive_int),
    Setting("decode_workers", "Threads that read, hash, decode and resize images while the encoder "
            "runs (default: the cores, at most 4, on a CPU; all cores but one beside a GPU).", _positive_int),
    Setting("max_image_pixels", "Library images that would decode to more pixels than this are "
            "refused as decompression bombs (Pillow's default limit; JPEGs count at the reduced "
            "scale they are decoded at).", _positive_int),
    Setting("max_upload_pixels", "The same limit for images sent to the web API, lower because "
            "anyone who can reach the server can send one.", _positive_int),
    Setting("max_file_bytes", "Library files larger than this are skipped, and never read into "
            "memory (512M, 1G or a number of bytes).", _byte_size),
    Setting("decode_memory", "Memory that concurrent image decodes in one process may hold "
            "together (1G, ...); a decode waits until there is room.", _byte_size),
    Setting("thumbnail_cache", "Disk the thumbnail cache under SPYGLASS_HOME may take (1G, 512M, ...); "
            "the least recently used thumbnails go first.", _byte_size),
    Setting("max_video_seconds", "Videos longer than this are skipped with a reason (seconds; "
            "default 14400, four hours).", _positive_seconds),
    Setting("video_max_gap", "While indexing a video, a frame is embedded at every cut and at least "
            "once every this many seconds (default 4).", _positive_seconds),
    Setting("video_duplicate_cosine", "A sampled video frame whose embedding has at least this cosine "
            "with the last kept frame's is dropped, so a static shot costs one vector (0 to 1; default 0.97).",
            _fraction),
    Setting("follow_symlinks", "Symbolic links in the library: inside (only links whose target "
            "lies inside a media folder), all, or none.", _choice("inside", "all", "none")),
    Setting("checkpoint_items", "An index run publishes a new generation after this many "
            "embedded items, so a killed run keeps what it had done.", _positive_int),
    Setting("runner", "Where `spyglass index` embeds: local (this process) or ray (a Ray cluster, "
            "needs pip install 'spyglass[ray]'; the media must be at the same path on every node).",
            _choice("local", "ray")),
    Setting("ray_address", "The Ray cluster of --runner ray: empty starts a Ray on this machine for the run, "
            "auto joins the one `ray start` runs here, ray://host:10001 reaches a remote head."),
    Setting("ray_partition_files", "Files per partition of a Ray run: a partition is embedded, "
            "retried and committed whole, so a killed run loses at most the ones in flight "
            "(default 256).", _positive_int),
    Setting("ray_encoders", "Encoder actors of a Ray run, each loading the model once (default: one per "
            "GPU of the cluster, or one on a cluster without GPUs).", _positive_int),
    Setting("ray_retries", "Times a Ray partition that failed is tried again before its files are "
            "skipped with the error (default 2).", _non_negative_int),
    Setting("model_cache", "Where downloaded pretrained weights are cached (default: the "
            "Hugging Face cache, ~/.cache/huggingface).", _path),
    Setting("media", "Folders `spyglass reindex` always covers, colon-separated, besides those "
            "earlier `spyglass index` runs recorded."),
    Setting("labels", "A labels file (one label a line, `template: a photo of a {label}.` lines for "
            "prompts): every item gets its best zero-shot labels, to show and filter by.", _path),
    Setting("host", "Address `spyglass serve` listens on."),
    Setting("port", "Port `spyglass serve` listens on.", _positive_int),
    Setting("web_workers", "Worker processes of `spyglass serve` (each loads the model once).",
            _positive_int),
    Setting("web_threads", "Threads per worker, so one slow query does not hold up the rest.",
            _positive_int),
    Setting("max_upload_bytes", "Largest request body the web API accepts (an uploaded image, "
            "base64 included); larger ones get 413.", _byte_size),
    Setting("allowed_hosts", "Host names the web server answers to, comma-separated (.example.com "
            "matches its subdomains, * any); default: the loopback names when it listens on "
            "loopback, else any."),
    Setting("cors_origins", "Web origins (https://app.example.com, comma-separated, or *) whose "
            "pages may call the API from a browser, e.g. clip-retrieval's front end."),
    Setting("expose_paths", "Show absolute paths (media folders, checkpoints, index files) in "
            "HTTP answers and error messages: 1 or 0.", _flag),
)


@dataclass(frozen=True)
class Settings:
    """Every knob Spyglass has; build with from_env() or directly in tests."""

    home: Path = dataclasses.field(default_factory=_default_home)
    database_url: str | None = None
    model: str = "ViT-B-32"
    pretrained: str = "laion2b_s34b_b79k"
    device: str = "auto"
    precision: str = "auto"
    index_factory: str = "auto"
    index_memory: int = dataclasses.field(default_factory=lambda: _machine_memory() // 4)
    index_recall: float = 0.95
    batch_size: int | None = None  # None: batch_for() picks by device
    decode_workers: int | None = None  # None: workers_for() picks by device
    max_image_pixels: int = 89_478_485
    max_upload_pixels: int = 24_000_000
    max_file_bytes: int = 512 * 1024 * 1024
    decode_memory: int = 1024 * 1024 * 1024
    thumbnail_cache: int = 1024 * 1024 * 1024
    max_video_seconds: float = 4 * 3600.0
    video_max_gap: float = 4.0
    video_duplicate_cosine: float = 0.97
    follow_symlinks: str = "inside"
    checkpoint_items: int = 20_000
    runner: str = "local"
    ray_address: str = ""
    ray_partition_files: int = 256
    ray_encoders: int | None = None  # None: one per GPU of the cluster, at least one
    ray_retries: int = 2
    model_cache: Path | None = None
    media: str = ""
    labels: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    web_workers: int = 1
    web_threads: int = 8
    max_upload_bytes: int = 20 * 1024 * 1024
    allowed_hosts: str = ""
    cors_origins: str = ""
    expose_paths: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read SPYGLASS_* variables; keyword overrides that are not None win."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = environ.get(setting.env)
            if raw is None or raw == "":
                continue
            try:
                values[setting.field] = setting.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{setting.env}={raw!r} is not valid: {exc}") from None
        return cls(**values).override(**overrides)

    def override(self, **overrides: Any) -> "Settings":
        """A copy with the given fields replaced, ignoring those that are None."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if "home" in given:
            given["home"] = Path(given["home"]).expanduser()
        return dataclasses.replace(self, **given)

    def batch_for(self, device: str) -> int:
        """SPYGLASS_BATCH_SIZE, or the default for this device: a GPU needs big batches to be busy."""
        return self.batch_size or (256 if device.startswith("cuda") else 32)

    def workers_for(self, device: str) -> int:
        """SPYGLASS_DECODE_WORKERS, or the default for this device: beside a GPU, decoding is the work."""
        cores = os.cpu_count() or 1
        return self.decode_workers or (max(2, cores - 1) if device.startswith("cuda") else max(1, min(4, cores)))

    @property
    def db_url(self) -> str:
        """The catalog URL: the one set, or a SQLite file under home."""
        return self.database_url or f"sqlite:///{self.home / 'spyglass.db'}"

    @property
    def media_roots(self) -> list[str]:
        """SPYGLASS_MEDIA as a list of folders."""
        return [part for part in self.media.split(":") if part]

    @property
    def index_dir(self) -> Path:
        """Folder of the published FAISS index generations."""
        return self.home / "index"
