"""Object store: a local folder by default, S3/MinIO when an endpoint is configured.

The seam is :class:`ObjectStore` (put, put_file, get, get_range, exists, list); keys are
``/``-separated paths such as ``features/<deployment>/<yyyy-mm-dd>/<pack>.tar``.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import functools
import io
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from edgeloop.platform.errors import ConfigError, NotFound, Unavailable
from opentelemetry import trace

_tracer = trace.get_tracer("edgeloop.objectstore")
MethodT = TypeVar("MethodT", bound=Callable[..., Any])


def _traced(operation: str) -> Callable[[MethodT], MethodT]:
    """A span ``objectstore.<operation>`` around a store method called with a key."""

    def decorate(method: MethodT) -> MethodT:
        @functools.wraps(method)
        def wrapper(self: ObjectStore, key: str, *args: Any, **kwargs: Any) -> Any:
            with _tracer.start_as_current_span(
                    f"objectstore.{operation}", kind=trace.SpanKind.CLIENT,
                    attributes={"edgeloop.object_key": key, "edgeloop.object_store": self.kind}):
                return method(self, key, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


class ObjectStore(abc.ABC):
    """Where images, manifests and arrays are kept, by key."""

    kind: str = "object-store"
    """Short name of the backend, on every span (``local``, ``s3``)."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store ``data`` under ``key``, replacing what was there."""

    def put_file(self, key: str, path: str | Path,
                 content_type: str = "application/octet-stream") -> None:
        """Store the content of the file at ``path`` under ``key``; the file stays as it is.

        For objects too large to hold in memory twice (a snapshot's arrays): the stores
        stream the file (S3) or hard-link it into place (a local folder on the same disk,
        else a copy). So do not write into the file afterwards; replacing it is fine.
        """
        self.put(key, Path(path).read_bytes(), content_type)

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under ``key``; :class:`NotFound` if there are none."""

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """At most ``length`` bytes of the object under ``key`` from byte ``offset`` on."""
        return self.get(key)[offset:offset + length]

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Keys that start with ``prefix``."""

    @abc.abstractmethod
    def folders(self, prefix: str) -> list[str]:
        """The folders right below ``prefix`` (a folder: empty or ending with ``/``), each
        ending with ``/``: the distinct next parts of the keys under it, without listing
        every key (a day of images is hundreds of thousands)."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under the folder ``prefix`` (ending with ``/``); how many."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the objects live, for logs and status."""


def _check_folder(prefix: str) -> str:
    if prefix and not prefix.endswith("/"):
        raise ValueError(f"folder prefix {prefix!r} must end with '/'")
    if prefix:
        _check_key(prefix.rstrip("/"))
    return prefix


def _check_key(key: str) -> str:
    # String tests rather than PurePosixPath: the same rule (not empty, not absolute, no
    # ".." part) at a tenth of the cost, and every stored image passes through here.
    if not key or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"invalid object key {key!r}")
    return key


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


class LocalFolderStore(ObjectStore):
    """Objects as files under a root folder; writes are atomic (temp file, then rename)."""

    kind = "local"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._root = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    @_traced("put")
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        # Plain os calls and strings (no pathlib, no uuid4): on the ingest hot path
        # mkstemp's name generation, an unconditional mkdir and path objects cost as much
        # as decoding the JPEG. The temporary name only has to be unique (O_EXCL checks).
        # normpath: "a//b", "a/./b" and "a/" name the file pathlib would (root/a/b, root/a)
        path = os.path.normpath(os.path.join(self._root, _check_key(key)))
        folder = os.path.dirname(path)
        tmp = f"{folder}{os.sep}.tmp-{os.urandom(16).hex()}"
        try:
            fd = os.open(tmp, _CREATE_FLAGS, 0o644)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(tmp, _CREATE_FLAGS, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, path)

    @_traced("put")
    def put_file(self, key: str, path: str | Path,
                 content_type: str = "application/octet-stream") -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{os.urandom(16).hex()}"
        try:
            os.link(path, tmp)  # same file system: no copy, and the file stays where it is
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copyfile(path, tmp)
        try:
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @_traced("get")
    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"object {key} not found") from exc

    @_traced("get")
    def get_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as file:
                file.seek(offset)
                return file.read(length)
        except FileNotFoundError as exc:
            raise NotFound(f"object {key} not found") from exc

    @_traced("exists")
    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        # Walk only the prefix's folder, not the whole store (millions of images).
        folder = self.root / prefix.rpartition("/")[0] if "/" in prefix else self.root
        if not folder.is_dir():
            return
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def folders(self, prefix: str) -> list[str]:
        folder = self.root / _check_folder(prefix)
        if not folder.is_dir():
            return []
        return sorted(f"{prefix}{entry.name}/" for entry in os.scandir(folder)
                      if entry.is_dir(follow_symlinks=False))

    def delete_prefix(self, prefix: str) -> int:
        if not _check_folder(prefix):
            raise ValueError("delete_prefix needs a folder, not the whole store")
        folder = self.root / prefix
        if not folder.is_dir():
            return 0
        count = sum(1 for path in folder.rglob("*") if path.is_file())
        shutil.rmtree(folder)
        return count

    def describe(self) -> str:
        return f"folder {self.root}"


_MISSING = ("NoSuchKey", "NoSuchObject", "NotFound")


class S3Store(ObjectStore):
    """Objects in an S3 bucket (MinIO in compose) through the ``minio`` client.

    Every failure to reach the server (refused connection, timeout, 5xx) becomes
    :class:`Unavailable`, a missing object :class:`NotFound`. The HTTP client retries
    a few times with short backoff and bounded timeouts, so an unreachable store is
    reported in seconds rather than hanging a request.
    """

    kind = "s3"

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str,
                 secure: bool = False, region: str | None = None) -> None:
        import urllib3
        from minio import Minio

        self.bucket = bucket
        self.endpoint = endpoint
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5.0, read=30.0), maxsize=16,
            retries=urllib3.Retry(total=3, backoff_factor=0.2,
                                  status_forcelist=(500, 502, 503, 504)))
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key,
                            secure=secure, region=region, http_client=http)

    @contextlib.contextmanager
    def _errors(self, action: str, key: str = "") -> Iterator[None]:
        """Translate minio/urllib3/socket errors of ``action`` on ``key``."""
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError

        try:
            yield
        except S3Error as exc:
            if key and exc.code in _MISSING:
                raise NotFound(f"object {key} not found") from exc
            raise Unavailable(f"cannot {action} {key or self.bucket} in {self.describe()}: "
                              f"{exc.code}: {exc.message}") from exc
        except (OSError, HTTPError) as exc:
            raise Unavailable(f"cannot {action} {key or self.bucket} in {self.describe()}: "
                              f"{exc}") from exc

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist."""
        with self._errors("create bucket"):
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)

    @_traced("put")
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with self._errors("write", key):
            self.client.put_object(self.bucket, _check_key(key), io.BytesIO(data), len(data),
                                   content_type=content_type)

    @_traced("put")
    def put_file(self, key: str, path: str | Path,
                 content_type: str = "application/octet-stream") -> None:
        with self._errors("write", key):
            self.client.fput_object(self.bucket, _check_key(key), str(path),
                                    content_type=content_type)

    @_traced("get")
    def get(self, key: str) -> bytes:
        with self._errors("read", key):
            response = self.client.get_object(self.bucket, _check_key(key))
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    @_traced("get")
    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""  # minio reads length=0 as "to the end"
        with self._errors("read", key):
            response = self.client.get_object(self.bucket, _check_key(key), offset=offset,
                                              length=length)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    @_traced("exists")
    def exists(self, key: str) -> bool:
        try:
            with self._errors("stat", key):
                self.client.stat_object(self.bucket, _check_key(key))
        except NotFound:
            return False
        return True

    def list(self, prefix: str) -> Iterator[str]:
        with self._errors("list", prefix):
            for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                yield obj.object_name

    def folders(self, prefix: str) -> list[str]:
        with self._errors("list", prefix):
            return sorted(obj.object_name for obj in self.client.list_objects(
                self.bucket, prefix=_check_folder(prefix), recursive=False) if obj.is_dir)

    def delete_prefix(self, prefix: str) -> int:
        from minio.deleteobjects import DeleteObject

        if not _check_folder(prefix):
            raise ValueError("delete_prefix needs a folder, not the whole store")
        with self._errors("delete", prefix):
            names = [obj.object_name for obj in self.client.list_objects(
                self.bucket, prefix=prefix, recursive=True)]
            # remove_objects sends up to 1,000 keys a request; its errors come lazily
            failed = list(self.client.remove_objects(
                self.bucket, (DeleteObject(name) for name in names)))
        if failed:
            raise Unavailable(f"cannot delete {len(failed)} objects under {prefix} in "
                              f"{self.describe()}: {failed[0].code}: {failed[0].message}")
        return len(names)

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
