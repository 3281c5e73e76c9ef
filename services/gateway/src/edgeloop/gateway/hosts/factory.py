"""Which host the gateway runs, from its configuration: one place that builds it.

The app maps its ``EDGELOOP_*`` settings onto :class:`HostConfig` and calls
:func:`open_model_host`; the stream then uses the returned :class:`MicroBatcher`
(``predict_one`` per frame, ``ensure_loaded``/``release`` on version switches) and never
needs to know which host sits behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgeloop.gateway.hosts.base import ModelHost, ModelKey
from edgeloop.gateway.hosts.batching import BatchingConfig, MicroBatcher
from edgeloop.platform.errors import ConfigError

if TYPE_CHECKING:  # the hosts themselves load only when chosen (TF for embedded)
    from edgeloop.gateway.hosts.embedded import EmbeddedConfig
    from edgeloop.gateway.hosts.tfserving import TFServingConfig

HOST_KINDS = ("embedded", "tfserving")


@dataclass(frozen=True)
class HostConfig:
    """The model host and its knobs (every part has documented defaults)."""

    kind: str = "embedded"
    """``embedded`` (SavedModels in the gateway) or ``tfserving`` (``EDGELOOP_MODEL_HOST``)."""
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    embedded: EmbeddedConfig | None = None
    """The embedded host's knobs, ``None`` for their defaults."""
    tfserving: TFServingConfig | None = None
    """The TF Serving client's knobs, ``None`` for their defaults (address 127.0.0.1:8500)."""


def open_model_host(config: HostConfig) -> MicroBatcher:
    """The configured host behind a :class:`MicroBatcher`; ``close()`` it on shutdown."""
    return MicroBatcher(_inner_host(config), config.batching)


def _inner_host(config: HostConfig) -> ModelHost:
    if config.kind == "embedded":
        from edgeloop.gateway.hosts.embedded import EmbeddedHost

        return EmbeddedHost(config.embedded)
    if config.kind == "tfserving":
        from edgeloop.gateway.hosts.tfserving import TFServingHost

        return TFServingHost(config.tfserving)
    raise ConfigError(f"EDGELOOP_MODEL_HOST: {config.kind!r} is not one of "
                      f"{', '.join(HOST_KINDS)}")


def repository_key(repository: str, model_name: str, version: str,
                   version_label: str = "") -> ModelKey:
    """The key of a published version: its SavedModel is ``<repository>/<model>/<version>``."""
    path = str(Path(repository) / model_name / version) if repository else ""
    return ModelKey(model_name, version, path=path, version_label=version_label)
