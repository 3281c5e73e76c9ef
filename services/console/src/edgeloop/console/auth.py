"""Operators' logins and CSRF protection of the console's writes.

Reading needs no login: the console reads with the registry's read token. A write needs a
login with the admin token (the password; compared in constant time); the session then
holds the operator's name and a random CSRF token, signed in a cookie (Starlette's
SessionMiddleware, ``SameSite=strict``). Every write form carries the CSRF token, and a
POST without a session, or with a token that does not match, is refused before any
service is called.
"""

from __future__ import annotations

import hmac
import re
import secrets

from starlette.requests import Request

ACTOR_SUFFIX = "@console"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
MAX_NAME = 40


class NotLoggedIn(Exception):
    """A write without a login (HTTP 401)."""


class BadCsrf(Exception):
    """A write whose CSRF token is missing or wrong (HTTP 403)."""


def operator_name(raw: str) -> str:
    """The operator's name as the registry accepts it in the actor header."""
    name = _UNSAFE.sub("-", raw.strip())[:MAX_NAME].strip("-")
    return name or "operator"


def check_password(given: str, admin_token: str) -> bool:
    """True when ``given`` is the admin token."""
    return hmac.compare_digest(given.encode(), admin_token.encode())


def log_in(request: Request, name: str) -> None:
    """Start a session for ``name`` with a fresh CSRF token."""
    request.session.clear()
    request.session["operator"] = operator_name(name)
    request.session["csrf"] = secrets.token_urlsafe(24)


def log_out(request: Request) -> None:
    request.session.clear()


def operator(request: Request) -> str | None:
    """The logged-in operator, or None."""
    return request.session.get("operator")


def csrf_token(request: Request) -> str:
    """The session's CSRF token ('' without a login)."""
    return request.session.get("csrf", "")


def actor(request: Request) -> str:
    """The actor the registry records for this operator's changes, e.g. ``alice@console``."""
    name = operator(request)
    if name is None:
        raise NotLoggedIn()
    return f"{name}{ACTOR_SUFFIX}"


async def require_write(request: Request) -> dict[str, str]:
    """The POSTed form after checking login and CSRF token; raises otherwise."""
    form = await request.form()
    if operator(request) is None:
        raise NotLoggedIn()
    expected = csrf_token(request)
    given = str(form.get("csrf", ""))
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise BadCsrf()
    return {key: str(value) for key, value in form.items()}
