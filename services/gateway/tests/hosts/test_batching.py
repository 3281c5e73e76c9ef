"""MicroBatcher over a real EmbeddedHost: gathering, routing of results, wait bound, isolation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio
from edgeloop.gateway.hosts import ModelHost, ModelKey, ModelUnavailable
from edgeloop.gateway.hosts.batching import BatchingConfig, MicroBatcher
from edgeloop.gateway.hosts.embedded import EmbeddedHost
from edgeloop.gateway.hosts.served import ServedFrames


class RecordingHost(ModelHost):
    """Delegates to a real host and records the shape of every batch it is given."""

    def __init__(self, inner: ModelHost) -> None:
        self.inner = inner
        self.batches: list[tuple[ModelKey, tuple[int, ...]]] = []
        self.released: list[ModelKey] = []

    async def ensure_loaded(self, key: ModelKey) -> None:
        await self.inner.ensure_loaded(key)

    async def predict(self, key: ModelKey, images: np.ndarray) -> np.ndarray:
        self.batches.append((key, images.shape))
        return await self.inner.predict(key, images)

    async def release(self, key: ModelKey) -> None:
        self.released.append(key)
        await self.inner.release(key)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def embedded(keys) -> AsyncIterator[EmbeddedHost]:
    host = EmbeddedHost()
    yield host
    await host.close()


@pytest_asyncio.fixture(loop_scope="module")
async def recording(embedded: EmbeddedHost, keys) -> RecordingHost:
    for key in keys.values():
        await embedded.ensure_loaded(key)
    return RecordingHost(embedded)


def batcher(host: ModelHost, size: int = 8, wait_ms: float = 20.0,
            when_idle: bool = True) -> MicroBatcher:
    return MicroBatcher(host, BatchingConfig(max_batch_size=size, max_wait_ms=wait_ms,
                                             dispatch_when_idle=when_idle))


pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_concurrent_calls_are_gathered_and_answers_routed(recording, keys, make_images,
                                                                direct_model) -> None:
    batching = batcher(recording, size=8, wait_ms=20)
    images = make_images(40, seed=7)
    got = await asyncio.gather(*(batching.predict_one(keys["1"], img) for img in images))

    np.testing.assert_allclose(got, direct_model("1", images), rtol=1e-5)
    sizes = [shape[0] for _, shape in recording.batches]
    assert sum(sizes) == 40 and max(sizes) <= 8
    assert max(sizes) > 1
    stats = batching.stats()
    assert stats.batches == len(sizes) and stats.images == 40
    assert stats.mean_batch_size == pytest.approx(40 / len(sizes)) and stats.mean_batch_size > 1


async def test_batches_never_mix_versions_or_shapes(recording, keys, make_images,
                                                    which_version) -> None:
    batching = batcher(recording, size=16, wait_ms=20)
    calls = [(keys[v], make_images(1, h, w, seed=i)[0])
             for i, (v, (h, w)) in enumerate([(v, s) for v in ("1", "2")
                                              for s in ((240, 320), (120, 160))] * 5)]
    got = await asyncio.gather(*(batching.predict_one(key, img) for key, img in calls))

    assert [which_version(d) for d in got] == [key.version for key, _ in calls]
    assert {(key.version, shape[1:3]) for key, shape in recording.batches} == \
        {("1", (240, 320)), ("1", (120, 160)), ("2", (240, 320)), ("2", (120, 160))}
    assert len(recording.batches) == 4  # 5 frames per (version, shape), all gathered


async def test_the_first_frame_of_each_batch_is_kept_for_checks(recording, keys,
                                                              make_images) -> None:
    served = ServedFrames(kept=2)
    batching = MicroBatcher(recording, BatchingConfig(max_batch_size=1), served=served)
    frames = make_images(3, seed=5)
    assert served.check_frames(240, 320)[1] == "synthetic"  # nothing served yet
    for frame in frames:
        await batching.predict_one(keys["1"], frame)
    kept, kind = served.check_frames(240, 320)
    assert kind == "served"
    np.testing.assert_array_equal(kept, frames[1:])  # the last two batches' frames


async def test_lone_frame_waits_at_most_max_wait(recording, keys, make_images) -> None:
    batching = batcher(recording, size=8, wait_ms=50, when_idle=False)
    loop = asyncio.get_running_loop()
    started, fired = loop.time(), []
    loop.call_later(0.05, lambda: fired.append(loop.time()))  # a twin of the batch's timer
    result = await batching.predict_batched(keys["1"], make_images(1)[0])
    assert result.batch_size == 1
    # The batch leaves when the timer fires: not before max_wait, and not much after it.
    # "After" counts from when the loop actually ran its timers: a loaded machine can run
    # them late, and that lateness is the scheduler's, not the batcher's.
    lateness = fired[0] - started - 0.05
    assert 0.045 <= result.batch_wait_s < 0.5 + lateness


async def test_idle_model_takes_a_lone_frame_at_once(recording, keys, make_images) -> None:
    batching = batcher(recording, size=8, wait_ms=60_000)
    result = await asyncio.wait_for(batching.predict_batched(keys["1"], make_images(1)[0]), 30)
    assert result.batch_size == 1 and result.batch_wait_s < 30


async def test_frames_gather_while_the_model_is_busy(recording, keys, make_images) -> None:
    """With one slot, frames arriving during a batch leave together when the slot frees."""
    batching = MicroBatcher(recording, BatchingConfig(max_batch_size=16, max_wait_ms=60_000,
                                                      max_concurrent_batches=1))
    first = asyncio.create_task(batching.predict_batched(keys["1"], make_images(1)[0]))
    await asyncio.sleep(0)  # the first frame's batch is scheduled: the only slot is taken
    rest = [asyncio.create_task(batching.predict_batched(keys["1"], img))
            for img in make_images(5, seed=4)]
    results = await asyncio.wait_for(asyncio.gather(first, *rest), 30)
    # Not held for the 60 s timer: the freed slot sent the five waiting frames as one batch.
    assert [r.batch_size for r in results] == [1, 5, 5, 5, 5, 5]


async def test_full_batch_leaves_without_waiting(recording, keys, make_images) -> None:
    batching = batcher(recording, size=4, wait_ms=60_000)
    results = await asyncio.wait_for(asyncio.gather(
        *(batching.predict_batched(keys["1"], img) for img in make_images(4))), timeout=30)
    assert [r.batch_size for r in results] == [4, 4, 4, 4]
    assert all(r.batch_wait_s < 30 for r in results)


async def test_failing_batch_fails_only_its_callers(recording, keys, make_images,
                                                    which_version) -> None:
    batching = batcher(recording, size=8, wait_ms=20)
    unloaded = ModelKey("parking", "7", path="/nonexistent")
    good = [batching.predict_one(keys["2"], img) for img in make_images(6, seed=1)]
    bad = [batching.predict_one(unloaded, img) for img in make_images(6, seed=2)]
    results = await asyncio.gather(*good, *bad, return_exceptions=True)

    assert [which_version(r) for r in results[:6]] == ["2"] * 6
    assert all(isinstance(r, ModelUnavailable) for r in results[6:])
    assert batching.stats().failed_batches >= 1


async def test_release_lets_queued_frames_finish_then_refuses(recording, keys,
                                                              make_images) -> None:
    batching = batcher(recording, size=64, wait_ms=100, when_idle=False)
    queued = [asyncio.create_task(batching.predict_one(keys["1"], img))
              for img in make_images(5)]
    await asyncio.sleep(0)  # the frames are queued; their batch leaves in 100 ms
    await batching.release(keys["1"])
    assert all(task.done() and not task.exception() for task in queued)
    assert recording.released == [keys["1"]]
    with pytest.raises(ModelUnavailable, match="released"):
        await batching.predict_one(keys["1"], make_images(1)[0])
    await batching.ensure_loaded(keys["1"])  # loading again re-admits frames
    assert await batching.predict_one(keys["1"], make_images(1)[0]) > 0


async def test_caller_that_gives_up_does_not_block_the_rest(recording, keys,
                                                            make_images) -> None:
    batching = batcher(recording, size=8, wait_ms=50, when_idle=False)
    images = make_images(3)
    impatient = asyncio.create_task(batching.predict_one(keys["1"], images[0]))
    others = [asyncio.create_task(batching.predict_one(keys["1"], img)) for img in images[1:]]
    await asyncio.sleep(0)
    impatient.cancel()
    assert all(isinstance(d, float) for d in await asyncio.gather(*others))
    assert recording.batches[-1][1][0] == 2  # the cancelled frame was not predicted
    await asyncio.wait_for(batching.release(keys["1"]), timeout=10)  # nothing left pending
