"""Accounts in the catalog: people, their folders, their tokens, their page sessions, and the
throttle on guessing passwords. Every check reads the catalog, so a revoked token or a removed
person is refused on the next request by every worker."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from spyglass.search.catalog.people import ApiToken, FolderGrant, LoginFailure, User, WebSession
from spyglass.search.errors import BadQuery, SpyglassError

from . import audit
from .access import SCOPES, Principal, granted_folder
from .secrets import (MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, digest, hash_password, new_secret, parse_token,
                      same, token_text, verify_password)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
SESSION_HOURS = 12
# Failed logins allowed per window, per name and per address, before 429: a name's limit is low
# (a person mistypes a few times, a guesser thousands); an address's is higher (an office behind
# one NAT address).
WINDOW = timedelta(minutes=15)
NAME_FAILURES = 10
ADDRESS_FAILURES = 50


class AccountError(SpyglassError):
    """A command about accounts that cannot be done as asked (an unknown name, a taken one, ...)."""


class Throttled(SpyglassError):
    """Too many failed logins for this name or address: wait `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__("too many failed logins; wait a few minutes and try again")
        self.retry_after = retry_after


@dataclass(frozen=True)
class UserRow:
    """A person as `user list` shows them."""

    name: str
    is_admin: bool
    folders: tuple[str, ...]
    tokens: int
    created_at: datetime


@dataclass(frozen=True)
class TokenRow:
    """A token as `token list` shows it (never its secret)."""

    id: int
    user: str
    scope: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes (stored as UTC).
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


def check_name(name: str) -> str:
    """A user name: 1-64 letters, digits and . _ @ -, starting with a letter or digit."""
    if not _NAME.match(name or ""):
        raise BadQuery(f"{name[:80]!r} is not a valid user name",
                       "use 1-64 letters, digits and . _ @ -, starting with a letter or digit")
    return name


def check_password(password: str) -> str:
    """A new password: 8 to 1024 characters."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise BadQuery(f"a password needs {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    return password


class Accounts:
    """People, tokens and sessions, read and written through the catalog's sessions."""

    def __init__(self, sessions: sessionmaker[Session], expose_paths: bool = False,
                 writes: sessionmaker[Session] | None = None):
        self.sessions = sessions
        # On SQLite, writes go through a writer engine (BEGIN IMMEDIATE): a read that turns into
        # a write would fail at once if another process wrote in between.
        self.writes = writes or sessions
        self.expose_paths = expose_paths  # whether the audit log may name granted folders

    # People ---------------------------------------------------------------------------------
    def add_user(self, name: str, password: str, admin: bool = False, folders: Sequence[str] = ()) -> None:
        """A new person; an admin sees everything, anyone else the folders given."""
        check_name(name)
        grants = sorted({granted_folder(f) for f in folders})
        hashed = hash_password(check_password(password))
        with self.writes.begin() as session:
            if session.scalar(select(User.id).where(User.name == name)) is not None:
                raise AccountError(f"a user named {name!r} already exists", "pick another name, or `spyglass user passwd`")
            user = User(name=name, password_hash=hashed, is_admin=admin)
            session.add(user)
            session.flush()
            session.add_all(FolderGrant(user_id=user.id, folder=f) for f in grants)
        audit.event("user_added", user=name, admin=admin, folders=audit.folders(grants, self.expose_paths))

    def set_folders(self, name: str, folders: Sequence[str]) -> None:
        """Replace a person's folders with these."""
        grants = sorted({granted_folder(f) for f in folders})
        with self.writes.begin() as session:
            user = self._user(session, name)
            session.execute(delete(FolderGrant).where(FolderGrant.user_id == user.id))
            session.add_all(FolderGrant(user_id=user.id, folder=f) for f in grants)
        audit.event("folders_granted", user=name, folders=audit.folders(grants, self.expose_paths))

    def remove_user(self, name: str) -> None:
        """Remove a person with their tokens and sessions."""
        with self.writes.begin() as session:
            session.delete(self._user(session, name))
        audit.event("user_removed", user=name)

    def set_password(self, name: str, password: str) -> None:
        """A new password; every page session of theirs ends."""
        hashed = hash_password(check_password(password))
        with self.writes.begin() as session:
            user = self._user(session, name)
            user.password_hash = hashed
            session.execute(delete(WebSession).where(WebSession.user_id == user.id))
        audit.event("password_changed", user=name)

    def users(self) -> list[UserRow]:
        """Everyone, by name."""
        with self.sessions() as session:
            tokens = dict(session.execute(select(ApiToken.user_id, func.count()).where(ApiToken.revoked_at.is_(None))
                                          .group_by(ApiToken.user_id)).all())
            grants: dict[int, list[str]] = {}
            for user_id, folder in session.execute(select(FolderGrant.user_id, FolderGrant.folder)):
                grants.setdefault(user_id, []).append(folder)
            return [UserRow(u.name, u.is_admin, tuple(sorted(grants.get(u.id, ()))), tokens.get(u.id, 0),
                            _aware(u.created_at))
                    for u in session.scalars(select(User).order_by(User.name))]

    def count(self) -> int:
        """How many people there are."""
        with self.sessions() as session:
            return session.scalar(select(func.count(User.id))) or 0

    # Tokens ---------------------------------------------------------------------------------
    def create_token(self, name: str, scope: str = "search", lifetime: timedelta | None = None) -> tuple[int, str]:
        """A new token for a person: its id and the token, which is shown once and never stored."""
        if scope not in SCOPES:
            raise BadQuery(f"scope must be one of {', '.join(SCOPES)}")
        secret = new_secret()
        with self.writes.begin() as session:
            user = self._user(session, name)
            if scope == "admin" and not user.is_admin:
                raise AccountError(f"{name} is not an admin, so an admin token of theirs could do nothing more",
                                   "create a search token, or add an admin")
            token = ApiToken(user_id=user.id, scope=scope, secret_hash=digest(secret),
                             expires_at=_now() + lifetime if lifetime else None)
            session.add(token)
            session.flush()
            token_id = token.id
        audit.event("token_created", user=name, token_id=token_id, scope=scope)
        return token_id, token_text(token_id, secret)

    def tokens(self, name: str | None = None) -> list[TokenRow]:
        """Tokens, newest first; one person's if named."""
        with self.sessions() as session:
            query = select(ApiToken, User.name).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id.desc())
            if name is not None:
                query = query.where(User.id == self._user(session, name).id)
            return [TokenRow(t.id, user, t.scope, _aware(t.created_at), _aware(t.expires_at), _aware(t.revoked_at),
                             _aware(t.last_used_at)) for t, user in session.execute(query)]

    def revoke_token(self, token_id: int) -> None:
        """Revoke a token: refused from the next request on."""
        with self.writes.begin() as session:
            token = session.get(ApiToken, token_id)
            if token is None:
                raise AccountError(f"there is no token {token_id}", "`spyglass token list` shows their ids")
            token.revoked_at = token.revoked_at or _now()
        audit.event("token_revoked", token_id=token_id)

    def by_token(self, text: str) -> Principal | None:
        """Whose token this is, while it is valid (not revoked, not expired); None otherwise."""
        parts = parse_token(text)
        if parts is None:
            return None
        with self.sessions() as session:
            # One query for the token and its owner, one for the owner's folders: every request pays it.
            row = session.execute(select(ApiToken.secret_hash, ApiToken.scope, ApiToken.expires_at,
                                         ApiToken.revoked_at, ApiToken.last_used_at, User.id, User.name,
                                         User.is_admin).join(User, User.id == ApiToken.user_id)
                                  .where(ApiToken.id == parts.token_id)).first()
            if row is None or not same(row.secret_hash, parts.secret):
                return None
            now = _now()
            if row.revoked_at is not None or (row.expires_at is not None and _aware(row.expires_at) <= now):
                return None
            folders = () if row.is_admin else self._folders(session, row.id)
        found = Principal(name=row.name, user_id=row.id, is_admin=row.is_admin, scope=row.scope, folders=folders,
                          token_id=parts.token_id)
        # Written at most once a minute: a busy script would otherwise write on every request.
        if row.last_used_at is None or now - _aware(row.last_used_at) > timedelta(minutes=1):
            with self.writes.begin() as session:
                session.execute(update(ApiToken).where(ApiToken.id == parts.token_id).values(last_used_at=now))
        return found

    # Page sessions and logins ----------------------------------------------------------------
    def log_in(self, name: str, password: str, address: str) -> Principal:
        """The person, if the password is theirs; a failure counts against the name and the address."""
        keys = (f"name:{name[:64]}", f"addr:{address[:64]}")
        self._refuse_if_throttled(keys)
        with self.sessions() as session:
            user = session.scalar(select(User).where(User.name == name)) if len(name) <= 64 else None
            hashed = user.password_hash if user is not None else None
            principal = self._principal(session, user)
        if len(password) > MAX_PASSWORD_CHARS or not verify_password(hashed, password[:MAX_PASSWORD_CHARS]):
            self._count_failure(keys)
            audit.event("login_failed", user=name[:64], address=address)
            raise AccountError("wrong name or password")
        with self.writes.begin() as session:
            session.execute(delete(LoginFailure).where(LoginFailure.key == keys[0]))
        audit.event("login", user=name, address=address)
        return principal

    def start_session(self, principal: Principal) -> tuple[str, str]:
        """A page session for someone who logged in: the cookie's value and its CSRF token."""
        cookie, csrf = new_secret(), secrets.token_urlsafe(32)
        with self.writes.begin() as session:
            session.execute(delete(WebSession).where(WebSession.expires_at < _now()))  # old ones, while here
            session.add(WebSession(id_hash=digest(cookie), user_id=principal.user_id, csrf_token=csrf,
                                   expires_at=_now() + timedelta(hours=SESSION_HOURS)))
        return cookie, csrf

    def by_session(self, cookie: str) -> tuple[Principal, str] | None:
        """Whose page session this cookie is, and its CSRF token, while it lasts."""
        if not cookie or len(cookie) > 64:
            return None
        with self.sessions() as session:
            row = session.get(WebSession, digest(cookie))
            if row is None or _aware(row.expires_at) <= _now():
                return None
            principal = self._principal(session, session.get(User, row.user_id))
            return (principal, row.csrf_token) if principal is not None else None

    def end_session(self, cookie: str) -> None:
        """Log out: the cookie stops working everywhere."""
        with self.writes.begin() as session:
            session.execute(delete(WebSession).where(WebSession.id_hash == digest(cookie)))

    def _refuse_if_throttled(self, keys: Sequence[str]) -> None:
        now = _now()
        with self.sessions() as session:
            for key, limit in zip(keys, (NAME_FAILURES, ADDRESS_FAILURES), strict=True):
                row = session.get(LoginFailure, key)
                if row is not None and row.failures >= limit and (ends := _aware(row.window_start) + WINDOW) > now:
                    raise Throttled(max(1, int((ends - now).total_seconds()) + 1))

    def _count_failure(self, keys: Sequence[str]) -> None:
        try:
            self._add_failure(keys)
        except IntegrityError:  # another worker counted a first failure for the same key just now
            self._add_failure(keys)

    def _add_failure(self, keys: Sequence[str]) -> None:
        now = _now()
        with self.writes.begin() as session:
            # Windows that have ended count for nothing: a stranger trying names cannot grow the table.
            session.execute(delete(LoginFailure).where(LoginFailure.window_start < now - WINDOW))
            for key in keys:
                row = session.get(LoginFailure, key)
                if row is None:
                    session.add(LoginFailure(key=key, failures=1, window_start=now))
                elif _aware(row.window_start) + WINDOW <= now:
                    row.failures, row.window_start = 1, now
                else:
                    row.failures += 1

    # Helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _user(session: Session, name: str) -> User:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            raise AccountError(f"there is no user named {name[:80]!r}", "`spyglass user list` shows who there is")
        return user

    @staticmethod
    def _folders(session: Session, user_id: int) -> tuple[str, ...]:
        return tuple(session.scalars(select(FolderGrant.folder).where(FolderGrant.user_id == user_id)
                                     .order_by(FolderGrant.folder)))

    @classmethod
    def _principal(cls, session: Session, user: User | None) -> Principal | None:
        """A page session's principal: it acts for its person wholly, admin routes included, as they
        would at the CLI."""
        if user is None:
            return None
        return Principal(name=user.name, user_id=user.id, is_admin=user.is_admin, scope="admin",
                         folders=cls._folders(session, user.id), session=True)
