"""Library notices that tell the trainer's operator nothing, silenced where they arise.

Each was a warning in the trainer's log at every start or every sweep and asks for no
action, so real warnings drowned among them. Only these exact notices go; everything else
Ray and MLflow say still reaches the log.
"""

from __future__ import annotations

import logging
import re
import warnings

LOGGED = (
    # ray.init from the service's start-up thread: the trainer handles SIGTERM itself (a
    # service's graceful stop), so Ray's own handler is not wanted anyway.
    ("ray._private.worker", "SIGTERM handler is not set"),
    # A uv environment has no pip; the model's requirements are given explicitly.
    ("mlflow.utils.environment", "Failed to resolve installed pip version"),
)
WARNED = (
    # MLflow registers its local artifact source twice and then says it cannot choose.
    "The specified dataset source can be interpreted in multiple ways",
    # The pyfunc wrapper's signature is logged explicitly; type hints would replace it.
    "Add type hints to the `predict` method",
)


class DropNotice(logging.Filter):
    """Drops the records of one logger whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def silence_library_notices() -> None:
    """Install the filters (idempotent)."""
    for name, prefix in LOGGED:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropNotice) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(DropNotice(prefix))
    for message in WARNED:
        warnings.filterwarnings("ignore", message=re.escape(message))
