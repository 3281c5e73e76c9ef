"""`edgeloop dead-letters list|replay` against a real features process on loopback."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
from click.testing import CliRunner
from edgeloop.compose.cli import cli
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as pb_grpc
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.testing import ServiceProcess, free_port


@pytest.fixture(scope="module")
def features(pg_cluster: Any) -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="edgeloop-cli-dead-letters-"))
    process = ServiceProcess("edgeloop.features", {
        "EDGELOOP_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
        "EDGELOOP_DATABASE_URL": pg_cluster.ensure_database(f"cli_{uuid.uuid4().hex[:10]}"),
        "EDGELOOP_OBJECT_STORE_DIR": str(folder / "objects"), "EDGELOOP_LOG_FORMAT": "text",
    }, folder / "features.log")
    try:
        process.start(timeout_s=240)
        yield process.address
    finally:
        process.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _observation(deployment: str, jpeg: bytes) -> observation_pb2.Observation:
    obs = observation_pb2.Observation(observation_id=str(uuid.uuid4()), device_id="car-9",
                                      deployment=deployment, jpeg=jpeg, sensor_mm=400.0)
    obs.time.GetCurrentTime()
    return obs


def _run(features: str, *args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env={"EDGELOOP_FEATURES_ADDR": features,
                                                    "COLUMNS": "200"})


def test_list_and_replay_dead_letters(features: str) -> None:
    image = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    no_deployment, broken = _observation("", jpeg), _observation("parking", b"\xff\xd8 broken")
    with grpc.insecure_channel(features) as channel:
        reply = pb_grpc.FeatureStoreServiceStub(channel).Ingest(
            iter([pb.IngestRequest(observations=[no_deployment, broken])]), timeout=60)
    assert reply.stored == 0 and len(reply.rejected) == 2

    listed = _run(features, "dead-letters", "list", "--output", "json")
    assert listed.exit_code == 0, listed.output
    document = json.loads(listed.output)
    assert document["total"] == "2"  # uint64 is a string in protobuf's JSON mapping
    ids = {d["observation_id"]: int(d["dead_letter_id"]) for d in document["dead_letters"]}
    assert set(ids) == {no_deployment.observation_id, broken.observation_id}
    table = _run(features, "dead-letters", "list")
    assert table.exit_code == 0 and "deployment: required" in table.output

    refused = _run(features, "dead-letters", "replay")
    assert refused.exit_code == 2 and "--all" in refused.output
    replayed = _run(features, "dead-letters", "replay", "--all", "--deployment", "collect")
    assert replayed.exit_code == 1  # the broken JPEG is refused again
    assert "stored 1, already stored 0, refused again 1" in replayed.output
    assert f"{ids[broken.observation_id]}: jpeg" in replayed.output
    left = json.loads(_run(features, "dead-letters", "list", "--output", "json").output)
    assert [d["observation_id"] for d in left["dead_letters"]] == [broken.observation_id]
