"""The serving signature read from saved_model.pb without TensorFlow, checked against
SavedModels that TensorFlow wrote."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb
from edgeloop.platform.errors import InvalidArgument
from edgeloop.registry import signatures
from edgeloop.testing import modules_imported


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SavedModels with the serving signature, a wrong input, a wrong output, none at all."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("saved_models")
    image = tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")

    class Models(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = tf.Variable(2.0)

        @tf.function(input_signature=[image])
        def good(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"distance_mm": tf.reduce_mean(tf.cast(image, tf.float32), [1, 2, 3])
                    * self.weight}

        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="image")])
        def flat_input(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"distance_mm": tf.reduce_mean(image, 1)}

        @tf.function(input_signature=[image])
        def int_output(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"distance_mm": tf.reduce_sum(tf.cast(image, tf.int32), [1, 2, 3])}

    models = Models()
    for name in ("good", "flat_input", "int_output"):
        tf.saved_model.save(models, str(folder / name),
                            signatures={"serving_default": getattr(models, name)})
    tf.saved_model.save(models, str(folder / "unsigned"))
    return folder


def test_a_savedmodel_with_the_serving_signature_passes(saved_models: Path) -> None:
    signatures.check_signature(saved_models / "good")
    found = signatures.serving_signatures(signatures.read_saved_model(saved_models / "good"))
    image = found["serving_default"].inputs["image"]
    assert image.dtype == signatures.DT_UINT8
    assert [d.size for d in image.tensor_shape.dim] == [-1, -1, -1, 3]


@pytest.mark.parametrize(("name", "message"), [
    ("unsigned", "run_id: the SavedModel has no 'serving_default' signature"),
    ("flat_input", "run_id: signature 'serving_default' needs input 'image': uint8 [batch, "
                   "height, width, 3]; it has {image: float32 [-1, 8]}"),
    ("int_output", "run_id: signature 'serving_default' needs output 'distance_mm': float32 "
                   "[batch]; it has {distance_mm: dtype 3 [-1]}"),
])
def test_a_savedmodel_without_the_contract_is_refused_by_name(
        saved_models: Path, name: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        signatures.check_signature(saved_models / name)
    assert str(caught.value) == message


def test_what_is_not_a_savedmodel_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no saved_model.pb"):
        signatures.check_signature(tmp_path)
    (tmp_path / "saved_model.pb").write_bytes(b"\xff\xff\xff not a protobuf")
    with pytest.raises(InvalidArgument, match="does not parse"):
        signatures.check_signature(tmp_path)


def test_a_text_savedmodel_is_read_too(saved_models: Path, tmp_path: Path) -> None:
    from google.protobuf import text_format

    message = signatures.read_saved_model(saved_models / "good")
    (tmp_path / "saved_model.pbtxt").write_text(text_format.MessageToString(message))
    signatures.check_signature(tmp_path)


def test_reading_a_signature_imports_no_tensorflow(saved_models: Path, tmp_path: Path) -> None:
    code = f"""
        from pathlib import Path
        from edgeloop.registry import signatures

        signatures.check_signature(Path({str(saved_models / "good")!r}))
    """
    assert modules_imported(code, ("tensorflow", "keras"), tmp_path)[:5] == []


async def test_a_registration_without_the_signature_is_refused_before_any_tensorflow(
        registry, log_model_run, saved_models: Path) -> None:  # noqa: ANN001
    run_id = log_model_run(saved_models / "unsigned")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.RegisterModelVersion(pb.RegisterModelVersionRequest(
            model_name=f"dist-{uuid.uuid4().hex[:6]}", run_id=run_id),
            metadata=registry.admin(), timeout=120)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "run_id: the SavedModel has no 'serving_default' signature"
    assert not registry.app.models.tensorflow.alive, "no TensorFlow child for a refusal"
