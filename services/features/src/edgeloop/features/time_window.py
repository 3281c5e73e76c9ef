"""The ``[start_time, end_time)`` window a read request names (end unset: now)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from edgeloop.platform.errors import InvalidArgument


def requested_window(request: Any, now: datetime) -> tuple[datetime, datetime]:
    """The window of ``request`` (a message with ``start_time`` and ``end_time``); the start
    is required and the end must come after it."""
    if not request.HasField("start_time"):
        raise InvalidArgument("start_time", "is required (the window's start)")
    start = request.start_time.ToDatetime(tzinfo=UTC)
    end = request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else now
    if end <= start:
        raise InvalidArgument("end_time", "must be after start_time")
    return start, end
