"""The manual: a short README, a docs site that builds strictly, and generated pages that are current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from spyglass.cli import cli
from spyglass.search.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
import generate  # noqa: E402 - docs/generate.py, the generator of the pages checked here


def test_the_readme_is_a_short_manual():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the rest belongs in docs/"


@pytest.mark.parametrize("page", sorted(generate.PAGES))
def test_generated_pages_are_current(page):
    assert (ROOT / "docs" / page).read_text() == generate.PAGES[page](), \
        f"docs/{page} is stale: run `make docs` (python docs/generate.py)"


def test_every_setting_and_command_is_documented():
    settings_page = (ROOT / "docs" / "settings.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.env}`" in settings_page, setting.env
    commands_page = (ROOT / "docs" / "commands.md").read_text()

    def walk(group, prefix):
        for name, command in group.commands.items():
            yield f"{prefix} {name}", command
            if isinstance(command, click.Group):
                yield from walk(command, f"{prefix} {name}")

    for path, command in walk(cli, "spyglass"):
        assert f"## `{path}`" in commands_page, path
        assert command.help, f"{path} has no --help text"


def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: a broken link, a missing page or a page outside the nav fails it."""
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "settings" / "index.html").is_file()


def test_readme_links_lead_to_pages_that_exist():
    import re

    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / target).is_file(), target
