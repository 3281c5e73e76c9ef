"""The Recorder's group commits on a real spool: observations that find the writer idle wait
for company, and a stop while they wait still commits them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.gateway.observations import Recorder
from edgeloop.gateway.spool import Spool

pytestmark = pytest.mark.asyncio


class CountingSpool(Spool):
    """A real spool that remembers how many records each append carried."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, max_bytes=1 << 24)
        self.appends: list[int] = []

    def append(self, records: list[bytes], reserved: int = 0):  # noqa: ANN201 - as Spool's
        self.appends.append(len(records))
        return super().append(records, reserved)


class HeldRecorder(Recorder):
    """Waits for company until the test says so, not for a time: no race with the clock."""

    def __init__(self, spool: Spool) -> None:
        super().__init__(spool, on_written=lambda: None, commit_wait_s=3600.0)
        self.release = asyncio.Event()

    async def _wait_for_company(self) -> None:
        await self.release.wait()


def observation(number: int) -> observation_pb2.Observation:
    return observation_pb2.Observation(observation_id=f"obs-{number}", jpeg=b"\xff\xd8" * 100)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0)


def stored(spool: Spool) -> list[str]:
    records, _ = spool.read(spool.ack_position, 1000)
    return [observation_pb2.Observation.FromString(r).observation_id for r in records]


async def test_observations_that_arrive_while_one_waits_share_its_commit(tmp_path: Path) -> None:
    spool = CountingSpool(tmp_path)
    recorder = HeldRecorder(spool)
    recorder.start()
    try:
        durable = [recorder.submit(observation(0), 0)]
        await until(lambda: len(recorder._gathering) == 1)  # noqa: SLF001 - the first waits
        for number in range(1, 5):  # each in an event-loop turn of its own
            durable.append(recorder.submit(observation(number), 0))
            await asyncio.sleep(0)
        assert spool.appends == [] and not any(d.done() for d in durable)
        recorder.release.set()
        assert await asyncio.gather(*durable) == [True] * 5
        assert spool.appends == [5]
        assert stored(spool) == [f"obs-{n}" for n in range(5)]
    finally:
        await recorder.stop(5.0)


async def test_a_stop_while_observations_wait_for_company_commits_them(tmp_path: Path) -> None:
    spool = CountingSpool(tmp_path)
    recorder = HeldRecorder(spool)  # never released: only the stop commits
    recorder.start()
    first = recorder.submit(observation(0), 0)
    await until(lambda: len(recorder._gathering) == 1)  # noqa: SLF001
    second = recorder.submit(observation(1), 0)
    await recorder.stop(5.0)
    assert first.result() is True and second.result() is True
    assert stored(spool) == ["obs-0", "obs-1"]


async def test_without_a_wait_each_turn_commits_at_once(tmp_path: Path) -> None:
    spool = CountingSpool(tmp_path)
    recorder = Recorder(spool, on_written=lambda: None)
    recorder.start()
    try:
        for number in range(3):
            assert await recorder.submit(observation(number), 0) is True
        assert spool.appends == [1, 1, 1]
    finally:
        await recorder.stop(5.0)
