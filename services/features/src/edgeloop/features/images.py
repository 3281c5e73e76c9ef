"""Where an observation's JPEG lives in the object store."""

from __future__ import annotations

from datetime import datetime


def image_key(deployment: str, time: datetime, observation_id: str) -> str:
    """``features/<deployment>/<yyyy-mm-dd>/<observation_id>.jpg``, the day of capture in UTC."""
    return f"features/{deployment}/{time:%Y-%m-%d}/{observation_id}.jpg"
