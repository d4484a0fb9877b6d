"""Settings from the environment, the package layout rule, and the docs covering everything."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from spyglass.search.errors import ConfigError
from spyglass.search.settings import SETTINGS, Settings
from spyglass.cli import cli
from spyglass.web import create_app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_environment_is_read_and_overrides_win(tmp_path):
    env = {"SPYGLASS_HOME": str(tmp_path), "SPYGLASS_MODEL": "ViT-L-14", "SPYGLASS_BATCH_SIZE": "7",
           "SPYGLASS_DEVICE": ""}
    settings = Settings.from_env(env, model="RN50", device=None)
    assert settings.home == tmp_path and settings.batch_size == 7
    assert settings.model == "RN50"  # the flag wins
    assert settings.device == "auto"  # empty means unset
    assert settings.db_url == f"sqlite:///{tmp_path / 'spyglass.db'}"
    assert Settings.from_env({"SPYGLASS_DATABASE_URL": "postgresql://x@y/z"}).db_url == "postgresql://x@y/z"


def test_bad_values_name_the_variable():
    with pytest.raises(ConfigError, match="SPYGLASS_DECODE_WORKERS"):
        Settings.from_env({"SPYGLASS_DECODE_WORKERS": "0"})


def test_every_field_is_a_documented_setting():
    assert [s.field for s in SETTINGS] == [f.name for f in dataclasses.fields(Settings)]
    for setting in SETTINGS:
        assert f"`{setting.env}`" in README, f"{setting.env} is not in the README"


def test_every_command_is_in_the_readme():
    def walk(group, prefix):
        for name, command in group.commands.items():
            yield f"{prefix} {name}"
            if hasattr(command, "commands"):
                yield from walk(command, f"{prefix} {name}")

    for command in walk(cli, "spyglass"):
        assert f"`{command}" in README, f"{command} is not in the README"


def _imports(package: str) -> set[str]:
    """The Spyglass packages (and other top-level modules) that one package's modules import."""
    names = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {_package_of(alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(_package_of(node.module))
            elif isinstance(node, ast.ImportFrom) and node.level > 1:
                names.add("relative import leaving the package")
    return names


def _package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "spyglass" and len(parts) > 1 else parts[0]


def test_indexer_and_web_never_import_each_other_and_search_neither():
    assert "spyglass.web" not in _imports("indexer")
    assert "spyglass.indexer" not in _imports("web")
    assert not {"spyglass.web", "spyglass.indexer", "spyglass.cli"} & _imports("search")


@pytest.mark.parametrize("package", ["search", "indexer", "web", "migrations", "spyglass", "tests", "benchmarks"])
def test_nothing_imports_the_folders_by_their_generic_names(package):
    # Installed, they exist only as spyglass.search, spyglass.web, ...: a bare `import search` breaks.
    assert not {"search", "indexer", "web", "migrations"} & _imports(package)


@pytest.mark.parametrize("service", ["indexer", "web"])
def test_compose_services_run_real_commands(service):
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"db", "indexer", "web"} <= set(services)
    words = services[service]["command"]
    assert words[0] == "spyglass"
    command = cli.get_command(None, words[1])
    assert command is not None, f"{words[1]} is not a spyglass command"
    # The options it passes parse: run the command's own parser on them, without running it.
    context = command.make_context(words[1], list(words[2:]), resilient_parsing=False)
    assert context.params
    assert services[service]["restart"] == "unless-stopped"  # a crash or a reboot is not the end
    env = services[service]["environment"]
    assert env["SPYGLASS_DATABASE_URL"].startswith("postgresql://")
    assert set(k for k in env if k.startswith("SPYGLASS_")) <= {s.env for s in SETTINGS}
    assert any("/data" in volume for volume in services[service]["volumes"])


def test_app_factory_builds_without_touching_anything(tmp_path):
    app = create_app(Settings(home=tmp_path / "home"))
    assert not (tmp_path / "home").exists()  # no database, no model, until a request needs them
    assert app.test_client().get("/api/v1/healthz").json == {"status": "ok", "generation": None}


@pytest.mark.slow
def test_the_wheel_installs_only_the_spyglass_package(tmp_path):
    import shutil
    import subprocess
    import sys
    import zipfile

    # Built from a copy: setuptools leaves build/ and *.egg-info in the tree it builds.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info",
                                                               "test-artifacts", "__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path),
                            str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    assert {name.split("/")[0] for name in names if ".dist-info" not in name} == {"spyglass"}
    for module in ("search/engine.py", "indexer/jobs.py", "web/api.py", "web/templates/index.html",
                   "web/static/app.js", "migrations/env.py", "migrations/versions/0001_initial_catalog.py"):
        assert f"spyglass/{module}" in names, module
