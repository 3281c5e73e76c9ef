"""Quantized twins judged for robots when the gateway's host runs no model file itself.

A robot that declared ``quantized_model`` is offered a version's quantized twin only once the
twin's answers are known to agree with the SavedModel's. The embedded host knows: it runs
the twin itself after checking it (``EmbeddedHost.runs_quantized_twin``). Behind TF Serving
or Ray Serve nothing in the gateway ran it, so robots kept the float file. The
:class:`TwinJudge` checks it there: the twin's answers, from LiteRT in a thread of the
gateway, against the host's answers to the same frames (the first frame of each of the last
batches the gateway served, or synthetic frames before enough were, as the embedded host
checks), within :data:`~edgeloop.gateway.hosts.litert.QUANTIZED_AGREEMENT_MM`. One check per
version, started the first time a robot's update asks and kept for the gateway's life; the
verdict is logged either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgeloop.gateway.hosts import litert
from edgeloop.gateway.hosts.base import ModelHost, ModelKey, ModelUnavailable
from edgeloop.gateway.hosts.served import ServedFrames
from edgeloop.platform import log_context
from edgeloop.platform.errors import EdgeloopError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TwinJudgeConfig:
    """Configuration of :class:`TwinJudge`."""

    tolerance_mm: float = litert.QUANTIZED_AGREEMENT_MM
    """Largest |difference| from the host's answers for the twin to be offered."""
    wait_s: float = 600.0
    """How long a check waits for the twin file and for the host to answer the version (the
    registry converts after publishing; TF Serving loads a new version within a minute)."""
    poll_s: float = 1.0
    """How often it looks again meanwhile."""
    check_height: int = 240
    """Height of the synthetic check frames before enough camera frames were served."""
    check_width: int = 320
    """Their width (the robot's camera frame is 320x240)."""
    verdicts_kept: int = 256
    """Versions whose verdict is remembered (the oldest are judged again if asked)."""


class TwinJudge:
    """Whether a version's quantized twin answers as the host does: ``judge(key)`` is True or
    False once checked, None while the check runs (the first call starts it)."""

    def __init__(self, host: ModelHost, twin_path: Callable[[ModelKey], Path],
                 served: ServedFrames, config: TwinJudgeConfig | None = None) -> None:
        self.host = host
        self.twin_path = twin_path
        self.served = served
        self.config = config or TwinJudgeConfig()
        self._verdicts: OrderedDict[tuple[str, str, str], bool] = OrderedDict()
        self._checks: dict[tuple[str, str, str], asyncio.Task[None]] = {}

    def __call__(self, key: ModelKey) -> bool | None:
        """The verdict on ``key``'s twin; None while it is being checked."""
        slot = key.slot
        verdict = self._verdicts.get(slot)
        if verdict is not None:
            return verdict
        if slot not in self._checks:
            task = asyncio.get_running_loop().create_task(
                self._judge(key), name=f"twin-{key.model_name}-{key.version}")
            self._checks[slot] = task
            task.add_done_callback(lambda _: self._checks.pop(slot, None))
        return None

    async def close(self) -> None:
        """Stop the checks still running (their versions stay undecided)."""
        for task in list(self._checks.values()):
            task.cancel()
        await asyncio.gather(*self._checks.values(), return_exceptions=True)

    async def _judge(self, key: ModelKey) -> None:
        with log_context(model=key.model_name, version=key.version):
            try:
                verdict = await self._check(key, time.monotonic() + self.config.wait_s)
            except Exception:
                log.exception("quantized twin check failed; robots keep the float file")
                verdict = False
            self._verdicts[key.slot] = verdict
            while len(self._verdicts) > self.config.verdicts_kept:
                self._verdicts.popitem(last=False)

    async def _check(self, key: ModelKey, deadline: float) -> bool:
        path = self.twin_path(key)
        while not path.exists():
            if time.monotonic() >= deadline:
                log.info("no quantized twin published; robots keep the float file",
                         extra={"path": str(path), "waited_s": self.config.wait_s})
                return False
            await asyncio.sleep(self.config.poll_s)
        frames, kind = self.served.check_frames(self.config.check_height,
                                                self.config.check_width)
        reference = await self._host_answers(key, frames, deadline)
        if reference is None:
            return False
        try:
            answers = await asyncio.to_thread(_twin_answers, path, frames)
        except litert.LiteRTError as exc:
            log.warning("quantized twin not usable: %s; robots keep the float file", exc,
                        extra={"path": str(path)})
            return False
        difference = litert.max_difference_mm(answers, reference)
        agrees = difference <= self.config.tolerance_mm
        log.log(logging.INFO if agrees else logging.WARNING,
                "quantized twin %s the host's answers; robots that ask get %s",
                "agrees with" if agrees else "differs from",
                "it" if agrees else "the float file",
                extra={"path": str(path), "max_difference_mm": round(difference, 3),
                       "tolerance_mm": self.config.tolerance_mm, "check_frames": kind})
        return agrees

    async def _host_answers(self, key: ModelKey, frames: np.ndarray,
                            deadline: float) -> np.ndarray | None:
        """The host's answers to ``frames``, waiting while it cannot answer the version yet."""
        while True:
            try:
                answers = np.asarray(await self.host.predict(key, frames), np.float32)
            except ModelUnavailable as exc:
                if time.monotonic() >= deadline:
                    log.warning("the host never answered the version: %s; robots keep the "
                                "float file", exc, extra={"waited_s": self.config.wait_s})
                    return None
                await asyncio.sleep(self.config.poll_s)
                continue
            except EdgeloopError as exc:
                log.warning("the host refused the check frames: %s; robots keep the float "
                            "file", exc)
                return None
            if answers.shape != (len(frames),):
                log.warning("the host answered %s values for %d check frames; robots keep "
                            "the float file", list(answers.shape), len(frames))
                return None
            return answers


def _twin_answers(path: Path, frames: np.ndarray) -> np.ndarray:
    """The twin's answers to ``frames`` (a thread: loading and running take a moment)."""
    return litert.LiteRTRunner(path)(frames)
