"""TFServingHost against an in-test server speaking TF Serving's gRPC protocol.

TensorFlow Serving itself cannot be installed on these machines, so the server here
implements ``tensorflow.serving.PredictionService/Predict`` and
``ModelService/GetModelStatus`` on a grpc.aio server on loopback, over the same real
SavedModels, decoding and encoding tensors with TF's own ``make_ndarray`` /
``make_tensor_proto`` (so the client's fast codec is checked against TF's). It can be
told to answer UNAVAILABLE, to be slow, or to report a version as still loading.

The gateway's judge of quantized twins (``hosts/twins.py``) is tested here too: behind TF
Serving it checks a real twin (converted as the registry converts it) against the server's
answers.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
import tensorflow as tf
from edgeloop.gateway.hosts import ModelKey, ModelUnavailable
from edgeloop.gateway.hosts.served import ServedFrames
from edgeloop.gateway.hosts.tfserving import TFServingConfig, TFServingHost
from edgeloop.gateway.hosts.twins import TwinJudge, TwinJudgeConfig
from edgeloop.platform.errors import InvalidArgument
from edgeloop.testing import free_port
from grpc import aio
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

Status = get_model_status_pb2.ModelVersionStatus


@dataclass
class Behaviour:
    """What the in-test TF Serving does next."""

    unavailable_calls: int = 0
    """Answer this many Predict calls with UNAVAILABLE before answering."""
    loading_polls: int = 0
    """Report LOADING for this many GetModelStatus calls before AVAILABLE."""
    delay_s: float = 0.0
    labels: dict[str, int] = field(default_factory=lambda: {"stable": 1, "canary": 2})
    answer_version: int = 0
    """Answer Predict with this version whatever the request names (0: the named one)."""
    predict_calls: int = 0
    requests: list[predict_pb2.PredictRequest] = field(default_factory=list)
    status_requests: list[get_model_status_pb2.GetModelStatusRequest] = field(
        default_factory=list)


class InTestTFServing(prediction_service_pb2_grpc.PredictionServiceServicer,
                      model_service_pb2_grpc.ModelServiceServicer):
    """TF Serving's protocol over real SavedModels (``{model: {version: path}}``)."""

    def __init__(self, models: dict[str, dict[int, str]], behaviour: Behaviour) -> None:
        self.models = {name: {v: tf.saved_model.load(path).signatures["serving_default"]
                              for v, path in versions.items()}
                       for name, versions in models.items()}
        self.behaviour = behaviour

    def _resolve(self, spec, context) -> int:  # noqa: ANN001 - protobuf/grpc types
        versions = self.models.get(spec.name, {})
        choice = spec.WhichOneof("version_choice")
        if choice == "version_label":
            version = self.behaviour.labels.get(spec.version_label)
        elif choice == "version":
            version = spec.version.value
        else:
            version = max(versions, default=None)
        if version not in versions:
            return -1
        return version

    async def Predict(self, request, context):  # noqa: ANN001, ANN201, N802
        b = self.behaviour
        b.predict_calls += 1
        b.requests.append(request)
        if b.unavailable_calls > 0:
            b.unavailable_calls -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "in-test TF Serving: restarting")
        await asyncio.sleep(b.delay_s)
        version = b.answer_version or self._resolve(request.model_spec, context)
        if version < 0:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: "
                                f"{request.model_spec}")
        if request.model_spec.signature_name not in ("", "serving_default"):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "unknown signature")
        images = tf.make_ndarray(request.inputs["image"])
        try:
            out = self.models[request.model_spec.name][version](image=tf.constant(images))
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)[:200])
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = "serving_default"
        response.outputs["distance_mm"].CopyFrom(tf.make_tensor_proto(out["distance_mm"].numpy()))
        return response

    async def GetModelStatus(self, request, context):  # noqa: ANN001, ANN201, N802
        self.behaviour.status_requests.append(request)
        version = self._resolve(request.model_spec, context)
        if version < 0:
            await context.abort(grpc.StatusCode.NOT_FOUND, "Could not find any versions of model")
        state = Status.AVAILABLE
        if self.behaviour.loading_polls > 0:
            self.behaviour.loading_polls -= 1
            state = Status.LOADING
        return get_model_status_pb2.GetModelStatusResponse(
            model_version_status=[Status(version=version, state=state)])


@pytest.fixture(scope="module")
def servicer(keys) -> InTestTFServing:
    return InTestTFServing({"parking": {int(v): k.path for v, k in keys.items()}}, Behaviour())


@pytest_asyncio.fixture
async def address(servicer: InTestTFServing) -> AsyncIterator[str]:
    servicer.behaviour = Behaviour()
    server = aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
    addr = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(addr)
    await server.start()
    yield addr
    await server.stop(0)


@pytest_asyncio.fixture
async def host(address: str) -> AsyncIterator[TFServingHost]:
    client = TFServingHost(TFServingConfig(address=address, deadline_s=5.0,
                                           initial_backoff_s=0.01, status_poll_s=0.01,
                                           load_timeout_s=5.0))
    yield client
    await client.close()


async def test_predict_by_version_equals_direct_tf_call(host, servicer, keys, make_images,
                                                        direct_model) -> None:
    images = make_images(6, seed=3)
    for version in ("1", "2"):
        got = await host.predict(ModelKey("parking", version), images)
        assert got.dtype == np.float32 and got.shape == (6,)
        np.testing.assert_allclose(got, direct_model(version, images), rtol=1e-5)
    request = servicer.behaviour.requests[-1]
    assert request.model_spec.version.value == 2
    assert request.model_spec.signature_name == "serving_default"
    assert request.inputs["image"].dtype == tf.uint8.as_datatype_enum
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["image"]), images)


async def test_a_labelled_key_is_addressed_by_its_number(host, servicer, make_images,
                                                         which_version) -> None:
    images = make_images(2)
    stable = await host.predict(ModelKey("parking", "1", version_label="stable"), images)
    assert [which_version(d) for d in stable] == ["1", "1"]
    spec = servicer.behaviour.requests[-1].model_spec
    assert spec.WhichOneof("version_choice") == "version" and spec.version.value == 1
    # The registry moves the label mid-switch: the key still gets the version it names.
    servicer.behaviour.labels["stable"] = 2
    moved = await host.predict(ModelKey("parking", "1", version_label="stable"), images)
    assert [which_version(d) for d in moved] == ["1", "1"]


async def test_an_answer_from_another_version_is_refused(host, servicer, make_images) -> None:
    # A server that answers v2 for a request naming v1 (a label-following proxy): the
    # gateway would record v2's distances under v1, so the answer must not be used.
    servicer.behaviour.answer_version = 2
    with pytest.raises(ModelUnavailable, match="v1: answered by v2, not the version asked for"):
        await host.predict(ModelKey("parking", "1"), make_images(1))


async def test_unavailable_is_retried_then_answered(host, servicer, make_images,
                                                    which_version) -> None:
    servicer.behaviour.unavailable_calls = 2
    (distance,) = await host.predict(ModelKey("parking", "1"), make_images(1))
    assert which_version(distance) == "1"
    assert servicer.behaviour.predict_calls == 3


async def test_retries_are_bounded(host, servicer, make_images) -> None:
    servicer.behaviour.unavailable_calls = 10
    with pytest.raises(ModelUnavailable, match="unavailable after 3 attempts"):
        await host.predict(ModelKey("parking", "1"), make_images(1))
    assert servicer.behaviour.predict_calls == 3


async def test_deadline_is_enforced(address, servicer, make_images) -> None:
    servicer.behaviour.delay_s = 1.0
    client = TFServingHost(TFServingConfig(address=address, deadline_s=0.1))
    try:
        with pytest.raises(ModelUnavailable, match="no answer within 0.1s"):
            await client.predict(ModelKey("parking", "1"), make_images(1))
        assert servicer.behaviour.predict_calls == 1  # a missed deadline is not retried
    finally:
        await client.close()


async def test_unknown_version_is_unavailable_with_reason(host, make_images) -> None:
    with pytest.raises(ModelUnavailable, match="not loaded in TF Serving"):
        await host.predict(ModelKey("parking", "9"), make_images(1))


async def test_server_down_is_unavailable(make_images) -> None:
    client = TFServingHost(TFServingConfig(address=f"127.0.0.1:{free_port()}",
                                           deadline_s=1.0, initial_backoff_s=0.01))
    try:
        with pytest.raises(ModelUnavailable, match="unavailable after 3 attempts"):
            await client.predict(ModelKey("parking", "1"), make_images(1))
    finally:
        await client.close()


async def test_bad_images_are_invalid_before_any_call(host, servicer) -> None:
    with pytest.raises(InvalidArgument, match="images"):
        await host.predict(ModelKey("parking", "1"), np.zeros((1, 24, 32), np.uint8))
    assert servicer.behaviour.predict_calls == 0


async def test_ensure_loaded_polls_until_available(host, servicer) -> None:
    servicer.behaviour.loading_polls = 3
    await host.ensure_loaded(ModelKey("parking", "2"))
    assert servicer.behaviour.loading_polls == 0
    # Polled by number too: a label would report the version it points at now, which
    # during a switch is still the old one, so the new one would take traffic unloaded.
    servicer.behaviour.labels["stable"] = 2
    await host.ensure_loaded(ModelKey("parking", "1", version_label="stable"))
    spec = servicer.behaviour.status_requests[-1].model_spec
    assert spec.WhichOneof("version_choice") == "version" and spec.version.value == 1


async def test_ensure_loaded_gives_up_with_the_last_state(address, servicer) -> None:
    servicer.behaviour.loading_polls = 10_000
    client = TFServingHost(TFServingConfig(address=address, load_timeout_s=0.2,
                                           status_poll_s=0.02))
    try:
        with pytest.raises(ModelUnavailable, match="not AVAILABLE after 0.2s.*LOADING"):
            await client.ensure_loaded(ModelKey("parking", "1"))
        with pytest.raises(ModelUnavailable, match="NOT_FOUND"):
            await client.ensure_loaded(ModelKey("parking", "9"))
    finally:
        await client.close()


# --- a quantized twin judged against TF Serving's answers (hosts/twins.py) -------------------

TWIN_POLL = TwinJudgeConfig(poll_s=0.02, wait_s=30.0)


def _twin_judge(host: TFServingHost, folder: Path, served: ServedFrames,
                config: TwinJudgeConfig = TWIN_POLL) -> TwinJudge:
    """A judge that finds version v's twin at ``folder/v.quantized.tflite``."""
    return TwinJudge(host, lambda key: folder / f"{key.version}.quantized.tflite", served,
                     config)


async def _verdict(judge: TwinJudge, key: ModelKey, timeout_s: float = 60.0) -> bool:
    async with asyncio.timeout(timeout_s):
        while (verdict := judge(key)) is None:
            await asyncio.sleep(0.02)
    return verdict


def _served(frames: np.ndarray) -> ServedFrames:
    served = ServedFrames(len(frames))
    for frame in frames:
        served.add(frame)
    return served


async def test_a_twin_that_answers_as_tf_serving_does_is_judged_good_on_the_frames_served(
        host, servicer, quantized_files, make_images, tmp_path, caplog) -> None:
    key = ModelKey("parking", "1")
    served = _served(make_images(4, seed=21))
    judge = _twin_judge(host, tmp_path, served)
    with caplog.at_level(logging.INFO, logger="edgeloop.gateway.hosts.twins"):
        assert judge(key) is None  # the check starts; no twin file yet
        await asyncio.sleep(0.2)
        assert judge(key) is None  # it waits for the registry to write one
        assert servicer.behaviour.predict_calls == 0
        shutil.copy(quantized_files["1"], tmp_path / "1.quantized.tflite")
        assert await _verdict(judge, key) is True
    (record,) = [r for r in caplog.records if "quantized twin agrees" in r.getMessage()]
    assert record.check_frames == "served" and record.max_difference_mm <= 1.0
    # TF Serving answered the served frames themselves, once
    (request,) = servicer.behaviour.requests
    assert tf.make_ndarray(request.inputs["image"]).shape == (4, 240, 320, 3)
    assert judge(key) is True and servicer.behaviour.predict_calls == 1  # kept, not re-checked
    await judge.close()


async def test_a_twin_that_answers_otherwise_is_refused(host, quantized_files, make_images,
                                                        tmp_path, caplog) -> None:
    # version 2's twin under version 1's name: its answers are ~1000 mm off TF Serving's
    shutil.copy(quantized_files["2"], tmp_path / "1.quantized.tflite")
    judge = _twin_judge(host, tmp_path, ServedFrames())
    with caplog.at_level(logging.WARNING, logger="edgeloop.gateway.hosts.twins"):
        assert await _verdict(judge, ModelKey("parking", "1")) is False
    (record,) = [r for r in caplog.records if "differs from" in r.getMessage()]
    assert record.check_frames == "synthetic"  # nothing served yet
    assert record.max_difference_mm > 500


@pytest.mark.parametrize("case", ["unreadable", "never published", "never answered"])
async def test_a_twin_that_cannot_be_judged_is_refused_with_the_reason(
        host, quantized_files, tmp_path, caplog, case: str) -> None:
    key = ModelKey("parking", "9" if case == "never answered" else "1")
    twin = tmp_path / f"{key.version}.quantized.tflite"
    if case == "unreadable":
        twin.write_bytes(b"not a flatbuffer")
    elif case == "never answered":
        shutil.copy(quantized_files["1"], twin)  # TF Serving has no version 9
    judge = _twin_judge(host, tmp_path, ServedFrames(),
                        TwinJudgeConfig(poll_s=0.02, wait_s=0.3))
    with caplog.at_level(logging.INFO, logger="edgeloop.gateway.hosts.twins"):
        assert await _verdict(judge, key) is False
    reason = {"unreadable": "not usable", "never published": "no quantized twin published",
              "never answered": "never answered the version"}[case]
    assert reason in caplog.text


async def test_a_twin_checked_while_tf_serving_restarts_is_judged_once_it_answers(
        host, servicer, quantized_files, tmp_path) -> None:
    shutil.copy(quantized_files["1"], tmp_path / "1.quantized.tflite")
    servicer.behaviour.unavailable_calls = 5  # more than one Predict's own retries
    judge = _twin_judge(host, tmp_path, ServedFrames())
    assert await _verdict(judge, ModelKey("parking", "1")) is True
    assert servicer.behaviour.unavailable_calls == 0


async def test_closing_the_judge_stops_its_checks(host, tmp_path) -> None:
    judge = _twin_judge(host, tmp_path, ServedFrames())
    assert judge(ModelKey("parking", "1")) is None  # waits for a file that never comes
    await judge.close()
    assert not judge._checks
