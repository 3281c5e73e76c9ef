"""The change history: every change to devices, deployments and models, newest first."""

from __future__ import annotations

import json
from typing import Any

from edgeloop.contracts.registry.v1 import deployment_pb2
from psycopg import AsyncConnection

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


async def record(conn: AsyncConnection, actor: str, subject: str, action: str,
                 detail: dict[str, Any]) -> int:
    """Append one change inside the caller's transaction; return its id."""
    cursor = await conn.execute(
        "INSERT INTO history (actor, subject, action, detail) VALUES (%s, %s, %s, %s) "
        "RETURNING change_id", (actor, subject, action, json.dumps(detail, sort_keys=True)))
    row = await cursor.fetchone()
    return int(row["change_id"])


async def list_changes(conn: AsyncConnection, subject: str, limit: int) -> list[
        deployment_pb2.ChangeRecord]:
    """The newest ``limit`` changes (0 = 100), optionally of one subject."""
    limit = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
    cursor = await conn.execute(
        "SELECT change_id, time, actor, subject, action, detail FROM history "
        "WHERE %(subject)s = '' OR subject = %(subject)s ORDER BY change_id DESC LIMIT %(limit)s",
        {"subject": subject, "limit": limit})
    records = []
    for row in await cursor.fetchall():
        change = deployment_pb2.ChangeRecord(
            change_id=row["change_id"], actor=row["actor"], subject=row["subject"],
            action=row["action"], detail=json.dumps(row["detail"], sort_keys=True))
        change.time.FromDatetime(row["time"])
        records.append(change)
    return records
