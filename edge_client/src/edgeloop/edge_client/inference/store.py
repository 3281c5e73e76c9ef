"""The robot's model store: verified TFLite files on its own disk, and which one is current.

Layout under the store's folder::

    <model>/<version>.tflite        a complete, verified file (renamed into place)
    <model>/<version>.tflite.part   a download in progress (resumed from its size)
    <model>/<version>.quantized.tflite[.part]   the same for a version's quantized twin
    current.json                    {model_name, model_version, size_bytes, sha256, quantized}

A file becomes ``<version>.tflite`` only after its size and SHA-256 matched what the
gateway announced; ``current.json`` is replaced atomically after the swap. On start the
current file is hashed again, so a file damaged or altered on the SD card is refused,
never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class VerificationError(Exception):
    """A model file's size or SHA-256 is not what was announced: it is refused."""


@dataclass(frozen=True)
class ModelIdentity:
    """What a model file must be: name, version, size and hash, and whether it is the
    version's quantized twin."""

    model_name: str
    model_version: str
    size_bytes: int
    sha256: str
    quantized: bool = False

    @property
    def file_name(self) -> str:
        """The file's name in its model's folder."""
        return f"{self.model_version}{'.quantized' if self.quantized else ''}.tflite"


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, identity: ModelIdentity) -> None:
    """VerificationError unless ``path`` has the announced size and SHA-256."""
    size = path.stat().st_size
    if size != identity.size_bytes:
        raise VerificationError(f"{path.name}: {size} bytes, announced {identity.size_bytes} "
                                "(truncated or padded)")
    digest = sha256_of(path)
    if digest != identity.sha256:
        raise VerificationError(f"{path.name}: SHA-256 {digest[:12]}… is not the announced "
                                f"{identity.sha256[:12]}… (damaged or tampered)")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ModelStore:
    """Verified model files on the robot's disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, identity: ModelIdentity) -> Path:
        """Where the complete file of ``identity`` lives."""
        return self.root / identity.model_name / identity.file_name

    def part_path(self, identity: ModelIdentity) -> Path:
        """Where its download in progress lives."""
        return self.path(identity).with_name(f"{identity.file_name}.part")

    def has(self, identity: ModelIdentity) -> bool:
        """Whether the complete file is here (verified when it was stored)."""
        return self.path(identity).exists()

    def commit(self, identity: ModelIdentity) -> Path:
        """Verify the finished download and rename it into place; a bad file is deleted."""
        part = self.part_path(identity)
        try:
            verify(part, identity)
        except VerificationError:
            part.unlink(missing_ok=True)  # never resume from bytes that proved wrong
            raise
        target = self.path(identity)
        os.replace(part, target)
        _fsync_dir(target.parent)
        return target

    def set_current(self, identity: ModelIdentity) -> None:
        """Record ``identity`` as the model the robot runs (atomic replace)."""
        staging = self.root / ".current.json.tmp"
        staging.write_text(json.dumps(asdict(identity)))
        with staging.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(staging, self.root / "current.json")

    def current(self) -> ModelIdentity | None:
        """The current model, re-verified on disk; None if there is none or it is damaged."""
        record = self.root / "current.json"
        if not record.exists():
            return None
        try:
            identity = ModelIdentity(**json.loads(record.read_text()))
            verify(self.path(identity), identity)
        except (OSError, ValueError, TypeError, VerificationError) as exc:
            log.error("the stored model is unusable; waiting for a new download",
                      extra={"reason": str(exc)})
            return None
        return identity

    def prune(self, keep: ModelIdentity) -> None:
        """Delete other versions' files (the robot needs only the current one)."""
        for path in self.root.glob("*/*.tflite"):
            if path != self.path(keep):
                path.unlink(missing_ok=True)
