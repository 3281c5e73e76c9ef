"""Training precision: bfloat16 where the CPU computes it natively, weights float32 always."""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np
import pytest
from edgeloop.trainer import model as M
from edgeloop.trainer import precision
from edgeloop.trainer.model_input import INPUT_SHAPE, TARGET_SCALE_MM


@pytest.fixture(autouse=True)
def _float32_afterwards() -> Iterator[None]:
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(("flags", "chosen"), [
    ("fpu sse2 avx2 avx512f amx_bf16 amx_tile", "bfloat16"),
    ("fpu sse2 avx2 avx512f avx512_bf16", "bfloat16"),
    ("fpu sse2 avx2 avx512f", "float32"),
    ("", "float32"),
])
def test_auto_is_bfloat16_only_where_the_cpu_has_it(flags: str, chosen: str) -> None:
    cpuinfo = f"processor : 0\nflags : {flags}\n"
    assert M.resolve_precision("auto", cpuinfo) == chosen
    # bfloat16 trials are fitted two CPUs each, float32 ones one
    assert precision.min_cpus_per_trial("auto", cpuinfo) == (2 if chosen == "bfloat16" else 1)


def test_an_explicit_precision_is_kept_and_an_unknown_one_refused() -> None:
    assert M.resolve_precision("float32", "flags : amx_bf16") == "float32"
    assert M.resolve_precision("bfloat16", "flags : sse2") == "bfloat16"
    assert precision.min_cpus_per_trial("float32", "flags : amx_bf16") == 1
    with pytest.raises(ValueError, match="float16"):
        M.resolve_precision("float16")


def test_a_model_trained_in_bfloat16_keeps_float32_weights_that_serve_in_float32() -> None:
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 255, (64, *INPUT_SHAPE)).astype(np.float32)
    targets = rng.uniform(1, 8, (64, 1)).astype(np.float32)
    assert M.set_training_precision("bfloat16") == "bfloat16"
    trial = M.build_model("small", 8, 0.1, 16, input_dtype="float32")
    M.compile_model(trial, 1e-3)
    trial.fit(images, targets, batch_size=16, epochs=1, verbose=0)
    hidden = next(layer for layer in trial.layers if isinstance(layer, keras.layers.Conv2D))
    assert hidden.compute_dtype == "bfloat16", "the trial computes in bfloat16"
    assert all(w.dtype == "float32" for w in trial.weights)
    out = trial.get_layer("distance")
    assert out.compute_dtype == "float32", "the distance head stays float32"

    M.set_training_precision("float32")
    served = M.build_model("small", 8, 0.1, 16, input_dtype="float32")
    served.set_weights(trial.get_weights())
    in_bf16 = keras.ops.convert_to_numpy(trial(images, training=False))
    in_f32 = keras.ops.convert_to_numpy(served(images, training=False))
    assert in_bf16.dtype == in_f32.dtype == np.float32
    # bfloat16 keeps 8 significant bits: the same model, within a few mm (targets are /100 mm)
    assert np.max(np.abs(in_bf16 - in_f32)) * TARGET_SCALE_MM < 10.0
