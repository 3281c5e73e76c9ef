"""TF Serving's ModelServerConfig for the versions active deployments need.

Written as text format to ``<repository>/models.config`` (only when it changes, and
atomically), and handed to :mod:`edgeloop.registry.tfserving` for a live reload.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgeloop.registry.resolution import Resolution
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

log = logging.getLogger(__name__)
CONFIG_FILE = "models.config"
ModelServerConfig = model_server_config_pb2.ModelServerConfig  # imports no TensorFlow


def build(resolution: Resolution, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """One model entry per model with needed versions: specific versions, stable/canary labels."""
    config = model_server_config_pb2.ModelServerConfig()
    # Present even when empty: TF Serving reads a config without a model list as invalid.
    config.model_config_list.SetInParent()
    entries = config.model_config_list.config
    for model, versions in sorted(resolution.needed_versions().items()):
        entry = entries.add(name=model, base_path=f"{base_path.rstrip('/')}/{model}",
                            model_platform="tensorflow")
        entry.model_version_policy.specific.versions.extend(sorted(versions))
        for label, version in sorted(resolution.labels.get(model, {}).items()):
            entry.version_labels[label] = version
    return config


def render(config: model_server_config_pb2.ModelServerConfig) -> str:
    """The config in text format, as TF Serving's --model_config_file reads it."""
    return text_format.MessageToString(config)


def write(repository: Path, config: model_server_config_pb2.ModelServerConfig) -> bool:
    """Write ``models.config`` if its content changes; return whether it was written."""
    path = repository / CONFIG_FILE
    text = render(config)
    if path.exists() and path.read_text() == text:
        return False
    repository.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{CONFIG_FILE}.tmp")
    staging.write_text(text)
    staging.replace(path)
    log.info("wrote model server config", extra={"path": str(path),
                                                 "models": len(config.model_config_list.config)})
    return True


def read(repository: Path) -> model_server_config_pb2.ModelServerConfig | None:
    """The ``models.config`` written before (what a model host started with), if any."""
    path = repository / CONFIG_FILE
    if not path.exists():
        return None
    try:
        return text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None
