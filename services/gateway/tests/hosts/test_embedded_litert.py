"""EmbeddedHost hands a version to LiteRT once its TFLite file is published and agrees.

Real SavedModels and real TFLite files (converted as the registry converts them, conftest),
in a repository of this module's own: the session's shared repository has no TFLite
files, so every other test runs on TensorFlow.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from edgeloop.gateway.hosts import ModelKey, litert
from edgeloop.gateway.hosts import embedded as embedded_module
from edgeloop.gateway.hosts.embedded import EmbeddedConfig, EmbeddedHost
from edgeloop.gateway.hosts.litert import quantized_beside, tflite_beside

FAST_POLL = dict(litert_poll_s=0.02, drain_timeout_s=10.0)


@pytest.fixture
def repo(model_repo: Path, tmp_path: Path) -> Path:
    """A private copy of the repository: this test's TFLite files stay in it."""
    copy = tmp_path / "models"
    shutil.copytree(model_repo, copy)
    return copy


def _key(repo: Path, version: str) -> ModelKey:
    return ModelKey("parking", version, path=str(repo / "parking" / version))


async def _host(**config: object) -> EmbeddedHost:
    return EmbeddedHost(EmbeddedConfig(**{**FAST_POLL, **config}))


@pytest.fixture
async def host() -> AsyncIterator[EmbeddedHost]:
    embedded = await _host()
    yield embedded
    await embedded.close()


async def _until(condition, what: str, timeout_s: float = 60.0) -> None:  # noqa: ANN001
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)
    assert condition(), what


async def test_a_version_moves_to_litert_when_its_file_appears_and_answers_alike(
        host, repo, tflite_files, make_images, direct_model) -> None:
    key = _key(repo, "1")
    await host.ensure_loaded(key)
    # no file yet: the version serves on TensorFlow at once
    assert host.runtime(key) == "tensorflow"
    images = make_images(3, seed=11)
    on_tf = await host.predict(key, images)

    shutil.copy(tflite_files["1"], tflite_beside(key.path, key.version))
    await _until(lambda: host.runtime(key) == "litert", "the version moved to LiteRT")

    for batch, (height, width) in [(1, (240, 320)), (5, (240, 320)), (2, (480, 640))]:
        frames = make_images(batch, height, width, seed=batch)
        got = await host.predict(key, frames)
        assert got.dtype == np.float32 and got.shape == (batch,)
        np.testing.assert_allclose(got, direct_model("1", frames), atol=0.5)
    np.testing.assert_allclose(await host.predict(key, images), on_tf, atol=0.5)
    # the micro-batcher's way in: frames not stacked, copied into the interpreter as they are
    frames = make_images(13, seed=12)
    np.testing.assert_array_equal(await host.predict_frames(key, list(frames)),
                                  await host.predict(key, frames))


async def test_a_file_that_answers_differently_leaves_the_version_on_tensorflow(
        host, repo, tflite_files, make_images, direct_model, caplog) -> None:
    key = _key(repo, "1")
    # version 2's file under version 1's name: its answers are ~1000 mm off
    shutil.copy(tflite_files["2"], tflite_beside(key.path, key.version))
    with caplog.at_level(logging.WARNING, logger="edgeloop.gateway.hosts.embedded"):
        await host.ensure_loaded(key)
        await _until(lambda: "differ from the SavedModel" in caplog.text, "the warning")
    assert host.runtime(key) == "tensorflow"
    images = make_images(2, seed=3)
    np.testing.assert_allclose(await host.predict(key, images), direct_model("1", images),
                               rtol=1e-5)


async def test_an_unreadable_file_leaves_the_version_on_tensorflow(host, repo, caplog) -> None:
    key = _key(repo, "2")
    tflite_beside(key.path, key.version).write_bytes(b"not a flatbuffer")
    with caplog.at_level(logging.WARNING, logger="edgeloop.gateway.hosts.embedded"):
        await host.ensure_loaded(key)
        await _until(lambda: "not usable" in caplog.text, "the warning")
    assert host.runtime(key) == "tensorflow"


def _publish(key: ModelKey, float_file: Path, quantized_file: Path) -> None:
    """Both files as the registry writes them: the quantized one first."""
    shutil.copy(quantized_file, quantized_beside(key.path, key.version))
    shutil.copy(float_file, tflite_beside(key.path, key.version))


async def test_the_quantized_twin_is_preferred_when_it_agrees(
        host, repo, tflite_files, quantized_files, make_images, direct_model) -> None:
    key = _key(repo, "1")
    assert host.runs_quantized_twin(key) is False, "not loaded here: robots get the float file"
    await host.ensure_loaded(key)
    assert host.runs_quantized_twin(key) is None, "its files awaited: not decided yet"
    _publish(key, tflite_files["1"], quantized_files["1"])
    await _until(lambda: host.runtime(key) == "litert-quantized", "the quantized file serves")
    assert host.runs_quantized_twin(key) is True  # robots that run twins may have it
    frames = make_images(9, seed=21)
    np.testing.assert_allclose(await host.predict(key, frames), direct_model("1", frames),
                               atol=litert.QUANTIZED_AGREEMENT_MM)


async def test_a_quantized_twin_that_disagrees_leaves_the_float_file(
        host, repo, tflite_files, quantized_files, make_images, direct_model, caplog) -> None:
    key = _key(repo, "1")
    with caplog.at_level(logging.WARNING, logger="edgeloop.gateway.hosts.embedded"):
        await host.ensure_loaded(key)
        # version 2's quantized file as version 1's twin: ~1000 mm off
        _publish(key, tflite_files["1"], quantized_files["2"])
        await _until(lambda: host.runtime(key) is not None and host.runtime(key) != "tensorflow",
                     "a TFLite file serves")
    assert host.runtime(key) == "litert"
    assert host.runs_quantized_twin(key) is False, "refused for the gateway: for robots too"
    assert "quantized.tflite" in caplog.text and "differ from the SavedModel" in caplog.text
    frames = make_images(3, seed=22)
    np.testing.assert_allclose(await host.predict(key, frames), direct_model("1", frames),
                               atol=litert.AGREEMENT_MM)


async def test_quantized_off_runs_the_float_file(repo, tflite_files, quantized_files) -> None:
    key = _key(repo, "1")
    _publish(key, tflite_files["1"], quantized_files["1"])
    host = await _host(quantized=False)
    try:
        await host.ensure_loaded(key)
        await _until(lambda: host.runtime(key) == "litert", "the float file serves")
        assert host.runs_quantized_twin(key) is False
    finally:
        await host.close()


async def test_runtime_tensorflow_never_looks_for_a_file(repo, tflite_files) -> None:
    key = _key(repo, "1")
    shutil.copy(tflite_files["1"], tflite_beside(key.path, key.version))
    host = await _host(runtime="tensorflow")
    try:
        await host.ensure_loaded(key)
        assert host.runtime(key) == "tensorflow"
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("litert-")]
    finally:
        await host.close()


async def test_release_stops_watching_for_the_file(host, repo) -> None:
    key = _key(repo, "2")
    await host.ensure_loaded(key)
    watching = [t for t in asyncio.all_tasks() if t.get_name() == "litert-parking-2"]
    assert len(watching) == 1 and not watching[0].done()
    await host.release(key)
    await asyncio.wait(watching, timeout=10)
    assert watching[0].cancelled()
    assert host.runtime(key) is None


def test_chunks_cover_every_frame_once_with_the_largest_sizes_first() -> None:
    for count in range(40):
        parts = list(litert.chunks(count))
        covered = 0
        for start, size in parts:
            assert start == covered and size in litert.CHUNK_SIZES
            covered += size
        assert covered == count
        sizes = [size for _, size in parts]
        assert sizes == sorted(sizes, reverse=True)
        # below the largest size, each size at most once: as few invokes as the sizes allow
        below = [size for size in sizes if size < litert.CHUNK_SIZES[0]]
        assert len(below) == len(set(below))


def test_a_batch_run_in_chunks_answers_what_single_frames_answer(
        tflite_files, make_images) -> None:
    runner = litert.LiteRTRunner(tflite_files["1"])
    frames = make_images(27, seed=5)  # 8 + 8 + 8 + 2 + 1
    one_by_one = np.concatenate([runner(frames[i:i + 1]) for i in range(len(frames))])
    for count in (27, 13, 8, 3):
        np.testing.assert_array_equal(runner(frames[:count]), one_by_one[:count])
    # another frame size: the thread's interpreters are replaced, the answers still agree
    large = make_images(3, 480, 640, seed=6)
    np.testing.assert_array_equal(
        runner(large), np.concatenate([runner(large[i:i + 1]) for i in range(3)]))
    np.testing.assert_array_equal(runner(frames[:13]), one_by_one[:13])


def test_frames_given_one_by_one_answer_what_their_stack_answers(tflite_files,
                                                                 make_images) -> None:
    runner = litert.LiteRTRunner(tflite_files["1"])
    frames = make_images(11, seed=9)  # 8 + 2 + 1
    np.testing.assert_array_equal(runner(list(frames)), runner(frames))
    assert runner([]).shape == (0,)
    # a frame of another shape than the batch's first is refused, not reshaped or cropped
    other = make_images(1, 120, 160, seed=4)[0]
    with pytest.raises(ValueError, match="a frame of shape"):
        runner([frames[0], other])
    with pytest.raises(ValueError, match="a frame of shape"):
        runner([frames[0], frames[0][:, :1]])  # one numpy would broadcast
    np.testing.assert_array_equal(runner(frames[:3]), runner(list(frames[:3])))  # still usable


@pytest.fixture
def checked_on(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The frames each TFLite file's agreement check ran on, in order."""
    seen: list[np.ndarray] = []
    load = embedded_module._load_litert

    def spy(path, tensorflow, frames):  # noqa: ANN001, ANN202 - the wrapped function's own
        seen.append(frames.copy())
        return load(path, tensorflow, frames)

    monkeypatch.setattr(embedded_module, "_load_litert", spy)
    return seen


async def test_the_agreement_check_runs_on_the_frames_last_served(
        repo, tflite_files, make_images, checked_on, caplog) -> None:
    host = await _host(served_check_frames=4)
    try:
        first, second = _key(repo, "1"), _key(repo, "2")
        await host.ensure_loaded(first)
        batches = [make_images(size, seed=30 + i) for i, size in enumerate((1, 3, 1, 2, 1, 1))]
        for batch in batches:
            await host.predict_frames(first, list(batch))
        with caplog.at_level(logging.INFO, logger="edgeloop.gateway.hosts.embedded"):
            await host.ensure_loaded(second)
            shutil.copy(tflite_files["2"], tflite_beside(second.path, second.version))
            await _until(lambda: host.runtime(second) == "litert", "version 2 on LiteRT")
        # the first frame of each of the last four batches, in the order they were served
        np.testing.assert_array_equal(checked_on[-1], np.stack([b[0] for b in batches[-4:]]))
        moved = [r for r in caplog.records if r.getMessage() == "model now runs on LiteRT"]
        assert [r.check_frames for r in moved] == ["served"]
    finally:
        await host.close()


async def test_before_enough_frames_were_served_the_check_frames_are_synthetic(
        host, repo, tflite_files, make_images, checked_on) -> None:
    key = _key(repo, "1")
    await host.ensure_loaded(key)
    await host.predict_frames(key, list(make_images(2, seed=40)))  # one batch: one frame kept
    shutil.copy(tflite_files["1"], tflite_beside(key.path, key.version))
    await _until(lambda: host.runtime(key) == "litert", "the version moved to LiteRT")
    np.testing.assert_array_equal(checked_on[-1], litert.check_frames(240, 320))
