"""Each device's contact in the status file: streams open, last frame, also while nothing is
recorded (the console would otherwise show a streaming robot offline)."""

from __future__ import annotations

import dataclasses
import logging
import time

import grpc
import pytest
from edgeloop.gateway.contacts import DeviceContacts
from edgeloop.platform.gateway_status import GatewayStatus, read_status
from edgeloop.testing import ManualClock
from grpc import aio


def test_streams_frames_and_forgetting_an_idle_device() -> None:
    clock = ManualClock(1_800_000_000.0)
    t0 = clock.now
    contacts = DeviceContacts(clock, keep_s=3600)
    with contacts.stream("robot-1") as first:
        clock.now += 1
        first.frame(clock.now)
        with contacts.stream("robot-1"):  # a reconnect before the dead stream is noticed
            clock.now += 1
            (record,) = contacts.records()
            assert (record.streams, record.frames, record.disconnected_at) == (2, 1, None)
            assert record.connected_at == t0 + 1, "the newest stream's start"
        (record,) = contacts.records()
        assert record.streams == 1 and record.disconnected_at is None
    clock.now += 1
    with contacts.stream("robot-2"):
        clock.now += 1
    clock.now += 5
    robot_2, robot_1 = contacts.records()
    assert (robot_2.device_id, robot_1.device_id) == ("robot-2", "robot-1"), "most recent first"
    assert robot_1.streams == 0 and robot_1.disconnected_at == robot_1.last_contact == t0 + 2
    assert robot_1.last_frame_at == t0 + 1 and robot_1.frames == 1
    assert robot_2.last_contact == t0 + 4 and robot_2.last_frame_at is None

    clock.now = t0 + 2 + 3601  # robot-1 idle longer than keep_s, robot-2 not yet
    assert [r.device_id for r in contacts.records()] == ["robot-2"]
    assert contacts.frames_received() == 1, "a forgotten device's frames still count"
    clock.now += 2
    with contacts.stream("robot-3"):
        assert [r.device_id for r in contacts.records()] == ["robot-3"]
        clock.now += 7200
        assert [r.device_id for r in contacts.records()] == ["robot-3"], "kept while open"


def test_the_frame_rate_over_each_interval_between_records() -> None:
    clock = ManualClock(1_800_000_000.0)
    contacts = DeviceContacts(clock)
    with contacts.stream("robot-1") as contact:
        for _ in range(8):  # 8 frames in the first 2 s of the stream
            contact.frame(clock.now)
        clock.now += 2
        assert contacts.records()[0].fps == 4.0
        for _ in range(30):
            contact.frame(clock.now)
        clock.now += 3
        assert contacts.records()[0].fps == 10.0
        clock.now += 2
        assert contacts.records()[0].fps == 0.0, "a stream open but idle"


def test_a_devices_clock_offset_from_its_live_frames(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(1_800_000_000.0)
    contacts = DeviceContacts(clock)
    with contacts.stream("robot-1") as contact:
        contact.frame(clock.now)  # no capture time: nothing said about its clock
        assert contacts.records()[0].clock_offset_s is None
        # an hour ahead; each frame takes 5-40 ms to arrive: the quickest one tells
        for delay in (0.04, 0.005, 0.02):
            contact.frame(clock.now, clock.now + 3600 - delay)
        contact.frame(clock.now)  # a late frame (None) does not count
        with caplog.at_level(logging.WARNING, logger="edgeloop.gateway.contacts"):
            (record,) = contacts.records()
            assert record.clock_offset_s == pytest.approx(3600 - 0.005) and record.clock_off
            assert contacts.records()[0].clock_offset_s == record.clock_offset_s, "kept"
        (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert warning.device_id == "robot-1" and "clock off" in warning.getMessage()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="edgeloop.gateway.contacts"):
            contact.frame(clock.now, clock.now - 0.01)  # set by NTP: in step again
            assert contacts.records()[0].clock_offset_s == pytest.approx(-0.01)
        assert [r.getMessage() for r in caplog.records] == ["device clock in step again"]


async def test_the_status_file_says_a_robots_clock_is_an_hour_ahead(
    start_gateway, requests, jpegs, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="edgeloop.gateway.contacts")
    async with start_gateway(status_interval_s=0.05, sample_interval_s=0.05) as gw:
        folder = gw.app.spool.directory
        call = gw.open("robot-1", "secret-1")
        before = time.time()
        await call.write(requests.hello("robot-1"))
        welcome = (await call.read()).welcome
        # the gateway's clock, for a robot that cannot trust its own to stamp frames by
        assert before <= welcome.gateway_time.ToNanoseconds() / 1e9 <= time.time()
        for seq in range(1, 5):
            request = requests.frame(seq, jpegs[0], 500.0)
            request.frame.captured_at.FromSeconds(request.frame.captured_at.seconds + 3600)
            await call.write(request)
            assert (await call.read()).prediction.seq == seq
        # sent again from the robot's buffer: a day old, says nothing about the clock
        late = requests.frame(5, jpegs[0], 500.0, late=True)
        late.frame.captured_at.FromSeconds(late.frame.captured_at.seconds - 86400)
        await call.write(late)

        def robot():  # noqa: ANN202
            status = read_status(folder)
            return next((d for d in status.devices if d.device_id == "robot-1"), None) \
                if status else None

        await gw.wait_state(lambda: (d := robot()) is not None and d.frames == 5, timeout_s=60)
        contact = robot()
        assert contact.clock_off and 3599 < contact.clock_offset_s <= 3600, contact
        # and the samples tell Grafana (features' table, the rule robot_clock_off)
        await gw.wait_state(lambda: any(
            sample.robots_clock_off for sample in gw.features.samples.values()), timeout_s=60)
        off = [sample for sample in gw.features.samples.values() if sample.robots_clock_off]
        assert all(sample.robots_clock_off == 1 and 3599 < sample.worst_clock_offset_s <= 3600
                   for sample in off), off
        await call.done_writing()
        while await call.read() != aio.EOF:  # the late frame's answer, then the end
            pass
    warnings = [r for r in caplog.records if r.name == "edgeloop.gateway.contacts"]
    assert [(r.getMessage().split(":")[0], r.device_id) for r in warnings] == [
        ("device clock off", "robot-1")], "logged once, naming the device"


async def test_a_simulated_clock_is_not_judged(start_gateway, requests, jpegs) -> None:
    """A simulator replaying history stamps its frames hours ago on purpose, and says so."""
    async with start_gateway(status_interval_s=0.05) as gw:
        folder = gw.app.spool.directory
        call = gw.open("robot-1", "secret-1")
        hello = requests.hello("robot-1")
        hello.hello.capabilities.append("simulated_clock")
        await call.write(hello)
        assert (await call.read()).HasField("welcome")
        for seq in range(1, 4):
            request = requests.frame(seq, jpegs[0], 500.0)
            request.frame.captured_at.FromSeconds(request.frame.captured_at.seconds - 7200)
            await call.write(request)
            assert (await call.read()).prediction.seq == seq

        def robot():  # noqa: ANN202
            status = read_status(folder)
            return next((d for d in status.devices if d.device_id == "robot-1"), None) \
                if status else None

        # the record that counts the frames is the one their capture times would be in
        await gw.wait_state(lambda: (d := robot()) is not None and d.frames == 3, timeout_s=60)
        assert robot().clock_offset_s is None
        await call.done_writing()
        assert await call.read() == aio.EOF


SPOOL_FRAMES = 5


async def test_the_status_file_shows_a_device_streaming_while_nothing_is_recorded(
    start_gateway, requests, jpegs
) -> None:
    frame_bytes = len(jpegs[0]) + 1024
    async with start_gateway(spool_max_bytes=SPOOL_FRAMES * frame_bytes,
                             status_interval_s=0.05) as gw:
        folder = gw.app.spool.directory
        gw.features.available = False  # the spool fills: later frames are answered unrecorded
        call = await gw.stream_labelled(requests, jpegs, 12)
        assert gw.app.frames.unrecorded.total >= 12 - SPOOL_FRAMES

        def robot(status):  # noqa: ANN001, ANN202
            return next((d for d in status.devices if d.device_id == "robot-1"), None)

        await gw.wait_state(lambda: (s := read_status(folder)) is not None
                            and (d := robot(s)) is not None and d.frames == 12, timeout_s=60)
        status = read_status(folder)
        contact = robot(status)
        assert status.open_streams() == {"robot-1": 1} and contact.disconnected_at is None
        assert status.recording_state() == "not recording"
        assert contact.last_frame_at >= contact.connected_at and len(gw.features.stored) == 0

        await call.done_writing()
        assert await call.read() == aio.EOF and await call.code() == grpc.StatusCode.OK
        await gw.wait_state(lambda: (s := read_status(folder)) is not None
                            and (d := robot(s)) is not None and d.streams == 0, timeout_s=60)
        left = robot(read_status(folder))
        assert left.frames == 12 and left.disconnected_at >= contact.last_frame_at
        assert read_status(folder).open_streams() == {}
    final = read_status(folder)
    assert final.stopped and final.open_streams() == {} and robot(final).frames == 12


def test_a_restart_takes_over_the_contacts_of_the_process_before() -> None:
    clock = ManualClock(1_800_000_000.0)
    before = DeviceContacts(clock, keep_s=3600)
    with before.stream("left"):
        clock.now += 1
    with before.stream("crashed") as crashed:
        clock.now += 2
        crashed.frame(clock.now)
        clock.now += 3
        (crashed_record, left_record) = before.records()
        status = dataclasses.replace(_status(clock.now), devices=(crashed_record, left_record))
        assert crashed_record.streams == 1
    clock.now += 60  # the process died with "crashed" streaming; its successor starts
    after = DeviceContacts(clock, keep_s=3600)
    assert after.restore(status) == 2
    crashed_now, left_now = after.records()
    assert (crashed_now.device_id, crashed_now.streams) == ("crashed", 0)
    assert crashed_now.disconnected_at == status.written_at, "closed by the crash, after that"
    assert crashed_now.last_frame_at == crashed_record.last_frame_at
    assert crashed_now.frames == 0 and after.frames_received() == 0, "counted from this start"
    assert left_now.disconnected_at == left_record.disconnected_at
    with after.stream("crashed"):  # it reconnects
        assert after.open_streams("crashed") == 1
    clock.now = status.written_at + 3601
    assert [r.device_id for r in after.records()] == ["crashed"], "forgotten as any other"


async def test_a_restarted_gateway_still_lists_the_robots_seen_before(
    start_gateway, requests, jpegs, tmp_path
) -> None:
    async with start_gateway(status_interval_s=0.05) as gw:
        folder = gw.app.spool.directory
        call = await gw.stream_labelled(requests, jpegs, 3)
        await call.done_writing()
        assert await call.read() == aio.EOF
    (seen,) = read_status(folder).devices
    async with start_gateway(status_interval_s=0.05) as gw:
        assert gw.app.spool.directory == folder
        status = read_status(folder)
        assert not status.stopped
        (robot,) = status.devices
        assert (robot.device_id, robot.streams, robot.frames) == ("robot-1", 0, 0)
        assert robot.last_frame_at == seen.last_frame_at
        assert robot.last_contact == seen.last_contact


def _status(at: float) -> GatewayStatus:
    return GatewayStatus(gateway_id="gw", pid=1, written_at=at, stopped=False, backlog_bytes=0,
                         max_bytes=1, disk_refused=False, not_recorded_since=None,
                         answered_not_recorded=0, forwarded_at=None, forward_failing_since=None,
                         interval_s=2.0)
