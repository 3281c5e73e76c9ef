"""The embedded host: SavedModels loaded into the gateway process.

Life of a version: :meth:`EmbeddedHost.ensure_loaded` loads the SavedModel and runs
one warm-up prediction before the version is marked ready, so the first real frame
never pays for graph initialisation and never meets a half-loaded model.
:meth:`EmbeddedHost.release` stops admitting calls for the version, waits until the
calls already running on it have finished (a reference count per version), then
drops it. The caller switches its routing to the new version first, then releases
the old one.

TensorFlow releases the GIL while it computes, so predictions run on a small
dedicated thread pool and the event loop stays free for the streams; loads run on
their own thread so a new version loading never stalls the one serving.

Runtime (``EmbeddedConfig.runtime``): a version always starts on its SavedModel under
TensorFlow, so it serves the moment it is loaded. With ``auto`` (the default) the host
then watches for the version's TFLite file, which the registry converts in the
background after publishing, and hands the version over to LiteRT once the file is
there and its answers agree with TensorFlow's on check frames (``litert`` module: at the
fleet's rate 0.4–0.6 CPU ms less per frame); the file's quantized twin first, when the
registry wrote one and ``quantized`` is on (another ~0.26 ms less). A file that does not
agree, or does not come, leaves the version on TensorFlow, with a log line saying so.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tensorflow as tf
from edgeloop.gateway.hosts import litert
from edgeloop.gateway.hosts.base import ModelHost, ModelKey, ModelUnavailable
from edgeloop.gateway.hosts.served import ServedFrames
from edgeloop.gateway.hosts.tensors import check_images, check_same_frames
from edgeloop.platform import log_context
from edgeloop.platform.heap import freeze_new_objects, refreeze_heap

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
INPUT = "image"
OUTPUT = "distance_mm"


@dataclass(frozen=True)
class EmbeddedConfig:
    """Configuration of :class:`EmbeddedHost`; every default suits a 2-core machine."""

    predict_threads: int = 2
    """Threads running predictions concurrently (TF calls leave the event loop)."""
    intra_op_threads: int = 2
    """TF threads inside one op (a convolution); 0 lets TF pick (all cores)."""
    inter_op_threads: int = 1
    """TF threads running independent ops at once; 1 because ``predict_threads`` already
    runs whole predictions side by side."""
    warmup_height: int = 240
    """Height of the dummy image predicted once before a version takes traffic."""
    warmup_width: int = 320
    """Width of the warm-up image (the robot's camera frame is 320x240)."""
    drain_timeout_s: float = 30.0
    """How long :meth:`EmbeddedHost.release` waits for in-flight calls before dropping."""
    runtime: Literal["auto", "tensorflow"] = "auto"
    """``auto``: LiteRT once the version's TFLite file is published and agrees with the
    SavedModel; ``tensorflow``: the SavedModel only (``EDGELOOP_MODEL_RUNTIME``)."""
    quantized: bool = True
    """With ``auto``: prefer the version's quantized TFLite file when it is published and its
    answers are within :data:`~edgeloop.gateway.hosts.litert.QUANTIZED_AGREEMENT_MM` of the
    SavedModel's (``EDGELOOP_MODEL_QUANTIZED``)."""
    litert_wait_s: float = 600.0
    """How long after a load the host watches for the version's TFLite file."""
    litert_poll_s: float = 1.0
    """How often it looks for the file meanwhile."""
    served_check_frames: int = 8
    """A TFLite file is checked on the last frames the host served (the first of each
    batch), once this many of one size are kept; on synthetic frames before that."""


def configure_tf_threads(intra_op: int, inter_op: int) -> None:
    """Set TF's thread pools; only possible before TF first runs an op in this process."""
    threading = tf.config.threading
    current = (threading.get_intra_op_parallelism_threads(),
               threading.get_inter_op_parallelism_threads())
    if current == (intra_op, inter_op):
        return
    try:
        threading.set_intra_op_parallelism_threads(intra_op)
        threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        # TF's runtime is already initialised (another component ran an op first); its
        # pools are fixed now, which costs speed, not correctness.
        log.warning("TF thread pools already initialised; keeping them", extra={
            "intra_op_threads": threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": threading.get_inter_op_parallelism_threads()})


Runner = Callable[[Sequence[np.ndarray]], np.ndarray]
"""A runtime's prediction function: frames (uint8 [b, h, w, 3], or b frames [h, w, 3] of one
shape) -> distances float32 [b]."""


class _Version:
    """One loaded version: the runner that predicts with it and the calls running on it."""

    def __init__(self, key: ModelKey, module: Any, serve: Any) -> None:
        self.key = key
        self.module: Any = module  # keeps the SavedModel's variables alive while TF runs it
        self.runner: Runner = functools.partial(_run, serve)
        self.runtime = "tensorflow"
        self.adopting: asyncio.Task[None] | None = None
        self.in_flight = 0
        self.drained = asyncio.Event()
        self.drained.set()

    def enter(self) -> None:
        self.in_flight += 1
        self.drained.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.drained.set()


class EmbeddedHost(ModelHost):
    """Runs SavedModels from the model repository inside the gateway process."""

    def __init__(self, config: EmbeddedConfig | None = None) -> None:
        self.config = config or EmbeddedConfig()
        configure_tf_threads(self.config.intra_op_threads, self.config.inter_op_threads)
        self._predict_pool = ThreadPoolExecutor(self.config.predict_threads,
                                                thread_name_prefix="edgeloop-predict")
        self._load_pool = ThreadPoolExecutor(1, thread_name_prefix="edgeloop-load")
        self._served = ServedFrames(self.config.served_check_frames)
        self._ready: dict[tuple[str, str, str], _Version] = {}
        self._loading: dict[tuple[str, str, str], asyncio.Task[_Version]] = {}

    def is_ready(self, key: ModelKey) -> bool:
        """Whether ``key`` is loaded, warmed up and admitting predictions."""
        return key.slot in self._ready

    def ready_keys(self) -> list[ModelKey]:
        """The versions admitting predictions now."""
        return [version.key for version in self._ready.values()]

    async def ensure_loaded(self, key: ModelKey) -> None:
        """Load and warm up ``key``; concurrent calls for one key share a single load."""
        slot = key.slot
        if slot in self._ready:
            return
        task = self._loading.get(slot)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(key))
            self._loading[slot] = task
            task.add_done_callback(lambda _: self._loading.pop(slot, None))
        # shield: one waiter giving up (its frame's deadline) must not cancel the load
        # the other waiters share.
        await asyncio.shield(task)

    async def _load(self, key: ModelKey) -> _Version:
        with log_context(model=key.model_name, version=key.version):
            if not key.path:
                raise ModelUnavailable(f"{key.model_name} v{key.version}: no SavedModel path")
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            try:
                module, serve = await loop.run_in_executor(self._load_pool, _load_and_warm,
                                                           key.path, self._warmup_image())
            except ModelUnavailable:
                raise
            except Exception as exc:
                log.exception("model load failed", extra={"path": key.path})
                raise ModelUnavailable(
                    f"{key.model_name} v{key.version}: cannot load {key.path}: {exc}") from exc
            version = _Version(key, module, serve)
            self._ready[key.slot] = version
            freeze_new_objects("model loaded")
            log.info("model ready", extra={"path": key.path, "runtime": version.runtime,
                                           "load_s": round(time.perf_counter() - started, 3)})
            if self.config.runtime == "auto":
                version.adopting = asyncio.get_running_loop().create_task(
                    self._adopt_litert(version), name=f"litert-{key.model_name}-{key.version}")
            return version

    def runtime(self, key: ModelKey) -> str | None:
        """The runtime predicting with ``key`` now (``tensorflow``, ``litert``,
        ``litert-quantized``); None if not loaded."""
        version = self._ready.get(key.slot)
        return version.runtime if version else None

    def runs_quantized_twin(self, key: ModelKey) -> bool | None:
        """Whether ``key`` runs on its quantized twin (checked against the SavedModel on the
        camera frames served): True; False when it does not and will not (another runtime,
        quantized off, the twin missing or refused, not loaded here); None while that is not
        decided (loading, or its TFLite files awaited or checked)."""
        if self.config.runtime != "auto" or not self.config.quantized:
            return False
        version = self._ready.get(key.slot)
        if version is None:
            return None if key.slot in self._loading else False
        if version.runtime == "litert-quantized":
            return True
        adopting = version.adopting
        return None if adopting is not None and not adopting.done() else False

    async def _adopt_litert(self, version: _Version) -> None:
        """Hand ``version`` to LiteRT once its TFLite file is there and agrees with TF."""
        key = version.key
        path = litert.tflite_beside(key.path, key.version)
        deadline = time.monotonic() + self.config.litert_wait_s
        with log_context(model=key.model_name, version=key.version):
            while not path.exists():
                if time.monotonic() >= deadline:
                    log.info("no TFLite file published; the version stays on TensorFlow",
                             extra={"path": str(path), "waited_s": self.config.litert_wait_s})
                    return
                await asyncio.sleep(self.config.litert_poll_s)
            for candidate, runtime, tolerance_mm in self._litert_files(key, path):
                if await self._try_litert(version, candidate, runtime, tolerance_mm):
                    return
            log.warning("no TFLite file agrees with the SavedModel; the version stays on "
                        "TensorFlow", extra={"path": str(path)})

    def _litert_files(self, key: ModelKey, path: Path) -> list[tuple[Path, str, float]]:
        """The files to try, preferred first: (path, runtime name, agreement in mm)."""
        files = [(path, "litert", litert.AGREEMENT_MM)]
        quantized = litert.quantized_beside(key.path, key.version)
        if self.config.quantized and quantized.exists():
            files.insert(0, (quantized, "litert-quantized", litert.QUANTIZED_AGREEMENT_MM))
        return files

    async def _try_litert(self, version: _Version, path: Path, runtime: str,
                          tolerance_mm: float) -> bool:
        """Move ``version`` onto the TFLite file ``path`` if it loads and agrees with TF."""
        loop = asyncio.get_running_loop()
        frames, kind = self._served.check_frames(self.config.warmup_height,
                                                 self.config.warmup_width)
        try:
            runner, difference = await loop.run_in_executor(
                self._load_pool, _load_litert, path, version.runner, frames)
        except litert.LiteRTError as exc:
            log.warning("TFLite file not usable: %s", exc, extra={"path": str(path)})
            return False
        if difference > tolerance_mm:
            log.warning("the answers of %s differ from the SavedModel's", path.name,
                        extra={"path": str(path), "max_difference_mm": difference,
                               "tolerance_mm": tolerance_mm, "check_frames": kind})
            return False
        version.runner, version.runtime = runner, runtime
        version.module = None  # calls still running keep their own reference
        refreeze_heap("model moved to LiteRT")  # frees the TensorFlow module's cycles
        log.info("model now runs on LiteRT", extra={"path": str(path), "runtime": runtime,
                                                    "max_difference_mm": difference,
                                                    "check_frames": kind})
        return True

    def _warmup_image(self) -> np.ndarray:
        return np.zeros((1, self.config.warmup_height, self.config.warmup_width, 3), np.uint8)

    async def predict(self, key: ModelKey, images: np.ndarray) -> np.ndarray:
        """Distances for ``images`` from the ready version ``key``; never a half-loaded one."""
        check_images(images)
        return await self._run_on(key, images)

    async def predict_frames(self, key: ModelKey, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Like :meth:`predict`; the frames are stacked (TensorFlow) or copied into the
        interpreter (LiteRT) in the predict thread, not on the event loop."""
        check_same_frames(frames)
        self._served.add(frames[0])
        return await self._run_on(key, frames)

    async def _run_on(self, key: ModelKey, frames: Sequence[np.ndarray]) -> np.ndarray:
        version = self._ready.get(key.slot)
        if version is None:
            raise ModelUnavailable(f"{key.model_name} v{key.version} is not loaded here")
        version.enter()
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._predict_pool, version.runner, frames)
        except (tf.errors.OpError, ValueError, RuntimeError) as exc:  # TF's, LiteRT's
            message = exc.message if isinstance(exc, tf.errors.OpError) else str(exc)
            raise ModelUnavailable(f"{key.model_name} v{key.version} failed on {len(frames)} "
                                   f"images of shape {list(frames[0].shape)}: {message}") from exc
        finally:
            version.leave()

    async def release(self, key: ModelKey) -> None:
        """Stop admitting calls for ``key``, wait for its in-flight calls, then drop it."""
        loading = self._loading.get(key.slot)
        if loading is not None:
            # A load in progress would mark the version ready after we returned.
            await asyncio.wait([loading])
        version = self._ready.pop(key.slot, None)
        if version is None:
            return
        if version.adopting is not None:
            version.adopting.cancel()
        with log_context(model=key.model_name, version=key.version):
            try:
                await asyncio.wait_for(version.drained.wait(), self.config.drain_timeout_s)
            except TimeoutError:
                # The running calls hold their own reference to the function, so dropping
                # ours is memory-safe; it only means the memory is freed when they end.
                log.warning("release: calls still running after drain timeout",
                            extra={"in_flight": version.in_flight})
            del version
            refreeze_heap("model released")
            log.info("model released")

    async def close(self) -> None:
        """Release every version and stop the thread pools."""
        for version in list(self._ready.values()):
            await self.release(version.key)
        for task in list(self._loading.values()):
            task.cancel()
        self._predict_pool.shutdown(wait=True, cancel_futures=True)
        self._load_pool.shutdown(wait=True, cancel_futures=True)


def _load_and_warm(path: str, warmup: np.ndarray) -> tuple[Any, Any]:
    """Load the SavedModel at ``path``, check its signature, predict once (TF thread)."""
    module = tf.saved_model.load(path)
    serve = module.signatures.get(SIGNATURE)
    if serve is None:
        raise ModelUnavailable(f"{path}: no '{SIGNATURE}' signature "
                               f"(has {sorted(module.signatures.keys())})")
    _, inputs = serve.structured_input_signature
    if INPUT not in inputs:
        raise ModelUnavailable(f"{path}: '{SIGNATURE}' has no input '{INPUT}' "
                               f"(has {sorted(inputs)})")
    result = _run(serve, warmup)
    if result.shape != (warmup.shape[0],):
        raise ModelUnavailable(f"{path}: '{OUTPUT}' has shape {list(result.shape)} for a batch of "
                               f"{warmup.shape[0]}; the contract is float32[batch]")
    return module, serve


def _load_litert(path: Any, tensorflow: Runner, frames: np.ndarray
                 ) -> tuple[litert.LiteRTRunner, float]:
    """Load the TFLite file and measure how far it is from TF on ``frames`` (load thread)."""
    runner = litert.LiteRTRunner(path)
    return runner, litert.max_difference_mm(runner(frames), tensorflow(frames))


def _run(serve: Any, frames: Sequence[np.ndarray]) -> np.ndarray:
    """One call of the serving function (TF thread)."""
    images = frames if isinstance(frames, np.ndarray) else np.stack(frames)
    outputs = serve(**{INPUT: tf.convert_to_tensor(images, dtype=tf.uint8)})
    if OUTPUT not in outputs:
        raise ModelUnavailable(f"'{SIGNATURE}' has no output '{OUTPUT}' (has {sorted(outputs)})")
    return outputs[OUTPUT].numpy().astype(np.float32, copy=False).reshape(-1)
