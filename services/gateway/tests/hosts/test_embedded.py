"""EmbeddedHost against real SavedModels: load + warm-up, answers, switch under load, drain."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from edgeloop.gateway.hosts import ModelKey, ModelUnavailable
from edgeloop.gateway.hosts.embedded import EmbeddedConfig, EmbeddedHost
from edgeloop.platform.errors import InvalidArgument


@pytest.fixture
async def host() -> AsyncIterator[EmbeddedHost]:
    embedded = EmbeddedHost(EmbeddedConfig(drain_timeout_s=10.0))
    yield embedded
    await embedded.close()


async def test_predict_before_load_is_unavailable(host, keys, make_images) -> None:
    with pytest.raises(ModelUnavailable, match="not loaded"):
        await host.predict(keys["1"], make_images(1))


async def test_loaded_version_answers_like_a_direct_tf_call(host, keys, make_images,
                                                            direct_model) -> None:
    await host.ensure_loaded(keys["1"])
    assert host.is_ready(keys["1"])
    for batch, (height, width) in [(1, (240, 320)), (5, (240, 320)), (3, (480, 640))]:
        images = make_images(batch, height, width, seed=batch)
        got = await host.predict(keys["1"], images)
        assert got.dtype == np.float32 and got.shape == (batch,)
        np.testing.assert_allclose(got, direct_model("1", images), rtol=1e-5)


async def test_concurrent_ensure_loaded_share_one_load(host, keys, monkeypatch) -> None:
    import edgeloop.gateway.hosts.embedded as embedded

    loads: list[str] = []
    real = embedded._load_and_warm

    def counting(path: str, warmup: np.ndarray):  # noqa: ANN202
        loads.append(path)
        return real(path, warmup)

    monkeypatch.setattr(embedded, "_load_and_warm", counting)
    await asyncio.gather(*(host.ensure_loaded(keys["2"]) for _ in range(8)))
    await host.ensure_loaded(keys["2"])
    assert loads == [keys["2"].path]
    assert host.ready_keys() == [keys["2"]]


async def test_warm_up_runs_before_ready(host, keys, monkeypatch) -> None:
    """While the warm-up prediction runs, the version is not ready and predict refuses it."""
    import edgeloop.gateway.hosts.embedded as embedded

    observed: list[bool] = []
    real_run = embedded._run

    def spying_run(serve, images):  # noqa: ANN001, ANN202
        observed.append(host.is_ready(keys["1"]))
        return real_run(serve, images)

    monkeypatch.setattr(embedded, "_run", spying_run)
    await host.ensure_loaded(keys["1"])
    assert observed == [False]  # the warm-up ran, and before the version was marked ready
    assert host.is_ready(keys["1"])


async def test_bad_model_folder_is_unavailable_and_retryable(host, keys, tmp_path: Path) -> None:
    key = ModelKey("parking", "9", path=str(tmp_path / "missing"))
    with pytest.raises(ModelUnavailable, match="cannot load"):
        await host.ensure_loaded(key)
    assert not host.is_ready(key)
    shutil.copytree(keys["1"].path, key.path)  # published late: a second attempt loads it
    await host.ensure_loaded(key)
    assert host.is_ready(key)


async def test_images_that_break_the_contract_are_invalid(host, keys) -> None:
    await host.ensure_loaded(keys["1"])
    with pytest.raises(InvalidArgument, match="images"):
        await host.predict(keys["1"], np.zeros((1, 240, 320), np.uint8))
    with pytest.raises(InvalidArgument, match="images"):
        await host.predict(keys["1"], np.zeros((1, 240, 320, 3), np.float32))
    frame = np.zeros((240, 320, 3), np.uint8)
    for frames in ([], [frame, frame[:120]], [frame, frame.astype(np.float32)]):
        with pytest.raises(InvalidArgument, match="images"):
            await host.predict_frames(keys["1"], frames)


async def test_frames_not_stacked_yet_answer_like_their_stack(host, keys, make_images) -> None:
    await host.ensure_loaded(keys["1"])
    images = make_images(5, seed=21)
    np.testing.assert_array_equal(await host.predict_frames(keys["1"], list(images)),
                                  await host.predict(keys["1"], images))


async def _wait_until(predicate, timeout_s: float = 60.0) -> None:  # noqa: ANN001
    """Poll ``predicate`` on the loop until it holds; fail after a generous deadline."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_version_switch_under_concurrent_load(host, keys, make_images,
                                                    which_version) -> None:
    """10 streams predict while v2 loads and v1 is released: no error, all answers valid."""
    await host.ensure_loaded(keys["1"])
    current = {"key": keys["1"]}
    answers: list[tuple[str, str]] = []  # (version routed to, version that answered)
    stop = asyncio.Event()

    async def stream(n: int) -> None:
        images = make_images(1, seed=n)
        while not stop.is_set():
            key = current["key"]
            (distance,) = await host.predict(key, images)
            answers.append((key.version, which_version(float(distance))))
            await asyncio.sleep(0)

    def answered_by(version: str) -> int:
        return sum(1 for _, answered in answers if answered == version)

    streams = [asyncio.create_task(stream(n)) for n in range(10)]
    # Moments by condition, not duration: v1 has answered before the switch, and v2 after.
    await _wait_until(lambda: answered_by("1") >= 10)
    await host.ensure_loaded(keys["2"])  # loads + warms up while v1 serves
    current["key"] = keys["2"]           # route new frames to v2, then drain v1
    await host.release(keys["1"])
    await _wait_until(lambda: answered_by("2") >= 10)
    stop.set()
    await asyncio.gather(*streams)       # re-raises any error a stream met

    assert all(routed == answered for routed, answered in answers)
    assert {answered for _, answered in answers} == {"1", "2"}
    assert host.ready_keys() == [keys["2"]]


async def test_release_waits_for_in_flight_calls(host, keys, make_images) -> None:
    await host.ensure_loaded(keys["1"])
    # The prediction's model call waits for a gate the test opens: it is still running when
    # release starts, however fast the machine is.
    gate = threading.Event()
    version = host._ready[next(iter(host._ready))]
    runner = version.runner

    def gated(images: np.ndarray) -> np.ndarray:
        gate.wait(60)
        return runner(images)

    version.runner = gated
    in_flight = asyncio.create_task(host.predict(keys["1"], make_images(4)))
    await _wait_until(lambda: version.in_flight == 1)
    releasing = asyncio.create_task(host.release(keys["1"]))
    await _wait_until(lambda: not host.is_ready(keys["1"]))  # release has begun: admits no call
    assert not releasing.done() and not in_flight.done()
    gate.set()
    await releasing
    assert in_flight.done(), "release returned while a prediction was still running"
    assert in_flight.result().shape == (4,)
    with pytest.raises(ModelUnavailable):
        await host.predict(keys["1"], make_images(1))


async def test_release_during_load_leaves_nothing_ready(host, keys) -> None:
    loading = asyncio.create_task(host.ensure_loaded(keys["1"]))
    await asyncio.sleep(0)
    await host.release(keys["1"])
    await loading
    assert not host.is_ready(keys["1"])


class _WrongInput(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="pixels")])
    def serve(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"distance_mm": tf.reduce_mean(tf.cast(pixels, tf.float32), axis=[1, 2, 3])}


class _WrongOutputShape(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")])
    def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"distance_mm": tf.zeros([tf.shape(image)[0], 2])}


@pytest.mark.parametrize(("module", "problem"), [(_WrongInput, "no input 'image'"),
                                                 (_WrongOutputShape, "contract is float32")])
async def test_model_breaking_the_signature_never_becomes_ready(host, tmp_path, module,
                                                                problem) -> None:
    instance = module()
    tf.saved_model.save(instance, str(tmp_path / "1"),
                        signatures={"serving_default": instance.serve})
    key = ModelKey("odd", "1", path=str(tmp_path / "1"))
    with pytest.raises(ModelUnavailable, match=problem):
        await host.ensure_loaded(key)
    assert not host.is_ready(key)


@pytest.mark.parametrize("refreeze", [True, False], ids=["refrozen", "control-without"])
async def test_a_frozen_heap_keeps_models_out_of_collections_and_frees_a_released_one(
        host, keys, monkeypatch, refreeze) -> None:
    """A gateway freezes its heap at start (full collections stalled every answer for
    70+ ms); a loaded model joins the frozen heap and a released one is still freed. The
    control shows the released model's cycles need the refreeze."""
    import gc
    import weakref

    import edgeloop.gateway.hosts.embedded as embedded
    from edgeloop.platform.heap import freeze_heap, thaw_heap

    if not refreeze:
        monkeypatch.setattr(embedded, "refreeze_heap", lambda reason: None)
    freeze_heap("test")
    try:
        before = gc.get_freeze_count()
        await host.ensure_loaded(keys["1"])
        assert gc.get_freeze_count() > before, "the loaded model is frozen with the rest"
        module = weakref.ref(host._ready[keys["1"].slot].module)
        await host.release(keys["1"])
        gc.collect()
        assert (module() is None) is refreeze
    finally:
        thaw_heap()
