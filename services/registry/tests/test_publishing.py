"""Publishing: SavedModel + TFLite in the model repository, models.config, TF Serving reloads.

TF Serving itself cannot be installed here, so the reload is sent to an in-test gRPC
server implementing TF Serving's ModelService (``FakeModelServer``). It enforces TF
Serving's rule that a version label may only point at a loaded (AVAILABLE) version,
and loads versions after a short delay, as TF Serving does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
import tensorflow as tf
from edgeloop.contracts.registry.v1 import deployment_pb2 as dpb
from edgeloop.contracts.registry.v1 import model_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb
from edgeloop.registry.tfserving import loading_step
from google.protobuf import text_format
from grpc import aio
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

Status = get_model_status_pb2.ModelVersionStatus


class FakeModelServer(model_service_pb2_grpc.ModelServiceServicer):
    """TF Serving's ModelService, in memory: loads after ``load_delay_s``, checks labels."""

    def __init__(self, load_delay_s: float = 0.3) -> None:
        self.load_delay_s = load_delay_s
        self.available: dict[str, set[int]] = {}
        self.labels: dict[str, dict[str, int]] = {}
        self.accepted: list[model_server_config_pb2.ModelServerConfig] = []
        self.refused: list[str] = []

    async def HandleReloadConfigRequest(self, request, context):  # noqa: N802, ANN001, ANN201
        config = request.config
        for model in config.model_config_list.config:
            loaded = self.available.get(model.name, set())
            for version in model.version_labels.values():
                if version not in loaded:
                    message = (f"Request to assign label to version {version} of model "
                               f"{model.name}, which is not currently available for inference")
                    self.refused.append(message)
                    return model_management_pb2.ReloadConfigResponse(
                        status={"error_code": 9, "error_message": message})
        self.accepted.append(config)
        for model in config.model_config_list.config:
            wanted = set(model.model_version_policy.specific.versions)
            self.available[model.name] = self.available.get(model.name, set()) & wanted
            self.labels[model.name] = dict(model.version_labels)
            asyncio.get_running_loop().call_later(self.load_delay_s, self._load, model.name, wanted)
        return model_management_pb2.ReloadConfigResponse()

    def _load(self, model: str, versions: set[int]) -> None:
        self.available[model] = self.available.get(model, set()) | versions

    async def GetModelStatus(self, request, context):  # noqa: N802, ANN001, ANN201
        name = request.model_spec.name
        if name not in self.available:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model {name} not found")
        return get_model_status_pb2.GetModelStatusResponse(model_version_status=[
            Status(version=v, state=Status.AVAILABLE) for v in sorted(self.available[name])])


@pytest_asyncio.fixture
async def model_server():
    fake = FakeModelServer()
    server = aio.server()
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield fake, f"127.0.0.1:{port}"
    await server.stop(0)


@pytest_asyncio.fixture
async def served_registry(database_url, mlflow_store, tmp_path, model_server, registry_factory):
    fake, address = model_server
    async with registry_factory(tmp_path / "repository", tfserving_addr=address) as running:
        yield running, fake


async def _wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_publishes_savedmodel_tflite_and_config_and_reloads_in_two_steps(
        served_registry, mlflow_store) -> None:
    registry, fake = served_registry
    stub, admin, model = registry.stub, registry.admin(), f"dist-{uuid.uuid4().hex[:6]}"
    await stub.CreateDeployment(pb.CreateDeploymentRequest(deployment=dpb.Deployment(
        name="parking", model_name=model, selector=dpb.VersionSelector(alias="champion"),
        active=True)), metadata=admin)
    first = await stub.RegisterModelVersion(pb.RegisterModelVersionRequest(
        model_name=model, run_id=mlflow_store.good_run, promote=True), metadata=admin, timeout=120)
    assert first.promotion.promoted

    published = Path(first.version.published_path)
    assert published == registry.repository / model / "1"
    serve = tf.saved_model.load(str(published)).signatures["serving_default"]
    image = np.full((2, 48, 64, 3), 255, dtype=np.uint8)
    distance = serve(image=tf.constant(image))["distance_mm"].numpy()
    assert distance.shape == (2,) and distance == pytest.approx([1000.0, 1000.0], rel=1e-3)

    config = text_format.Parse((registry.repository / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    [entry] = config.model_config_list.config
    assert entry.name == model and entry.base_path == str(registry.repository / model)
    assert list(entry.model_version_policy.specific.versions) == [1]
    assert dict(entry.version_labels) == {"stable": 1}
    await _wait_for(lambda: fake.labels.get(model) == {"stable": 1})

    evaluation = model_pb2.HoldoutEvaluation(candidate_mae_mm=5.0, champion_version="1",
                                             champion_mae_mm=20.0)
    second = await stub.RegisterModelVersion(pb.RegisterModelVersionRequest(
        model_name=model, run_id=mlflow_store.better_run, evaluation=evaluation, promote=True),
        metadata=admin, timeout=120)
    assert second.promotion.promoted
    await _wait_for(lambda: fake.labels.get(model) == {"stable": 2}
                    and fake.available.get(model) == {2})
    assert fake.refused == []
    steps = [(set(c.model_config_list.config[0].model_version_policy.specific.versions),
              dict(c.model_config_list.config[0].version_labels))
             for c in fake.accepted if c.model_config_list.config]
    # Load first (labels stay), label second; for the first version and for the promotion.
    assert steps[0] == ({1}, {}) and steps[1] == ({1}, {"stable": 1})
    assert steps[-2:] == [({1, 2}, {"stable": 1}), ({2}, {"stable": 2})]

    await registry.app.models.wait_conversions()
    tflite = registry.repository / model / "2.tflite"
    assert tflite.exists()
    interpreter = tf.lite.Interpreter(model_path=str(tflite))
    runner = interpreter.get_signature_runner("serving_default")
    out = runner(image=np.full((1, 48, 64, 3), 255, dtype=np.uint8))["distance_mm"]
    assert out == pytest.approx([2000.0], rel=1e-3)
    # the gateway's quantized twin, written beside it
    quantized = tf.lite.Interpreter(model_path=str(registry.repository / model
                                                   / "2.quantized.tflite"))
    twin = quantized.get_signature_runner("serving_default")
    out = twin(image=np.full((1, 48, 64, 3), 255, dtype=np.uint8))["distance_mm"]
    assert out == pytest.approx([2000.0], rel=1e-3)


def test_a_quantized_twin_that_cannot_be_written_leaves_the_float_file(
        mlflow_store, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from edgeloop.registry.saved_models import convert_tflite

    target = tmp_path / "1.tflite"
    with caplog.at_level(logging.ERROR, logger="edgeloop.registry.saved_models"):
        convert_tflite(mlflow_store.good_saved_model, target,
                       tmp_path / "no-such-folder" / "1.quantized.tflite")
    assert "quantized TFLite conversion failed" in caplog.text
    runner = tf.lite.Interpreter(model_path=str(target)).get_signature_runner("serving_default")
    out = runner(image=np.full((1, 48, 64, 3), 255, dtype=np.uint8))["distance_mm"]
    assert out == pytest.approx([1000.0], rel=1e-3)


CONVERSION = """
import sys
from pathlib import Path
from edgeloop.platform.logs import configure_logging
from edgeloop.platform.tensorflow_import import import_tensorflow, native_lines_logged

configure_logging("registry", "DEBUG", "json")  # the converter's info lines too
import_tensorflow()
from edgeloop.registry.saved_models import convert_tflite

out = Path(sys.argv[2])
with native_lines_logged():  # as in the registry's TensorFlow child
    convert_tflite(Path(sys.argv[1]), out / "1.tflite", out / "1.quantized.tflite")
"""


def test_the_converters_notices_about_ignored_flags_stay_out_of_the_log(
        mlflow_store, tmp_path: Path) -> None:
    # A process of its own: the suite's TF_CPP_MIN_LOG_LEVEL=2 hides TensorFlow's warnings.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-c", CONVERSION, str(mlflow_store.good_saved_model), str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True, env=env)
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    native = [r["msg"] for r in records if r["logger"] == "edgeloop.platform.tensorflow_import"]
    assert native, f"the converter's C++ lines are records (else this test sees nothing): " \
                   f"{result.stderr[-2000:]}"
    assert not [m for m in native if "Ignored output_format" in m
                or "Ignored drop_control_dependency" in m], native
    assert (tmp_path / "1.tflite").stat().st_size and (tmp_path / "1.quantized.tflite").exists()


async def test_fake_refuses_a_label_on_an_unloaded_version(model_server) -> None:
    """The fake enforces the rule the two-step reload exists for (so the test above can fail)."""
    fake, address = model_server
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add(name="m", base_path="/x",
                                                model_platform="tensorflow")
    entry.model_version_policy.specific.versions.append(1)
    entry.version_labels["stable"] = 1
    async with aio.insecure_channel(address) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        reply = await stub.HandleReloadConfigRequest(
            model_management_pb2.ReloadConfigRequest(config=config))
    assert reply.status.error_code == 9 and fake.refused


async def test_the_tensorflow_free_client_speaks_tf_servings_own_messages(model_server) -> None:
    """ModelServiceClient's message subsets against the fake, which parses and answers with TF
    Serving's generated classes: the config arrives whole, a refusal's code and message come
    back, statuses are read, NOT_FOUND is raised."""
    from edgeloop.registry.model_service import ModelServiceClient

    fake, address = model_server
    empty = model_server_config_pb2.ModelServerConfig()
    empty.model_config_list.SetInParent()
    labelled = model_server_config_pb2.ModelServerConfig()
    entry = labelled.model_config_list.config.add(name="m", base_path="/x",
                                                  model_platform="tensorflow")
    entry.model_version_policy.specific.versions.extend([3, 4])
    entry.version_labels["stable"] = 4
    async with aio.insecure_channel(address) as channel:
        client = ModelServiceClient(channel)
        assert await client.reload(empty, timeout=10) == (0, "")
        assert fake.accepted[-1] == empty and fake.accepted[-1].HasField("model_config_list")
        code, message = await client.reload(labelled, timeout=10)
        assert code == 9 and message == fake.refused[-1] and "version 4 of model m" in message
        entry.ClearField("version_labels")
        assert await client.reload(labelled, timeout=10) == (0, "")
        assert fake.accepted[-1] == labelled
        fake._load("m", {3, 4})
        assert await client.available_versions("m", timeout=10) == {3, 4}
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.available_versions("absent", timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_loading_step_keeps_old_labels_and_versions() -> None:
    def config(versions: list[int],
               labels: dict[str, int]) -> model_server_config_pb2.ModelServerConfig:
        made = model_server_config_pb2.ModelServerConfig()
        entry = made.model_config_list.config.add(name="m", base_path="/r/m")
        entry.model_version_policy.specific.versions.extend(versions)
        entry.version_labels.update(labels)
        return made

    step = loading_step(config([3], {"stable": 3}), config([1, 2], {"stable": 1, "canary": 2}))
    [entry] = step.model_config_list.config
    assert list(entry.model_version_policy.specific.versions) == [1, 2, 3]
    assert dict(entry.version_labels) == {"stable": 1, "canary": 2}
    fresh = loading_step(config([3], {"stable": 3}), None).model_config_list.config[0]
    assert list(fresh.model_version_policy.specific.versions) == [3] and not fresh.version_labels
