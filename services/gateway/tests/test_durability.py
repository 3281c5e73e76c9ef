"""Nothing is lost unsaid: features outages, a full spool and a full disk.

Features is a contract double whose Ingest can be switched to UNAVAILABLE (a features
service that is down). The full disk is a real one: a 1 MiB tmpfs filled up (mounting
needs root, as CI has; elsewhere that test is skipped). A gateway process killed with
SIGKILL and restarted is tested end to end in ``tests/test_data_plane.py`` (a process
start imports TensorFlow, which is slow, so it runs once there) and in the fault suite;
the spool's own kill -9 test is in ``test_spool.py``.
"""

from __future__ import annotations

import asyncio
import errno
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.platform.diskspace import is_low
from edgeloop.platform.gateway_status import GatewayStatus, read_status

Reason = edge_pb2.FrameErrorReason
START_TIMEOUT_S = 300.0
"""Importing TensorFlow takes 10 s on an idle 2-core machine and minutes on a loaded one."""


async def test_features_down_mid_stream_then_back_every_observation_once(
    start_gateway, requests, jpegs
) -> None:
    async with start_gateway() as gw:
        first = await gw.exchange(
            "robot-1",
            "secret-1",
            [
                requests.hello("robot-1"),
                *(requests.frame(s, jpegs[s % 8], 900.0) for s in range(1, 51)),
            ],
        )
        await gw.features.wait_for(50)
        gw.features.available = False
        down = await gw.exchange(
            "robot-1",
            "secret-1",
            [
                requests.hello("robot-1", "session-2"),
                *(requests.frame(s, jpegs[s % 8], 900.0) for s in range(51, 251)),
            ],
        )
        assert all(a.HasField("prediction") for a in down[1:]) and len(down) == 201
        # The forwarder has tried (and was refused) at least once after the last answer.
        calls = gw.features.calls
        await gw.wait_state(lambda: gw.features.calls > calls, timeout_s=60)
        assert len(gw.features.stored) == 50 and gw.app.spool.backlog_bytes > 0
        gw.features.available = True
        await gw.features.wait_for(250)
        answered = {a.prediction.observation_id for a in first[1:] + down[1:]}
        assert set(gw.features.stored) == answered
        assert sorted(o.seq for o in gw.features.stored.values()) == list(range(1, 251))
        await gw.wait_state(lambda: gw.app.spool.backlog_bytes == 0)


async def test_a_full_spool_answers_live_frames_unrecorded_and_refuses_the_rest(
    start_gateway, requests, jpegs
) -> None:
    """The robot keeps its answers while the recording has no room; what has no answer to
    give (a late frame, one the device predicted itself) is refused with SPOOL_FULL."""
    frame_bytes = len(jpegs[0]) + 1024
    async with start_gateway(spool_max_bytes=5 * frame_bytes) as gw:
        gw.features.available = False
        answers = await gw.exchange(
            "robot-1",
            "secret-1",
            [requests.hello("robot-1"), *(requests.frame(s, jpegs[0]) for s in range(1, 21))],
        )
        predictions = [a.prediction for a in answers[1:]]
        assert all(a.HasField("prediction") for a in answers[1:]) and len(predictions) == 20
        assert all(p.HasField("distance_mm") and p.model_version for p in predictions)
        recorded = [p for p in predictions if not p.not_recorded]
        assert 3 <= len(recorded) <= 5, "only what the spool had room for is recorded"
        # room is reserved in the order frames arrive; answers may overtake each other
        assert sorted(p.seq for p in recorded) == list(range(1, len(recorded) + 1))
        assert gw.app.frames.unrecorded.total == 20 - len(recorded)

        late = requests.frame(21, jpegs[1], 400.0, late=True)
        device = requests.frame(22, jpegs[2], 400.0)
        device.frame.device_prediction.CopyFrom(edge_pb2.DevicePrediction(
            distance_mm=410.0, model_name="distance", model_version="1", inference_ms=2.0))
        refused = await gw.exchange("robot-1", "secret-1",
                                    [requests.hello("robot-1", "s2"), late, device])
        for answer in refused[1:]:
            assert answer.error.reason == Reason.FRAME_ERROR_REASON_SPOOL_FULL
            assert answer.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            assert "spool" in answer.error.message and not answer.error.recorded
        assert [a.error.seq for a in refused[1:]] == [21, 22]

        gw.features.available = True
        await gw.features.wait_for(len(recorded))
        await gw.wait_state(lambda: gw.app.spool.backlog_bytes == 0)
        again = await gw.exchange(
            "robot-1", "secret-1", [requests.hello("robot-1", "s3"), requests.frame(1, jpegs[0])]
        )
        assert again[1].HasField("prediction") and not again[1].prediction.not_recorded
        await gw.features.wait_for(len(recorded) + 1)
        assert set(gw.features.stored) == {p.observation_id for p in recorded} | {
            again[1].prediction.observation_id}, "frames answered unrecorded are not recorded"


async def test_the_status_file_tells_a_full_spool_and_its_recovery(
    start_gateway, requests, jpegs
) -> None:
    """What `edgeloop status` and the console show: the backlog, answers without a record,
    features failing, then all clear; and the backlog left behind once the gateway stops."""
    frame_bytes = len(jpegs[0]) + 1024
    async with start_gateway(spool_max_bytes=5 * frame_bytes, status_interval_s=0.05) as gw:
        folder = gw.app.spool.directory
        # a stretch of unrecorded answers ends after QUIET_S without one: long while the
        # test looks at it, none once it waits for its end
        gw.app.frames.unrecorded.QUIET_S = 300.0
        gw.features.available = False
        await gw.exchange("robot-1", "secret-1",
                          [requests.hello("robot-1"), *(requests.frame(s, jpegs[0])
                                                        for s in range(1, 11))])
        unrecorded = gw.app.frames.unrecorded.total
        assert unrecorded >= 5
        full = await _status_when(gw, folder, lambda s: s.answered_not_recorded == unrecorded
                                  and s.forward_failing_since is not None)
        assert full.not_recorded_since is not None and full.forwarded_at is None
        assert 0 < full.backlog_bytes <= full.max_bytes == 5 * frame_bytes
        assert full.gateway_id == "gw-test" and not full.stopped
        # the room on the spool's filesystem, which the console's fleet page shows
        assert full.disk_total_bytes == shutil.disk_usage(folder).total
        assert 0 < full.disk_free_bytes <= full.disk_total_bytes
        (served,) = full.serving  # deployment parking's version, and what runs it
        assert (served.model, served.version) == ("distance", "1")
        # it answered frames: loaded, on TensorFlow or already moved to LiteRT
        assert served.runtime in {"tensorflow", "litert", "litert-quantized"}, served

        gw.features.available = True
        clear = await _status_when(gw, folder, lambda s: s.backlog_bytes == 0
                                   and s.forward_failing_since is None)
        assert clear.forwarded_at >= full.forward_failing_since
        assert clear.not_recorded_since == full.not_recorded_since, "still the same stretch"
        gw.app.frames.unrecorded.QUIET_S = 0.0
        await gw.exchange("robot-1", "secret-1",
                          [requests.hello("robot-1", "s2"), requests.frame(11, jpegs[0])])
        recording = await _status_when(gw, folder, lambda s: s.not_recorded_since is None)
        assert recording.answered_not_recorded == unrecorded
        gw.features.available = False
        await gw.exchange("robot-1", "secret-1",
                          [requests.hello("robot-1", "s3"), requests.frame(12, jpegs[0])])
    final = read_status(folder)
    assert final and final.stopped and final.backlog_bytes > 0, "the frame left for next start"


async def _status_when(gw: Any, folder: Path,
                       wanted: Callable[[GatewayStatus], bool]) -> GatewayStatus:
    """The spool's status once ``wanted`` holds for it."""
    await gw.wait_state(lambda: (status := read_status(folder)) is not None and wanted(status),
                        timeout_s=60)
    status = read_status(folder)
    assert status is not None
    return status


async def test_recorded_names_every_labelled_frame_once_it_is_in_the_spool(
    start_gateway, requests, jpegs
) -> None:
    """A client that asks for ``recorded_acks`` learns which labelled frames it may forget."""
    hello = requests.hello("robot-1")
    hello.hello.capabilities.append("recorded_acks")
    labelled = set(range(1, 31, 2))
    async with start_gateway() as gw:
        gw.features.available = False  # everything stays in the spool, where Recorded points
        answers = await gw.exchange("robot-1", "secret-1", [hello, *(
            requests.frame(s, jpegs[s % 8], 500.0 if s in labelled else None)
            for s in range(1, 31))])
        assert answers[0].welcome.sends_recorded
        order = [(a.WhichOneof("kind"), list(a.recorded.seqs) if a.HasField("recorded")
                  else [a.prediction.seq]) for a in answers[1:]]
        named = [seq for kind, seqs in order if kind == "recorded" for seq in seqs]
        assert sorted(named) == sorted(labelled)
        answered_at = {seqs[0]: i for i, (kind, seqs) in enumerate(order) if kind == "prediction"}
        for i, (kind, seqs) in enumerate(order):
            if kind == "recorded":
                assert all(answered_at[seq] < i for seq in seqs), "Recorded before the answer"
        # What Recorded named is in the spool now; the unlabelled rest (no Recorded for them)
        # may still be in the group commit after the last answer: wait for it.
        spooled = _spooled_seqs(gw.app.spool)
        assert set(named) <= spooled
        for _ in range(300):
            if len(spooled) == 30:
                break
            await asyncio.sleep(0.1)
            spooled = _spooled_seqs(gw.app.spool)
        assert spooled == set(range(1, 31))


def _spooled_seqs(spool: Any) -> set[int]:
    records, _ = spool.read(spool.ack_position, 100)
    return {observation_pb2.Observation.FromString(r).seq for r in records}


async def test_no_recorded_messages_unless_the_client_asks(start_gateway, requests, jpegs) -> None:
    async with start_gateway() as gw:
        answers = await gw.exchange("robot-1", "secret-1", [
            requests.hello("robot-1"), *(requests.frame(s, jpegs[0], 500.0) for s in range(1, 6))])
        assert not answers[0].welcome.sends_recorded
        assert [a.WhichOneof("kind") for a in answers[1:]] == ["prediction"] * 5


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, a disk that can be filled; skipped where mounting is not allowed."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def _fill(folder: Path) -> Path:
    """Write a file until the disk refuses more; returns it."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


async def _read_until(call: Any, done: Any, seen: list) -> None:
    while not done(seen):
        answer = await call.read()
        assert answer is not grpc.aio.EOF, "the stream ended early"
        seen.append(answer)


def _recorded(seen: list) -> set[int]:
    return {seq for a in seen if a.HasField("recorded") for seq in a.recorded.seqs}


async def test_a_full_disk_is_said_frame_by_frame_and_recovers_when_space_returns(
    start_gateway, requests, jpegs, small_disk
) -> None:
    """Frames answered before the gateway noticed are kept until the disk takes them (and
    only then named in Recorded); later live ones are answered, not recorded; late ones get
    SPOOL_FULL; all is well once space returns."""
    hello = requests.hello("robot-1")
    hello.hello.capabilities.append("recorded_acks")
    filler = small_disk / "filler"
    try:
        async with start_gateway(spool_dir=str(small_disk / "spool"),
                                 status_interval_s=0.05, sample_interval_s=0.05) as gw, \
                asyncio.timeout(120):
            await _fill_then_recover(gw, requests, jpegs, hello, small_disk)
    finally:
        filler.unlink(missing_ok=True)  # a failure must not leave the gateway's stop retrying


async def _fill_then_recover(gw: Any, requests: Any, jpegs: list, hello: Any,
                             small_disk: Path) -> None:
    gw.features.available = False
    filler = _fill(small_disk)
    call = gw.open("robot-1", "secret-1")
    await call.write(hello)
    seen: list = [await call.read()]
    # Frames go one at a time until the gateway notices the disk: the next one is answered
    # all the same, marked not recorded.
    seq = 0
    while not any(a.HasField("prediction") and a.prediction.not_recorded for a in seen):
        seq += 1
        await call.write(requests.frame(seq, jpegs[seq % 8], 400.0))
        answer = await call.read()
        assert answer is not grpc.aio.EOF, "the stream ended early"
        seen.append(answer)
    assert not any(a.HasField("error") for a in seen), "every live frame was answered"
    answered = {a.prediction.seq for a in seen
                if a.HasField("prediction") and not a.prediction.not_recorded}
    assert answered and _recorded(seen) == set(), "a frame was called durable on a full disk"
    assert gw.app.spool.write_failed
    # the status file says so although no new file fits on the disk, and that it is low
    await _status_when(gw, gw.app.spool.directory, lambda s: s.disk_refused and s.disk_low)
    # a late frame has no robot waiting for its answer: refused while the disk refuses
    await call.write(requests.frame(seq + 1, jpegs[0], 400.0, late=True))
    refused = await call.read()
    assert refused.error.reason == Reason.FRAME_ERROR_REASON_SPOOL_FULL
    assert not refused.error.recorded and refused.error.seq == seq + 1
    assert refused.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert "spool" in refused.error.message

    filler.unlink()  # space returns: the kept frames are written, then named
    await _read_until(call, lambda got: answered <= _recorded(got), seen)
    assert not gw.app.spool.write_failed
    await call.write(requests.frame(seq + 2, jpegs[0], 400.0))
    await _read_until(call, lambda got: seq + 2 in _recorded(got), seen)
    assert any(a.HasField("prediction") and a.prediction.seq == seq + 2
               and not a.prediction.not_recorded for a in seen)
    await _status_when(gw, gw.app.spool.directory,
                       lambda s: not s.disk_refused and not s.disk_low)
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF

    gw.features.available = True
    await gw.features.wait_for(len(answered) + 1)
    stored = sorted(o.seq for o in gw.features.stored.values())
    assert stored == sorted(answered | {seq + 2}), "unrecorded frames must not be recorded"
    assert seq not in _recorded(seen), "Recorded named a frame answered unrecorded"
    # the samples held over the outage carry the disk: low while it was full, then not
    await gw.wait_state(lambda: not gw.app.sampler.held, timeout_s=60)
    samples = [sample for _, sample in sorted(gw.features.samples.items())]
    disks = [(sample.disk_free_bytes, sample.disk_total_bytes) for sample in samples]
    assert all(total == shutil.disk_usage(small_disk).total for _, total in disks)
    lows = [is_low(free, total) for free, total in disks]
    assert True in lows and not lows[-1], "low while full; the newest, after, is not"
