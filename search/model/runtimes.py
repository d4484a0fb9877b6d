"""Which runtime runs each tower: PyTorch, or ONNX Runtime in fp32 or int8, chosen by a timed probe.

`auto` exports both towers from the loaded fp32 weights (once: the graphs and the probe's result are
cached per weights, exporter, runtime and CPU flags), checks every candidate's vectors against
PyTorch fp32 on the calibration batch (each cosine at least MIN_COSINE) and times it, rounds
interleaved; each tower then runs on the fastest candidate that passed.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from spyglass.search.model import precision as fidelity
from spyglass.search.model.precision import CALIBRATION_TEXTS, PrecisionCheck, calibration_images

PROBE_VERSION = 1
PROBE_ROUNDS = 3
PROBE_IMAGES = 8  # one batch of this many calibration images per timing
KEEP_FOLDERS = 3  # models whose graphs stay cached: the one loaded and the two used before it
PROBE_QUERIES = 5  # single-text calls per timing: a query's latency, not a batch's throughput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One runtime × precision as the probe measured it for one tower."""

    name: str  # torch-fp32, torch-bf16, onnx-fp32, onnx-int8
    per_second: float | None = None  # images/s (image tower) or single-text queries/s (text tower)
    min_cosine: float | None = None  # against PyTorch fp32; None for PyTorch fp32 itself
    error: str | None = None  # why it could not run

    @property
    def passed(self) -> bool:
        """It ran, and every calibration vector stayed within the fidelity bound."""
        return self.error is None and (self.min_cosine is None or self.min_cosine >= fidelity.MIN_COSINE)


@dataclass(frozen=True)
class TowerChoice:
    """The runtime one tower runs on, and the measurements it was chosen by."""

    tower: str
    chosen: str
    why: str
    candidates: tuple[Candidate, ...] = ()

    def describe(self) -> str:
        """'onnx-int8: 46.1 images/s, min cosine 0.99980 (fastest that passed; torch-fp32 15.8, ...)'."""
        unit = "images/s" if self.tower == "image" else "queries/s"
        chosen = next((c for c in self.candidates if c.name == self.chosen), None)
        head = self.chosen
        if chosen is not None and chosen.per_second:
            head += f": {chosen.per_second:.1f} {unit}"
            if chosen.min_cosine is not None:
                head += f", min cosine {chosen.min_cosine:.5f}"
        others = [f"{c.name} {c.per_second:.1f}" if c.passed and c.per_second else f"{c.name} {_failure(c)}"
                  for c in self.candidates if c.name != self.chosen and not self.why.startswith(c.name)]
        return f"{head} ({self.why}" + (f"; {', '.join(others)}" if others else "") + ")"


@dataclass(frozen=True)
class RuntimeReport:
    """Both towers' choices: what `status` and the run's first line say."""

    image: TowerChoice
    text: TowerChoice
    probe_cached: bool = False
    folder: str | None = None

    def describe(self) -> str:
        """One line for the run's output."""
        cached = " (probe cached)" if self.probe_cached else ""
        return f"images {self.image.describe()}; texts {self.text.describe()}{cached}"

    def as_json(self) -> dict:
        """For /api/v1/status."""
        return {"image": self.image.chosen, "text": self.text.chosen,
                "image_why": self.image.describe(), "text_why": self.text.describe()}


@dataclass
class _Probe:
    """What a probe measured, as cached beside the exported graphs."""

    torch_precision: str
    threads: int
    device: str
    towers: dict = field(default_factory=dict)  # tower -> [Candidate as dict]
    version: int = PROBE_VERSION

    def choice(self, tower: str, setting: str) -> "TowerChoice":
        """The tower's runtime under a setting, from these measurements."""
        return choose([Candidate(**c) for c in self.towers[tower]], setting, tower)


def _failure(candidate: Candidate) -> str:
    if candidate.error:
        return f"failed: {candidate.error}"
    return f"min cosine {candidate.min_cosine:.5f} < {fidelity.MIN_COSINE}"


def torch_only(encoder, why: str) -> RuntimeReport:
    """The report when PyTorch runs both towers without a probe."""
    name = f"torch-{encoder.precision}"
    return RuntimeReport(TowerChoice("image", name, why), TowerChoice("text", name, why))


def choose(candidates: list[Candidate], setting: str, tower: str) -> TowerChoice:
    """The tower's runtime under a setting: auto the fastest that passed; an asked-for one if it passed."""
    by_name = {c.name: c for c in candidates}
    torch_name = next(c.name for c in candidates if c.name.startswith("torch-"))
    if setting == "auto":
        passed = [c for c in candidates if c.passed and c.per_second]
        best = max(passed, key=lambda c: c.per_second, default=by_name[torch_name])
        return TowerChoice(tower, best.name, "fastest that passed", tuple(candidates))
    order = {"onnx": ["onnx-fp32"], "onnx-int8": ["onnx-int8", "onnx-fp32"]}[setting]
    for name in order:
        if name in by_name and by_name[name].passed:
            why = "asked for" if name == order[0] else f"{order[0]} {_failure(by_name[order[0]])}"
            return TowerChoice(tower, name, why, tuple(candidates))
    asked = by_name.get(order[0])
    why = f"{order[0]} {_failure(asked)}" if asked else f"{order[0]} unavailable"
    log.warning("runtime %s for the %s tower: %s; using PyTorch", setting, tower, why)
    return TowerChoice(tower, torch_name, why, tuple(candidates))


def apply_runtime(encoder, setting: str, precision: str, folder: Path | None, threads: int) -> RuntimeReport:
    """Give the encoder's towers the runtime the setting asks for; reduce_precision runs here too."""
    from spyglass.search.model.cached_load import write_facts
    from spyglass.search.model.precision import chosen_precision, reduce_precision

    if setting == "torch" or folder is None:
        encoder.precision_check = reduce_precision(encoder, precision)
        return torch_only(encoder, "asked for" if setting == "torch" else "no cache folder")
    try:
        import onnxruntime  # noqa: F401 - onnx itself is imported only to export (0.6 s of start-up)

        from spyglass.search.model import onnx_export
    except ImportError as exc:
        encoder.precision_check = reduce_precision(encoder, precision)
        log.warning("runtime %s needs onnxruntime (%s): using PyTorch", setting, exc)
        return torch_only(encoder, "onnxruntime missing: pip install onnxruntime onnx")
    # Of the fp32 weights, before anything converts them.
    weights, image_tower = onnx_export.remembered_checksums(encoder.model, encoder.pretrained, folder)
    encoder.remember_image_tower(image_tower)
    place = folder / onnx_export.cache_key(weights, encoder.architecture)
    try:
        place.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a Ray worker on another machine may not have the driver's home
        encoder.precision_check = reduce_precision(encoder, precision)
        log.warning("runtime %s: cannot write its cache folder %s (%s): using PyTorch", setting, place, exc)
        return torch_only(encoder, f"cache folder not writable: {exc.strerror or exc}")
    with onnx_export.folder_lock(place):
        probe = read_probe(place, threads, encoder.device)
        if probe is not None and probe.torch_precision != chosen_precision(precision, encoder.device):
            probe = None
        batch = _calibration(encoder) if probe is None else None
        # While the model is still fp32: the graphs, and PyTorch fp32's vectors for a new probe.
        wanted = _chosen_graphs(probe, setting) if probe is not None else _all_graphs(encoder)
        graphs, errors = _export(encoder, place, wanted)
        reference = _reference(encoder, *batch) if probe is None else None
        encoder.precision_check = reduce_precision(encoder, precision)
        cached = probe is not None and probe.torch_precision == encoder.precision
        if not cached:
            if reference is None:  # the precision the probe was made with fell back: fp32 again
                graphs, errors = _export(encoder, place, _all_graphs(encoder))
                batch = _calibration(encoder)
                reference = _reference(encoder, *batch)
            log.info("timing the encoder's runtimes once for this machine (cached in %s)", place)
            probe = _measure(encoder, graphs, errors, threads, batch, reference)
            if not any(e.startswith(("OSError", "PermissionError")) for e in errors.values()):
                _write_probe(place, probe)  # a full disk is not a property of the machine
        choices = {tower: probe.choice(tower, setting) for tower in ("image", "text")}
        for tower, choice in list(choices.items()):
            if choice.chosen.startswith("onnx-"):
                if (tower, choice.chosen) not in graphs:
                    choices[tower] = TowerChoice(tower, f"torch-{encoder.precision}",
                                                 f"{choice.chosen} {errors.get(tower, 'not exported')}")
                    continue
                session = onnx_export.OnnxTower(graphs[(tower, choice.chosen)], encoder.device, threads)
                encoder.use_onnx(tower, session)
        _prune(place)
        if all(c.chosen.startswith("onnx-") for c in choices.values()):
            write_facts(encoder, place)
    encoder.precision_check = onnx_precision_check(choices["image"]) or encoder.precision_check
    if all(c.chosen.startswith("onnx-") for c in choices.values()):
        encoder.release_torch_model()  # ONNX Runtime holds its own copy of the weights
    return RuntimeReport(choices["image"], choices["text"], cached, str(place))


def onnx_precision_check(choice: TowerChoice) -> PrecisionCheck | None:
    """The image tower's fidelity as a PrecisionCheck, when ONNX Runtime runs it."""
    chosen = next((c for c in choice.candidates if c.name == choice.chosen), None)
    if chosen is None or not chosen.name.startswith("onnx-"):
        return None
    return PrecisionCheck(chosen.name, chosen.min_cosine, chosen.name)


def _all_graphs(encoder) -> list[tuple[str, str]]:
    names = ("onnx-fp32",) if encoder.device.startswith("cuda") else ("onnx-fp32", "onnx-int8")
    return [(tower, name) for tower in ("image", "text") for name in names]  # int8 kernels are CPU ones


def _chosen_graphs(probe: "_Probe", setting: str) -> list[tuple[str, str]]:
    chosen = [(tower, probe.choice(tower, setting).chosen) for tower in ("image", "text")]
    return [(tower, name) for tower, name in chosen if name.startswith("onnx-")]


def _export(encoder, place: Path, wanted: list[tuple[str, str]]) -> tuple[dict, dict]:
    """The graph files for each wanted (tower, candidate), exported and quantised where missing."""
    from spyglass.search.model import onnx_export

    graphs, errors = {}, {}
    for tower, name in wanted:
        if tower in errors:
            continue  # its fp32 export failed: no graph to quantise either
        try:
            fp32 = onnx_export.graph_path(place, tower, "onnx-fp32")
            int8 = onnx_export.graph_path(place, tower, "onnx-int8")
            if name == "onnx-fp32" or not int8.is_file():
                onnx_export.export_tower(encoder, tower, fp32)
            graphs[(tower, name)] = fp32 if name == "onnx-fp32" else onnx_export.quantize_tower(fp32, int8)
        except Exception as exc:  # noqa: BLE001 - an architecture the exporter cannot trace runs in PyTorch
            log.warning("could not export the %s tower to ONNX (%s): %s: %s", tower, name, type(exc).__name__, exc)
            errors.setdefault(tower, f"{type(exc).__name__}: {str(exc)[:200]}")
    return graphs, errors


def _prune(place: Path) -> None:
    """Killed exports' leftovers go, and the folders of other weights but the most recent few (tests
    and fine-tuning make many). A folder's graphs all stay, even those no tower runs on: a process
    that chose another runtime may build its session from them later."""
    from spyglass.search.model.onnx_export import folder_lock

    for path in place.glob("*.part"):
        path.unlink(missing_ok=True)
    if (place / "probe.json").exists():
        (place / "probe.json").touch()  # this folder was used now
    others = sorted((p for p in place.parent.iterdir() if p.is_dir() and p != place),
                    key=lambda p: (p / "probe.json").stat().st_mtime if (p / "probe.json").exists() else 0,
                    reverse=True)
    for old in others[KEEP_FOLDERS - 1:]:
        with folder_lock(old, wait=False) as held:
            if held:  # another process exporting into it keeps it
                shutil.rmtree(old, ignore_errors=True)


def read_probe(place: Path, threads: int, device: str) -> _Probe | None:
    try:
        probe = _Probe(**json.loads((place / "probe.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return probe if (probe.version, probe.threads, probe.device) == (PROBE_VERSION, threads, device) else None


def _write_probe(place: Path, probe: _Probe) -> None:
    temporary = place / "probe.json.part"
    temporary.write_text(json.dumps(asdict(probe), indent=1))
    temporary.replace(place / "probe.json")


def _calibration(encoder) -> tuple:
    """The calibration batch as the towers take it: preprocessed pixels and tokens."""
    import torch

    pixels = torch.stack([encoder.preprocess(image) for image in calibration_images(count=PROBE_IMAGES)])
    return pixels, encoder.tokenizer(list(CALIBRATION_TEXTS))


def _measure(encoder, graphs: dict, errors: dict, threads: int, batch: tuple, reference: dict) -> _Probe:
    """Fidelity and speed of every candidate, rounds interleaved, against PyTorch fp32's vectors."""
    from spyglass.search.model import onnx_export

    pixels, tokens = batch
    torch_name = f"torch-{encoder.precision}"
    torch_cosine = None if encoder.precision == "fp32" else encoder.precision_check.min_cosine
    probe = _Probe(encoder.precision, threads, encoder.device)
    inputs = {"image": pixels, "text": tokens}
    for tower in ("image", "text"):
        runners = {torch_name: _torch_runner(encoder, tower)}
        results = {torch_name: Candidate(torch_name, None, torch_cosine)}
        for name in ("onnx-fp32", "onnx-int8"):
            if (tower, name) not in graphs:
                if tower in errors:
                    results[name] = Candidate(name, error=errors[tower])
                continue
            try:
                session = onnx_export.OnnxTower(graphs[(tower, name)], encoder.device, threads)
                vectors = session.run(inputs[tower].numpy())
                cosine = float(np.min(np.sum(vectors * reference[tower], axis=1)))
                results[name] = Candidate(name, None, cosine if np.isfinite(cosine) else float("nan"))
                runners[name] = session.run
            except Exception as exc:  # noqa: BLE001 - a graph this runtime cannot run is a failed candidate
                results[name] = Candidate(name, error=f"{type(exc).__name__}: {str(exc)[:200]}")
        speeds = _time(runners, tower, inputs[tower])
        probe.towers[tower] = [asdict(Candidate(c.name, speeds.get(c.name), c.min_cosine, c.error))
                               for c in results.values()]
    return probe


def _reference(encoder, pixels, tokens) -> dict:
    """PyTorch fp32 vectors of the calibration batch (the model must still be fp32)."""
    assert encoder.precision == "fp32", "the reference is taken before the precision is reduced"
    return {"image": encoder.encode_pixels(pixels), "text": encoder.encode_tokens(tokens)}


def _torch_runner(encoder, tower: str):
    if tower == "image":
        return encoder.encode_pixels
    return lambda tokens: encoder.encode_tokens(tokens)


def _time(runners: dict, tower: str, batch) -> dict:
    """Best rate of each runner over PROBE_ROUNDS rounds, the runners interleaved in every round."""
    best: dict[str, float] = {}
    images = batch[:PROBE_IMAGES]
    for round_ in range(PROBE_ROUNDS + 1):  # the first round warms up and is not counted
        for name, run in runners.items():
            source = images if tower == "image" else batch[:1]
            data = source if name.startswith("torch-") else source.numpy()
            started = time.perf_counter()
            for _ in range(1 if tower == "image" else PROBE_QUERIES):
                run(data)
            elapsed = time.perf_counter() - started
            rate = (len(images) if tower == "image" else PROBE_QUERIES) / max(elapsed, 1e-9)
            if round_:
                best[name] = max(best.get(name, 0.0), rate)
    return best
