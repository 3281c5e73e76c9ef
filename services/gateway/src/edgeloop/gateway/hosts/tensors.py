"""numpy arrays to and from ``tensorflow.TensorProto``, without ``tf.make_tensor_proto``.

``tf.make_tensor_proto``/``tf.make_ndarray`` are general and slow on the hot path
(they inspect Python values and go through the TF runtime); the model contract only
needs dense arrays of a handful of dtypes, which map straight to ``tensor_content``
(raw little-endian bytes, what TF Serving reads and writes itself).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from edgeloop.platform.errors import InvalidArgument
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

_TO_NUMPY: dict[int, np.dtype] = {
    types_pb2.DT_FLOAT: np.dtype("<f4"),
    types_pb2.DT_DOUBLE: np.dtype("<f8"),
    types_pb2.DT_UINT8: np.dtype("u1"),
    types_pb2.DT_INT32: np.dtype("<i4"),
    types_pb2.DT_INT64: np.dtype("<i8"),
}
_FROM_NUMPY: dict[np.dtype, int] = {dtype: enum for enum, dtype in _TO_NUMPY.items()}

# Where each dtype's values live when a sender did not use tensor_content.
_VALUE_FIELD: dict[int, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT64: "int64_val",
}


def to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A dense ``TensorProto`` holding ``array`` (float32/64, uint8, int32/64) as raw bytes."""
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    enum = _FROM_NUMPY.get(np.dtype(dtype))
    if enum is None:
        raise InvalidArgument("tensor", f"dtype {array.dtype} is not supported")
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(n)) for n in array.shape])
    content = np.ascontiguousarray(array, dtype=_TO_NUMPY[enum]).tobytes()
    return tensor_pb2.TensorProto(dtype=enum, tensor_shape=shape, tensor_content=content)


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """The dense array in ``proto``, from ``tensor_content`` or the typed value field."""
    dtype = _TO_NUMPY.get(proto.dtype)
    if dtype is None:
        name = types_pb2.DataType.Name(proto.dtype) if proto.dtype in types_pb2.DataType.values() \
            else str(proto.dtype)
        raise InvalidArgument("tensor.dtype", f"{name} is not supported")
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    count = int(np.prod(shape, dtype=np.int64))
    if proto.tensor_content:
        values = np.frombuffer(proto.tensor_content, dtype=dtype)
    else:
        values = np.asarray(getattr(proto, _VALUE_FIELD[proto.dtype]), dtype=dtype)
        if values.size == 1 and count > 1:
            # TensorProto allows one value standing for "all elements are this value".
            values = np.full(count, values[0], dtype=dtype)
    if values.size != count:
        raise InvalidArgument("tensor", f"{values.size} values do not fill shape {list(shape)}")
    return values.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def check_images(images: np.ndarray) -> None:
    """Raise :class:`InvalidArgument` unless ``images`` is ``uint8[batch, h, w, 3]``."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
            or images.shape[3] != 3 or 0 in images.shape:
        raise InvalidArgument("images", f"expected uint8[batch, height, width, 3], got "
                              f"{getattr(images, 'dtype', type(images).__name__)}"
                              f"{list(getattr(images, 'shape', []))}")


def check_same_frames(frames: Sequence[np.ndarray]) -> None:
    """Raise :class:`InvalidArgument` unless ``frames`` is a non-empty sequence of
    ``uint8[h, w, 3]`` frames of one shape (a batch not stacked yet)."""
    if not len(frames):
        raise InvalidArgument("images", "expected at least one frame, got none")
    first = frames[0]
    check_images(first[np.newaxis] if isinstance(first, np.ndarray) else first)
    for frame in frames[1:]:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 \
                or frame.shape != first.shape:
            raise InvalidArgument("images", f"frames of one batch must share "
                                  f"uint8{list(first.shape)}, got "
                                  f"{getattr(frame, 'dtype', type(frame).__name__)}"
                                  f"{list(getattr(frame, 'shape', []))}")
