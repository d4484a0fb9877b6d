"""Write the generated pages of the docs: commands.md from every command's --help, settings.md from the
one declaration of the settings. `make docs` runs it; tests/test_docs.py fails when a page is stale.

    python docs/generate.py          # rewrite the pages
    python docs/generate.py --check  # exit 1, naming the stale pages, instead of writing
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
WIDTH = 100  # columns of the rendered --help: fixed, so the page does not depend on the terminal


def commands_page() -> str:
    """Every command's --help, as the CLI prints it."""
    import click

    from spyglass.cli import cli

    parts = ["# Commands\n\n",
             "Generated from each command's `--help` by `docs/generate.py`. Options of the `spyglass` group come\n"
             "before the command; each `[SPYGLASS_*]` names the setting it overrides (see [Settings](settings.md)).\n"]
    def context(command, name, parent=None) -> click.Context:
        # With the command's own context settings (-h as well as --help), as the CLI makes them:
        # click remembers a command's help option from the first context it sees.
        settings = {**command.context_settings, "terminal_width": WIDTH, "max_content_width": WIDTH}
        return click.Context(command, info_name=name, parent=parent, **settings)

    def walk(command, ctx):
        # click caches a command's help option from the first context it saw (a test may have
        # made one without the group's -h): forget it, so the page never depends on what ran before.
        command._help_option = None
        parts.append(f"\n## `{ctx.command_path}`\n\n```\n{command.get_help(ctx)}\n```\n")
        for name in sorted(getattr(command, "commands", {})):
            walk(command.commands[name], context(command.commands[name], name, ctx))

    walk(cli, context(cli, "spyglass"))
    return "".join(parts)


def settings_page() -> str:
    """The settings table, from the declarations in search/settings.py."""
    from spyglass.search.settings import SETTINGS

    rows = ["# Settings\n\n",
            "Generated from `search/settings.py` by `docs/generate.py`. Every setting is an environment\n"
            "variable; the command-line options override them (see [Commands](commands.md)).\n\n",
            "| Variable | Default | Meaning |\n|---|---|---|\n"]
    for setting in SETTINGS:
        rows.append(f"| `{setting.env}` | {setting.shown_default} | {setting.help.replace('|', '&#124;')} |\n")
    return "".join(rows)


PAGES = {"commands.md": commands_page, "settings.md": settings_page}


def stale() -> list[str]:
    """The generated pages whose file differs from what would be generated now."""
    return [name for name, make in PAGES.items()
            if not (DOCS / name).is_file() or (DOCS / name).read_text() != make()]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        names = stale()
        for name in names:
            print(f"docs/{name} is stale: run `python docs/generate.py`", file=sys.stderr)
        return 1 if names else 0
    for name, make in PAGES.items():
        (DOCS / name).write_text(make())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
