"""Snapshots hold frames pre-resized as the model's own layer does: train == serve.

The trials train a model on ``arrays.npz``'s pre-resized ``images`` (float16; float32 in
older archives); the served model takes the raw uint8 frame and resizes it itself. These
tests check that the NumPy resize of the trainer (which never imports TensorFlow) is that
layer bit for bit, that the two models compute the same numbers (exactly from float32
frames, to float16's rounding from stored ones), what a format 2 archive holds, and that a
format 1 archive (raw frames, from before) is converted once when it is reused.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.platform.objectstore import LocalFolderStore, open_object_store
from edgeloop.testing import moto_s3
from edgeloop.trainer import holdout, snapshot
from edgeloop.trainer import model as M
from edgeloop.trainer.model_input import INPUT_SHAPE, resize_frames
from google.protobuf.timestamp_pb2 import Timestamp

FRAME = (240, 320, 3)


def _frames(n: int, seed: int = 0) -> np.ndarray:
    """Smooth-ish camera-like frames (gradients + noise), uint8 [n, 240, 320, 3]."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, FRAME[1], dtype=np.float32)[None, None, :, None]
    noise = rng.integers(0, 55, (n, *FRAME)).astype(np.float32)
    return np.clip(ramp + noise, 0, 255).astype(np.uint8)


def _pair(architecture: str = "thesis",
          input_dtype: str = "float32") -> tuple[keras.Model, keras.Model]:
    """The served (uint8) model and a trial's model (``input_dtype``) with the same weights."""
    served = M.build_model(architecture, 8, 0.2, 16)
    trial = M.build_model(architecture, 8, 0.2, 16, input_dtype=input_dtype)
    trial.set_weights(served.get_weights())
    return served, trial


def test_resizing_an_input_of_the_model_size_is_the_identity() -> None:
    values = np.random.default_rng(1).uniform(0, 255, (4, *INPUT_SHAPE)).astype(np.float32)
    resized = keras.ops.convert_to_numpy(M.input_resizing()(values))
    assert resized.dtype == np.float32
    assert np.array_equal(resized, values), "bit for bit: pre-resized frames pass unchanged"
    assert np.array_equal(resize_frames(values.astype(np.uint8)),
                          values.astype(np.uint8).astype(np.float32))


@pytest.mark.parametrize("shape", [(240, 320), (480, 640), (241, 333), (75, 100), (50, 60)])
def test_the_numpy_resize_is_the_models_layer_bit_for_bit(shape: tuple[int, int]) -> None:
    frames = np.random.default_rng(sum(shape)).integers(0, 256, (5, *shape, 3), dtype=np.uint8)
    layer = keras.ops.convert_to_numpy(M.input_resizing()(keras.ops.cast(frames, "float32")))
    ours = resize_frames(frames, chunk=2)
    assert ours.dtype == np.float32 and ours.shape == (5, *INPUT_SHAPE)
    assert np.array_equal(ours, layer), f"max difference {np.max(np.abs(ours - layer))}"


@pytest.mark.parametrize("architecture", ["thesis", "small"])
def test_the_model_on_raw_frames_equals_the_model_on_pre_resized_ones(architecture: str) -> None:
    raw = _frames(6)
    served, trial = _pair(architecture)
    pre = resize_frames(raw, chunk=4)  # chunks change nothing
    assert pre.shape == (6, *INPUT_SHAPE) and pre.dtype == np.float32
    assert not np.array_equal(pre, np.round(pre)), "bilinear gives fractions: uint8 would round"
    on_raw = keras.ops.convert_to_numpy(served(raw, training=False))
    on_pre = keras.ops.convert_to_numpy(trial(pre, training=False))
    np.testing.assert_allclose(on_pre, on_raw, rtol=1e-6, atol=1e-6)
    # the served model fed the pre-resized frames as float32 resizes them to themselves
    np.testing.assert_allclose(keras.ops.convert_to_numpy(trial(pre.copy(), training=False)),
                               on_pre, rtol=0, atol=0)


@pytest.mark.parametrize("architecture", ["thesis", "small"])
def test_the_model_on_stored_float16_frames_is_the_served_model_to_their_rounding(
        architecture: str) -> None:
    raw = _frames(32, seed=4)
    served, trial = _pair(architecture, input_dtype=snapshot.IMAGES_DTYPE.__name__)
    exact = resize_frames(raw)
    stored = exact.astype(snapshot.IMAGES_DTYPE)
    rounding = np.abs(stored.astype(np.float32) - exact)
    assert 0 < rounding.max() <= 0.0625, "float16 rounds 0..255 to 1/16 of a level at most"
    on_raw = keras.ops.convert_to_numpy(served(raw, training=False)).reshape(-1)
    on_stored = keras.ops.convert_to_numpy(trial(stored, training=False)).reshape(-1)
    assert trial.inputs[0].dtype == "float16"
    # in mm: the rounding moves an answer by far less than the 0.5 mm robots are held to
    difference_mm = np.abs(on_stored - on_raw) * M.TARGET_SCALE_MM
    assert difference_mm.max() < 0.05, difference_mm.max()


def test_trial_weights_serve_through_the_raw_frame_signature(tmp_path: Path) -> None:
    raw = _frames(5, seed=2)
    _, trial = _pair()
    trial.save_weights(tmp_path / "model.weights.h5")  # what a trial's checkpoint holds
    served = M.build_model("thesis", 8, 0.2, 16)  # what export_candidate rebuilds
    served.load_weights(tmp_path / "model.weights.h5")
    signature = M.load_serving_function(M.export_saved_model(served, tmp_path / "saved"))
    expected = keras.ops.convert_to_numpy(trial(resize_frames(raw), training=False))
    np.testing.assert_allclose(M.predict_mm(signature, raw),
                               expected.reshape(-1) * M.TARGET_SCALE_MM, rtol=1e-5, atol=1e-4)
    # and a warm start (weights of the served shape) loads into a trial's model
    served.save_weights(tmp_path / "served.weights.h5")
    M.build_model("thesis", 8, 0.2, 16, input_dtype="float32").load_weights(
        tmp_path / "served.weights.h5")


def _observations(frames: np.ndarray) -> list[observation_pb2.Observation]:
    """Observations in runs of 8 frames at 4 fps (2 s apart), JPEG-encoded."""
    found = []
    for i, frame in enumerate(frames):
        ts = Timestamp()
        run, k = divmod(i, 8)
        ts.FromNanoseconds(int((1_700_000_000 + run * 4 + k / 4) * 1e9))
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        assert ok
        found.append(observation_pb2.Observation(
            observation_id=f"o-{i:03d}", time=ts, deployment="d", device_id="car",
            session_id="s", sensor_mm=300.0 + i, jpeg=jpeg.tobytes()))
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[snapshot.Snapshot, LocalFolderStore,
                                                             list[observation_pb2.Observation]]:
    folder = tmp_path_factory.mktemp("preresize")
    store = LocalFolderStore(folder / "objects")
    observations = _observations(_frames(160, seed=3))
    snap = snapshot.build_snapshot("snap", observations, sweep_pb2.DataSelection(), 5, store,
                                   folder / "work", 30)
    return snap, store, observations


def _decoded(observations: list[observation_pb2.Observation]) -> np.ndarray:
    return np.stack([snapshot.decode_frame(o) for o in observations])


def test_a_snapshot_stores_pre_resized_float16_images_and_raw_holdout_frames(built) -> None:  # noqa: ANN001
    snap, _, observations = built
    assert snapshot.arrays_format(snap.arrays_path) == snapshot.ARRAYS_FORMAT == 2
    assert snap.manifest["arrays_format"] == 2
    assert snap.manifest["image_shape"] == list(FRAME)
    assert snap.manifest["input_shape"] == [75, 100, 3]
    raw = _decoded(observations)
    with np.load(snap.arrays_path) as data:
        images, split, held = data["images"], data["split"], data["holdout_frames"]
    assert images.shape == (160, 75, 100, 3) and images.dtype == np.float16
    exact = resize_frames(raw)
    assert np.array_equal(images, exact.astype(np.float16)), "the model's resize, rounded once"
    assert np.abs(images.astype(np.float32) - exact).max() <= 0.0625
    assert held.dtype == np.uint8 and np.array_equal(held, raw[split == 2])
    frames, labels = holdout.holdout_arrays(snap.arrays_path)
    assert np.array_equal(frames, raw[split == 2]) and len(labels) == (split == 2).sum()
    # trials map the images without loading them
    assert isinstance(snapshot.mapped_member(snap.arrays_path, "images"), np.memmap)


def test_a_snapshot_goes_to_the_store_from_a_file_and_stays_as_the_local_copy(
        built, tmp_path: Path) -> None:  # noqa: ANN001
    snap, store, observations = built
    # the local folder store: the file trials read is the stored object itself
    key = f"{snapshot.prefix('snap')}/arrays.npz"
    assert snap.arrays_path == store.root / key
    assert not [p for p in snap.arrays_path.parent.iterdir() if p.name.startswith(".tmp-")]
    with moto_s3() as endpoint:
        s3 = open_object_store("", endpoint, "testing", "testing", "snapshots-from-files")
        on_s3 = snapshot.build_snapshot("s3snap", observations, sweep_pb2.DataSelection(), 5,
                                        s3, tmp_path / "work", 30)
        stored = s3.get(f"{snapshot.prefix('s3snap')}/arrays.npz")
        # the node's copy is the uploaded file, whole, with nothing left beside it
        assert on_s3.arrays_path == tmp_path / "work" / snapshot.prefix("s3snap") / "arrays.npz"
        assert on_s3.arrays_path.read_bytes() == stored
        assert [p.name for p in on_s3.arrays_path.parent.iterdir()] == ["arrays.npz"]
        assert stored == snap.arrays_path.read_bytes(), "the same frames, the same archive"
        # another node (an empty work folder) loads it from the store
        again = snapshot.load_snapshot("s3snap", s3, tmp_path / "other")
        assert again.arrays_path.read_bytes() == stored


def test_an_older_full_size_snapshot_is_converted_once_at_load(built, tmp_path: Path) -> None:  # noqa: ANN001
    snap, store, observations = built
    with np.load(snap.arrays_path) as data:
        new = {name: data[name] for name in data.files}
    store_dir = tmp_path / "objects"
    old_store = LocalFolderStore(store_dir)
    base = snapshot.prefix("old")
    manifest = {k: v for k, v in snap.manifest.items() if k not in ("arrays_format", "input_shape")}
    old_store.put(f"{base}/manifest.json", json.dumps(manifest).encode())
    with open(store_dir / base / "arrays.npz", "wb") as handle:  # format 1: raw, every split
        np.savez(handle, images=_decoded(observations), labels=new["labels"],
                 split=new["split"], world=new["world"])
    stored = (store_dir / base / "arrays.npz").read_bytes()
    loaded = snapshot.load_snapshot("old", old_store, tmp_path / "work")
    assert loaded.arrays_path == snapshot.model_arrays_path(tmp_path / "work", "old")
    assert (store_dir / base / "arrays.npz").read_bytes() == stored, "the stored snapshot stays"
    with np.load(loaded.arrays_path) as data:
        for name, value in new.items():
            assert np.array_equal(data[name], value), name
    again = snapshot.load_snapshot("old", old_store, tmp_path / "work")
    assert again.arrays_path == loaded.arrays_path
    assert holdout.holdout_arrays(loaded.arrays_path)[0].shape[1:] == FRAME
