"""The model repository as TF Serving sees it: which versions and labels a model has.

Layout (CONTRIBUTING.md): ``<repository>/<model>/<version>/`` is a SavedModel and
``<repository>/models.config`` the ``ModelServerConfig`` (text format) the registry
writes: per model its ``base_path``, the versions to serve and the ``stable``/``canary``
labels. The file is re-read when it changes, so every replica of a scaled-out host
follows the registry without being told; without the file every numbered folder is a
version and there are no labels.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from edgeloop.gateway.hosts.base import ModelKey
from edgeloop.platform.errors import NotFound
from google.protobuf import text_format
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.config import model_server_config_pb2

log = logging.getLogger(__name__)

CONFIG_FILE = "models.config"
Config = model_server_config_pb2.ModelServerConfig


class ModelRepository:
    """Resolves a TF Serving ``ModelSpec`` to the :class:`ModelKey` of a SavedModel folder."""

    def __init__(self, root: str, recheck_s: float = 1.0) -> None:
        self.root = Path(root)
        self.recheck_s = recheck_s
        self._config: Config | None = None
        self._config_stamp: tuple[int, int] | None = None
        self._checked_at = float("-inf")

    def apply(self, config: Config) -> None:
        """Use ``config`` now (HandleReloadConfigRequest), until the file changes again."""
        self._config = config

    def config(self) -> Config | None:
        """The current ModelServerConfig; the file is checked at most every ``recheck_s``."""
        now = time.monotonic()
        if now - self._checked_at >= self.recheck_s:
            self._checked_at = now
            self._reload_if_changed()
        return self._config

    def _reload_if_changed(self) -> None:
        path = self.root / CONFIG_FILE
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._config_stamp:
            return
        self._config_stamp = stamp
        try:
            self._config = text_format.Parse(path.read_text(), Config())
            log.info("model server config loaded", extra={"path": str(path)})
        except (OSError, text_format.ParseError) as exc:
            log.warning("keeping the previous model server config", extra={
                "path": str(path), "error": str(exc)})

    def resolve(self, spec: model_pb2.ModelSpec) -> ModelKey:
        """The key of the version ``spec`` names (number, label, or the latest)."""
        base = self._base_path(spec.name)
        choice = spec.WhichOneof("version_choice")
        if choice == "version_label":
            version = self._labels(spec.name).get(spec.version_label)
            if version is None:
                raise NotFound(f"model {spec.name!r} has no version labelled "
                               f"{spec.version_label!r}")
        elif choice == "version":
            version = spec.version.value
        else:
            version = max(self.versions(spec.name), default=None)
        if version is None or not (base / str(version)).is_dir():
            raise NotFound(f"model {spec.name!r} has no version {version} in the repository")
        return ModelKey(spec.name, str(version), path=str(base / str(version)),
                        version_label=spec.version_label if choice == "version_label" else "")

    def versions(self, model: str) -> list[int]:
        """The model's versions: the config's specific versions, else every numbered folder."""
        entry = self._entry(model)
        if entry is not None and entry.model_version_policy.HasField("specific"):
            return sorted(entry.model_version_policy.specific.versions)
        base = self._base_path(model)
        return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()) \
            if base.is_dir() else []

    def _entry(self, model: str) -> model_server_config_pb2.ModelConfig | None:
        config = self.config()
        if config is None:
            return None
        return next((m for m in config.model_config_list.config if m.name == model), None)

    def _labels(self, model: str) -> dict[str, int]:
        entry = self._entry(model)
        return dict(entry.version_labels) if entry is not None else {}

    def _base_path(self, model: str) -> Path:
        entry = self._entry(model)
        # base_path is where TF Serving finds the model; a path that does not exist here
        # (TF Serving's container view) falls back to this repository's own layout.
        if entry is not None and entry.base_path and os.path.isdir(entry.base_path):
            return Path(entry.base_path)
        return self.root / model
