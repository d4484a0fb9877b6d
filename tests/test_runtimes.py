"""Encoder runtimes: ONNX Runtime beside PyTorch, exported once, checked against fp32, chosen by a probe."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from spyglass.search.errors import ConfigError
from spyglass.search.model import onnx_export, precision, runtimes
from spyglass.search.model.encoder import load_encoder
from spyglass.search.settings import Settings

TEXTS = ["a cat on a sofa", "a boat at sea", "a red bicycle leaning on a wall"]


def _load(tiny_model, folder, runtime):
    return load_encoder(str(tiny_model[0]), str(tiny_model[1]), device="cpu", precision="fp32",
                        runtime=runtime, runtime_dir=folder)


def _close_to_fp32(loaded, encoder, bound=0.995):
    """Images and texts outside the calibration batch land near PyTorch fp32's vectors."""
    images = precision.calibration_images(count=4, size=80)
    for ours, reference in ((loaded.encode_images(images), encoder.encode_images(images)),
                            (loaded.encode_texts(TEXTS), encoder.encode_texts(TEXTS))):
        assert ours.dtype == np.float32 and ours.shape == reference.shape
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        assert np.min(np.sum(ours * reference, axis=1)) >= bound


def test_onnx_runs_both_towers_true_to_fp32_and_frees_the_torch_weights(tiny_model, encoder, tmp_path):
    loaded = _load(tiny_model, tmp_path, "onnx")
    report = loaded.runtime
    assert (report.image.chosen, report.text.chosen) == ("onnx-fp32", "onnx-fp32")
    assert report.image.why == "asked for" and not report.probe_cached
    assert loaded.model is None  # ONNX Runtime holds the weights now
    assert loaded.image_tower == encoder.image_tower  # the same checkpoint, whatever runs it
    assert loaded.precision_check.precision == "onnx-fp32" and loaded.precision_check.min_cosine >= 0.9999
    _close_to_fp32(loaded, encoder, bound=0.9999)
    assert "onnx-fp32" in report.describe() and "images/s" in report.describe()
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert {"image-fp32.onnx", "text-fp32.onnx"} <= {p.name for p in folder.glob("*.onnx")}
    assert not list(folder.glob("*.part"))


def test_loaders_with_other_runtimes_share_a_folder_without_pulling_graphs_from_under_each_other(
        tiny_model, encoder, tmp_path):
    """Sessions are built at first use: a later load choosing otherwise must not delete their graphs."""
    onnx = _load(tiny_model, tmp_path, "onnx")
    _load(tiny_model, tmp_path, "onnx-int8")
    _load(tiny_model, tmp_path, "auto")
    _close_to_fp32(onnx, encoder, bound=0.9999)  # its sessions are built only now


def test_auto_times_every_candidate_once_and_the_next_load_reads_the_cache(tiny_model, encoder, tmp_path):
    first = _load(tiny_model, tmp_path, "auto")
    names = {c.name for c in first.runtime.image.candidates}
    assert names == {"torch-fp32", "onnx-fp32", "onnx-int8"}
    for choice in (first.runtime.image, first.runtime.text):
        chosen = next(c for c in choice.candidates if c.name == choice.chosen)
        assert chosen.passed and choice.why == "fastest that passed"
        faster = [c for c in choice.candidates if c.passed and c.per_second > chosen.per_second]
        assert not faster  # the fastest of those that passed the fidelity check
        assert all(c.per_second for c in choice.candidates if c.error is None)
    _close_to_fp32(first, encoder)
    second = _load(tiny_model, tmp_path, "auto")
    assert second.runtime.probe_cached and "(probe cached)" in second.runtime.describe()
    assert (second.runtime.image.chosen, second.runtime.text.chosen) == (
        first.runtime.image.chosen, first.runtime.text.chosen)
    images = precision.calibration_images(count=2, size=64)
    np.testing.assert_allclose(second.encode_images(images), first.encode_images(images), atol=1e-6)


def test_a_runtime_that_fails_the_check_falls_back_with_a_warning(tiny_model, encoder, tmp_path, monkeypatch,
                                                                  caplog):
    monkeypatch.setattr(precision, "MIN_COSINE", 1.5)  # nothing but PyTorch fp32 itself passes this
    with caplog.at_level(logging.WARNING, logger="spyglass.search.model.runtimes"):
        loaded = _load(tiny_model, tmp_path, "onnx-int8")
    assert (loaded.runtime.image.chosen, loaded.runtime.text.chosen) == ("torch-fp32", "torch-fp32")
    assert "onnx-int8 min cosine" in loaded.runtime.image.why
    assert "using PyTorch" in caplog.text
    assert loaded.model is not None and loaded.precision_check.precision == "fp32"
    images = precision.calibration_images(count=2, size=64)
    np.testing.assert_array_equal(loaded.encode_images(images), encoder.encode_images(images))


def test_a_model_the_exporter_cannot_trace_runs_in_pytorch(tiny_model, encoder, tmp_path, monkeypatch):
    def refuse(encoder, tower, path):
        raise RuntimeError(f"cannot export the {tower} tower")

    monkeypatch.setattr(onnx_export, "export_tower", refuse)
    loaded = _load(tiny_model, tmp_path, "auto")
    assert (loaded.runtime.image.chosen, loaded.runtime.text.chosen) == ("torch-fp32", "torch-fp32")
    failed = [c for c in loaded.runtime.image.candidates if c.error]
    assert {c.name for c in failed} == {"onnx-fp32", "onnx-int8"}
    assert "cannot export the image tower" in failed[0].error
    np.testing.assert_array_equal(loaded.encode_texts(TEXTS), encoder.encode_texts(TEXTS))


def test_a_full_disk_is_not_cached_as_the_machines_answer(tiny_model, tmp_path, monkeypatch):
    def full(encoder, tower, path):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(onnx_export, "export_tower", full)
        assert _load(tiny_model, tmp_path, "onnx").runtime.image.chosen == "torch-fp32"
    assert not list(tmp_path.glob("*/probe.json"))
    assert _load(tiny_model, tmp_path, "onnx").runtime.image.chosen == "onnx-fp32"  # room again: it exports


def test_torch_asks_for_nothing_and_old_folders_are_pruned(tiny_model, other_model, tmp_path):
    loaded = _load(tiny_model, tmp_path, "torch")
    assert loaded.runtime.image.chosen == "torch-fp32" and loaded.runtime.image.why == "asked for"
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    for stale in ("a", "b", "c"):
        (tmp_path / stale).mkdir(parents=True)
        (tmp_path / stale / "probe.json").write_text("{}")
        os.utime(tmp_path / stale / "probe.json", (1, 1))
    _load(tiny_model, tmp_path, "onnx")
    kept = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert len(kept) == runtimes.KEEP_FOLDERS  # this model's folder and the two used last
    assert "a" not in kept or "b" not in kept


def test_the_setting_is_checked():
    assert Settings().runtime == "auto"
    assert Settings.from_env({"SPYGLASS_RUNTIME": "onnx-int8"}).runtime == "onnx-int8"
    with pytest.raises(ConfigError, match="SPYGLASS_RUNTIME"):
        Settings.from_env({"SPYGLASS_RUNTIME": "tensorrt"})


def test_an_index_run_says_which_runtime_and_status_reports_it(settings, media, encoder):
    from spyglass.indexer.job import run_index
    from spyglass.search.engine import SearchEngine
    from spyglass.search.status import status_report

    messages = []
    onnx = settings.override(runtime="onnx")
    run_index(onnx, [str(media)], progress=False, echo=messages.append)
    line = next(m for m in messages if m.startswith("Encoder runtime: "))
    assert "images onnx-fp32" in line and "texts onnx-fp32" in line
    assert status_report(onnx)["index"]["precision"] == "onnx-fp32"
    # Vectors from ONNX Runtime answer PyTorch's query of the same image.
    engine = SearchEngine(onnx)
    first = sorted(media.glob("*.png"))[0]
    assert engine.search_image(first, k=1).hits[0].item.path == str(first)
    (loaded,) = engine.loaded_precisions()
    assert loaded["runtime"]["image"] == "onnx-fp32" and loaded["precision"] == "onnx-fp32"


def test_a_cache_folder_that_cannot_be_written_leaves_pytorch(tiny_model, encoder, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")  # as a read-only or absent home on a Ray worker would
    loaded = _load(tiny_model, blocked / "runtimes", "auto")
    assert loaded.runtime.image.chosen == "torch-fp32" and "not writable" in loaded.runtime.image.why
    np.testing.assert_array_equal(loaded.encode_texts(TEXTS), encoder.encode_texts(TEXTS))


def test_the_weights_checksums_are_remembered_per_checkpoint_file(tiny_model, encoder, tmp_path, monkeypatch):
    from spyglass.search.model import encoder as encoder_module

    first = _load(tiny_model, tmp_path, "onnx")

    def never(model):
        raise AssertionError("the weights were hashed again")

    with monkeypatch.context() as patch:
        patch.setattr(onnx_export, "weights_checksum", never)
        patch.setattr(encoder_module, "image_tower_checksum", never)
        again = _load(tiny_model, tmp_path, "onnx")
        assert again.image_tower == encoder.image_tower  # read from the memo, as the weights give it
    assert again.runtime.folder == first.runtime.folder and again.runtime.probe_cached
    # A checkpoint rewritten in place (another mtime) is hashed again, and lands in the same folder.
    before = tiny_model[1].stat()
    os.utime(tiny_model[1], ns=(1, 1))
    seen = []
    try:
        with monkeypatch.context() as patch:
            real = onnx_export.weights_checksum
            patch.setattr(onnx_export, "weights_checksum", lambda model: seen.append(1) or real(model))
            assert _load(tiny_model, tmp_path, "onnx").runtime.folder == first.runtime.folder
    finally:
        os.utime(tiny_model[1], ns=(before.st_atime_ns, before.st_mtime_ns))  # a session-wide file
    assert seen == [1]


def test_a_second_loader_waits_for_the_export_in_progress(tiny_model, encoder, tmp_path):
    """Two `serve` workers warming up at once: the second waits on the folder's lock, then reads the cache."""
    import threading

    place = tmp_path / onnx_export.cache_key(onnx_export.weights_checksum(encoder.model), str(tiny_model[0]))
    loaded = []
    with onnx_export.folder_lock(place):
        loader = threading.Thread(target=lambda: loaded.append(_load(tiny_model, tmp_path, "onnx")))
        loader.start()
        loader.join(timeout=2.0)
        assert loader.is_alive() and not loaded  # blocked while another process exports
    loader.join(timeout=120)
    assert loaded and loaded[0].runtime.folder == str(place)


def test_another_cpu_is_another_folder(tiny_model, tmp_path, monkeypatch):
    """ONNX Runtime picks its kernels by the CPU's flags: a home copied to another machine probes again."""
    here = _load(tiny_model, tmp_path, "onnx").runtime.folder
    monkeypatch.setattr(onnx_export, "cpu_flags", lambda: "sse2 only")
    there = _load(tiny_model, tmp_path, "onnx").runtime
    assert there.folder != here and not there.probe_cached


def test_the_same_weights_under_another_architecture_export_their_own_graphs(tiny_model, tmp_path):
    """quick_gelu changes no weight but every vector: a graph made for one must not run the other."""
    import json

    quick = tmp_path / "tiny-quick.json"
    quick.write_text(json.dumps({**json.loads(tiny_model[0].read_text()), "quick_gelu": True}))
    reference = load_encoder(str(quick), str(tiny_model[1]), device="cpu")
    graphs = tmp_path / "runtimes"
    plain = _load(tiny_model, graphs, "onnx")
    loaded = load_encoder(str(quick), str(tiny_model[1]), device="cpu", runtime="onnx", runtime_dir=graphs)
    assert loaded.runtime.folder != plain.runtime.folder
    _close_to_fp32(loaded, reference, bound=0.9999)


def test_a_cached_load_imports_no_exporter(tiny_model, tmp_path):
    """onnx (0.6 s to import) and the quantiser are for exporting; a later start-up reads graphs only
    (torch.onnx is not in question: open_clip imports it anyway)."""
    import subprocess
    import sys

    _load(tiny_model, tmp_path, "onnx-int8")
    code = (f"import sys\nfrom spyglass.search.model.encoder import load_encoder\n"
            f"e = load_encoder({str(tiny_model[0])!r}, {str(tiny_model[1])!r}, device='cpu', runtime='onnx-int8', "
            f"runtime_dir=__import__('pathlib').Path({str(tmp_path)!r}))\n"
            f"e.encode_texts(['a cat'])\n"
            f"print(e.runtime.probe_cached, sorted(m for m in sys.modules if m.split('.')[0] == 'onnx' or m.startswith('onnxruntime.quantization')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True []"


def test_a_load_onnx_runs_whole_builds_no_pytorch_model(tiny_model, tmp_path, monkeypatch):
    """From the cache alone: the same vectors, checksums and report, without reading the weights."""
    from spyglass.search.model import encoder as encoder_module

    images = precision.calibration_images(count=3, size=48)
    first = _load(tiny_model, tmp_path, "onnx")
    with monkeypatch.context() as patch:
        patch.setattr(encoder_module, "load_open_clip", lambda *a, **k: pytest.fail("the PyTorch model was built"))
        again = _load(tiny_model, tmp_path, "onnx")
    assert again.model is None and again.runtime.probe_cached and again.runtime.folder == first.runtime.folder
    assert (again.dim, again.image_size, again.image_tower) == (first.dim, first.image_size, first.image_tower)
    assert again.runtime.describe() == first.runtime.describe() + " (probe cached)"
    assert again.precision_check == first.precision_check
    np.testing.assert_array_equal(again.encode_images(images), first.encode_images(images))
    np.testing.assert_array_equal(again.encode_texts(TEXTS), first.encode_texts(TEXTS))


def test_the_full_load_runs_whenever_the_cache_cannot_stand_in(tiny_model, tmp_path, monkeypatch):
    from spyglass.search.model import encoder as encoder_module

    first = _load(tiny_model, tmp_path, "onnx")
    place = onnx_export.Path(first.runtime.folder)
    built = []
    real = encoder_module.load_open_clip
    monkeypatch.setattr(encoder_module, "load_open_clip", lambda *a, **k: built.append(1) or real(*a, **k))
    assert _load(tiny_model, tmp_path, "torch").runtime.image.chosen == "torch-fp32"  # asked for PyTorch
    (place / "encoder.json").unlink()
    assert _load(tiny_model, tmp_path, "onnx").model is None  # a full load, which writes the facts again
    assert (place / "encoder.json").is_file() and len(built) == 2
    (place / "text-fp32.onnx").rename(place / "text-fp32.onnx.away")  # a graph gone: exported again
    _load(tiny_model, tmp_path, "onnx")
    assert len(built) == 3 and (place / "text-fp32.onnx").is_file()
