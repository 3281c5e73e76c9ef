"""Per-observation work done on the ingest threads: check, measure, store the image.

Runs outside the event loop: OpenCV and file/S3 writes release the GIL, so a thread
per core measures images in parallel. Bad input becomes a :class:`Rejection` naming the
observation and the rest of the batch goes on. An unreachable object store is not the
observation's fault: :class:`~edgeloop.platform.errors.Unavailable` propagates, the call
fails with UNAVAILABLE and the sender retries it (ingest is idempotent).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import cv2
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.features.images import image_key
from edgeloop.features.rows import PreparedObservation, shadow_rows, to_row
from edgeloop.features.statistics import jpeg_stats
from edgeloop.features.validation import capture_time, validate
from edgeloop.platform.errors import EdgeloopError, InvalidArgument
from edgeloop.platform.logs import log_context
from edgeloop.platform.objectstore import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An observation that was not stored, and why."""

    observation_id: str
    reason: str
    observation: observation_pb2.Observation | None = field(default=None, compare=False)
    """The refused observation itself, kept as a dead letter."""
    dead_letter_id: int = 0


def prepare(obs: observation_pb2.Observation, observation_id: str, now: datetime,
            store: ObjectStore) -> PreparedObservation | Rejection:
    """Validate ``obs``, compute its statistics and store its JPEG before its row exists."""
    with log_context(deployment=obs.deployment, device=obs.device_id,
                     observation_id=observation_id, trace_id=obs.trace_id):
        try:
            validate(obs)
            time = capture_time(obs, now)
            decoded = jpeg_stats(obs.jpeg)
            key = image_key(obs.deployment, time, observation_id)
            store.put(key, obs.jpeg, content_type="image/jpeg")
        except InvalidArgument as exc:
            log.warning("observation rejected: %s", exc.message)
            return Rejection(observation_id, exc.message, obs)
        except cv2.error as exc:
            log.warning("observation rejected: OpenCV failed: %s", exc)
            return Rejection(observation_id, f"jpeg: OpenCV could not process it ({exc.err})",
                             obs)
        except EdgeloopError:
            raise  # the object store is unreachable: the whole call is retried
        except Exception as exc:
            # A bug met by one observation must not block the sender's queue behind it
            # (it would retry the batch forever): reject this one, log the trace.
            log.exception("observation rejected: unexpected error")
            return Rejection(observation_id, f"internal error while processing it "
                                             f"({type(exc).__name__})", obs)
        return PreparedObservation(observation_id, to_row(obs, observation_id, time, key, decoded),
                                   shadow_rows(obs, observation_id, time))


def prepare_chunk(chunk: list[tuple[observation_pb2.Observation, str]], now: datetime,
                  store: ObjectStore) -> list[PreparedObservation | Rejection]:
    """:func:`prepare` each ``(observation, canonical id)`` of ``chunk`` in order."""
    return [prepare(obs, observation_id, now, store) for obs, observation_id in chunk]
