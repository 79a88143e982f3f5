"""Accounts for team evaluation: users with a role and a password, and API tokens for scripts and the REST server.
No UI here; `python -m rating users ...` and the front ends call these functions. What a role may do is decided by
the access module, not here.

    add_user(store, name, role, password)   a new user (role: rating.schema.ROLES), password >= 8 characters
    get_user(store, name) -> User | None    list_users(store) -> [{name, role, created_at, tokens}]
    set_password / set_role / remove_user   (removing a user removes their tokens; returns how many)
    authenticate(store, name, password)     -> User | None, as slow for an unknown name as for a wrong password
    create_token(store, name, label)        -> "czt_...", shown once; only its SHA-256 is stored
    user_for_token(store, token)            -> User | None (and notes when the token was last used)
    revoke_tokens(store, name)              -> how many tokens the user had

Passwords are stored as argon2id hashes (argon2-cffi's defaults, RFC 9106's low-memory choice), salt and
parameters inside the hash, and rehashed on the next sign-in when the defaults change. A token is random
(256 bits), so a plain SHA-256 of it is enough: looking it up by its hash leaks nothing a timing attack could use.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, func, select

from rating.schema import ROLES, api_tokens, users
from rating.store import RatingStore, upsert
from rating.validation import utc_now, validate_name

MIN_PASSWORD_LENGTH = 8
TOKEN_PREFIX = "czt_"  # Caption Zoo token: recognisable in a config file or a leaked log
TOKEN_BYTES = 32  # 256 random bits

_hasher = PasswordHasher()  # argon2id; parameters and salt travel inside each hash


@dataclass(frozen=True)
class User:
    """Who is signed in: a name and a role of rating.schema.ROLES."""

    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def may_own(self) -> bool:
        """Whether this user may create and own evaluation sets (owners and admins)."""
        return self.role in ("owner", "admin")


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the name is unknown, so that answer takes as long as a wrong password."""
    return _hasher.hash(secrets.token_urlsafe(16))


def check_role(role: Any) -> str:
    if not isinstance(role, str) or role.strip() not in ROLES:
        raise ValueError(f"role must be one of {list(ROLES)}, got {role!r}")
    return role.strip()


def _check_password(password: Any) -> str:
    if not isinstance(password, str):
        raise ValueError(f"password must be a string, got {type(password).__name__}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters long, got {len(password)}")
    return password


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _require_user(conn: Connection, name: str, *, lock: bool = False) -> Any:
    """The user's row (locked until the transaction ends on PostgreSQL when `lock`), or ValueError naming the
    known users."""
    query = select(users).where(users.c.name == name)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        known = list(conn.execute(select(users.c.name).order_by(users.c.name)).scalars())
        raise ValueError(f"no user {name!r}; known users = {known}. Add one with "
                         "`python -m rating users add NAME --role rater|owner|admin`")
    return row


def add_user(store: RatingStore, name: str, role: str, password: str) -> User:
    """Create the user `name` with `role` (one of ROLES) and `password` (at least 8 characters), stored as an
    argon2id hash. Raises ValueError for a bad name, role or password, or a name that exists."""
    name = validate_name(name, "user name")
    role = check_role(role)
    password_hash = _hasher.hash(_check_password(password))  # slow on purpose: outside the write transaction
    with store._write() as conn:
        added = upsert(conn, users, dict(name=name, role=role, password_hash=password_hash,
                                         created_at=utc_now()), ["name"])
    if not added:
        raise ValueError(f"user {name!r} exists; change the password with `python -m rating users passwd {name}`")
    return User(name, role)


def get_user(store: RatingStore, name: str) -> User | None:
    """The user `name`, or None if there is none."""
    if not isinstance(name, str):
        return None
    with store._read() as conn:
        row = conn.execute(select(users.c.name, users.c.role).where(users.c.name == name.strip())).first()
    return None if row is None else User(row.name, row.role)


def list_users(store: RatingStore) -> list[dict[str, Any]]:
    """Every user by name: name, role, created_at and tokens (how many API tokens they hold)."""
    tokens = (select(func.count()).where(api_tokens.c.user_name == users.c.name).scalar_subquery())
    query = select(users.c.name, users.c.role, users.c.created_at, tokens.label("tokens")).order_by(users.c.name)
    with store._read() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def set_password(store: RatingStore, name: str, password: str) -> None:
    """Give `name` a new password (at least 8 characters). ValueError for an unknown user."""
    name = validate_name(name, "user name")
    password_hash = _hasher.hash(_check_password(password))
    with store._write() as conn:
        _require_user(conn, name, lock=True)
        conn.execute(users.update().where(users.c.name == name).values(password_hash=password_hash))


def set_role(store: RatingStore, name: str, role: str) -> User:
    """Give `name` the role `role` (one of ROLES). ValueError for an unknown user or role."""
    name = validate_name(name, "user name")
    role = check_role(role)
    with store._write() as conn:
        _require_user(conn, name, lock=True)
        conn.execute(users.update().where(users.c.name == name).values(role=role))
    return User(name, role)


def remove_user(store: RatingStore, name: str) -> int:
    """Remove the user `name` and their API tokens (their ratings stay: they are the set's data); returns how
    many tokens went with them. ValueError for an unknown user."""
    name = validate_name(name, "user name")
    with store._write() as conn:
        _require_user(conn, name, lock=True)
        tokens = conn.execute(api_tokens.delete().where(api_tokens.c.user_name == name)).rowcount
        conn.execute(users.delete().where(users.c.name == name))
    return tokens


def authenticate(store: RatingStore, name: str, password: str) -> User | None:
    """The user if `password` is theirs, else None (an unknown name and a wrong password look the same, and take
    about as long: an unknown name is verified against a dummy hash). A hash made with older parameters is
    replaced by one with the current parameters."""
    if not isinstance(name, str) or not isinstance(password, str):
        return None
    with store._read() as conn:
        row = conn.execute(select(users).where(users.c.name == name.strip())).first()
    try:
        _hasher.verify(row.password_hash if row is not None else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:  # the dummy hash's password is random: only here if someone guessed 128 random bits
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        new_hash = _hasher.hash(password)
        with store._write() as conn:  # only if the hash is still the one verified (no passwd in between)
            conn.execute(users.update().where(users.c.name == row.name, users.c.password_hash == row.password_hash)
                         .values(password_hash=new_hash))
    return User(row.name, row.role)


def create_token(store: RatingStore, name: str, label: str | None = None) -> str:
    """A new API token for `name` ("czt_" + 43 URL-safe characters). Only its SHA-256 is stored, so this is the
    one time it can be seen. `label`: what it is for ("ci", "laptop"). ValueError for an unknown user."""
    name = validate_name(name, "user name")
    label = None if label is None else validate_name(label, "token label")
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    with store._write() as conn:
        _require_user(conn, name, lock=True)
        conn.execute(api_tokens.insert().values(token_hash=_token_hash(token), user_name=name, label=label,
                                                created_at=utc_now()))
    return token


def user_for_token(store: RatingStore, token: str) -> User | None:
    """The user holding `token`, or None for a token that is unknown, revoked or not a string. A known token's
    last_used_at becomes now (an unknown one writes nothing, so guessing costs the database no write lock)."""
    if not isinstance(token, str) or not token:
        return None
    digest = _token_hash(token.strip())
    query = (select(users.c.name, users.c.role).select_from(api_tokens.join(users))
             .where(api_tokens.c.token_hash == digest))
    with store._read() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    with store._write() as conn:
        conn.execute(api_tokens.update().where(api_tokens.c.token_hash == digest).values(last_used_at=utc_now()))
    return User(row.name, row.role)


def revoke_tokens(store: RatingStore, name: str) -> int:
    """Delete every API token of `name`; returns how many there were. ValueError for an unknown user."""
    name = validate_name(name, "user name")
    with store._write() as conn:
        _require_user(conn, name)
        return conn.execute(api_tokens.delete().where(api_tokens.c.user_name == name)).rowcount
