"""The stream client against an in-test gateway (grpc.aio on loopback) that we stop and restart."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import pytest
from edgeloop.edge_client.stream.backoff import Backoff
from edgeloop.edge_client.stream.buffer import OfflineBuffer
from edgeloop.edge_client.stream.client import (
    StreamClient,
    StreamClosed,
    StreamConfig,
    refused_retry_delay,
)

JPEG = b"\xff\xd8 not decoded by the fake gateway \xff\xd9"
# Short backoff keeps reconnections quick; the Welcome and ack deadlines stay generous so a
# loaded machine's slow answer is never taken for a stuck gateway (that has its own test).
FAST = StreamConfig(connect_timeout_s=30.0, ack_timeout_s=30.0, backoff_initial_s=0.05,
                    backoff_max_s=0.3)


def make_client(gateway, tmp_path: Path, **kwargs) -> StreamClient:  # noqa: ANN001
    buffer = kwargs.pop("buffer", None) or OfflineBuffer(tmp_path / "buffer.db")
    return StreamClient(gateway.address, gateway.device, kwargs.pop("token", gateway.token),
                        buffer, config=kwargs.pop("config", FAST), **kwargs)


async def _recorded(gateway, client: StreamClient, seqs: list[int],  # noqa: ANN001
                    timeout_s: float = 30.0) -> None:
    """Wait until the gateway has recorded ``seqs`` of the client's session (or time is up)."""
    async with asyncio.timeout(timeout_s):
        while gateway.state.recorded_seqs(client.session_id) != set(seqs):
            await asyncio.sleep(0.05)


async def test_predictions_are_matched_to_frames_by_seq(gateway, tmp_path: Path) -> None:
    client = make_client(gateway, tmp_path)
    await client.start()
    assert await client.wait_connected(30)
    seqs = [client.send(JPEG, 100.0 + i) for i in range(20)]
    results = await client.results_for(seqs, timeout=30)
    await client.close()

    assert seqs == list(range(1, 21))
    assert sorted(results) == seqs
    for i, seq in enumerate(seqs):
        assert results[seq].distance_mm == pytest.approx(100.0 + i + gateway.offset_mm)
        assert not results[seq].late
    assert client.welcome is not None and client.welcome.deployment == "test"
    hello = gateway.state.hellos[0]
    assert hello.device_id == gateway.device and hello.session_id == client.session_id
    p50, p99 = client.stats.rtt_percentiles()
    assert p50 is not None and p99 is not None and 0 < p50 <= p99


async def test_frame_errors_end_only_that_frame(gateway, tmp_path: Path) -> None:
    gateway.state.refuse_seqs = {2}
    client = make_client(gateway, tmp_path)
    await client.start()
    assert await client.wait_connected(30)
    seqs = [client.send(JPEG, 50.0) for _ in range(3)]
    results = await client.results_for(seqs, timeout=30)
    await client.close()
    assert results[2].error is not None and "jpeg" in results[2].error.message
    assert results[1].distance_mm is not None and results[3].distance_mm is not None


async def test_restart_loses_no_labelled_frame_and_delivers_each_once(
        gateway, tmp_path: Path, wait_until) -> None:  # noqa: ANN001
    client = make_client(gateway, tmp_path)
    await client.start()
    assert await client.wait_connected(30)
    labelled: list[int] = []
    unlabelled_offline: list[int] = []

    for i in range(30):
        labelled.append(client.send(JPEG, 200.0 - i))
        await asyncio.sleep(0.002)
    await gateway.stop(grace=None)
    await wait_until(lambda: not client.connected)
    # Answers the client holds now must never be sent again. (An answer the gateway wrote
    # just as it stopped may never arrive: resending that frame is right, and whether it
    # happens is a race with the stop, so the gateway's own count cannot be the check.)
    answered_before = {seq for seq, result in client.results.items()
                       if result.prediction is not None}
    offline = [client.send(JPEG, 150.0 - i) for i in range(25)]
    labelled += offline
    unlabelled_offline += [client.send(JPEG, None) for _ in range(5)]
    assert client.buffer.count(client.session_id) >= 25

    await gateway.start()
    assert await client.wait_connected(30)
    for i in range(30):
        labelled.append(client.send(JPEG, 100.0 - i))
        await asyncio.sleep(0.002)
    await client.close(drain_timeout_s=60)

    state = gateway.state
    assert state.labelled_seqs(client.session_id) == set(labelled)
    sends = Counter(r.seq for r in state.received if r.session == client.session_id)
    assert [seq for seq in answered_before if sends[seq] > 1] == [], \
        "a frame whose answer the client held was sent again"
    assert {seq for seq in labelled if client.results.get(seq) and
            client.results[seq].prediction is not None} == set(labelled)
    late = {r.seq for r in state.received if r.late}
    assert set(offline) <= late
    assert all(client.results[s].dropped for s in unlabelled_offline)
    assert client.stats.reconnects >= 1
    assert client.buffer.count() == 0


async def test_frames_unanswered_at_a_crash_are_resent_with_the_same_seq(
        gateway, tmp_path: Path) -> None:  # noqa: ANN001
    gateway.state.crash_on_seqs = {5}
    client = make_client(gateway, tmp_path)
    await client.start()
    seqs = [client.send(JPEG, 120.0) for _ in range(10)]
    results = await client.results_for(seqs, timeout=30)
    await client.close()

    assert sorted(results) == seqs
    received_5 = [r for r in gateway.state.received if r.seq == 5]
    assert len(received_5) == 2 and received_5[1].late
    assert gateway.state.resent_after_answer == 0
    assert results[5].late and results[5].prediction is not None


async def test_answered_frames_the_gateway_never_recorded_go_again(
        gateway, tmp_path: Path, wait_until) -> None:  # noqa: ANN001
    """A gateway killed after answering, before its spool commit (issue 16's fault suite)."""
    gateway.state.never_record = {4, 5}
    client = make_client(gateway, tmp_path)
    await client.start()
    assert await client.wait_connected(30)
    seqs = [client.send(JPEG, 80.0) for _ in range(6)]
    # Every frame is answered; the four recorded ones are done, the other two are kept.
    await wait_until(lambda: set(seqs) <= set(client.results) and client.pending_labelled() == 2)
    assert client.results[4].prediction is not None and client.results[5].prediction is not None

    await gateway.stop(grace=None)
    gateway.state.never_record = set()
    await gateway.start()
    await client.close(drain_timeout_s=60)

    sends = Counter(r.seq for r in gateway.state.received)
    assert sends[4] == sends[5] == 2
    assert [r.late for r in gateway.state.received if r.seq in (4, 5)] == [False, False, True,
                                                                          True]
    assert all(sends[seq] == 1 for seq in (1, 2, 3, 6)), sends
    assert gateway.state.recorded_seqs(client.session_id) == set(seqs)
    assert client.buffer.count() == 0


async def test_a_gateway_without_recorded_messages_settles_frames_at_their_answer(
        gateway, tmp_path: Path) -> None:  # noqa: ANN001
    gateway.state.sends_recorded = False
    client = make_client(gateway, tmp_path)
    await client.start()
    assert await client.wait_connected(30)
    seqs = [client.send(JPEG, 80.0) for _ in range(5)]
    results = await client.results_for(seqs, timeout=30)
    assert sorted(results) == seqs and client.pending_labelled() == 0
    await client.close()
    assert not client.welcome.sends_recorded
    assert "recorded_acks" in gateway.state.hellos[0].capabilities


async def test_labelled_frames_the_gateway_could_not_record_go_again(
        gateway, tmp_path: Path) -> None:  # noqa: ANN001
    gateway.state.spool_full_once = {3, 4}
    client = make_client(gateway, tmp_path, config=StreamConfig(refused_retry_s=0.2,
                                                                backoff_initial_s=0.05))
    await client.start()
    assert await client.wait_connected(30)
    seqs = [client.send(JPEG, 70.0) for _ in range(6)]
    unlabelled = client.send(JPEG, None)
    results = await client.results_for(seqs, timeout=30)
    await client.close()

    assert sorted(results) == seqs
    assert all(results[s].prediction is not None for s in seqs)
    assert results[3].late and results[4].late and not results[1].late
    assert [r.seq for r in gateway.state.received].count(3) == 2
    assert gateway.state.resent_after_answer == 0
    assert client.stats.refused == 2 and client.stats.reconnects >= 1
    assert unlabelled in client.results


async def test_frames_answered_but_not_recorded_steer_now_and_labelled_ones_go_again(
        gateway, tmp_path: Path) -> None:  # noqa: ANN001
    gateway.state.not_recorded_once = {3, 4, 7}
    client = make_client(gateway, tmp_path, config=StreamConfig(refused_retry_s=0.2,
                                                                backoff_initial_s=0.05))
    await client.start()
    assert await client.wait_connected(30)
    seqs = [client.send(JPEG, 70.0) for _ in range(6)]
    unlabelled = client.send(JPEG, None)  # seq 7
    await client.results_for([*seqs, unlabelled], timeout=30)
    await _recorded(gateway, client, seqs)  # the two labelled ones go again, late
    await client.close()

    assert gateway.state.recorded_seqs(client.session_id) == set(seqs)
    received = [(r.seq, r.late) for r in gateway.state.received]
    assert received.count((3, False)) == received.count((3, True)) == 1
    assert received.count((4, True)) == 1 and (7, True) not in received
    # every frame was answered live, the unrecorded ones too: the robot steered by them
    assert len(client.stats.rtts_ms) == 7
    assert client.stats.unrecorded == 2 and client.stats.refused == 0
    assert client.pending_labelled() == 0 and client.buffer.count() == 0


def test_the_wait_to_resend_unrecorded_frames_doubles_up_to_its_cap() -> None:
    config = StreamConfig(refused_retry_s=1.0, refused_retry_max_s=30.0)
    assert [refused_retry_delay(config, n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert refused_retry_delay(config, 10_000) == 30.0


async def test_a_gateway_that_stays_full_is_asked_again_less_and_less_often(
        gateway, tmp_path: Path) -> None:  # noqa: ANN001
    gateway.state.spool_full_times = {3: 4}  # the live frame and its first three late copies
    config = StreamConfig(refused_retry_s=0.1, refused_retry_max_s=0.3,
                          backoff_initial_s=0.05, connect_timeout_s=30.0, ack_timeout_s=30.0)
    client = make_client(gateway, tmp_path, config=config)
    await client.start()
    assert await client.wait_connected(30)
    seqs = [client.send(JPEG, 70.0) for _ in range(4)]
    await client.results_for(seqs, timeout=30)
    await _recorded(gateway, client, seqs)
    await client.close()

    assert gateway.state.recorded_seqs(client.session_id) == set(seqs)
    copies = [r for r in gateway.state.received if r.seq == 3]
    assert [r.late for r in copies] == [False, True, True, True, True]
    # each reopen waited at least the doubled delay (0.1, 0.2, then the cap 0.3, 0.3)
    gaps = [b.at - a.at for a, b in zip(copies, copies[1:], strict=False)]
    assert all(gap >= wait for gap, wait in zip(gaps, [0.1, 0.2, 0.3, 0.3], strict=True)), gaps
    assert client._state.refused_cycles == 0, "recorded again: the next refusal waits 0.1 s"


async def test_labelled_frames_over_the_rate_limit_go_again_late(
        gateway, tmp_path: Path) -> None:  # noqa: ANN001
    gateway.state.rate_limited_live = {2, 5, 6}
    client = make_client(gateway, tmp_path, config=StreamConfig(refused_retry_s=0.2,
                                                                backoff_initial_s=0.05))
    await client.start()
    assert await client.wait_connected(30)
    seqs = [client.send(JPEG, 70.0) for _ in range(4)]
    unlabelled = [client.send(JPEG, None) for _ in range(2)]  # seqs 5, 6
    results = await client.results_for(seqs, timeout=30)
    await client.close()

    assert all(results[s].prediction is not None for s in seqs)
    assert results[2].late and not results[1].late
    assert [(r.seq, r.late) for r in gateway.state.received].count((2, True)) == 1
    # An unlabelled frame has nothing to learn from: its refusal ends it.
    assert all(client.results[s].error is not None for s in unlabelled)
    assert not any(r.late for r in gateway.state.received if r.seq in unlabelled)
    assert client.stats.refused == 1


async def test_a_stuck_gateway_is_abandoned_after_the_ack_timeout(
        gateway, tmp_path: Path, wait_until) -> None:  # noqa: ANN001
    gateway.state.silent = True
    client = make_client(gateway, tmp_path, config=StreamConfig(
        ack_timeout_s=0.4, backoff_initial_s=0.05, backoff_max_s=0.1))
    await client.start()
    seq = client.send(JPEG, 80.0)
    await wait_until(lambda: client.stats.reconnects >= 1, timeout=30)
    gateway.state.silent = False
    result = await client.result(seq, timeout=30)
    await client.close()
    assert result is not None and result.late and result.distance_mm == pytest.approx(90.0)


async def test_bad_token_ends_the_session(gateway, tmp_path: Path) -> None:
    client = make_client(gateway, tmp_path, token="wrong")
    await client.start()
    seq = client.send(JPEG, 10.0)
    with pytest.raises(StreamClosed, match="UNAUTHENTICATED"):
        await client.close(drain_timeout_s=30)
    assert client.stats.reconnects == 0
    assert (client.session_id, seq) in client.buffer, "the labelled frame stays on disk"


async def test_a_resumed_session_delivers_what_an_earlier_process_left(
        gateway, tmp_path: Path) -> None:  # noqa: ANN001
    await gateway.stop()
    first = make_client(gateway, tmp_path)
    await first.start()
    left = [first.send(JPEG, 60.0 + i) for i in range(4)]
    await first.close(drain_timeout_s=0.3)
    first.buffer.close()

    await gateway.start()
    second = make_client(gateway, tmp_path, session_id=first.session_id)
    await second.start()
    new = second.send(JPEG, 40.0)
    await second.close(drain_timeout_s=60)
    assert new == max(left) + 1
    assert gateway.state.labelled_seqs(first.session_id) == {*left, new}
    assert second.buffer.count() == 0


def test_offline_buffer_is_bounded_and_evicts_the_oldest(tmp_path: Path) -> None:
    from edgeloop.contracts.edge.v1 import edge_pb2

    buffer = OfflineBuffer(tmp_path / "b.db", max_frames=5)
    evicted = sum(buffer.put("s", edge_pb2.Frame(seq=i, jpeg=b"x", sensor_mm=1.0))
                  for i in range(1, 9))
    assert evicted == 3
    assert buffer.seqs("s") == [4, 5, 6, 7, 8]
    buffer.close()
    reopened = OfflineBuffer(tmp_path / "b.db", max_frames=5)
    assert reopened.seqs("s") == [4, 5, 6, 7, 8] and reopened.max_seq("s") == 8


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=0.1, maximum_s=1.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [min(1.0, 0.1 * 2**i) for i in range(8)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays), "jitter makes every delay different"
    backoff.reset()
    assert backoff.next_delay() <= 0.1


class _CallCancellingItsFirstFrameWrite:
    """A real call whose first frame write fails as grpc.aio fails it when the write breaks
    under it: the call cancels itself and the write raises CancelledError."""

    def __init__(self, call, broken: list[bool]) -> None:  # noqa: ANN001
        self._call, self._broken = call, broken

    async def write(self, request) -> None:  # noqa: ANN001
        if request.WhichOneof("kind") == "frame" and not self._broken:
            self._broken.append(True)
            self._call.cancel()
            raise asyncio.CancelledError
        await self._call.write(request)

    def __getattr__(self, name: str):  # noqa: ANN204 - read, done_writing, cancel, ...
        return getattr(self._call, name)


async def test_a_call_grpc_cancels_under_a_write_is_a_lost_stream_not_the_end(
        gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2_grpc as gw_grpc
    from edgeloop.edge_client.stream import client as client_module

    broken: list[bool] = []

    class Stub(gw_grpc.EdgeGatewayServiceStub):
        def __init__(self, channel) -> None:  # noqa: ANN001
            super().__init__(channel)
            stream = self.Stream
            self.Stream = lambda **kw: _CallCancellingItsFirstFrameWrite(stream(**kw), broken)

    monkeypatch.setattr(client_module.gw_grpc, "EdgeGatewayServiceStub", Stub)
    client = make_client(gateway, tmp_path)
    await client.start()
    seq = client.send(JPEG, 70.0)
    result = await client.result(seq, timeout=30)
    await client.close()
    assert broken == [True]
    assert result is not None and result.distance_mm == pytest.approx(70.0 + gateway.offset_mm)
    assert client.stats.reconnects >= 1
