"""Operators' logins and CSRF protection of the console's writes.

Reading needs no login: the console reads with the registry's read token. A write needs a
login with one of two tokens (the password):

- the registry's admin token (compared in constant time), with a typed name: writes then
  carry the admin token and ``x-edgeloop-actor: <name>@console``, which the registry
  records as ``admin (on behalf of <name>@console)`` — a claim, not an identity;
- an admin operator's own token (``edgeloop operators add NAME --role admin``), checked
  with the registry's ``WhoAmI``: writes then carry that token, and the registry records
  ``operator:<name>``. The token stays in this process's memory
  (:class:`OperatorTokens`); the cookie holds only a random key to it.

The session then holds who is logged in and a random CSRF token, signed in a cookie
(Starlette's SessionMiddleware, ``SameSite=strict``). Every write form carries the CSRF
token, and a POST without a session, or with a token that does not match, is refused
before any service is called.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Callable

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


class OperatorTokens:
    """Operator tokens of logged-in sessions, in this process's memory only.

    The session cookie is signed, not encrypted, so it carries a random key to the token
    rather than the token. Entries expire with the session; a restart forgets them all
    (operators who logged in with their own token log in again).
    """

    def __init__(self, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age_s = max_age_s
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}

    def keep(self, token: str) -> str:
        """Keep ``token`` for one session; return the key the session holds."""
        now = self._clock()
        self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}
        key = secrets.token_urlsafe(24)
        self._tokens[key] = (token, now + self._max_age_s)
        return key

    def token(self, key: str) -> str | None:
        """The token kept under ``key``, or None when it expired or was never kept here."""
        kept = self._tokens.get(key)
        if kept is None or kept[1] <= self._clock():
            return None
        return kept[0]

    def forget(self, key: str) -> None:
        """Drop the token kept under ``key`` (log-out)."""
        self._tokens.pop(key, None)


def log_in(request: Request, name: str) -> None:
    """Start an admin-token session for ``name`` with a fresh CSRF token."""
    request.session.clear()
    request.session["operator"] = operator_name(name)
    request.session["csrf"] = secrets.token_urlsafe(24)


def log_in_operator(request: Request, actor: str, token_key: str) -> None:
    """Start a session for an operator token kept under ``token_key``.

    ``actor`` is what the registry records for the token (``operator:<name>``).
    """
    request.session.clear()
    request.session["operator"] = actor
    request.session["token_key"] = token_key
    request.session["csrf"] = secrets.token_urlsafe(24)


def operator_token_key(request: Request) -> str | None:
    """The key of the session's operator token; None for an admin-token session."""
    return request.session.get("token_key")


def log_out(request: Request) -> None:
    request.session.clear()


def operator(request: Request) -> str | None:
    """The logged-in operator, or None."""
    return request.session.get("operator")


def csrf_token(request: Request) -> str:
    """The session's CSRF token ('' without a login)."""
    return request.session.get("csrf", "")


def actor(request: Request) -> str:
    """The name an admin-token session declares in ``x-edgeloop-actor``, e.g. ``alice@console``."""
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
