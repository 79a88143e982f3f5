"""Who is calling the API: `caller_dependency` checks a request's credentials and gives the `Caller`.

With --login (`ApiConfig.login`), the accounts of the rating database (`rating.accounts`): HTTP Basic with a user
name and password, or ``Authorization: Bearer TOKEN`` with a token from ``python -m rating users token NAME``.
The server's own --api-token (a service token: captioning, no identity) still works beside them.
Without --login, as before: the page's --auth USER:PASS as HTTP Basic and/or the --api-token; with neither, the
API is open. A wrong password, an unknown user and a bad token all get the same 401, so the answer never says
which part was wrong.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from .errors import ApiError


@dataclass(frozen=True)
class Caller:
    """Who sent a request: `name` (an account, the --auth user, or None: open API or the service token) and,
    with --login, the account's `role` (rating.schema.ROLES)."""

    name: str | None = None
    role: str | None = None


def _basic(value: str) -> tuple[str, str]:
    try:
        user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return "", ""
    return user, password


def caller_dependency(state: Any) -> Callable[[Request], Caller]:
    """A FastAPI dependency giving the request's Caller, or raising 401; `state` is the API's `ApiState`."""
    config = state.config

    def check(request: Request) -> Caller:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and config.api_token and secrets.compare_digest(value.encode(), config.api_token.encode()):
            return Caller()
        if config.login:
            from rating import accounts

            user = None
            if scheme == "bearer" and value:
                user = accounts.user_for_token(config.store, value)
            elif scheme == "basic":
                name, password = _basic(value)
                user = accounts.authenticate(config.store, name, password) if name and password else None
            if user is not None:
                return Caller(user.name, user.role)
            raise ApiError(401, "unauthorized", "this API needs a Caption Zoo account: HTTP Basic with your user "
                           "name and password, or Authorization: Bearer TOKEN (python -m rating users token NAME)",
                           {"WWW-Authenticate": 'Basic realm="Caption Zoo API"'})
        if not config.auth and not config.api_token:
            return Caller()
        if scheme == "basic" and config.auth:
            user, password = _basic(value)
            # compare with every pair (no early exit), so timing does not tell which part was wrong
            ok = [secrets.compare_digest(user.encode(), u.encode()) & secrets.compare_digest(password.encode(),
                                                                                              p.encode())
                  for u, p in config.auth]
            if any(ok):
                return Caller(user)
        ways = (["HTTP Basic with the --auth user"] if config.auth else []) + (
            ["Authorization: Bearer <--api-token>"] if config.api_token else [])
        challenge = 'Basic realm="Caption Zoo API"' if config.auth else 'Bearer realm="Caption Zoo API"'
        raise ApiError(401, "unauthorized", "this API needs " + " or ".join(ways), {"WWW-Authenticate": challenge})

    return check
