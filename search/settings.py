"""One settings object, read from SPYGLASS_* environment variables; CLI flags override it."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from spyglass.search.errors import ConfigError
from spyglass.search.media.files import FOLLOW_SYMLINKS


@dataclass(frozen=True)
class Setting:
    """One documented setting: its field, environment variable, parser, help and default as shown."""

    field: str
    help: str
    parse: Callable[[str], Any] = str
    shown_default: str = ""

    @property
    def env(self) -> str:
        return "SPYGLASS_" + self.field.upper()


def setting(help: str, parse: Callable[[str], Any] = str, *, default: Any = None,
            default_factory: Callable[[], Any] | None = None, shown: str | None = None):
    """Declare a Settings field with everything about it: its default, how SPYGLASS_* text is
    parsed, its help, and how the docs show its default (the default's value, unless `shown`)."""
    metadata = {"help": help, "parse": parse, "shown": shown}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


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


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:  # NaN fails this too
        raise ValueError("must be a number from 0 to 1")
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
# SPYGLASS_RUNTIME's values (search.model.runtimes says how auto chooses).
RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")
# SPYGLASS_VECTOR_STORAGE's values: the number format of the stored exact vectors.
VECTOR_STORAGES = ("float16", "float32")

@dataclass(frozen=True)
class Settings:
    """Every knob Spyglass has, each declared once: its field, default, parser and help.

    Build with from_env() or directly in tests. The settings page of the docs and the
    `[SPYGLASS_*]` hints of the CLI are made from these declarations (SETTINGS).
    """

    home: Path = setting(
        "Data folder: the SQLite catalog, the index files (`index/`) and the thumbnail cache.",
        _path, default_factory=_default_home, shown="`$XDG_DATA_HOME/spyglass` (`~/.local/share/spyglass`)")
    database_url: str | None = setting(
        "SQLAlchemy URL of the catalog. PostgreSQL: `postgresql://user:pass@host:5432/db` (psycopg 3).",
        shown="`sqlite:///$SPYGLASS_HOME/spyglass.db`")
    model: str = setting(
        "open_clip architecture (`open_clip.list_models()`), or the path of an open_clip model-config JSON "
        "for a custom architecture.", default="ViT-B-32")
    pretrained: str = setting(
        "Weights: an open_clip pretrained tag (downloaded once, then cached), a local checkpoint file "
        "(`.safetensors`, `.bin`, `.pt`), or a folder holding one (an hf-hub style folder with "
        "`open_clip_config.json` brings its own architecture). Empty: random weights (tests only).",
        default="laion2b_s34b_b79k")
    device: str = setting("Torch device: `auto` is `cuda` when torch sees a GPU, else `cpu`; or `cpu`, `cuda`, "
                          "`cuda:1`, ...", default="auto")
    precision: str = setting(
        "The encoder's number format, for indexing and for queries: `auto` is `fp16` on CUDA, `bf16` on a CPU "
        "with AMX or AVX512-BF16, else `fp32`; or `fp32`, `bf16`, `fp16`. A reduced precision is used only if "
        "a calibration batch's vectors stay within cosine 0.999 of fp32's; else fp32, with a warning.",
        _choice(*PRECISIONS), default="auto")
    runtime: str = setting(
        "What runs the encoder's towers: `auto` times PyTorch and ONNX Runtime (fp32, and int8 on a CPU) once per "
        "model and machine (cached under `$SPYGLASS_HOME/runtimes`) and runs each tower on the fastest whose "
        "calibration vectors stay within cosine 0.999 of PyTorch fp32's; or `torch`, `onnx`, `onnx-int8` (still "
        "checked: one that fails falls back, with a warning).", _choice(*RUNTIMES),
        default="auto")
    vector_storage: str = setting(
        "How the exact vectors are stored: `float16` takes half the disk and page cache of `float32` (scores "
        "are computed in float32 from the decoded values; a stored vector's cosine to the embedded one stays "
        "above 0.9999); `float32` keeps them bit for bit. New segments take the setting at once, the rest at "
        "the next compaction.", _choice(*VECTOR_STORAGES), default="float16")
    index_factory: str = setting(
        "The FAISS index searched: `auto` chooses from the vector count, `SPYGLASS_INDEX_MEMORY` and "
        "`SPYGLASS_INDEX_RECALL`; or any FAISS factory string (inner product on unit vectors): `Flat` is "
        "always exact, and trained types (`IVF4096,Flat`, `IVF16384,PQ256x4fs`, "
        "`OPQ64,IVF16384_HNSW32,PQ64x4fsr`, `HNSW32`, ...) are trained and tuned by the index run.",
        default="auto")
    index_memory: int = setting(
        "RAM the approximate index may take (`4G`, `512M`, bytes). Smaller budgets get more compressed codes.",
        _byte_size, default_factory=lambda: _machine_memory() // 4, shown="a quarter of the machine's RAM")
    index_recall: float = setting(
        "Recall@10 against exact search that an approximate index must reach on held-out vectors (0 to 1); "
        "a type that cannot reach it is not used (the next more exact one is).", _fraction, default=0.95)
    batch_size: int | None = setting("Images per encoder batch while indexing.", _positive_int,
                                     shown="`256` on CUDA, `32` on a CPU")
    decode_workers: int | None = setting(
        "Threads that read, hash, decode and resize images while the encoder runs.", _positive_int,
        shown="CPU count, at most 4; beside a GPU, all cores but one")
    max_image_pixels: int = setting(
        "Library images that would decode to more pixels are refused as decompression bombs, from their "
        "header, before a pixel is decoded (JPEGs count at the reduced scale they are decoded at). Video "
        "frames obey it too: a stream whose header, or any frame, is larger is refused.",
        _positive_int, default=89_478_485)
    max_upload_pixels: int = setting(
        "The same limit for images sent to the API: lower, since anyone who can reach the server can send one.",
        _positive_int, default=24_000_000)
    max_file_bytes: int = setting(
        "Library files larger than this are skipped without being read (`512M`, `1G` or bytes).",
        _byte_size, default=512 * 1024 * 1024, shown="`512M`")
    decode_memory: int = setting(
        "Memory that concurrent image decodes in one process may hold together (8 bytes a decoded pixel); "
        "a decode waits for room — an upload at most 20 s, then 503 `busy`.",
        _byte_size, default=1024 * 1024 * 1024, shown="`1G`")
    thumbnail_cache: int = setting(
        "Disk the thumbnail cache (`$SPYGLASS_HOME/thumbnails`) may take; the least recently used "
        "thumbnails go first.", _byte_size, default=1024 * 1024 * 1024, shown="`1G`")
    index_thumbnails: bool = setting(
        "`1`: each run makes both thumbnail sizes (grid and viewer) of what it embedded, up to 80% of the cache, "
        "so a first grid is never grey; `0`: they are made on first view (a library searched from the command "
        "line only).", _flag, default=True, shown="`1`")
    max_video_seconds: float = setting(
        "Videos longer than this (by their header, by a frame's time, or by the length that would be "
        "stored) are skipped with a reason. Videos are streamed, never read whole, so "
        "`SPYGLASS_MAX_FILE_BYTES` does not apply to them.", _positive_seconds, default=4 * 3600.0,
        shown="`14400` (4 h)")
    video_max_gap: float = setting("A video frame is embedded at every cut and at least once every this many "
                                   "seconds.", _positive_seconds, default=4.0, shown="`4`")
    video_every_frame: bool = setting(
        "Decode every frame of a video to find its cuts. Off: only the frames other frames are predicted from "
        "(about half of an x264 stream's) are decoded, and where a cut falls among skipped frames that stretch "
        "is decoded again in full, so a cut is still found at its own first frame (where the packets carry no "
        "presentation times, at the next decoded frame).",
        _flag, default=False, shown="`0`")
    video_duplicate_cosine: float = setting(
        "A sampled frame whose vector has at least this cosine with the last kept frame's is dropped, so a "
        "static shot costs one vector (0 to 1).", _fraction, default=0.97)
    duplicate_cosine: float = setting(
        "Two photos whose vectors have at least this cosine are near-duplicates (a burst shot, a re-saved or "
        "resized copy): results fold them into one tile, and `spyglass duplicates` lists them (0 to 1).",
        _fraction, default=0.97)
    follow_symlinks: str = setting(
        "Symbolic links in the library: `inside` (only links whose target lies inside a media folder), "
        "`all`, or `none`. Applies to indexing, importing and serving.",
        _choice(*FOLLOW_SYMLINKS), default="inside")
    checkpoint_items: int = setting(
        "A long run publishes a generation after this many new vectors, so a killed run keeps its work.",
        _positive_int, default=20_000)
    runner: str = setting(
        "Where `index` and `reindex` embed: `local` (this process) or `ray` (a Ray cluster; "
        "`pip install 'spyglass[ray]'`, the media at the same path on every node).",
        _choice("local", "ray"), default="local")
    ray_address: str = setting(
        "The cluster of the Ray runner: empty starts a Ray on this machine for the run, listening on "
        "127.0.0.1 only; `auto` joins the one `ray start` runs here; `ray://host:10001` reaches a remote head.",
        default="", shown="(none)")
    ray_partition_files: int = setting(
        "Files per partition of a Ray run: a partition is decoded, embedded, retried and committed whole, "
        "so a killed run loses at most the ones in flight.", _positive_int, default=256)
    ray_encoders: int | None = setting("Encoder actors of a Ray run; each loads the model once.", _positive_int,
                                       shown="one per GPU of the cluster, else `1`")
    ray_retries: int = setting(
        "Times a failed partition is tried again (and an encoder actor that died is restarted for it) "
        "before its files are skipped with the error.", _non_negative_int, default=2)
    ocr: str = setting(
        "Read the text in images (RapidOCR, `pip install 'spyglass[words]'`): `auto` when it is installed, "
        "`on` (a run without it stops), or `off`.", _choice("auto", "on", "off"), default="auto")
    speech_model: str = setting(
        "Transcribe the speech in videos and audio files with faster-whisper (`pip install 'spyglass[speech]'`): "
        "a model name (`tiny.en`, `base`, `small`, ...; downloaded once into `SPYGLASS_MODEL_CACHE`) or a local "
        "CTranslate2 model folder (offline). Empty: no speech.", default="", shown="(none: off)")
    model_cache: Path | None = setting("Where downloaded weights are cached.", _path,
                                       shown="Hugging Face cache (`~/.cache/huggingface`)")
    media: str = setting("Folders `spyglass reindex` always covers, colon-separated, besides the recorded ones.",
                         default="", shown="(none)")
    labels: Path | None = setting(
        "A labels file (a regular UTF-8 file of at most 4 MiB, read before a run does any work; one label a "
        "line, `template: a photo of a {label}.` lines for prompts): every item gets its three best zero-shot "
        "labels, to show and filter by.", _path, shown="(none)")
    host: str = setting("Address `spyglass serve` listens on.", default="127.0.0.1")
    port: int = setting("Port `spyglass serve` listens on.", _positive_int, default=8000)
    web_workers: int = setting("gunicorn worker processes of `spyglass serve`; each loads the model and the "
                               "index once.", _positive_int, default=1)
    web_threads: int = setting("Threads per worker, so one slow query does not hold up the rest.",
                               _positive_int, default=8)
    max_upload_bytes: int = setting(
        "Largest request body the API accepts (an uploaded image, base64 included); larger ones get 413. "
        "`20M` works too.", _byte_size, default=20 * 1024 * 1024, shown="`20971520` (20 MiB)")
    allowed_hosts: str = setting(
        "Host names the server answers to, comma-separated, besides the loopback names (`localhost`, "
        "`127.0.0.1`, `::1`: health checks); `.example.com` takes its subdomains, `*` any. Others get 400 "
        "(this stops DNS rebinding).", default="", shown="loopback names when listening on loopback, else any")
    cors_origins: str = setting(
        "Origins whose pages may call the API from a browser (`https://front.example`, comma-separated, or "
        "`*`): they get CORS headers, and their POSTs are accepted.", default="", shown="(none)")
    expose_paths: bool = setting(
        "`1` shows absolute paths (media folders, checkpoint, index files) in HTTP answers and error "
        "messages; by default they show folder and file names only, and the log has the rest.",
        _flag, default=False, shown="`0`")
    auth: str = setting(
        "Who may use the server: `accounts` (people log in to the page; scripts send a token; each sees the "
        "folders granted to them: see Accounts and access) or `none` (anyone who reaches the port sees "
        "everything; `serve` allows it only on a loopback address).", _choice("none", "accounts"), default="none")
    insecure_no_auth: bool = setting(
        "`1` lets `serve` listen beyond loopback with `SPYGLASS_AUTH=none`, for a server behind a proxy that "
        "authenticates people itself; it warns at every start.", _flag, default=False, shown="`0`")
    expensive_per_minute: int = setting(
        "With `SPYGLASS_AUTH=accounts`: costly requests (uploaded images, embeddings, k over 100, offsets past "
        "1,000) each person may make a minute, shared among the workers, one at a time each; more get 429 with "
        "`Retry-After`. `0` rations nothing. Without accounts nothing is rationed.", _non_negative_int, default=60)
    query_languages: str = setting(
        "Languages dates typed into a query are read in (dateparser's codes, comma-separated): with `en,fr`, "
        "\"plage juillet 2023\" searches \"plage\" among photos taken in July 2023.", default="en")
    page_cutoff: float = setting(
        "The page's default closeness: results scoring under this share of the best hit's score are left "
        "out (`0` shows everything; the page's slider changes it per search; the API applies no cutoff unless "
        "asked with `cutoff`).", _share, default=0.5)

    def languages(self) -> tuple[str, ...]:
        """SPYGLASS_QUERY_LANGUAGES as a tuple of codes."""
        return tuple(code.strip() for code in self.query_languages.split(",") if code.strip()) or ("en",)

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


def _shown(field: dataclasses.Field) -> str:
    if field.metadata["shown"] is not None:
        return field.metadata["shown"]
    return f"`{field.default}`"


# Every setting, in declaration order: what from_env reads and what the docs' settings page lists.
SETTINGS: tuple[Setting, ...] = tuple(
    Setting(field.name, field.metadata["help"], field.metadata["parse"], _shown(field))
    for field in dataclasses.fields(Settings))
