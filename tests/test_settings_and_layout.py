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


def test_every_field_is_a_declared_setting():
    assert [s.field for s in SETTINGS] == [f.name for f in dataclasses.fields(Settings)]
    for setting in SETTINGS:
        assert setting.help and setting.shown_default, setting.env


def _imports(package: str) -> set[str]:
    """The Spyglass packages (and other top-level modules) that one package's modules import."""
    names = set()
    for path in (ROOT / package).rglob("*.py"):
        names |= _module_imports(path)
    return names


def _module_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {_package_of(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(_package_of(node.module))
        elif isinstance(node, ast.ImportFrom) and node.level > 1 and not path.is_relative_to(ROOT / "indexer"):
            names.add("relative import leaving the package")
    return names


def _package_of(module: str) -> str:
    parts = module.split(".")
    if parts[:2] == ["spyglass", "search"] and len(parts) > 2:
        return "spyglass.search." + parts[2]  # the core's sub-packages and the query side, apart
    return ".".join(parts[:2]) if parts[0] == "spyglass" and len(parts) > 1 else parts[0]


# The layers, bottom up. The core's basics and sub-packages import only the core; the query side
# imports the core; indexer and training import only the core (never the query side nor each
# other); web imports the query side and the core; only the CLI imports everything.
CORE = {f"spyglass.search.{name}" for name in ("errors", "settings", "display", "failpoints", "model", "catalog",
                                               "store", "media", "words", "accounts", "memory")}
QUERY_SIDE = {f"spyglass.search.{name}" for name in ("engine", "hybrid", "live", "moments", "query", "results",
                                                     "status", "arrange", "understand", "crops", "duplicates")}
OURS = ("spyglass.",)


def _ours(names: set[str]) -> set[str]:
    return {name for name in names if name.startswith(OURS) or name == "relative import leaving the package"}


@pytest.mark.parametrize(("where", "allowed"), [
    ("search/model", CORE),
    ("search/catalog", CORE | {"spyglass.migrations"}),  # Alembic's scripts
    ("search/store", CORE), ("search/media", CORE), ("search/words", CORE), ("search/accounts", CORE),
    ("search/errors.py", CORE), ("search/settings.py", CORE), ("search/display.py", CORE),
    ("search/failpoints.py", CORE), ("search/memory.py", CORE),
    ("search/engine.py", CORE | QUERY_SIDE), ("search/live.py", CORE | QUERY_SIDE),
    ("search/moments.py", CORE | QUERY_SIDE), ("search/query.py", CORE | QUERY_SIDE),
    ("search/status.py", CORE | QUERY_SIDE), ("search/results.py", CORE | QUERY_SIDE),
    ("search/hybrid.py", CORE | QUERY_SIDE), ("search/arrange.py", CORE | QUERY_SIDE),
    ("search/understand.py", CORE | QUERY_SIDE), ("search/crops.py", CORE | QUERY_SIDE),
    ("search/duplicates.py", CORE | QUERY_SIDE),
    ("indexer", CORE | {"spyglass.indexer"}), ("training", CORE | {"spyglass.training"}),
    ("web", CORE | QUERY_SIDE | {"spyglass.web"}),
    ("migrations", CORE | {"spyglass.migrations"}),
])
def test_each_layer_imports_only_the_layers_below_it(where, allowed):
    path = ROOT / where
    files = [path] if path.is_file() else list(path.rglob("*.py"))
    for file in files:
        extra = _ours(_module_imports(file)) - allowed
        assert not extra, f"{file.relative_to(ROOT)} imports {sorted(extra)}"


def test_every_core_and_query_module_is_in_a_layer():
    found = {p.relative_to(ROOT / "search").parts[0].removesuffix(".py") for p in (ROOT / "search").glob("*")
             if p.name != "__init__.py" and p.name != "__pycache__"}
    assert {f"spyglass.search.{name}" for name in found} == CORE | QUERY_SIDE


def test_no_module_is_over_400_lines():
    long = [f"{p.relative_to(ROOT)}: {n}" for p in ROOT.rglob("*.py")
            if ".venv" not in p.parts and "build" not in p.parts
            and (n := len(p.read_text().splitlines())) > 400]
    assert not long, long


@pytest.mark.parametrize("package", ["search", "indexer", "training", "web", "migrations", "spyglass", "tests",
                                     "benchmarks"])
def test_nothing_imports_the_folders_by_their_generic_names(package):
    # Installed, they exist only as spyglass.search, spyglass.web, ...: a bare `import search` breaks.
    assert not {"search", "indexer", "training", "web", "migrations"} & _imports(package)


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


def test_the_image_copies_every_package_the_wheel_installs():
    import tomllib

    folders = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    dockerfile = (ROOT / "Dockerfile").read_text()
    for folder in folders:
        assert f"COPY {folder} {folder}" in dockerfile, f"the Dockerfile does not copy {folder}/"


def test_the_wheel_lists_every_package_of_the_source():
    """A sub-package missing from pyproject's list works in an editable install and is absent from
    the wheel (and the Docker image): search/words and indexer/texts once were."""
    import tomllib

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    for name, folder in tool["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            package = ".".join([name, *init.parent.relative_to(ROOT / folder).parts])
            assert package in listed, f"{package} is not in pyproject.toml's packages"


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
    for module in ("search/engine.py", "indexer/job.py", "web/api.py", "web/templates/index.html",
                   "web/static/app.js", "migrations/env.py", "migrations/versions/0001_initial_catalog.py"):
        assert f"spyglass/{module}" in names, module
