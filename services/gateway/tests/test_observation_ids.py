"""Observation ids: UUIDv7, derived from the frame so a resent frame is recorded once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.gateway.observations import observation_id_for


def _frame(seq: int, captured: datetime | None) -> edge_pb2.Frame:
    frame = edge_pb2.Frame(seq=seq, jpeg=b"x")
    if captured is not None:
        frame.captured_at.FromDatetime(captured)
    return frame


CAPTURED = datetime(2026, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def test_a_resent_frame_gets_the_same_id() -> None:
    first = observation_id_for("car-1", "s1", _frame(7, CAPTURED))
    again = observation_id_for("car-1", "s1", _frame(7, CAPTURED))
    assert first == again


def test_ids_are_uuid7_carrying_the_capture_time() -> None:
    value = uuid.UUID(observation_id_for("car-1", "s1", _frame(7, CAPTURED)))
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 == int(CAPTURED.timestamp() * 1000)


def test_different_frames_get_different_ids() -> None:
    ids = {observation_id_for(device, session, _frame(seq, CAPTURED))
           for device in ("car-1", "car-2") for session in ("s1", "s2") for seq in (1, 2)}
    assert len(ids) == 8
    later = CAPTURED.replace(microsecond=500_000)
    assert observation_id_for("car-1", "s1", _frame(1, later)) != \
        observation_id_for("car-1", "s1", _frame(1, CAPTURED))


def test_without_capture_time_ids_are_random() -> None:
    assert observation_id_for("car-1", "s1", _frame(1, None)) != \
        observation_id_for("car-1", "s1", _frame(1, None))
