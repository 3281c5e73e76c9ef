"""Work done on the ingest threads: check and measure each observation, store the images.

Runs outside the event loop: OpenCV and file/S3 writes release the GIL, so a thread
per core measures images in parallel. Bad input becomes a :class:`Rejection` naming the
observation and the rest of the batch goes on. The measured images of a thread's share
of the batch are stored as one pack per deployment and day (:mod:`edgeloop.features.images`).
An unreachable object store is not the observations' fault:
:class:`~edgeloop.platform.errors.Unavailable` propagates, the call fails with UNAVAILABLE
and the sender retries it (ingest is idempotent).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

import cv2
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.features.images import PackMember, write_pack
from edgeloop.features.rows import PreparedObservation, shadow_rows, to_row
from edgeloop.features.statistics import DecodedStats, jpeg_stats
from edgeloop.features.validation import capture_time, validate
from edgeloop.platform.errors import InvalidArgument
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


@dataclass(frozen=True, slots=True)
class Measured:
    """A validated observation with its statistics, its image not stored yet."""

    obs: observation_pb2.Observation
    observation_id: str
    time: datetime
    decoded: DecodedStats


def measure(obs: observation_pb2.Observation, observation_id: str,
            now: datetime) -> Measured | Rejection:
    """Validate ``obs`` and compute its statistics, or say why it is refused."""
    with log_context(deployment=obs.deployment, device=obs.device_id,
                     observation_id=observation_id, trace_id=obs.trace_id):
        try:
            validate(obs)
            time = capture_time(obs, now)
            decoded = jpeg_stats(obs.jpeg)
        except InvalidArgument as exc:
            log.warning("observation rejected: %s", exc.message)
            return Rejection(observation_id, exc.message, obs)
        except cv2.error as exc:
            log.warning("observation rejected: OpenCV failed: %s", exc)
            return Rejection(observation_id, f"jpeg: OpenCV could not process it ({exc.err})",
                             obs)
        except Exception as exc:
            # A bug met by one observation must not block the sender's queue behind it
            # (it would retry the batch forever): reject this one, log the trace.
            log.exception("observation rejected: unexpected error")
            return Rejection(observation_id, f"internal error while processing it "
                                             f"({type(exc).__name__})", obs)
        return Measured(obs, observation_id, time, decoded)


def store_images(store: ObjectStore, measured: list[Measured]) -> dict[str, str]:
    """Write the images of ``measured`` as one pack per deployment and capture day.

    Returns each observation's image key. An unreachable store raises
    :class:`~edgeloop.platform.errors.Unavailable` (the whole call is retried).
    """
    groups: dict[tuple[str, date], list[Measured]] = defaultdict(list)
    for item in measured:
        groups[item.obs.deployment, item.time.date()].append(item)
    keys: dict[str, str] = {}
    for (deployment, day), items in groups.items():
        members = [PackMember(m.observation_id, m.obs.jpeg, m.time.timestamp()) for m in items]
        for item, key in zip(items, write_pack(store, deployment, day, members), strict=True):
            keys[item.observation_id] = key
    return keys


def prepare_chunk(chunk: list[tuple[observation_pb2.Observation, str]], now: datetime,
                  store: ObjectStore) -> list[PreparedObservation | Rejection]:
    """Measure each ``(observation, canonical id)`` of ``chunk`` and store the images.

    The results are in ``chunk``'s order; every image is stored before its row exists.
    """
    results = [measure(obs, observation_id, now) for obs, observation_id in chunk]
    keys = store_images(store, [r for r in results if isinstance(r, Measured)])
    return [r if isinstance(r, Rejection) else PreparedObservation(
                r.observation_id, to_row(r.obs, r.observation_id, r.time,
                                         keys[r.observation_id], r.decoded),
                shadow_rows(r.obs, r.observation_id, r.time))
            for r in results]
