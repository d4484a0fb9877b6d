"""`spyglass user` and `spyglass token`: the people who may use the server, and their API keys."""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta, timezone

import click

from spyglass.search.settings import Settings

_DURATION = re.compile(r"^\s*(\d{1,6})\s*([dhm])\s*$")


def _accounts(settings: Settings):
    """The catalog's accounts, its schema brought up to date first (never under a running indexer)."""
    from spyglass.search.accounts.directory import Accounts
    from spyglass.search.catalog.db import create_db_engine, session_factory
    from spyglass.search.catalog.lock import indexer_lock
    from spyglass.search.catalog.migrate import current_revision, head_revision, upgrade

    engine = create_db_engine(settings.db_url, writer=True)
    if current_revision(engine) != head_revision():
        with indexer_lock(engine, settings.home):
            upgrade(engine)
    return Accounts(session_factory(engine), settings.expose_paths)


def _new_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def lifetime(text: str) -> timedelta | None:
    """'90d', '12h', '30m', or 'never'."""
    if text.strip().lower() == "never":
        return None
    match = _DURATION.match(text)
    if not match or int(match[1]) == 0:
        raise click.BadParameter(f"{text!r} is not a duration: use 90d, 12h, 30m or never")
    return timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[match[2]]: int(match[1])})


_PASSWORD_STDIN = click.option("--password-stdin", is_flag=True,
                               help="Read the password from the first line of standard input (scripts).")


@click.group()
def user() -> None:
    """The people who may log in (SPYGLASS_AUTH=accounts).

    \b
    An admin sees every item; anyone else only the folders granted to them:
      spyglass user add ana --admin
      spyglass user add ben --folders family --folders /srv/media/shared
    A relative folder is read under every media root (as the API's folder filter reads it).
    """


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Sees every item, and may hold admin tokens.")
@click.option("--folders", multiple=True, metavar="PATH",
              help="A folder this person may see (repeat the option for more).")
@_PASSWORD_STDIN
@click.pass_obj
def user_add(settings: Settings, name, admin, folders, password_stdin) -> None:
    """Add a person, asking for their password."""
    from spyglass.search.accounts.directory import check_name

    if not admin and not folders:
        raise click.UsageError("give --admin, or the --folders this person may see")
    check_name(name)
    accounts = _accounts(settings)
    accounts.add_user(name, _new_password(password_stdin), admin=admin, folders=folders)
    what = "every item" if admin else f"{len(folders)} folder{'s' * (len(folders) != 1)}"
    click.echo(f"Added {name}, who sees {what}.")


@user.command("folders")
@click.argument("name")
@click.argument("paths", nargs=-1)
@click.pass_obj
def user_folders(settings: Settings, name, paths) -> None:
    """Replace the folders a person may see with PATHS (none: nothing)."""
    _accounts(settings).set_folders(name, paths)
    click.echo(f"{name} now sees {len(paths)} folder{'s' * (len(paths) != 1)}.")


@user.command("list")
@click.pass_obj
def user_list(settings: Settings) -> None:
    """Everyone: name, role, folders, active tokens."""
    rows = _accounts(settings).users()
    if not rows:
        click.echo("No users yet: spyglass user add NAME --admin")
    for row in rows:
        sees = "admin (every item)" if row.is_admin else ", ".join(row.folders) or "(no folders)"
        click.echo(f"{row.name}\t{sees}\t{row.tokens} token{'s' * (row.tokens != 1)}")


@user.command("remove")
@click.argument("name")
@click.pass_obj
def user_remove(settings: Settings, name) -> None:
    """Remove a person, their tokens and their sessions."""
    _accounts(settings).remove_user(name)
    click.echo(f"Removed {name}.")


@user.command("passwd")
@click.argument("name")
@_PASSWORD_STDIN
@click.pass_obj
def user_passwd(settings: Settings, name, password_stdin) -> None:
    """Set a person's password; their page sessions end."""
    accounts = _accounts(settings)
    accounts.set_password(name, _new_password(password_stdin))
    click.echo(f"Changed {name}'s password.")


@click.group()
def token() -> None:
    """API tokens for scripts: `Authorization: Bearer TOKEN`, or basic auth with the token as password.

    \b
      spyglass token create --user ana --expires 90d
      curl -H "Authorization: Bearer sg_1_..." http://host:8000/api/v1/search?q=beach
    """


@token.command("create")
@click.option("--user", "name", required=True, help="Whose token it is: it sees what they see.")
@click.option("--scope", type=click.Choice(["search", "admin"]), default="search", show_default=True,
              help="search: search, items, files; admin: also /metrics and the whole status (admins only).")
@click.option("--expires", default="90d", show_default=True, help="Lifetime: 90d, 12h, 30m, or never.")
@click.pass_obj
def token_create(settings: Settings, name, scope, expires) -> None:
    """Create a token; it is printed once, alone on the last line, and never stored."""
    life = lifetime(expires)
    token_id, text = _accounts(settings).create_token(name, scope, life)
    until = f"expires in {expires}" if life else "never expires"
    click.echo(f"Token {token_id} for {name} (scope {scope}, {until}). It is shown only now:", err=True)
    click.echo(text)


@token.command("list")
@click.option("--user", "name", help="Only this person's tokens.")
@click.pass_obj
def token_list(settings: Settings, name) -> None:
    """Tokens, one a line, its id first (never the token itself)."""
    for row in _accounts(settings).tokens(name):
        state = ("revoked" if row.revoked_at else "no expiry" if row.expires_at is None else
                 f"{'expired' if row.expires_at <= datetime.now(timezone.utc) else 'expires'} "
                 f"{row.expires_at:%Y-%m-%d %H:%M}")
        used = f"last used {row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never used"
        click.echo(f"{row.id}\t{row.user}\t{row.scope}\t{state}\t{used}")


@token.command("revoke")
@click.argument("token_id", type=click.IntRange(min=1))
@click.pass_obj
def token_revoke(settings: Settings, token_id) -> None:
    """Revoke a token: every worker refuses it from the next request."""
    _accounts(settings).revoke_token(token_id)
    click.echo(f"Revoked token {token_id}.")
