"""The `spyglass` command: help that teaches, output shapes, one-line errors, real subprocesses."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from conftest import GOOD_IMAGES, run_spyglass, spyglass_env
from spyglass.cli import cli


@pytest.fixture
def invoke(sqlite_settings):
    """Run a spyglass command in-process with the test's settings as SPYGLASS_* variables."""
    runner = CliRunner()
    env = spyglass_env(sqlite_settings)

    def run(*args: str, **extra_env: str):
        return runner.invoke(cli, list(args), env={**env, **extra_env}, catch_exceptions=False)

    return run


def test_help_lists_every_command_and_teaches():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("index", "search", "status", "db"):
        assert command in result.output
    assert "spyglass search --image" in result.output
    assert "SPYGLASS_PRETRAINED" in result.output
    index_help = CliRunner().invoke(cli, ["index", "--help"]).output
    assert "--rebuild" in index_help and "skipped" in index_help


def test_index_search_and_status(invoke, media):
    indexed = invoke("index", "--no-progress", str(media))
    assert indexed.exit_code == 0, indexed.output
    assert f"{len(GOOD_IMAGES)} added" in indexed.stdout
    assert "skipping" in indexed.stderr and "corrupt.jpg" in indexed.stderr

    found = invoke("search", "--image", str(media / "photo.TIFF"), "-k", "3")
    lines = found.stdout.strip().splitlines()
    assert len(lines) == 3
    score, path = lines[0].split("  ", 1)
    assert path == str(media / "photo.TIFF") and float(score) == pytest.approx(1.0, abs=1e-3)

    as_json = json.loads(invoke("search", "a red bicycle", "--json", "-k", "4").stdout)
    assert as_json["query"] == "a red bicycle" and len(as_json["results"]) == 4
    assert {"id", "score", "path", "width", "height", "rank"} <= set(as_json["results"][0])

    status = json.loads(invoke("status", "--json").stdout)
    assert status["items"] == len(GOOD_IMAGES)
    assert status["index"]["type"] == "Flat" and status["index"]["vectors"] == len(GOOD_IMAGES)
    assert status["model"]["dim"] == 32
    assert status["last_run"]["status"] == "done" and status["last_run"]["skipped"] == 1
    text = invoke("status").stdout
    assert "Items:" in text and "Flat" in text


def test_search_before_indexing_says_what_to_do(invoke):
    result = invoke("search", "anything")
    assert result.exit_code == 1
    assert "spyglass index" in result.stderr and "Traceback" not in result.output


def test_status_of_an_empty_catalog_is_not_an_error(invoke):
    result = invoke("status")
    assert result.exit_code == 0 and "nothing indexed yet" in result.stdout


def test_bad_inputs_give_one_line_errors(invoke, media, tmp_path):
    missing = invoke("index", str(tmp_path / "no-such-folder"))
    assert missing.exit_code == 1 and "no such folder" in missing.stderr
    both = invoke("search", "text", "--image", str(media / "red.jpg"))
    assert both.exit_code == 2 and "one of them" in both.stderr
    bad_setting = invoke("status", SPYGLASS_BATCH_SIZE="lots")
    assert bad_setting.exit_code == 1 and "SPYGLASS_BATCH_SIZE" in bad_setting.stderr
    no_weights = invoke("index", str(media), SPYGLASS_PRETRAINED=str(tmp_path / "missing.safetensors"))
    assert no_weights.exit_code == 1 and "does not exist" in no_weights.stderr
    bad_db = invoke("status", SPYGLASS_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert bad_db.exit_code == 1 and "SPYGLASS_DATABASE_URL" in bad_db.stderr


def test_search_with_a_corrupt_query_image(invoke, media):
    invoke("index", "--no-progress", str(media))
    result = invoke("search", "--image", str(media / "corrupt.jpg"))
    assert result.exit_code == 1 and "not a readable image" in result.stderr


def test_flags_override_environment(invoke, media, tmp_path):
    other_home = tmp_path / "flag-home"
    result = invoke("--home", str(other_home), "index", "--no-progress", str(media),
                    SPYGLASS_DATABASE_URL="")
    assert result.exit_code == 0, result.output
    assert (other_home / "spyglass.db").exists()


def test_db_upgrade_reports_revisions(invoke):
    first = invoke("db", "upgrade")
    assert first.exit_code == 0 and "upgraded from empty" in first.stdout
    assert "up to date" in invoke("db", "upgrade").stdout


def test_real_subprocess_index_then_search(sqlite_settings, media):
    env = spyglass_env(sqlite_settings)
    indexed = run_spyglass("index", str(media), env=env)
    assert indexed.returncode == 0, indexed.stderr
    assert "Indexing" in indexed.stderr and "img/s" in indexed.stderr  # the progress bar
    assert "Encoder precision: fp32" in indexed.stderr and "encoder busy" not in indexed.stderr


def test_verbose_index_says_where_the_encoders_time_went(sqlite_settings, media):
    env = spyglass_env(sqlite_settings.override(precision="bf16"))
    indexed = run_spyglass("-v", "index", "--no-progress", str(media), env=env)
    assert indexed.returncode == 0, indexed.stderr
    assert "Encoder precision: bf16 (min cosine" in indexed.stderr
    busy = re.search(r"encoder busy (\d+)% of [\d.]+ s \([\d.]+ s waiting for decodes", indexed.stderr)
    assert busy and 0 <= int(busy[1]) <= 100, indexed.stderr[-2000:]
    found = run_spyglass("search", "--image", str(media / "ünïcødé 猫.webp"), "-k", "1", env=env)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split("  ", 1)[1].strip() == str(media / "ünïcødé 猫.webp")


def test_real_subprocess_offline_default_weights_name_the_fix(sqlite_settings, media, tmp_path):
    env = spyglass_env(sqlite_settings)
    del env["SPYGLASS_MODEL"], env["SPYGLASS_PRETRAINED"]  # the defaults: ViT-B-32, laion2b tag
    env["HF_HOME"] = str(tmp_path / "empty-hf-cache")
    env["HF_HUB_OFFLINE"] = "1"  # as offline as this machine, wherever the test runs
    result = run_spyglass("index", str(media), env=env)
    assert result.returncode == 1
    assert "SPYGLASS_PRETRAINED=/path/to/open_clip_model.safetensors" in result.stderr
    assert "Traceback" not in result.stderr
