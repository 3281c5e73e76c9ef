"""The gateway's samples for dashboards: taken from its status records every interval, held
while features cannot take them (on disk too, over a stop or a crash), sent once it can, the
last one when the gateway stops."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fs_pb2
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as fs_grpc
from edgeloop.gateway.samples import PENDING_FILE, GatewaySampler, Totals, sample_of
from edgeloop.platform.gateway_status import DeviceContact, GatewayStatus
from grpc import aio

from .conftest import FeaturesDouble, _start_double

RECORDING = fs_pb2.GATEWAY_RECORDING_STATE_RECORDING
NOT_RECORDING = fs_pb2.GATEWAY_RECORDING_STATE_NOT_RECORDING
FEATURES_FAILING = fs_pb2.GATEWAY_RECORDING_STATE_FEATURES_FAILING
STOPPED = fs_pb2.GATEWAY_RECORDING_STATE_STOPPED


def _status(at: float, frames: int = 0, not_recorded: int = 0, **fields) -> GatewayStatus:
    return GatewayStatus(**{
        "gateway_id": "gw-1", "pid": 1, "written_at": at, "stopped": False,
        "backlog_bytes": 100, "max_bytes": 1000, "disk_refused": False,
        "not_recorded_since": None, "answered_not_recorded": not_recorded,
        "forwarded_at": None, "forward_failing_since": None, "interval_s": 2.0,
        "frames_received": frames, **fields})


def _contact(device_id: str, streams: int, clock_offset_s: float | None = None
             ) -> DeviceContact:
    return DeviceContact(device_id, streams, 1.0, None if streams else 2.0, 2.0, 10,
                         clock_offset_s=clock_offset_s)


def test_a_sample_counts_robots_and_streams_and_its_rates_since_the_last() -> None:
    devices = (_contact("a", 2), _contact("b", 1), _contact("c", 0))
    status = _status(110.0, frames=1500, not_recorded=40, devices=devices,
                     not_recorded_since=105.0)
    sample = sample_of(status, Totals(100.0, 1000, 10))
    assert (sample.gateway_id, sample.backlog_bytes, sample.max_bytes) == ("gw-1", 100, 1000)
    assert sample.sampled_at.ToNanoseconds() == 110 * 10**9
    assert (sample.robots_streaming, sample.streams_open) == (2, 3)
    assert sample.frames_per_s == pytest.approx(50.0)  # 500 frames in 10 s
    assert sample.not_recorded_per_s == pytest.approx(3.0)
    assert sample.recording == NOT_RECORDING
    assert (sample.disk_free_bytes, sample.disk_total_bytes) == (0, 0)  # not measured
    assert (sample.robots_clock_off, sample.worst_clock_offset_s) == (0, 0.0)


def test_a_sample_counts_the_streaming_robots_whose_clock_is_off() -> None:
    devices = (_contact("in-step", 1, 0.4), _contact("not-measured", 1),
               _contact("ahead", 1, 90.0), _contact("behind", 2, -3600.0),
               _contact("gone-and-off", 0, 7200.0))  # not streaming: not counted
    sample = sample_of(_status(5.0, devices=devices), Totals(0.0, 0, 0))
    assert sample.robots_clock_off == 2
    assert sample.worst_clock_offset_s == pytest.approx(-3600.0), "the furthest off, signed"


def test_a_sample_carries_the_spool_disks_room() -> None:
    status = _status(5.0, disk_free_bytes=3 * 10**9, disk_total_bytes=40 * 10**9)
    sample = sample_of(status, Totals(0.0, 0, 0))
    assert (sample.disk_free_bytes, sample.disk_total_bytes) == (3 * 10**9, 40 * 10**9)


@pytest.mark.parametrize(("fields", "state"), [
    ({}, RECORDING),
    ({"forward_failing_since": 1.0}, FEATURES_FAILING),
    ({"disk_refused": True}, fs_pb2.GATEWAY_RECORDING_STATE_DISK_FULL),
    ({"stopped": True, "not_recorded_since": 1.0}, STOPPED),
])
def test_a_sample_carries_the_records_recording_state(fields, state) -> None:
    assert sample_of(_status(5.0, **fields), Totals(0.0, 0, 0)).recording == state


async def test_a_record_becomes_a_sample_every_interval_and_at_stop() -> None:
    async with aio.insecure_channel("127.0.0.1:9") as channel:  # never called here
        sampler = GatewaySampler(channel, interval_s=10.0, keep=100, started_at=0.0)
        for at in range(2, 31, 2):  # the status file's records, every 2 s
            sampler.offer(_status(float(at), frames=at * 4))
        sampler.offer(_status(31.0, frames=124, stopped=True))
    times = [s.sampled_at.ToSeconds() for s in sampler.held]
    assert times == [10, 20, 30, 31]
    assert [s.frames_per_s for s in sampler.held] == pytest.approx([4.0, 4.0, 4.0, 4.0])
    assert sampler.held[-1].recording == STOPPED


async def test_the_newest_samples_are_kept_when_features_takes_none() -> None:
    async with aio.insecure_channel("127.0.0.1:9") as channel:
        sampler = GatewaySampler(channel, interval_s=1.0, keep=3, started_at=0.0)
        for at in range(1, 6):
            sampler.offer(_status(float(at)))
    assert [s.sampled_at.ToSeconds() for s in sampler.held] == [3, 4, 5]
    assert sampler.dropped == 2


async def test_held_samples_outlive_a_crash_and_go_first_from_the_next_start(
        tmp_path: Path) -> None:
    features = FeaturesDouble()
    features.available = False
    server, address = await _start_double(fs_grpc.add_FeatureStoreServiceServicer_to_server,
                                          features)
    pending = tmp_path / PENDING_FILE
    try:
        async with aio.insecure_channel(address) as channel:
            crashed = GatewaySampler(channel, interval_s=1.0, keep=100, started_at=0.0,
                                     pending=pending)
            for at in (1.0, 2.0, 3.0):
                crashed.offer(_status(at, frames=int(at) * 10))
            assert not await crashed._send_held(1.0)  # features is down: kept on disk too
            assert pending.exists()
            # The process dies here: no stop(), nothing more written.
            features.available = True
            restarted = GatewaySampler(channel, interval_s=1.0, keep=100, started_at=100.0,
                                       pending=pending)
            assert [s.sampled_at.ToSeconds() for s in restarted.held] == [1, 2, 3]
            restarted.offer(_status(101.0))
            restarted.start()
            async with asyncio.timeout(30):
                while len(features.samples) < 4:
                    await asyncio.sleep(0.02)
            await restarted.stop()
    finally:
        await server.stop(0)
    assert sorted(t // 10**9 for _, t in features.samples) == [1, 2, 3, 101]
    assert features.samples[("gw-1", 2 * 10**9)].frames_per_s == pytest.approx(10.0)
    assert not pending.exists(), "all sent: nothing left to keep"


async def test_unreadable_kept_samples_are_dropped_not_fatal(tmp_path: Path) -> None:
    pending = tmp_path / PENDING_FILE
    pending.write_bytes(b"\xff\xff not a protobuf")
    async with aio.insecure_channel("127.0.0.1:9") as channel:  # never called here
        assert list(GatewaySampler(channel, 1.0, 10, 0.0, pending=pending).held) == []


SPOOL_FRAMES = 5


async def test_samples_wait_while_features_is_down_and_show_the_outage_afterwards(
    start_gateway, requests, jpegs
) -> None:
    frame_bytes = len(jpegs[0]) + 1024
    async with start_gateway(spool_max_bytes=SPOOL_FRAMES * frame_bytes,
                             status_interval_s=0.05, sample_interval_s=0.1) as gw:
        sampler, features = gw.app.sampler, gw.features
        await gw.wait_state(lambda: features.samples, timeout_s=60)  # features takes them
        features.available = False  # the spool fills: later frames are answered unrecorded
        call = await gw.stream_labelled(requests, jpegs, 12)
        await gw.wait_state(lambda: any(s.recording == NOT_RECORDING for s in sampler.held),
                            timeout_s=60)
        assert not any(s.recording == NOT_RECORDING for s in features.samples.values())

        features.available = True  # the samples of the outage arrive
        await gw.wait_state(lambda: not sampler.held and any(
            s.recording == NOT_RECORDING for s in features.samples.values()), timeout_s=60)
        outage = [s for s in features.samples.values() if s.recording == NOT_RECORDING]
        assert all((s.robots_streaming, s.streams_open) == (1, 1) for s in outage)
        assert any(s.not_recorded_per_s > 0 for s in outage)
        await call.done_writing()
        assert await call.read() == aio.EOF
    samples = sorted(features.samples.values(), key=lambda s: s.sampled_at.ToNanoseconds())
    last = samples[-1]
    assert last.recording == STOPPED and (last.robots_streaming, last.streams_open) == (0, 0)
    assert not sampler.held and sampler.dropped == 0
    # Each sample's rate is over the time since the one before: together, every frame.
    previous = sampler.started_at
    frames = 0.0
    for sample in samples:
        at = sample.sampled_at.ToNanoseconds() / 1e9
        frames += sample.frames_per_s * (at - previous)
        previous = at
    assert frames == pytest.approx(12, abs=1e-3)


async def test_a_gateway_stopped_during_an_outage_leaves_its_samples_to_the_next(
    start_gateway, tmp_path
) -> None:
    down = FeaturesDouble()
    down.available = False
    async with start_gateway(features=down, status_interval_s=0.05,
                             sample_interval_s=0.1) as gw:
        await gw.wait_state(lambda: len(gw.app.sampler.held) >= 3, timeout_s=60)
    kept = tmp_path / "spool" / PENDING_FILE
    assert kept.exists() and down.samples == {}
    times = {s.sampled_at.ToNanoseconds() for s in fs_pb2.RecordGatewaySamplesRequest
             .FromString(kept.read_bytes()).samples}
    assert len(times) >= 4, "the samples of the outage and the last one, stopped"
    async with start_gateway(status_interval_s=0.05, sample_interval_s=0.1) as gw:
        await gw.wait_state(lambda: times <= {t for _, t in gw.features.samples}, timeout_s=60)
        stopped = [s for s in gw.features.samples.values() if s.recording == STOPPED]
        assert len(stopped) == 1, "the first gateway's last sample"
    assert not kept.exists()


async def test_no_samples_when_the_interval_is_zero(start_gateway, requests, jpegs) -> None:
    async with start_gateway(status_interval_s=0.05, sample_interval_s=0) as gw:
        assert gw.app.sampler is None
        call = gw.open("robot-1", "secret-1")
        await call.write(requests.hello("robot-1"))
        assert (await call.read()).HasField("welcome")
        await call.write(requests.frame(1, jpegs[0], 500.0))
        assert (await call.read()).prediction.seq == 1
        await gw.features.wait_for(1)
        await call.done_writing()
    assert gw.features.samples == {}
