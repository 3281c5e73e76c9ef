"""RecordGatewaySamples over gRPC: gateways' samples stored once each, bad ones refused."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
import pytest
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb

# Both database branches (plain PostgreSQL, TimescaleDB): see edgeloop.testing.fixtures.
pytestmark = pytest.mark.db_branches()

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _sample(gateway: str, second: int, **fields) -> pb.GatewaySample:
    sample = pb.GatewaySample(**{
        "gateway_id": gateway, "backlog_bytes": 1000 * second, "max_bytes": 64 << 20,
        "recording": pb.GATEWAY_RECORDING_STATE_RECORDING, "robots_streaming": 3,
        "streams_open": 4, "frames_per_s": 12.5, **fields})
    sample.sampled_at.FromDatetime(START + timedelta(seconds=second))
    return sample


def _rows(database_url: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT gateway_id, extract(epoch FROM time - %s)::int, backlog_bytes, max_bytes, "
            "recording, robots_streaming, streams_open, frames_per_s, not_recorded_per_s "
            "FROM features.gateway_samples ORDER BY gateway_id, time", (START,)).fetchall()


async def test_samples_are_stored_and_a_batch_sent_again_is_stored_once(stub, database_url):
    first = [_sample("gw-a", 0), _sample("gw-a", 10, not_recorded_per_s=2.5,
                                         recording=pb.GATEWAY_RECORDING_STATE_NOT_RECORDING),
             _sample("gw-b", 10, recording=pb.GATEWAY_RECORDING_STATE_STOPPED,
                     robots_streaming=0, streams_open=0, frames_per_s=0.0)]
    reply = await stub.RecordGatewaySamples(pb.RecordGatewaySamplesRequest(samples=first),
                                            timeout=30)
    assert reply.stored == 3
    # The reply was lost: the gateway sends the batch again, with a newer sample.
    again = pb.RecordGatewaySamplesRequest(samples=[*first, _sample("gw-a", 20)])
    reply = await stub.RecordGatewaySamples(again, timeout=30)
    assert reply.stored == 1
    assert _rows(database_url) == [
        ("gw-a", 0, 0, 64 << 20, "recording", 3, 4, 12.5, 0.0),
        ("gw-a", 10, 10_000, 64 << 20, "not recording", 3, 4, 12.5, 2.5),
        ("gw-a", 20, 20_000, 64 << 20, "recording", 3, 4, 12.5, 0.0),
        ("gw-b", 10, 10_000, 64 << 20, "stopped", 0, 0, 0.0, 0.0),
    ]


async def test_an_empty_call_stores_nothing(stub, database_url):
    reply = await stub.RecordGatewaySamples(pb.RecordGatewaySamplesRequest(), timeout=30)
    assert reply.stored == 0
    assert _rows(database_url) == []


@pytest.mark.parametrize(("bad", "field"), [
    ({"gateway_id": ""}, "samples[1].gateway_id"),
    ({"recording": pb.GATEWAY_RECORDING_STATE_UNSPECIFIED}, "samples[1].recording"),
    ({"frames_per_s": math.nan}, "samples[1].frames_per_s"),
    ({"not_recorded_per_s": -1.0}, "samples[1].not_recorded_per_s"),
])
async def test_a_bad_sample_refuses_the_call_naming_it(stub, database_url, bad, field):
    request = pb.RecordGatewaySamplesRequest(samples=[_sample("gw-a", 0),
                                                      _sample("gw-a", 10, **bad)])
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.RecordGatewaySamples(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in raised.value.details()
    assert _rows(database_url) == []  # the good sample beside it is not stored either


async def test_a_sample_without_its_time_is_refused(stub, database_url):
    sample = _sample("gw-a", 0)
    sample.ClearField("sampled_at")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.RecordGatewaySamples(pb.RecordGatewaySamplesRequest(samples=[sample]),
                                        timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "samples[0].sampled_at" in raised.value.details()
