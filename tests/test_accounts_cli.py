"""The `user` and `token` commands, `serve`'s refusal to listen beyond loopback without accounts,
and a catalog from before accounts brought up to date by its first admin."""

from __future__ import annotations

import logging
import re

import pytest

from conftest import run_spyglass, spyglass_env
from spyglass.indexer.job import run_index
from spyglass.search.accounts.directory import Accounts
from spyglass.search.catalog.db import create_db_engine, session_factory
from spyglass.search.errors import ConfigError
from spyglass.search.settings import Settings
from spyglass.web import create_app

PASSWORD = "correct horse battery"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_serving_beyond_loopback_needs_accounts(tmp_path, caplog):
    from spyglass.web.serve import check_access_mode

    with pytest.raises(ConfigError, match="SPYGLASS_AUTH=accounts"):
        check_access_mode(Settings(home=tmp_path, host="0.0.0.0"))
    check_access_mode(Settings(home=tmp_path, host="127.0.0.1"))
    caplog.set_level(logging.WARNING)
    check_access_mode(Settings(home=tmp_path, host="0.0.0.0", insecure_no_auth=True))
    assert "--insecure-no-auth" in caplog.text
    caplog.clear()
    check_access_mode(Settings(home=tmp_path / "empty", host="0.0.0.0", auth="accounts"))
    assert "nobody can log in yet" in caplog.text
    refused = run_spyglass("serve", "--host", "0.0.0.0", env={"SPYGLASS_HOME": str(tmp_path / "home")})
    assert refused.returncode == 1 and "SPYGLASS_AUTH=accounts" in refused.stderr


def test_user_and_token_commands(sqlite_settings, media, encoder):
    env = {**spyglass_env(sqlite_settings), "SPYGLASS_AUTH": "accounts"}
    run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False)

    def spyglass(*args, stdin=None):
        from click.testing import CliRunner

        from spyglass.cli import cli
        result = CliRunner().invoke(cli, list(args), env=env, input=stdin)
        return result

    assert spyglass("user", "add", "ana").exit_code == 2  # neither --admin nor --folders
    added = spyglass("user", "add", "ana", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert spyglass("user", "add", "ana", "--admin", "--password-stdin", stdin=PASSWORD + "\n").exit_code == 1
    assert spyglass("user", "add", "ben", "--folders", "nested", "--password-stdin", stdin="short\n").exit_code == 1
    assert spyglass("user", "add", "ben", "--folders", "nested", "--password-stdin", stdin=PASSWORD + "\n").exit_code == 0
    listed = spyglass("user", "list").output
    assert "ana\tadmin (every item)" in listed and "ben\tnested" in listed
    refused = spyglass("token", "create", "--user", "ben", "--scope", "admin")
    assert refused.exit_code == 1 and "not an admin" in refused.output
    created = spyglass("token", "create", "--user", "ben", "--expires", "30d")
    token = created.stdout.strip().splitlines()[-1]
    assert created.exit_code == 0 and re.fullmatch(r"sg_\d+_[A-Za-z0-9_-]{43}", token)
    token_id = int(token.split("_")[1])
    line = spyglass("token", "list", "--user", "ben").output.splitlines()[0]
    assert line.startswith(f"{token_id}\tben\tsearch\texpires ") and token not in line
    app = create_app(sqlite_settings.override(auth="accounts")).test_client()
    hits = app.get("/api/v1/search", query_string={"q": "red", "k": 50}, headers=bearer(token)).json["results"]
    assert hits and all(h["path"].startswith("nested/") for h in hits)
    assert spyglass("token", "revoke", str(token_id)).exit_code == 0
    assert app.get("/api/v1/search", query_string={"q": "red"}, headers=bearer(token)).status_code == 401
    assert spyglass("token", "revoke", "999").exit_code == 1
    assert spyglass("token", "create", "--user", "ben", "--expires", "soon").exit_code == 2
    assert spyglass("user", "passwd", "ben", "--password-stdin", stdin="another good one\n").exit_code == 0
    assert spyglass("user", "remove", "ben").exit_code == 0
    assert "ben" not in spyglass("user", "list").output
    assert spyglass("user", "remove", "ben").exit_code == 1


def test_the_first_admin_on_an_existing_catalog_keeps_everything(sqlite_settings, media, encoder):
    """A catalog indexed before accounts existed (migration 0010): `user add --admin` brings it up to
    date and every item stays; the admin's token finds what the open server found."""
    from alembic import command

    from spyglass.search.catalog.migrate import alembic_config, current_revision, head_revision

    run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False)
    before = create_app(sqlite_settings).test_client().get("/api/v1/search", query_string={"q": "red", "k": 50}).json
    engine = create_db_engine(sqlite_settings.db_url, writer=True)
    command.downgrade(alembic_config(engine), "0010")
    env = {**spyglass_env(sqlite_settings), "SPYGLASS_AUTH": "accounts"}
    from click.testing import CliRunner

    from spyglass.cli import cli
    added = CliRunner().invoke(cli, ["user", "add", "ana", "--admin", "--password-stdin"], env=env,
                               input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert current_revision(engine) == head_revision()
    token = Accounts(session_factory(engine)).create_token("ana")[1]
    after = create_app(sqlite_settings.override(auth="accounts")).test_client().get(
        "/api/v1/search", query_string={"q": "red", "k": 50}, headers=bearer(token)).json
    assert [h["id"] for h in after["results"]] == [h["id"] for h in before["results"]]
    assert after["total_considered"] == before["total_considered"]
    engine.dispose()
