"""Where an observation's JPEG lives in the object store."""

from __future__ import annotations

from datetime import datetime


def image_key(deployment: str, time: datetime, observation_id: str) -> str:
    """``features/<deployment>/<yyyy-mm-dd>/<observation_id>.jpg``, the day of capture in UTC."""
    # date().isoformat() is yyyy-mm-dd as %Y-%m-%d is, without strftime's cost per row
    return f"features/{deployment}/{time.date().isoformat()}/{observation_id}.jpg"
