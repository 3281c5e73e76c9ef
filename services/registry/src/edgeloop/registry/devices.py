"""Devices: registration, tokens (stored as SHA-256 only), revocation, assignments."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from typing import Any

from edgeloop.contracts.registry.v1 import deployment_pb2, device_pb2
from edgeloop.platform.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from edgeloop.registry import history
from edgeloop.registry.auth import new_device_token, token_digest, token_matches
from psycopg import AsyncConnection

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_COLUMNS = "device_id, name, deployment, created_at, token_rotated_at, revoked_at"


def to_proto(row: dict[str, Any]) -> device_pb2.Device:
    """A ``devices`` row as the Device message (never with its token digest)."""
    device = device_pb2.Device(device_id=row["device_id"], name=row["name"],
                               deployment=row["deployment"] or "",
                               revoked=row["revoked_at"] is not None)
    device.created_at.FromDatetime(row["created_at"])
    device.token_rotated_at.FromDatetime(row["token_rotated_at"])
    if row["revoked_at"] is not None:
        device.revoked_at.FromDatetime(row["revoked_at"])
    return device


def check_device_id(device_id: str, field: str = "device_id") -> str:
    """``device_id`` if well-formed, else INVALID_ARGUMENT naming ``field``."""
    if not DEVICE_ID.match(device_id):
        raise InvalidArgument(field, f"{device_id!r} is not a device id (1-64 of "
                                     "A-Z a-z 0-9 _ . : -, starting with a letter or digit)")
    return device_id


async def _check_deployment(conn: AsyncConnection, name: str, field: str) -> None:
    cursor = await conn.execute("SELECT 1 FROM deployments WHERE name = %s", (name,))
    if await cursor.fetchone() is None:
        raise NotFound(f"{field}: no deployment named {name!r}")


async def register(conn: AsyncConnection, actor: str, name: str, device_id: str,
                   deployment: str) -> tuple[device_pb2.Device, str]:
    """Create a device; return it and its token (the only time the token exists in clear)."""
    device_id = check_device_id(device_id) if device_id else f"dev-{secrets.token_hex(6)}"
    if len(name) > 200:
        raise InvalidArgument("name", "at most 200 characters")
    if deployment:
        await _check_deployment(conn, deployment, "deployment")
    token = new_device_token()
    cursor = await conn.execute(
        f"INSERT INTO devices (device_id, name, token_sha256, deployment) VALUES (%s, %s, %s, %s) "
        f"ON CONFLICT (device_id) DO NOTHING RETURNING {_COLUMNS}",
        (device_id, name, token_digest(token), deployment or None))
    row = await cursor.fetchone()
    if row is None:
        raise AlreadyExists(f"device_id: a device {device_id!r} exists already")
    await history.record(conn, actor, f"device/{device_id}", "register",
                         {"name": name, "deployment": deployment})
    return to_proto(row), token


async def list_devices(conn: AsyncConnection, include_revoked: bool) -> list[device_pb2.Device]:
    """Devices by id, revoked ones only when asked."""
    cursor = await conn.execute(
        f"SELECT {_COLUMNS} FROM devices WHERE %s OR revoked_at IS NULL ORDER BY device_id",
        (include_revoked,))
    return [to_proto(row) for row in await cursor.fetchall()]


async def revoke(conn: AsyncConnection, actor: str, device_id: str) -> device_pb2.Device:
    """Revoke a device (idempotent: revoking twice keeps the first time)."""
    check_device_id(device_id)
    cursor = await conn.execute(
        f"UPDATE devices SET revoked_at = coalesce(revoked_at, now()) WHERE device_id = %s "
        f"RETURNING {_COLUMNS}", (device_id,))
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"device_id: no device {device_id!r}")
    await history.record(conn, actor, f"device/{device_id}", "revoke", {})
    return to_proto(row)


async def rotate(conn: AsyncConnection, actor: str,
                 device_id: str) -> tuple[device_pb2.Device, str]:
    """Issue a new token for a device; the old one stops working at once."""
    check_device_id(device_id)
    token = new_device_token()
    cursor = await conn.execute(
        f"UPDATE devices SET token_sha256 = %s, token_rotated_at = now() WHERE device_id = %s "
        f"RETURNING {_COLUMNS}", (token_digest(token), device_id))
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"device_id: no device {device_id!r}")
    await history.record(conn, actor, f"device/{device_id}", "rotate", {})
    return to_proto(row), token


async def authenticate(conn: AsyncConnection, device_id: str, token: str) -> device_pb2.Device:
    """The device if ``token`` is its current token and it is not revoked; else UNAUTHENTICATED."""
    if not device_id or not token:
        raise Unauthenticated("device_id and token are required")
    cursor = await conn.execute(
        f"SELECT {_COLUMNS}, token_sha256 FROM devices WHERE device_id = %s", (device_id,))
    row = await cursor.fetchone()
    if not token_matches(token, bytes(row["token_sha256"]) if row else None):
        raise Unauthenticated(f"device {device_id!r}: unknown device or wrong token")
    if row["revoked_at"] is not None:
        raise Unauthenticated(f"device {device_id!r} is revoked")
    return to_proto(row)


async def assign(conn: AsyncConnection, actor: str, deployment: str,
                 device_ids: Sequence[str]) -> list[deployment_pb2.DeviceAssignment]:
    """Assign devices to ``deployment`` ('' unassigns); all or nothing."""
    if not device_ids:
        raise InvalidArgument("device_ids", "name at least one device")
    for device_id in device_ids:
        check_device_id(device_id, "device_ids")
    if deployment:
        await _check_deployment(conn, deployment, "deployment")
    cursor = await conn.execute(
        "UPDATE devices SET deployment = %s WHERE device_id = ANY(%s) RETURNING device_id",
        (deployment or None, list(device_ids)))
    found = {row["device_id"] for row in await cursor.fetchall()}
    missing = sorted(set(device_ids) - found)
    if missing:
        raise NotFound(f"device_ids: no device {', '.join(map(repr, missing))}")
    for device_id in sorted(found):
        await history.record(conn, actor, f"device/{device_id}", "assign",
                             {"deployment": deployment})
    if deployment:
        await history.record(conn, actor, f"deployment/{deployment}", "assign",
                             {"device_ids": sorted(found)})
    return [deployment_pb2.DeviceAssignment(device_id=d, deployment=deployment)
            for d in sorted(found)]


async def fleet_state(conn: AsyncConnection) -> dict[str, tuple[str, bool, Any]]:
    """device id → (deployment, revoked, token_rotated_at): what watchers must follow."""
    cursor = await conn.execute(
        "SELECT device_id, deployment, revoked_at, token_rotated_at FROM devices")
    return {row["device_id"]: (row["deployment"] or "", row["revoked_at"] is not None,
                               row["token_rotated_at"]) for row in await cursor.fetchall()}
