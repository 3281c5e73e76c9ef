"""Real SavedModels with the serving signature, built once per test session.

The tiny model follows the contract (CONTRIBUTING.md, "Model serving signature"):
``image`` uint8[b, h, w, 3] -> resize to 75x100 -> rescale 1/255 -> conv -> dense ->
``distance_mm`` float32[b]. Each version has its own weights and a bias far from the
others', so an answer says which version produced it (v1 ~1000 mm, v2 ~2000 mm).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from edgeloop.gateway.hosts import ModelKey

MODEL = "parking"
BIAS_MM = {"1": 1000.0, "2": 2000.0}
"""Each version's output bias; its other terms stay well within +-100 mm."""


class TinyDistanceModel(tf.Module):
    """conv 3x3x3x4 -> ReLU -> global mean -> dense 4->1 -> + bias."""

    def __init__(self, seed: int, bias_mm: float) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        self.kernel = tf.Variable(rng.normal(0, 0.5, (3, 3, 3, 4)).astype(np.float32))
        self.dense = tf.Variable(rng.normal(0, 20.0, (4, 1)).astype(np.float32))
        self.bias = tf.Variable(np.float32(bias_mm))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")])
    def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        x = tf.image.resize(tf.cast(image, tf.float32), (75, 100)) / 255.0
        x = tf.nn.relu(tf.nn.conv2d(x, self.kernel, strides=2, padding="SAME"))
        x = tf.reduce_mean(x, axis=[1, 2])
        return {"distance_mm": tf.reshape(x @ self.dense, [-1]) + self.bias}


def export_model(folder: Path, version: str) -> Path:
    """Save version ``version`` of the tiny model as a SavedModel under ``folder/version``."""
    module = TinyDistanceModel(seed=int(version), bias_mm=BIAS_MM[version])
    path = folder / version
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository ``<repo>/parking/{1,2}`` holding two versions of the tiny model."""
    repo = tmp_path_factory.mktemp("models")
    for version in BIAS_MM:
        export_model(repo / MODEL, version)
    return repo


@pytest.fixture(scope="session")
def keys(model_repo: Path) -> dict[str, ModelKey]:
    """The ModelKey of each version, by version number."""
    return {v: ModelKey(MODEL, v, path=str(model_repo / MODEL / v)) for v in BIAS_MM}


@pytest.fixture(scope="session")
def tflite_files(model_repo: Path, tmp_path_factory: pytest.TempPathFactory,
                 convert_tflite) -> dict[str, Path]:  # noqa: ANN001 - a helper fixture
    """The TFLite file of each tiny version, converted once as the registry converts it (kept
    outside any repository: the shared one has no TFLite files, so other tests run on
    TensorFlow)."""
    folder = tmp_path_factory.mktemp("tflite")
    return {v: convert_tflite(model_repo / MODEL / v, folder / f"{v}.tflite") for v in BIAS_MM}


@pytest.fixture(scope="session")
def quantized_files(model_repo: Path, tmp_path_factory: pytest.TempPathFactory,
                    convert_tflite) -> dict[str, Path]:  # noqa: ANN001 - a helper fixture
    """Each tiny version's quantized TFLite file, converted as the registry converts it."""
    folder = tmp_path_factory.mktemp("quantized")
    return {v: convert_tflite(model_repo / MODEL / v, folder / f"{v}.tflite", quantized=True)
            for v in BIAS_MM}


def random_images(batch: int, height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    """``batch`` random RGB frames."""
    return np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)


def version_of(distance_mm: float) -> str:
    """Which version produced ``distance_mm`` (the versions' biases are 1000 mm apart)."""
    for version, bias in BIAS_MM.items():
        if abs(distance_mm - bias) < 400:
            return version
    raise AssertionError(f"{distance_mm} mm comes from no known version")


@pytest.fixture(scope="session")
def make_images():  # noqa: ANN201 - returns the helper
    """The :func:`random_images` helper (tests cannot import conftest in importlib mode)."""
    return random_images


@pytest.fixture(scope="session")
def which_version():  # noqa: ANN201 - returns the helper
    """The :func:`version_of` helper."""
    return version_of


@pytest.fixture(scope="session")
def direct_model(keys: dict[str, ModelKey]):  # noqa: ANN201 - returns the helper
    """Predict with a plain ``tf.saved_model.load`` of a version: the reference answers."""
    loaded = {v: tf.saved_model.load(key.path).signatures["serving_default"]
              for v, key in keys.items()}

    def predict(version: str, images: np.ndarray) -> np.ndarray:
        return loaded[version](image=tf.constant(images))["distance_mm"].numpy()

    return predict
