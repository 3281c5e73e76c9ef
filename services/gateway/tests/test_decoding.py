"""BatchDecoder: frames of one loop turn share a thread hop, each keeps its own outcome."""

from __future__ import annotations

import asyncio
import threading

import pytest
from edgeloop.gateway.decoding import BatchDecoder


def _upper(data: bytes) -> bytes:
    if data == b"bad":
        raise ValueError("bad jpeg")
    return data.upper()


async def test_each_frame_gets_its_own_result_or_error() -> None:
    decoder: BatchDecoder[bytes] = BatchDecoder(_upper, threads=2)
    try:
        results = await asyncio.gather(*(decoder.decode(x) for x in (b"a", b"bad", b"c")),
                                       return_exceptions=True)
    finally:
        decoder.close()
    assert results[0] == b"A" and results[2] == b"C"
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad jpeg"


async def test_frames_of_one_turn_are_split_over_the_threads_in_one_hop_each() -> None:
    calls: list[tuple[str, int]] = []
    lock = threading.Lock()

    def record(data: bytes) -> bytes:
        with lock:
            calls.append((threading.current_thread().name, len(data)))
        return data

    submissions = 0
    decoder: BatchDecoder[bytes] = BatchDecoder(record, threads=2)
    original = decoder._pool.submit

    def counting_submit(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal submissions
        submissions += 1
        return original(*args, **kwargs)

    decoder._pool.submit = counting_submit  # type: ignore[method-assign]
    try:
        frames = [bytes(i + 1) for i in range(10)]
        assert await asyncio.gather(*(decoder.decode(f) for f in frames)) == frames
        assert submissions == 2  # ten frames, two threads: two hops, not ten
        alone = await decoder.decode(b"x")  # a frame alone is not held back for company
        assert alone == b"x" and submissions == 3
    finally:
        decoder.close()
    assert len(calls) == 11


async def test_a_closed_decoder_refuses_instead_of_hanging() -> None:
    decoder: BatchDecoder[bytes] = BatchDecoder(_upper, threads=1)
    decoder.close()
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(decoder.decode(b"a"), 5)


async def test_a_caller_that_went_away_does_not_break_the_others() -> None:
    started = threading.Event()
    release = threading.Event()

    def slow(data: bytes) -> bytes:
        started.set()
        release.wait(5)
        return data

    decoder: BatchDecoder[bytes] = BatchDecoder(slow, threads=1)
    try:
        gone = asyncio.ensure_future(decoder.decode(b"gone"))
        kept = asyncio.ensure_future(decoder.decode(b"kept"))
        await asyncio.to_thread(started.wait, 5)
        gone.cancel()
        release.set()
        assert await kept == b"kept"
        assert gone.cancelled()
    finally:
        decoder.close()


def _jpeg(height: int, width: int) -> bytes:
    import numpy as np
    import simplejpeg

    return simplejpeg.encode_jpeg(np.full((height, width, 3), 90, np.uint8))


async def test_small_frames_decode_on_the_loop_and_large_ones_on_the_threads() -> None:
    from edgeloop.gateway.decoding import small_frames
    from edgeloop.gateway.validation import DecodedImage, decode_jpeg

    threads: list[str] = []

    def decode(jpeg: bytes) -> DecodedImage:
        threads.append(threading.current_thread().name)
        return decode_jpeg(jpeg)

    decoder: BatchDecoder[DecodedImage] = BatchDecoder(decode, threads=1,
                                                       inline=small_frames(320 * 240))
    try:
        camera = await decoder.decode(_jpeg(240, 320))
        large = await decoder.decode(_jpeg(480, 640))
        garbage = await asyncio.gather(decoder.decode(b"not a jpeg"), return_exceptions=True)
    finally:
        decoder.close()
    assert camera.rgb.shape == (240, 320, 3) and large.rgb.shape == (480, 640, 3)
    loop_thread = threading.current_thread().name
    # no readable header: decoded at once, and it fails as decode_jpeg says
    assert threads[0] == loop_thread and threads[2] == loop_thread
    assert threads[1].startswith("edgeloop-decode")
    assert "not a JPEG" in str(garbage[0])


def test_small_frames_reads_the_declared_size_from_the_header() -> None:
    from edgeloop.gateway.decoding import small_frames

    small = small_frames(640 * 480)
    assert small(_jpeg(480, 640)) and not small(_jpeg(481, 640))
    assert small(b"\xff\xd8\xff" + bytes(40)), "no readable header: the decode fails fast"
