"""Who may call, and who a change is recorded as: the registry's tokens.

Callers send ``authorization: Bearer <token>``. A token is one of

- the admin token (``EDGELOOP_ADMIN_TOKEN``): every call; its changes are recorded as
  ``admin``, or as ``admin (on behalf of <name>)`` when the call carries an
  ``x-edgeloop-actor: <name>`` header (services acting for someone, e.g. the console for a
  logged-in person) — the name is the caller's claim, so the history never shows it bare;
- a service token (``EDGELOOP_SERVICE_TOKENS``, e.g. the trainer's): every call; its
  changes are recorded as ``service:<name>``, so an automatic promotion is told apart from
  a person's;
- the read token (``EDGELOOP_READ_TOKEN``): reads only;
- an operator's token (:mod:`edgeloop.registry.operators`): reads, and with role admin
  every call; its changes are recorded as ``operator:<name>`` whatever headers it sends.

Mutating calls need the admin role (PERMISSION_DENIED otherwise); an unknown token is
UNAUTHENTICATED. Device tokens and operator tokens are random, returned once, and stored
only as a SHA-256; every comparison is constant-time. Tokens never reach a log record or
an error message.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Protocol

from edgeloop.platform.errors import PermissionDenied, Unauthenticated
from grpc import aio

TOKEN_BYTES = 32
ACTOR_HEADER = "x-edgeloop-actor"
ADMIN_ACTOR = "admin"
OPERATOR_ACTOR_PREFIX = "operator:"
SERVICE_ACTOR_PREFIX = "service:"
MIN_TOKEN_CHARS = 16
_ACTOR_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-@")


class Role(enum.Enum):
    """What a caller's token allows."""

    ADMIN = "admin"
    READ = "read"


@dataclass(frozen=True)
class Caller:
    """Who presented a token: its role and the actor the history records for its changes."""

    role: Role
    actor: str
    operator: str = ""
    """The operator's name for an operator token; '' for the admin and read tokens."""


class OperatorLookup(Protocol):
    """Finds the active operator a token belongs to (``operators.ActiveOperators``)."""

    async def find(self, token: str) -> tuple[str, Role] | None:
        """(name, role) of the active operator whose token this is, or None."""


class Tokens:
    """The registry's tokens, checked against call metadata."""

    def __init__(self, admin_token: str, read_token: str = "",
                 operators: OperatorLookup | None = None,
                 services: dict[str, str] | None = None) -> None:
        self._admin = admin_token.encode()
        self._read = read_token.encode() if read_token else b""
        self._operators = operators
        self._services = [(name, token.encode()) for name, token in (services or {}).items()]

    def attach(self, operators: OperatorLookup) -> None:
        """Check operator tokens too (the app attaches them once the database is open)."""
        self._operators = operators

    async def caller(self, context: aio.ServicerContext) -> Caller:
        """Who the caller is; UNAUTHENTICATED when the token is missing or unknown."""
        token = _bearer(context)
        presented = token.encode()
        # Compare against both tokens every time so timing does not tell which one is near.
        is_admin = hmac.compare_digest(presented, self._admin)
        is_read = bool(self._read) and hmac.compare_digest(presented, self._read)
        if is_admin:
            return Caller(Role.ADMIN, admin_actor(context))
        if is_read:
            return Caller(Role.READ, "read")
        services = [name for name, known in self._services
                    if hmac.compare_digest(presented, known)]
        if services:
            return Caller(Role.ADMIN, f"{SERVICE_ACTOR_PREFIX}{services[0]}")
        found = await self._operators.find(token) if self._operators is not None else None
        if found is None:
            raise Unauthenticated("invalid bearer token")
        name, role = found
        return Caller(role, f"{OPERATOR_ACTOR_PREFIX}{name}", operator=name)

    async def require_read(self, context: aio.ServicerContext) -> Caller:
        """Allow every known token."""
        return await self.caller(context)

    async def require_admin(self, context: aio.ServicerContext, rpc: str) -> str:
        """Allow only the admin role; return the actor to record in the history."""
        caller = await self.caller(context)
        if caller.role is not Role.ADMIN:
            raise PermissionDenied(f"{rpc} changes the registry and needs the admin token or "
                                   "an admin operator's token; this token only reads")
        return caller.actor


def parse_service_tokens(value: str) -> dict[str, str]:
    """``name=token,name=token`` as a dict; ValueError names what is wrong (not the token)."""
    tokens: dict[str, str] = {}
    for number, pair in enumerate(filter(None, (p.strip() for p in value.split(","))), 1):
        name, sep, token = pair.partition("=")
        name, token = name.strip(), token.strip()
        if not sep or not name or not set(name) <= _ACTOR_CHARS or len(name) > 64:
            raise ValueError(f"pair {number}: must be name=token with a name of letters, "
                             "digits and _.-@ (at most 64)")
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"service {name!r}: its token must have at least "
                             f"{MIN_TOKEN_CHARS} characters")
        if name in tokens:
            raise ValueError(f"service {name!r} is named twice")
        tokens[name] = token
    return tokens


def _bearer(context: aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization must be 'Bearer <token>'")
            return token.strip()
    raise Unauthenticated("missing authorization metadata ('authorization: Bearer <token>')")


def declared_actor(context: aio.ServicerContext) -> str:
    """The caller's ``x-edgeloop-actor`` header if well-formed (<= 64 safe chars), else ''."""
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_HEADER:
            name = str(value)[:64]
            if name and set(name) <= _ACTOR_CHARS:
                return name
    return ""


def admin_actor(context: aio.ServicerContext) -> str:
    """The actor of an admin-token change: ``admin``, or ``admin (on behalf of <header>)``.

    Anyone holding the admin token can send any header, so a declared name is recorded
    only as a claim made by the admin token, never as an identity of its own.
    """
    declared = declared_actor(context)
    return f"{ADMIN_ACTOR} (on behalf of {declared})" if declared else ADMIN_ACTOR


def new_device_token() -> str:
    """A fresh random device or operator token (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> bytes:
    """The SHA-256 of a device or operator token: the only form that is stored."""
    return hashlib.sha256(token.encode()).digest()


def token_matches(token: str, digest: bytes | None) -> bool:
    """Whether ``token`` hashes to ``digest``, in constant time (False without a digest)."""
    if digest is None:
        # Unknown device: do the same work, so timing does not reveal which ids exist.
        hmac.compare_digest(token_digest(token), _NO_DIGEST)
        return False
    return hmac.compare_digest(token_digest(token), digest)


_NO_DIGEST = hashlib.sha256(b"no device").digest()
