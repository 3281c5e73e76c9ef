"""Operators: people and programs with registry tokens of their own.

An operator has a name, a role (admin or read) and a token that is returned once and
stored only as its SHA-256, like a device token. The registry records an operator's
changes as ``operator:<name>`` (:mod:`edgeloop.registry.auth`), so the history names the
token that made a change. Names are never reused, not even after revocation, so
``operator:<name>`` always means the same operator.

Authentication reads the active operators' digests from :class:`ActiveOperators`, a copy
kept for ``EDGELOOP_OPERATOR_AUTH_TTL_S`` seconds and dropped at once when this instance
creates, revokes or re-keys an operator; another registry instance sharing the database
sees such a change within that time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgeloop.contracts.registry.v1 import operator_pb2
from edgeloop.platform.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from edgeloop.registry import history
from edgeloop.registry.auth import Role, new_device_token, token_digest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_COLUMNS = "name, role, created_at, token_rotated_at, revoked_at"
_ROLES_IN = {operator_pb2.OPERATOR_ROLE_ADMIN: Role.ADMIN,
             operator_pb2.OPERATOR_ROLE_READ: Role.READ}
_ROLES_OUT = {role: value for value, role in _ROLES_IN.items()}


def role_to_proto(role: Role) -> operator_pb2.OperatorRole:
    """The OperatorRole of ``role``."""
    return _ROLES_OUT[role]


def to_proto(row: dict[str, Any]) -> operator_pb2.Operator:
    """An ``operators`` row as the Operator message (never with its token digest)."""
    operator = operator_pb2.Operator(name=row["name"], role=role_to_proto(Role(row["role"])),
                                     revoked=row["revoked_at"] is not None)
    operator.created_at.FromDatetime(row["created_at"])
    operator.token_rotated_at.FromDatetime(row["token_rotated_at"])
    if row["revoked_at"] is not None:
        operator.revoked_at.FromDatetime(row["revoked_at"])
    return operator


def check_name(name: str, field: str = "name") -> str:
    """``name`` if well-formed, else INVALID_ARGUMENT naming ``field``."""
    if not NAME.match(name):
        raise InvalidArgument(field, f"{name!r} is not an operator name (1-64 of "
                                     "A-Z a-z 0-9 _ . - @, starting with a letter or digit)")
    return name


def _check_role(role: operator_pb2.OperatorRole) -> Role:
    if role not in _ROLES_IN:
        raise InvalidArgument("role", "OPERATOR_ROLE_ADMIN or OPERATOR_ROLE_READ")
    return _ROLES_IN[role]


async def create(conn: AsyncConnection, actor: str, name: str,
                 role: operator_pb2.OperatorRole) -> tuple[operator_pb2.Operator, str]:
    """Create an operator; return it and its token (the only time the token exists in clear)."""
    check_name(name)
    stored_role = _check_role(role)
    token = new_device_token()
    cursor = await conn.execute(
        f"INSERT INTO operators (name, role, token_sha256) VALUES (%s, %s, %s) "
        f"ON CONFLICT (name) DO NOTHING RETURNING {_COLUMNS}",
        (name, stored_role.value, token_digest(token)))
    row = await cursor.fetchone()
    if row is None:
        raise AlreadyExists(f"name: an operator {name!r} exists already (names of revoked "
                            "operators are not reused, so the history stays unambiguous)")
    await history.record(conn, actor, f"operator/{name}", "create", {"role": stored_role.value})
    return to_proto(row), token


async def get(conn: AsyncConnection, name: str) -> operator_pb2.Operator:
    """One operator by name; NOT_FOUND when there is none."""
    cursor = await conn.execute(f"SELECT {_COLUMNS} FROM operators WHERE name = %s", (name,))
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"name: no operator {name!r}")
    return to_proto(row)


async def list_operators(conn: AsyncConnection,
                         include_revoked: bool) -> list[operator_pb2.Operator]:
    """Operators by name, revoked ones only when asked."""
    cursor = await conn.execute(
        f"SELECT {_COLUMNS} FROM operators WHERE %s OR revoked_at IS NULL ORDER BY name",
        (include_revoked,))
    return [to_proto(row) for row in await cursor.fetchall()]


async def revoke(conn: AsyncConnection, actor: str, name: str) -> operator_pb2.Operator:
    """Revoke an operator (idempotent: revoking twice keeps the first time)."""
    check_name(name)
    cursor = await conn.execute(
        f"UPDATE operators SET revoked_at = coalesce(revoked_at, now()) WHERE name = %s "
        f"RETURNING {_COLUMNS}", (name,))
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"name: no operator {name!r}")
    await history.record(conn, actor, f"operator/{name}", "revoke", {})
    return to_proto(row)


async def rotate(conn: AsyncConnection, actor: str,
                 name: str) -> tuple[operator_pb2.Operator, str]:
    """Issue a new token for an active operator; the old one stops working at once."""
    check_name(name)
    token = new_device_token()
    cursor = await conn.execute(
        f"UPDATE operators SET token_sha256 = %s, token_rotated_at = now() "
        f"WHERE name = %s AND revoked_at IS NULL RETURNING {_COLUMNS}",
        (token_digest(token), name))
    row = await cursor.fetchone()
    if row is None:
        await get(conn, name)  # NOT_FOUND for an unknown name
        raise FailedPrecondition(f"name: operator {name!r} is revoked; create a new operator")
    await history.record(conn, actor, f"operator/{name}", "rotate", {})
    return to_proto(row), token


@dataclass(frozen=True)
class _ActiveToken:
    digest: bytes
    name: str
    role: Role


async def _active_tokens(conn: AsyncConnection) -> list[_ActiveToken]:
    cursor = await conn.execute(
        "SELECT name, role, token_sha256 FROM operators WHERE revoked_at IS NULL")
    return [_ActiveToken(bytes(row["token_sha256"]), row["name"], Role(row["role"]))
            for row in await cursor.fetchall()]


class ActiveOperators:
    """The active operators' token digests, re-read after ``ttl_s`` or an invalidation.

    Implements :class:`edgeloop.registry.auth.OperatorLookup`. A presented token's digest
    is compared with every active digest in constant time, so neither timing nor the
    database sees which operator (if any) was near; wrong tokens cost no query.
    """

    def __init__(self, pool: AsyncConnectionPool, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._clock = clock
        self._tokens: list[_ActiveToken] = []
        self._loaded_at: float | None = None
        self._generation = 0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Forget the copy: the next lookup re-reads (call after an operator change commits)."""
        self._generation += 1
        self._loaded_at = None

    async def find(self, token: str) -> tuple[str, Role] | None:
        """(name, role) of the active operator whose token this is, or None."""
        digest = token_digest(token)
        found: _ActiveToken | None = None
        for active in await self._current():
            matches = hmac.compare_digest(digest, active.digest)  # no early exit: constant time
            if matches and found is None:
                found = active
        return (found.name, found.role) if found else None

    async def _current(self) -> list[_ActiveToken]:
        async with self._lock:
            if self._loaded_at is None or self._clock() - self._loaded_at >= self._ttl_s:
                generation = self._generation
                async with self._pool.connection() as conn:
                    tokens = await _active_tokens(conn)
                self._tokens = tokens
                # An invalidation while reading means the rows may predate the change:
                # use them for this lookup only, read again for the next.
                self._loaded_at = self._clock() if generation == self._generation else None
                log.debug("operator tokens read", extra={"active_operators": len(tokens)})
            return self._tokens
