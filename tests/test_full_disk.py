"""A disk that really fills up (tmpfs) at every stage of a run: one line naming the fix, nothing published lost."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from click.testing import CliRunner

from conftest import fill_disk, small_disk, spyglass_env
from spyglass.cli import cli
from spyglass.search.settings import Settings

DIM = 32  # the tiny test model's
ROWS = 6000
COMPACTION_ROOM = 6_000_000  # measured on this tmpfs: the stage each room reaches is fixed


def spyglass(*args: str, env: dict):
    """The real CLI, in this process (the model and libraries are loaded once for every trial)."""
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=True)


def embeddings(folder, rows: int, seed: int, prefix: str):
    folder.mkdir()
    vectors = np.random.default_rng(seed).normal(size=(rows, DIM)).astype(np.float32)
    np.save(folder / "v.npy", vectors)
    (folder / "v.csv").write_text("url,caption\n" + "".join(f"https://{prefix}.test/{i}.jpg,photo {i}\n"
                                                           for i in range(rows)))
    return folder


# 8M: the index is compacted and the words stage meets the full disk in the catalog.
@pytest.mark.parametrize("room", [0, 2_000_000, COMPACTION_ROOM, 8_000_000])
def test_a_full_disk_at_any_stage_is_one_line_and_keeps_what_was_published(tmp_path, tiny_model, room):
    """The second import's delta, its compaction (a new base of 2 x ROWS vectors) and its SQL writes
    each meet the full disk in one of these trials."""
    first = embeddings(tmp_path / "first", ROWS, seed=1, prefix="a")
    second = embeddings(tmp_path / "second", ROWS, seed=2, prefix="b")
    with small_disk(tmp_path / "disk", "32m") as disk:
        settings = Settings(runtime="torch", vector_storage="float32", home=disk / "home", model=str(tiny_model[0]), pretrained=str(tiny_model[1]),
                            device="cpu", precision="fp32", index_factory="Flat")
        env = spyglass_env(settings) | {"SPYGLASS_INDEX_FACTORY": "Flat"}
        done = spyglass("import", str(first), "--no-progress", env=env)
        assert done.exit_code == 0, done.output
        fill_disk(disk)
        os.truncate(disk / "filler", (disk / "filler").stat().st_size - room)  # leave `room` bytes
        result = spyglass("import", str(second), "--no-progress", env=env)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        if room == COMPACTION_ROOM:  # the delta and the SQL commit fit; the compacted base does not
            assert "Index: compacting 2 segments" in result.output and ".faiss;" in result.output, result.output
        if result.exit_code != 0:
            last = result.output.strip().splitlines()[-1]
            assert last.startswith("Error: the disk is full writing "), result.output
            assert "everything published before this is kept" in last
        (disk / "filler").unlink()
        status = json.loads(spyglass("status", "--json", env=env).stdout)
        assert status["items"] in (ROWS, 2 * ROWS)  # all of the second import, or none of it
        checked = spyglass("check", env=env)
        assert checked.exit_code == 0, checked.output
        again = spyglass("import", str(second), "--no-progress", env=env)  # and it completes
        assert again.exit_code == 0, again.output
        assert json.loads(spyglass("status", "--json", env=env).stdout)["items"] == 2 * ROWS
