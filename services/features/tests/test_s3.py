"""The features service as a process (``python -m edgeloop.features``) storing images in S3.

MinIO cannot be installed on these machines: ``moto_server`` (moto's standalone
S3-compatible server) stands in for it on a loopback port, reached through the same
``minio`` client the service uses against MinIO.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc
from edgeloop.features.images import locate, read_image
from edgeloop.platform.objectstore import S3Store
from edgeloop.testing import ServiceProcess, free_port, moto_s3


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port."""
    with moto_s3() as endpoint:
        yield endpoint


def _env(database_url: str, **extra: str) -> dict[str, str]:
    return {"EDGELOOP_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
            "EDGELOOP_DATABASE_URL": database_url, "EDGELOOP_LOG_FORMAT": "text",
            "EDGELOOP_OBJECT_STORE_DIR": "", **extra}


def test_ingest_stores_images_in_s3(database_url, s3_endpoint, tmp_path: Path, make_observation):
    env = _env(database_url, EDGELOOP_S3_ENDPOINT=s3_endpoint, EDGELOOP_S3_ACCESS_KEY="testing",
               EDGELOOP_S3_SECRET_KEY="testing", EDGELOOP_S3_BUCKET="features-test")
    service = ServiceProcess("edgeloop.features", env, tmp_path / "features.log").start()
    try:
        batch = [make_observation(i) for i in range(3)]
        with grpc.insecure_channel(service.address) as channel:
            stub = feature_store_service_pb2_grpc.FeatureStoreServiceStub(channel)
            reply = stub.Ingest(iter([pb.IngestRequest(observations=batch)]), timeout=30)
            assert (reply.stored, len(reply.rejected)) == (3, 0), reply
            pages = list(stub.ListObservations(pb.ListObservationsRequest(include_jpeg=True),
                                               timeout=30))
        listed = [obs for page in pages for obs in page.observations]
        assert [o.jpeg for o in listed] == [o.jpeg for o in batch]
        # Each image is a byte range of a tar pack in the bucket, read with a ranged GET.
        bucket = S3Store(s3_endpoint, "testing", "testing", "features-test")
        assert [read_image(bucket, o.image_key) for o in listed] == [o.jpeg for o in batch]
        packs = {locate(o.image_key).object_key for o in listed}
        assert set(bucket.list("features/parking/2026-03-01/")) == packs
        assert all(key.endswith(".tar") for key in packs)
    finally:
        assert service.stop() == 0, service.log_tail()


def test_unreachable_s3_stops_the_service_naming_the_variable(database_url, tmp_path: Path):
    env = _env(database_url, EDGELOOP_S3_ENDPOINT=f"127.0.0.1:{free_port()}",
               EDGELOOP_S3_ACCESS_KEY="k", EDGELOOP_S3_SECRET_KEY="s")
    service = ServiceProcess("edgeloop.features", env, tmp_path / "features.log")
    service.start(wait=False)
    assert service.process is not None
    assert service.process.wait(60) == 2
    assert "EDGELOOP_S3_ENDPOINT" in service.log_tail()


def test_missing_database_url_stops_the_service(tmp_path: Path):
    env = {"EDGELOOP_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
           "EDGELOOP_OBJECT_STORE_DIR": str(tmp_path)}
    service = ServiceProcess("edgeloop.features", env, tmp_path / "features.log")
    service.env.pop("EDGELOOP_DATABASE_URL", None)
    service.start(wait=False)
    assert service.process is not None and service.process.wait(60) == 2
    assert "EDGELOOP_DATABASE_URL" in service.log_tail()
