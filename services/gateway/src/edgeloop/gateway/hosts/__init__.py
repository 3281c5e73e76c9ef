"""Model hosts behind one interface: embedded SavedModels, TF Serving, micro-batching.

Public surface::

    ModelHost, ModelKey, ModelUnavailable      the seam (base.py)
    EmbeddedHost, EmbeddedConfig               SavedModels in this process (embedded.py)
    TFServingHost, TFServingConfig             TF Serving's PredictionService (tfserving.py)
    MicroBatcher, BatchingConfig,              frames from many streams in one call
    BatchedPrediction, BatchStats              (batching.py)
    HostConfig, open_model_host,               the configured host behind a MicroBatcher
    repository_key                             (factory.py)
    ServedFrames                               frames served, kept for checks (served.py)
    TwinJudge, TwinJudgeConfig                 quantized twins checked against any host
                                               (twins.py)

The hosts are imported on first use, so importing the seam does not load TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgeloop.gateway.hosts.base import ModelHost, ModelKey, ModelUnavailable

_LAZY = {
    "EmbeddedHost": "embedded", "EmbeddedConfig": "embedded",
    "TFServingHost": "tfserving", "TFServingConfig": "tfserving",
    "MicroBatcher": "batching", "BatchingConfig": "batching",
    "BatchedPrediction": "batching", "BatchStats": "batching",
    "HostConfig": "factory", "open_model_host": "factory", "repository_key": "factory",
    "ServedFrames": "served", "TwinJudge": "twins", "TwinJudgeConfig": "twins",
}

__all__ = ["ModelHost", "ModelKey", "ModelUnavailable", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
