"""Who may call: the admin and read bearer tokens, and device tokens.

Callers send ``authorization: Bearer <token>``. Mutating calls need the admin token;
reads accept the admin or the read token. Device tokens are random, returned once,
and stored only as a SHA-256; every comparison is constant-time. Tokens never reach
a log record or an error message.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets

from edgeloop.platform.errors import PermissionDenied, Unauthenticated
from grpc import aio

TOKEN_BYTES = 32
ACTOR_HEADER = "x-edgeloop-actor"
_ACTOR_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-@")


class Role(enum.Enum):
    """What a caller's token allows."""

    ADMIN = "admin"
    READ = "read"


class Tokens:
    """The registry's own tokens, checked against call metadata."""

    def __init__(self, admin_token: str, read_token: str = "") -> None:
        self._admin = admin_token.encode()
        self._read = read_token.encode() if read_token else b""

    def role(self, context: aio.ServicerContext) -> Role:
        """The caller's role; UNAUTHENTICATED when the token is missing or unknown."""
        presented = _bearer(context).encode()
        # Compare against both tokens every time so timing does not tell which one is near.
        is_admin = hmac.compare_digest(presented, self._admin)
        is_read = bool(self._read) and hmac.compare_digest(presented, self._read)
        if is_admin:
            return Role.ADMIN
        if is_read:
            return Role.READ
        raise Unauthenticated("invalid bearer token")

    def require_read(self, context: aio.ServicerContext) -> Role:
        """Allow the admin and the read token."""
        return self.role(context)

    def require_admin(self, context: aio.ServicerContext, rpc: str) -> str:
        """Allow only the admin token; return the actor to record in the history."""
        if self.role(context) is not Role.ADMIN:
            raise PermissionDenied(f"{rpc} changes the registry and needs the admin token; "
                                   "the read token only reads")
        return actor(context)


def _bearer(context: aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization must be 'Bearer <token>'")
            return token.strip()
    raise Unauthenticated("missing authorization metadata ('authorization: Bearer <token>')")


def actor(context: aio.ServicerContext) -> str:
    """Who made a change, for the history: the ``x-edgeloop-actor`` header or "admin"."""
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_HEADER:
            name = str(value)[:64]
            if name and set(name) <= _ACTOR_CHARS:
                return name
    return "admin"


def new_device_token() -> str:
    """A fresh random device token (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> bytes:
    """The SHA-256 of a device token: the only form that is stored."""
    return hashlib.sha256(token.encode()).digest()


def token_matches(token: str, digest: bytes | None) -> bool:
    """Whether ``token`` hashes to ``digest``, in constant time (False without a digest)."""
    if digest is None:
        # Unknown device: do the same work, so timing does not reveal which ids exist.
        hmac.compare_digest(token_digest(token), _NO_DIGEST)
        return False
    return hmac.compare_digest(token_digest(token), digest)


_NO_DIGEST = hashlib.sha256(b"no device").digest()
