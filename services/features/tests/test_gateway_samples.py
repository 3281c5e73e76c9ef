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
    ({"disk_free_bytes": 11, "disk_total_bytes": 10}, "samples[1].disk_free_bytes"),
    ({"disk_free_bytes": 11}, "samples[1].disk_free_bytes"),
    ({"robots_clock_off": 4}, "samples[1].robots_clock_off"),  # of 3 streaming
    ({"robots_clock_off": 1, "worst_clock_offset_s": math.inf},
     "samples[1].worst_clock_offset_s"),
])
async def test_a_bad_sample_refuses_the_call_naming_it(stub, database_url, bad, field):
    request = pb.RecordGatewaySamplesRequest(samples=[_sample("gw-a", 0),
                                                      _sample("gw-a", 10, **bad)])
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.RecordGatewaySamples(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in raised.value.details()
    assert _rows(database_url) == []  # the good sample beside it is not stored either


async def test_the_spool_disks_room_is_kept_and_null_where_not_measured(stub, database_url):
    samples = [_sample("gw-a", 0, disk_free_bytes=4 << 30, disk_total_bytes=100 << 30),
               _sample("gw-a", 10)]  # a gateway before the disk fields
    await stub.RecordGatewaySamples(pb.RecordGatewaySamplesRequest(samples=samples), timeout=30)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT disk_free_bytes, disk_total_bytes "
                            "FROM features.gateway_samples ORDER BY time").fetchall()
    assert rows == [(4 << 30, 100 << 30), (None, None)]
    reply = await stub.ListGatewaySamples(_window(START), timeout=30)
    assert [(s.disk_free_bytes, s.disk_total_bytes) for s in reply.samples] == [
        (4 << 30, 100 << 30), (0, 0)]


async def test_the_robots_whose_clock_is_off_are_kept(stub, database_url):
    samples = [_sample("gw-a", 0, robots_streaming=3, robots_clock_off=2,
                       worst_clock_offset_s=-3600.5),
               _sample("gw-a", 10)]  # none off (or a gateway before the fields)
    await stub.RecordGatewaySamples(pb.RecordGatewaySamplesRequest(samples=samples), timeout=30)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT robots_clock_off, worst_clock_offset_s "
                            "FROM features.gateway_samples ORDER BY time").fetchall()
    assert rows == [(2, -3600.5), (0, None)]
    reply = await stub.ListGatewaySamples(_window(START), timeout=30)
    assert [(s.robots_clock_off, s.worst_clock_offset_s) for s in reply.samples] == [
        (2, -3600.5), (0, 0.0)]


async def test_a_sample_without_its_time_is_refused(stub, database_url):
    sample = _sample("gw-a", 0)
    sample.ClearField("sampled_at")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.RecordGatewaySamples(pb.RecordGatewaySamplesRequest(samples=[sample]),
                                        timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "samples[0].sampled_at" in raised.value.details()


def _window(start: datetime, end: datetime | None = None, **fields) -> pb.ListGatewaySamplesRequest:
    request = pb.ListGatewaySamplesRequest(**fields)
    request.start_time.FromDatetime(start)
    if end is not None:
        request.end_time.FromDatetime(end)
    return request


async def test_a_window_of_samples_by_gateway_and_time_thinned_on_request(stub):
    samples = [_sample("gw-b", 10 * i) for i in range(30)]
    samples += [_sample("gw-a", 10 * i + 5, recording=pb.GATEWAY_RECORDING_STATE_DISK_FULL)
                for i in range(30)]
    await stub.RecordGatewaySamples(pb.RecordGatewaySamplesRequest(samples=samples), timeout=30)
    # [60 s, 200 s): gw-a's 65..195 (14 samples), gw-b's 60..190 (14)
    reply = await stub.ListGatewaySamples(
        _window(START + timedelta(seconds=60), START + timedelta(seconds=200)), timeout=30)
    keys = [(s.gateway_id, s.sampled_at.ToSeconds() - int(START.timestamp()))
            for s in reply.samples]
    assert keys == [("gw-a", 65 + 10 * i) for i in range(14)] + [
        ("gw-b", 60 + 10 * i) for i in range(14)]
    first = reply.samples[0]
    assert first.recording == pb.GATEWAY_RECORDING_STATE_DISK_FULL
    assert (first.backlog_bytes, first.max_bytes, first.robots_streaming) == (65_000, 64 << 20, 3)
    assert (first.streams_open, first.frames_per_s) == (4, 12.5)

    thin = await stub.ListGatewaySamples(
        _window(START, gateway_ids=["gw-b"], max_per_gateway=4), timeout=30)
    seconds = [s.sampled_at.ToSeconds() - int(START.timestamp()) for s in thin.samples]
    assert len(seconds) == 4 and seconds[-1] == 290, "evenly spread, the newest kept"
    assert seconds == sorted(seconds) and {s.gateway_id for s in thin.samples} == {"gw-b"}


async def test_a_window_needs_its_start_and_an_end_after_it(stub):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListGatewaySamples(pb.ListGatewaySamplesRequest(), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "start_time" in raised.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListGatewaySamples(_window(START, START), timeout=30)
    assert "end_time" in raised.value.details()
