"""The folder walk: formats by extension in any case, nested and unicode names, links, loops."""

from __future__ import annotations

import os

from conftest import GOOD_IMAGES
from spyglass.indexer.scan import FoundFile, Skipped, walk


def found_names(root) -> list[str]:
    return sorted(os.path.relpath(e.path, root) for e in walk(root) if isinstance(e, FoundFile))


def test_walk_finds_supported_files_recursively(media):
    names = found_names(media)
    assert names == sorted(GOOD_IMAGES + ["corrupt.jpg"])  # notes.txt is not an image
    entry = next(e for e in walk(media) if isinstance(e, FoundFile) and e.path.endswith("red.jpg"))
    assert entry.size == (media / "red.jpg").stat().st_size
    assert entry.mtime_ns == (media / "red.jpg").stat().st_mtime_ns
    assert entry.root == str(media)


def test_symlink_loops_and_aliases_are_walked_once(media):
    os.symlink(media, media / "nested" / "loop")
    os.symlink(media / "nested", media / "alias")
    names = found_names(media)
    assert len(names) == len(set(names)) == len(GOOD_IMAGES) + 1


def test_symlinked_file_is_followed_and_broken_link_skipped(media, tmp_path):
    outside = tmp_path / "outside.png"
    (media / "Blue Square.PNG").rename(outside)
    os.symlink(outside, media / "linked.png")
    os.symlink(tmp_path / "missing.jpg", media / "broken.jpg")
    entries = list(walk(media))
    assert any(isinstance(e, FoundFile) and e.path.endswith("linked.png") for e in entries)
    assert [s.reason for s in entries if isinstance(s, Skipped)] == ["broken symbolic link"]


def test_non_utf8_file_name_is_skipped_not_fatal(media):
    with open(os.path.join(os.fsencode(media), b"bad-\xff-name.jpg"), "wb") as handle:
        handle.write((media / "red.jpg").read_bytes())
    skipped = [e for e in walk(media) if isinstance(e, Skipped)]
    assert [s.reason for s in skipped] == ["file name is not valid UTF-8"]
    assert "bad-" in skipped[0].path


def test_missing_root_is_a_skip(tmp_path):
    entries = list(walk(tmp_path / "nope"))
    assert len(entries) == 1 and isinstance(entries[0], Skipped)
    assert "cannot open folder" in entries[0].reason
