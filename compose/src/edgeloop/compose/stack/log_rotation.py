"""Every part's log kept to a size: rotated by the supervisor, copied and truncated in place.

A part writes its log through the descriptor it was started with (``spawn`` opens the file
for appending, as ``pg_ctl -l`` does), so the file cannot be renamed under it: the part
would go on writing to the renamed file. The supervisor copies a log that outgrew
:attr:`LogLimits.max_bytes` to ``<log>.1`` (the older copies move up to ``.2`` ...
``.<backups>``, the oldest dropped) and truncates the original, which the part keeps
appending to from its new end: logrotate's ``copytruncate``. A line written in the instant
between the copy and the truncation is lost; nothing else is. Without it a stack that runs
for weeks grows its logs without bound (MLflow's server logs every request it answers) on
the disk where the gateways' spools wait for the features service.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

MAX_BYTES_ENV = "EDGELOOP_LOG_MAX_BYTES"
BACKUPS_ENV = "EDGELOOP_LOG_BACKUPS"


@dataclass(frozen=True)
class LogLimits:
    """How large a part's log grows before it is rotated, and how many copies stay."""

    max_bytes: int = 64 * 1024 * 1024
    backups: int = 3

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> LogLimits:
        """:data:`MAX_BYTES_ENV` and :data:`BACKUPS_ENV`, else the defaults; a bad value is
        a ``ValueError`` that names the variable."""
        env = dict(os.environ) if env is None else env
        defaults = cls()
        return cls(max_bytes=_positive(env, MAX_BYTES_ENV, defaults.max_bytes, minimum=1024),
                   backups=_positive(env, BACKUPS_ENV, defaults.backups, minimum=1))


def _positive(env: dict[str, str], name: str, default: int, minimum: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}: not a whole number (got {text!r})") from None
    if value < minimum:
        raise ValueError(f"{name}: at least {minimum} (got {value})")
    return value


def backup(log: Path, number: int) -> Path:
    """``<log>.<number>``: the ``number``-th most recent copy of ``log``."""
    return log.with_name(f"{log.name}.{number}")


def rotate_if_large(log: Path, limits: LogLimits) -> bool:
    """Rotate ``log`` when it is larger than ``limits.max_bytes``; whether it was."""
    try:
        if log.stat().st_size <= limits.max_bytes:
            return False
    except FileNotFoundError:
        return False
    for number in range(limits.backups - 1, 0, -1):
        older = backup(log, number)
        if older.exists():
            older.replace(backup(log, number + 1))
    shutil.copyfile(log, backup(log, 1))
    os.truncate(log, 0)
    return True
