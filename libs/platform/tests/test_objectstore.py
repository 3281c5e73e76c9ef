"""The object store: the local folder, and S3 against a real S3 server.

MinIO cannot be installed on these machines, so the S3 tests run ``moto_server``
(moto's standalone S3-compatible HTTP server) on a loopback port and talk to it
through the same ``minio`` client the services use against MinIO.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from edgeloop.platform.errors import ConfigError, NotFound, Unavailable
from edgeloop.platform.objectstore import (
    LocalFolderStore,
    ObjectStore,
    S3Store,
    open_object_store,
)
from edgeloop.testing import free_port, moto_s3


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port, for the module."""
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture(params=["folder", "s3"])
def store(request, tmp_path: Path) -> ObjectStore:
    """Each store kind, empty."""
    if request.param == "folder":
        return LocalFolderStore(tmp_path / "objects")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"test-{request.node.name.split('[')[0][-20:].replace('_', '-')}-{time.time_ns()}"
    return open_object_store("", endpoint, "testing", "testing", bucket.lower()[:63])


def test_put_get_exists(store):
    store.put("features/d/2026-03-01/a.jpg", b"\xff\xd8jpeg", content_type="image/jpeg")
    assert store.get("features/d/2026-03-01/a.jpg") == b"\xff\xd8jpeg"
    assert store.exists("features/d/2026-03-01/a.jpg")
    assert not store.exists("features/d/2026-03-01/b.jpg")


def test_put_replaces(store):
    store.put("k/x", b"one")
    store.put("k/x", b"two")
    assert store.get("k/x") == b"two"


def test_missing_object_is_not_found(store):
    with pytest.raises(NotFound, match="missing/key"):
        store.get("missing/key")


def test_list_by_prefix(store):
    for key in ("features/a/1.jpg", "features/a/2.jpg", "features/ab/3.jpg", "trainer/x.json"):
        store.put(key, b"1")
    assert sorted(store.list("features/a/")) == ["features/a/1.jpg", "features/a/2.jpg"]
    assert sorted(store.list("features/a")) == ["features/a/1.jpg", "features/a/2.jpg",
                                                "features/ab/3.jpg"]
    assert sorted(store.list("")) == ["features/a/1.jpg", "features/a/2.jpg",
                                      "features/ab/3.jpg", "trainer/x.json"]
    assert list(store.list("nothing/")) == []


def test_folders_and_deleting_one(store):
    keys = ["features/a/2026-03-01/p1.tar", "features/a/2026-03-01/p2.tar",
            "features/a/2026-03-02/p3.tar", "features/b/2026-03-01/p4.tar",
            "features/a/loose.jpg", "trainer/x.json"]
    for key in keys:
        store.put(key, b"1")
    assert store.folders("") == ["features/", "trainer/"]
    assert store.folders("features/") == ["features/a/", "features/b/"]
    assert store.folders("features/a/") == ["features/a/2026-03-01/", "features/a/2026-03-02/"]
    assert store.folders("features/a/2026-03-01/") == []
    assert store.folders("nothing/") == []

    assert store.delete_prefix("features/a/2026-03-01/") == 2
    assert sorted(store.list("")) == sorted(k for k in keys if "a/2026-03-01" not in k)
    assert store.folders("features/a/") == ["features/a/2026-03-02/"]
    assert store.delete_prefix("features/a/2026-03-01/") == 0
    with pytest.raises(ValueError):
        store.delete_prefix("")  # never the whole store
    with pytest.raises(ValueError):
        store.folders("features")  # a folder ends with "/"


@pytest.mark.parametrize("key", ["", "/abs", "a/../b"])
def test_bad_keys_are_refused(store, key):
    with pytest.raises(ValueError):
        store.put(key, b"1")


def test_get_range_reads_a_slice(store):
    store.put("packs/p.tar", bytes(range(200)))
    assert store.get_range("packs/p.tar", 10, 5) == bytes(range(10, 15))
    assert store.get_range("packs/p.tar", 195, 10) == bytes(range(195, 200))  # short at the end
    assert store.get_range("packs/p.tar", 0, 0) == b""
    with pytest.raises(NotFound):
        store.get_range("packs/missing.tar", 0, 5)


def test_empty_object(store):
    store.put("empty", b"")
    assert store.get("empty") == b"" and store.exists("empty")


def test_put_file_stores_the_file_and_leaves_it_alone(store, tmp_path):
    source = tmp_path / "arrays.npz"
    source.write_bytes(b"old")
    store.put("snapshots/s1/arrays.npz", b"replaced")
    data = os.urandom(3 * 2**20 + 5)  # larger than one multipart part of small uploads
    source.write_bytes(data)
    store.put_file("snapshots/s1/arrays.npz", source)
    assert store.get("snapshots/s1/arrays.npz") == data
    assert source.read_bytes() == data
    # the stored object does not change with the file: a later write to the file, if it
    # replaces it, leaves the object as stored
    replacement = tmp_path / "other"
    replacement.write_bytes(b"new")
    replacement.replace(source)
    assert store.get("snapshots/s1/arrays.npz") == data
    assert list(store.list("snapshots/")) == ["snapshots/s1/arrays.npz"]


def test_folder_put_file_links_the_file_on_the_same_disk(tmp_path):
    store = LocalFolderStore(tmp_path / "objects")
    source = tmp_path / "objects" / "staging.bin"
    source.write_bytes(b"x" * 1000)
    store.put_file("a/b.bin", source)
    assert os.stat(source).st_ino == os.stat(store.root / "a" / "b.bin").st_ino
    assert [p.name for p in (store.root / "a").iterdir()] == ["b.bin"]  # no temp file left


def test_folder_writes_leave_no_temp_files(tmp_path):
    store = LocalFolderStore(tmp_path)
    store.put("a/b", b"data")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b"]


def test_open_object_store_picks_the_kind(tmp_path, s3_endpoint):
    assert isinstance(open_object_store(str(tmp_path)), LocalFolderStore)
    s3 = open_object_store(str(tmp_path), s3_endpoint, "k", "s", "picked")
    assert isinstance(s3, S3Store) and "picked" in s3.describe()


def test_open_object_store_names_missing_settings():
    with pytest.raises(ConfigError, match="EDGELOOP_OBJECT_STORE_DIR"):
        open_object_store("")
    with pytest.raises(ConfigError, match="EDGELOOP_S3_ACCESS_KEY"):
        open_object_store("", "127.0.0.1:9", "", "")


def test_unreachable_s3_is_unavailable():
    dead = S3Store(f"127.0.0.1:{free_port()}", "k", "s", "bucket")
    for call in (lambda: dead.put("a", b"1"), lambda: dead.get("a"), lambda: dead.exists("a"),
                 lambda: dead.get_range("a", 0, 1),
                 lambda: list(dead.list("")), dead.ensure_bucket):
        with pytest.raises(Unavailable, match="s3://bucket"):
            call()


def test_store_calls_are_traced(tmp_path: Path) -> None:
    from edgeloop.platform import objectstore
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    original = objectstore._tracer
    objectstore._tracer = provider.get_tracer("test")
    try:
        store = objectstore.LocalFolderStore(tmp_path)
        store.put("a/b.jpg", b"x")
        assert store.get("a/b.jpg") == b"x"
    finally:
        objectstore._tracer = original
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"objectstore.put", "objectstore.get"}
    assert spans["objectstore.put"].attributes["edgeloop.object_key"] == "a/b.jpg"
    assert spans["objectstore.get"].attributes["edgeloop.object_store"] == "local"
