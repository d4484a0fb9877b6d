"""The encoder's towers as ONNX graphs: exported once per weights, runtime and CPU, and run by ONNX Runtime."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import platform
import tempfile
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TOWERS = ("image", "text")
# ONNX opset 17 has LayerNormalization as one op, which ONNX Runtime fuses; every exporter and
# runtime we support knows it.
OPSET = 17
RECIPE = 2  # how graphs are made (2: int8 quantises MatMul only, per channel); a new one exports afresh


def weights_checksum(model) -> str:
    """BLAKE2b of every weight (names, dtypes, shapes, bytes): equal sums export equal graphs."""
    import torch

    digest = hashlib.blake2b(digest_size=20)
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)};".encode())
        if data.numel():
            digest.update(data.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def graph_path(place: Path, tower: str, candidate: str) -> Path:
    """Where one tower's graph for a candidate ("onnx-fp32", "onnx-int8") lives in a model's folder."""
    return place / f"{tower}-{candidate.removeprefix('onnx-')}.onnx"


def _memo_key(checkpoint: str | None) -> str | None:
    """A checkpoint file's key in the memo: path, size and mtime; None for anything but a file."""
    path = Path(checkpoint).expanduser() if checkpoint else None
    if path is None or not path.is_file():
        return None
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _read_memo(folder: Path) -> dict:
    try:
        known = json.loads((folder / "checksums.json").read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def memo_checksums(checkpoint: str | None, folder: Path) -> tuple[str, str] | None:
    """(weights_checksum, image tower checksum) of a checkpoint file as remembered, or None."""
    key = _memo_key(checkpoint)
    entry = _read_memo(folder).get(key) if key else None
    if isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, str) for v in entry):
        return entry[0], entry[1]
    return None


def remembered_checksums(model, checkpoint: str | None, folder: Path) -> tuple[str, str]:
    """(weights_checksum, the image tower's checksum), remembered per checkpoint file (path, size,
    mtime) in folder, so a load reads them instead of hashing every weight again."""
    from spyglass.search.model.encoder import image_tower_checksum

    remembered = memo_checksums(checkpoint, folder)
    if remembered is not None:
        return remembered
    checksums = weights_checksum(model), image_tower_checksum(model)
    key = _memo_key(checkpoint)
    if key is None:
        return checksums
    known = {k: v for k, v in _read_memo(folder).items() if Path(k.split("|")[0]).exists()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / f"checksums.json.{os.getpid()}.part"
        part.write_text(json.dumps({**known, key: list(checksums)}))
        part.replace(folder / "checksums.json")
    except OSError:
        pass  # not remembered: computed again next time
    return checksums


def architecture_identity(architecture: str) -> str:
    """The architecture as the graph depends on it: its name, and a config file's bytes (the same
    weights run under quick_gelu or not make different graphs)."""
    path = Path(architecture).expanduser()
    try:
        if path.is_file():
            return f"{architecture}|{hashlib.blake2b(path.read_bytes(), digest_size=12).hexdigest()}"
    except OSError:
        pass
    return architecture


def cpu_flags() -> str:
    """The CPU's feature flags: ONNX Runtime picks its kernels (AVX2, AVX512, VNNI) by them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return platform.machine() + " " + platform.processor()


def cache_key(weights: str, architecture: str) -> str:
    """The folder name for one model on this machine: weights, architecture, exporter, runtime and CPU flags."""
    import onnxruntime
    import torch

    parts = (weights, architecture_identity(architecture), torch.__version__, onnxruntime.__version__, cpu_flags(), str(OPSET), str(RECIPE))
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=12).hexdigest()


@contextlib.contextmanager
def folder_lock(folder: Path, wait: bool = True):
    """One process at a time exports into a folder (two `serve` workers warming up at once).
    Yields whether the lock is held (always, when waiting)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tower_module(model, tower: str):
    """One tower of an open_clip model as a module with one input, for the exporter."""
    import torch

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            if tower == "image":
                return self.model.encode_image(x, normalize=True)
            return self.model.encode_text(x, normalize=True)

    return Tower().eval()


def export_tower(encoder, tower: str, path: Path) -> Path:
    """Write one fp32 tower as ONNX at path (atomically: a killed export leaves no half file)."""
    import torch

    if path.is_file():
        return path
    if tower == "image":
        example = torch.zeros(2, 3, encoder.image_size, encoder.image_size)
    else:
        example = encoder.tokenizer(["a photo", "a photo of a dog"])
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".onnx.part", delete=False) as part:
        temporary = Path(part.name)
    try:
        # With gradients on: without them nn.MultiheadAttention takes a fused fast path that has no
        # ONNX form. Nothing is trained; the graph holds the weights as constants.
        with torch.inference_mode(False), torch.enable_grad(), _quiet_exporter():
            torch.onnx.export(_tower_module(encoder.model, tower), (example,), str(temporary),
                              input_names=["input"], output_names=["vectors"], opset_version=OPSET,
                              dynamic_axes={"input": {0: "n"}, "vectors": {0: "n"}}, dynamo=False)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def quantize_tower(source: Path, path: Path) -> Path:
    """Weights of the matrix products in int8, one scale per output channel (ONNX Runtime's dynamic
    quantisation); activations stay float.

    Only MatMul: ONNX Runtime's integer convolution (ConvInteger) ran the patch embedding slower
    than its float one, 17% of a ViT-B-32 image batch; without it the tower ran about 1.1x faster on
    a 2-core AVX512-VNNI machine, and per-channel scales kept it closer to fp32 at the same speed."""
    if path.is_file():
        return path
    from onnxruntime.quantization import QuantType, quantize_dynamic  # imports onnx: 0.6 s

    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".onnx.part", delete=False) as part:
        temporary = Path(part.name)
    try:
        with _quiet_exporter():
            quantize_dynamic(str(source), str(temporary), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul"], per_channel=True)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter warns about every traced branch and the quantiser logs every tensor at INFO on
    the root logger; both are expected here."""
    import warnings

    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def providers(device: str) -> list[str]:
    """ONNX Runtime's execution providers for a torch device, best first, among those installed."""
    import onnxruntime

    available = set(onnxruntime.get_available_providers())
    if device.startswith("cuda"):
        wanted = ["CUDAExecutionProvider"]
    else:
        wanted = ["OpenVINOExecutionProvider"]
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


class OnnxTower:
    """An ONNX Runtime session for one tower: numpy in, unit float32 vectors out.

    The session is built at the first call (about a second for ViT-B-32's image tower), so an
    indexer of images never builds its text tower's."""

    def __init__(self, path: Path, device: str, threads: int):
        self.path, self.device, self.threads = path, device, threads
        self._session = None
        self._lock = threading.Lock()

    @property
    def session(self):
        """The ONNX Runtime session, built once."""
        import onnxruntime

        with self._lock:
            if self._session is None:
                options = onnxruntime.SessionOptions()
                options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                # Do not spin between calls: the decode threads need those cores while a batch is assembled.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._session = onnxruntime.InferenceSession(str(self.path), options,
                                                             providers=providers(self.device))
            return self._session

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Vectors of one batch (pixels float32 or tokens int64)."""
        (vectors,) = self.session.run(["vectors"], {"input": batch})
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
