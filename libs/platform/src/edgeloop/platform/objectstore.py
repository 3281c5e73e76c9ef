"""Object store: a local folder by default, S3/MinIO when an endpoint is configured.

The seam is :class:`ObjectStore` (put, get, exists, list); keys are ``/``-separated
paths such as ``features/<deployment>/<yyyy-mm-dd>/<observation_id>.jpg``.
"""

from __future__ import annotations

import abc
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from edgeloop.platform.errors import ConfigError, NotFound, Unavailable


class ObjectStore(abc.ABC):
    """Where images, manifests and arrays are kept, by key."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store ``data`` under ``key``, replacing what was there."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under ``key``; :class:`NotFound` if there are none."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Keys that start with ``prefix``."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the objects live, for logs and status."""


def _check_key(key: str) -> str:
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"invalid object key {key!r}")
    return key


class LocalFolderStore(ObjectStore):
    """Objects as files under a root folder; writes are atomic (temp file, then rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"object {key} not found") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def describe(self) -> str:
        return f"folder {self.root}"


class S3Store(ObjectStore):
    """Objects in an S3 bucket (MinIO in compose) through the ``minio`` client."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str,
                 secure: bool = False, region: str | None = None) -> None:
        from minio import Minio

        self.bucket = bucket
        self.endpoint = endpoint
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key,
                            secure=secure, region=region)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist."""
        from minio.error import S3Error

        try:
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)
        except (S3Error, OSError) as exc:
            raise Unavailable(f"object store {self.describe()} unreachable: {exc}") from exc

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        from minio.error import S3Error

        try:
            self.client.put_object(self.bucket, _check_key(key), io.BytesIO(data), len(data),
                                   content_type=content_type)
        except (S3Error, OSError) as exc:
            raise Unavailable(f"cannot write {key} to {self.describe()}: {exc}") from exc

    def get(self, key: str) -> bytes:
        from minio.error import S3Error

        try:
            response = self.client.get_object(self.bucket, _check_key(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise NotFound(f"object {key} not found") from exc
            raise Unavailable(f"cannot read {key} from {self.describe()}: {exc}") from exc
        except OSError as exc:
            raise Unavailable(f"cannot read {key} from {self.describe()}: {exc}") from exc
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, _check_key(key))
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise Unavailable(f"cannot stat {key} in {self.describe()}: {exc}") from exc

    def list(self, prefix: str) -> Iterator[str]:
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            yield obj.object_name

    def describe(self) -> str:
        return f"s3://{self.bucket} at {self.endpoint}"


def open_object_store(folder: str, s3_endpoint: str = "", s3_access_key: str = "",
                      s3_secret_key: str = "", s3_bucket: str = "edgeloop",
                      s3_secure: bool = False) -> ObjectStore:
    """The configured store: S3 when ``s3_endpoint`` is set, else the local ``folder``."""
    if s3_endpoint:
        if not (s3_access_key and s3_secret_key):
            raise ConfigError("EDGELOOP_S3_ACCESS_KEY and EDGELOOP_S3_SECRET_KEY are required "
                              "when EDGELOOP_S3_ENDPOINT is set")
        store = S3Store(s3_endpoint, s3_access_key, s3_secret_key, s3_bucket, s3_secure)
        store.ensure_bucket()
        return store
    if not folder:
        raise ConfigError("EDGELOOP_OBJECT_STORE_DIR: set a folder, or EDGELOOP_S3_ENDPOINT for S3")
    return LocalFolderStore(folder)
