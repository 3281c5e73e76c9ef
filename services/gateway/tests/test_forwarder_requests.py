"""The forwarder builds Ingest requests from spooled bytes without parsing them."""

from __future__ import annotations

from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fs_pb2
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.gateway.forwarder import MESSAGE_OBSERVATIONS, _requests
from hypothesis import given, settings
from hypothesis import strategies as st

observations = st.builds(
    observation_pb2.Observation,
    observation_id=st.uuids().map(str), device_id=st.text(max_size=40),
    seq=st.integers(0, 2**63 - 1), jpeg=st.binary(max_size=300_000),
    sensor_mm=st.floats(0, 2000), latency_ms=st.floats(0, 1e4))


@settings(max_examples=60, deadline=None)
@given(st.lists(observations, max_size=2 * MESSAGE_OBSERVATIONS + 3))
def test_requests_are_the_messages_the_observations_serialize_to(
        spooled: list[observation_pb2.Observation]) -> None:
    records = [o.SerializeToString() for o in spooled]
    messages = _requests(records)
    expected = [fs_pb2.IngestRequest(observations=spooled[i:i + MESSAGE_OBSERVATIONS])
                for i in range(0, len(spooled), MESSAGE_OBSERVATIONS)]
    assert messages == [m.SerializeToString() for m in expected]
    assert [fs_pb2.IngestRequest.FromString(m) for m in messages] == expected
