"""The fast TensorProto codec agrees with TensorFlow's own make_tensor_proto / make_ndarray."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from edgeloop.gateway.hosts.tensors import check_images, to_ndarray, to_tensor_proto
from edgeloop.platform.errors import InvalidArgument


@pytest.mark.parametrize("array", [
    np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3),
    np.array([1.5, -2.25, 1e6], np.float32),
    np.array([[1, 2], [3, 4]], np.int64),
    np.array([0.1], np.float64),
])
def test_round_trip_through_tensorflow(array: np.ndarray) -> None:
    ours = to_tensor_proto(array)
    np.testing.assert_array_equal(tf.make_ndarray(ours), array)  # TF reads what we write
    theirs = tf.make_tensor_proto(array)
    decoded = to_ndarray(theirs)                                   # we read what TF writes
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


def test_typed_value_fields_and_broadcast() -> None:
    listed = tf.make_tensor_proto([1.0, 2.0, 3.0], dtype=tf.float32)
    listed.ClearField("tensor_content")
    listed.float_val.extend([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(to_ndarray(listed), [1.0, 2.0, 3.0])
    filled = tf.make_tensor_proto(7.0, dtype=tf.float32, shape=[4])  # one value for all
    np.testing.assert_array_equal(to_ndarray(filled), [7.0] * 4)


def test_unsupported_or_inconsistent_tensors_are_invalid() -> None:
    with pytest.raises(InvalidArgument, match="dtype"):
        to_ndarray(tf.make_tensor_proto(["a"], dtype=tf.string))
    broken = to_tensor_proto(np.zeros((2, 3), np.float32))
    broken.tensor_shape.dim[0].size = 5
    with pytest.raises(InvalidArgument, match="do not fill"):
        to_ndarray(broken)
    with pytest.raises(InvalidArgument, match="tensor"):
        to_tensor_proto(np.array(["x"]))


@pytest.mark.parametrize("bad", [np.zeros((240, 320, 3), np.uint8),
                                 np.zeros((1, 240, 320, 4), np.uint8),
                                 np.zeros((1, 240, 320, 3), np.float32),
                                 np.zeros((0, 240, 320, 3), np.uint8), [[1, 2, 3]]])
def test_check_images_rejects_what_breaks_the_contract(bad) -> None:  # noqa: ANN001
    with pytest.raises(InvalidArgument, match="images"):
        check_images(bad)
