"""The model host seam: everything the gateway needs from whatever runs the models.

Images are decoded RGB ``uint8`` arrays of shape ``[batch, height, width, 3]``; the
model resizes and rescales inside itself (see CONTRIBUTING.md, "Model serving
signature"), so hosts never preprocess.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from edgeloop.platform.errors import Unavailable


@dataclass(frozen=True)
class ModelKey:
    """One model version as the registry resolved it."""

    model_name: str
    version: str
    path: str = ""
    """The SavedModel folder in the model repository (embedded host); may be empty for
    TF Serving."""
    version_label: str = ""
    """The TF Serving version label (``stable``/``canary``) a request named, if any (the
    served side, :class:`~edgeloop.gateway.hosts.repository.ModelRepository`). The gateway
    never addresses by label: a label moves during a version switch, so it could be
    answered by another version than ``version``."""

    @property
    def slot(self) -> tuple[str, str, str]:
        """What identifies a loaded version in a host: TF Serving's labels mean nothing there."""
        return (self.model_name, self.version, self.path)


class ModelUnavailable(Unavailable):
    """The host cannot answer for this model version now (not loaded, down, timed out)."""


class ModelHost(abc.ABC):
    """Runs model versions: load and warm up before traffic, predict, release when drained."""

    @abc.abstractmethod
    async def ensure_loaded(self, key: ModelKey) -> None:
        """Make ``key`` ready to answer: loaded and warmed up. Idempotent.

        Returns only when a prediction for ``key`` will not hit a half-loaded model.
        """

    @abc.abstractmethod
    async def predict(self, key: ModelKey, images: np.ndarray) -> np.ndarray:
        """Distances in mm, ``float32[batch]``, for ``images`` (``uint8[batch, h, w, 3]``)."""

    async def predict_frames(self, key: ModelKey, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Like :meth:`predict` for ``frames`` (each ``uint8[h, w, 3]``, one shape), which are
        not stacked yet: a host that can stack them off the event loop (or not at all)
        overrides this."""
        return await self.predict(key, np.stack(frames))

    @abc.abstractmethod
    async def release(self, key: ModelKey) -> None:
        """Drop ``key`` once no call uses it any more (no-op where the host manages memory)."""

    async def close(self) -> None:  # noqa: B027 - a default no-op, not abstract on purpose
        """Release everything."""
