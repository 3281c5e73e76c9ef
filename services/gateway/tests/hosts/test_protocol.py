"""TF Serving's protocol served by edgeloop (ServingProtocol over EmbeddedHost), end to end.

Everything here is real: SavedModels in a model repository with a ``models.config`` in
the registry's format, the embedded host, the protocol on a grpc.aio server on loopback,
and the gateway's TFServingHost as the client.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from edgeloop.gateway.hosts import ModelKey, ModelUnavailable
from edgeloop.gateway.hosts.embedded import EmbeddedHost
from edgeloop.gateway.hosts.protocol import ProtocolServicer, ServingProtocol
from edgeloop.gateway.hosts.repository import ModelRepository
from edgeloop.gateway.hosts.tensors import to_ndarray, to_tensor_proto
from edgeloop.gateway.hosts.tfserving import TFServingConfig, TFServingHost
from edgeloop.testing import free_port
from google.protobuf import text_format
from grpc import aio
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2


def server_config(base: Path, labels: dict[str, int]) -> model_server_config_pb2.ModelServerConfig:
    """A ModelServerConfig as the registry writes it: versions 1 and 2, the given labels."""
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add(name="parking", base_path=str(base),
                                                model_platform="tensorflow")
    entry.model_version_policy.specific.versions.extend([1, 2])
    for label, version in labels.items():
        entry.version_labels[label] = version
    return config


def write_config(repo: Path, labels: dict[str, int]) -> None:
    text = text_format.MessageToString(server_config(repo / "parking", labels))
    (repo / "models.config").write_text(text)


@pytest.fixture
def repo(model_repo: Path, tmp_path: Path) -> Path:
    """A repository of its own (copied), with stable -> 1 and canary -> 2."""
    shutil.copytree(model_repo, tmp_path / "repo")
    write_config(tmp_path / "repo", {"stable": 1, "canary": 2})
    return tmp_path / "repo"


@pytest_asyncio.fixture
async def served(repo: Path) -> AsyncIterator[str]:
    """The protocol over an EmbeddedHost on a loopback grpc.aio server; yields its address."""
    host = EmbeddedHost()
    server = aio.server()
    ProtocolServicer(ServingProtocol(host, ModelRepository(str(repo), recheck_s=0))) \
        .add_to_server(server)
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()
    yield address
    await server.stop(0)
    await host.close()


@pytest_asyncio.fixture
async def client(served: str) -> AsyncIterator[TFServingHost]:
    host = TFServingHost(TFServingConfig(address=served, deadline_s=10.0, status_poll_s=0.02,
                                         initial_backoff_s=0.01, load_timeout_s=60.0))
    yield host
    await host.close()


async def test_load_on_status_poll_then_predict(served: str, client, make_images,
                                                direct_model) -> None:
    images = make_images(4, seed=11)
    key = ModelKey("parking", "2")
    # One attempt, no retry: a retrying client could (rightly) get its answer once the
    # load it started finishes, and whether that happens first is a race with the clock.
    once = TFServingHost(TFServingConfig(address=served, deadline_s=10.0, max_attempts=1))
    try:
        with pytest.raises(ModelUnavailable, match="loading"):
            await once.predict(key, images)  # never answered by a version not warmed up
    finally:
        await once.close()
    await client.ensure_loaded(key)
    got = await client.predict(key, images)
    assert got.tolist() == pytest.approx(direct_model("2", images).tolist(), rel=1e-5)


async def predict_by_label(address: str, label: str,
                           images: np.ndarray) -> tuple[int, list[float]]:
    """Predict through the label (TFServingHost addresses by number only, so a raw stub):
    the version the answer names, and its distances."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "parking"
    request.model_spec.version_label = label
    request.inputs["image"].CopyFrom(to_tensor_proto(images))
    async with aio.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        reply = await stub.Predict(request, timeout=10)
    return reply.model_spec.version.value, to_ndarray(reply.outputs["distance_mm"]).tolist()


async def test_labels_follow_models_config(served: str, client, repo, make_images,
                                           which_version) -> None:
    for version in ("1", "2"):
        await client.ensure_loaded(ModelKey("parking", version))
    images = make_images(2)
    for label, version in (("stable", 1), ("canary", 2)):
        answered, distances = await predict_by_label(served, label, images)
        assert answered == version and [which_version(d) for d in distances] == [str(version)] * 2
    write_config(repo, {"stable": 2})  # the registry promotes v2 and drops canary
    answered, distances = await predict_by_label(served, "stable", images)
    assert answered == 2 and [which_version(d) for d in distances] == ["2", "2"]
    with pytest.raises(aio.AioRpcError, match="no version labelled 'canary'") as refused:
        await predict_by_label(served, "canary", images)
    assert refused.value.code().name == "NOT_FOUND"


async def test_unknown_version_is_not_found(client, make_images) -> None:
    with pytest.raises(ModelUnavailable, match="not loaded in TF Serving.*no version 9"):
        await client.predict(ModelKey("parking", "9"), make_images(1))
    with pytest.raises(ModelUnavailable, match="NOT_FOUND"):
        await TFServingHost(TFServingConfig(address=client.config.address, load_timeout_s=0.1,
                                            status_poll_s=0.02)).ensure_loaded(
            ModelKey("parking", "9"))


async def test_reload_config_loads_the_named_versions(served, repo, client) -> None:
    async with aio.insecure_channel(served) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = model_management_pb2.ReloadConfigRequest(
            config=server_config(repo / "parking", {"stable": 2}))
        response = await stub.HandleReloadConfigRequest(request, timeout=10)
    assert response.status.error_code == 0
    await client.ensure_loaded(ModelKey("parking", "1"))
    await client.ensure_loaded(ModelKey("parking", "2", version_label="stable"))


async def test_broken_version_fails_ensure_loaded_at_once(client, repo) -> None:
    shutil.rmtree(repo / "parking" / "2")
    (repo / "parking" / "2").mkdir()  # a folder without a SavedModel in it
    with pytest.raises(ModelUnavailable, match="failed to load.*cannot load"):
        await client.ensure_loaded(ModelKey("parking", "2"))


async def test_model_metadata_is_the_saved_models_signature(served) -> None:
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    async with aio.insecure_channel(served) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = "parking"
        request.model_spec.version_label = "canary"
        reply = await stub.GetModelMetadata(request, timeout=10)
        bad = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["everything"])
        bad.model_spec.name = "parking"
        with pytest.raises(aio.AioRpcError) as refused:
            await stub.GetModelMetadata(bad, timeout=10)
    assert reply.model_spec.version.value == 2
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert reply.metadata["signature_def"].Unpack(signatures)
    serving = signatures.signature_def["serving_default"]
    assert serving.inputs["image"].dtype == types_pb2.DT_UINT8
    assert serving.outputs["distance_mm"].dtype == types_pb2.DT_FLOAT
    assert refused.value.code().name == "INVALID_ARGUMENT"
    assert "metadata_field" in refused.value.details()
