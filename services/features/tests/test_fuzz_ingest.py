"""Fuzzing Ingest (Hypothesis): batches of observations with arbitrary field values and bytes.

A real features service (in-process on loopback over a real PostgreSQL database, from the
conftest) gets batches where any field may be arbitrary: ids, timestamps out of range,
texts with NUL or too long, seq over the whole uint64 range, NaN/infinite/negative
numbers, arbitrary JPEG bytes, repeated shadow arms. Properties: every call ends within
its deadline with OK; every observation of a batch is accounted for (stored, duplicate or
rejected: nothing is lost silently); every rejection names the field it is about; the
service answers health SERVING afterwards. Examples are derandomized and few.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import grpc
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as pb_grpc
from edgeloop.contracts.features.v1 import observation_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
CALL_DEADLINE_S = 120.0
FIELD_FIRST = re.compile(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+)*: ")
"""A rejection reason starts with the field: ``time: ...``, ``shadow_predictions[1].arm: ...``."""

TEXT_FIELDS = ["device_id", "session_id", "deployment", "data_group", "model_name",
               "model_version", "arm", "trace_id", "traceparent", "image_key"]
FLOAT_FIELDS = ["prediction_mm", "sensor_mm", "error_mm", "latency_ms"]
texts = st.one_of(st.text(max_size=12), st.text(min_size=195, max_size=210),
                  st.just("with\x00nul"))
floats = st.floats(width=32)
stamps = st.tuples(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**31), 2**31 - 1))


@st.composite
def changes(draw: Any) -> dict[str, Any]:
    """Fields of one observation to overwrite with arbitrary values."""
    out: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(
            ["observation_id", "time", "received_at", "seq", "jpeg", "shadow_predictions",
             *TEXT_FIELDS, *FLOAT_FIELDS]), max_size=4, unique=True)):
        if name == "observation_id":
            out[name] = draw(st.one_of(st.just(""), st.text(max_size=40),
                                       st.builds(lambda: str(uuid.uuid4()))))
        elif name in ("time", "received_at"):
            out[name] = draw(stamps)
        elif name == "seq":
            out[name] = draw(st.integers(0, 2**64 - 1))
        elif name == "jpeg":
            out[name] = draw(st.one_of(st.binary(max_size=300), st.builds(
                lambda body: b"\xff\xd8\xff" + body + b"\xff\xd9", st.binary(max_size=300))))
        elif name == "shadow_predictions":
            out[name] = draw(st.lists(st.tuples(texts, floats), max_size=3))
        elif name in TEXT_FIELDS:
            out[name] = draw(texts)
        else:
            out[name] = draw(floats)
    return out


def apply(obs: observation_pb2.Observation, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if name in ("time", "received_at"):
            getattr(obs, name).seconds, getattr(obs, name).nanos = value
        elif name == "shadow_predictions":
            del obs.shadow_predictions[:]
            for arm, prediction in value:
                obs.shadow_predictions.add(arm=arm, prediction_mm=prediction)
        else:
            setattr(obs, name, value)


def check_batch(address: str, batch: list[observation_pb2.Observation]) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.FeatureStoreServiceStub(channel)
        reply = stub.Ingest(iter([pb.IngestRequest(observations=batch)]),
                            timeout=CALL_DEADLINE_S)
        assert reply.stored + reply.duplicates + len(reply.rejected) == len(batch), reply
        for rejection in reply.rejected:
            assert FIELD_FIRST.match(rejection.reason), rejection.reason
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                           timeout=30)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_arbitrary_batches_are_stored_or_refused_naming_the_field(
        features, make_observation) -> None:
    valid = make_observation(0).jpeg

    @FUZZ
    @given(st.lists(changes(), min_size=1, max_size=4))
    @example([{"time": (2**62, 0)}, {"seq": 2**64 - 1}, {"sensor_mm": float("nan")},
              {"jpeg": b"\xff\xd8\xff\xd9"}])
    @example([{"device_id": "with\x00nul"}])  # refused, and its dead letter must store
    def fuzz(batch_changes: list[dict[str, Any]]) -> None:
        batch = []
        for index, fields in enumerate(batch_changes):
            obs = make_observation(index, jpeg=valid)
            apply(obs, fields)
            batch.append(obs)
        check_batch(features.address, batch)

    await asyncio.to_thread(fuzz)
