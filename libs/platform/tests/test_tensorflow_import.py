"""TensorFlow's lean import: Keras's optional libraries stay out, and stay importable.

One subprocess (a fresh interpreter: the test process has imported TensorFlow already)
imports the modules that are each a process's first TensorFlow import, and reports what
got loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from edgeloop.platform.tensorflow_import import KERAS_OPTIONAL_IMPORTS, import_tensorflow

def loaded():
    return sorted(n for n in KERAS_OPTIONAL_IMPORTS if sys.modules.get(n) is not None)

import edgeloop.trainer.model  # the trainer's and its trial workers' first TF import
after_trainer = loaded()
import_tensorflow()  # again: nothing changes
import keras
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
prediction = float(model.predict(keras.ops.ones((1, 3)), verbose=0).shape[0])
import pandas  # hidden only while Keras imported
print(json.dumps({"after_trainer": after_trainer, "prediction_rows": prediction,
                  "pandas": bool(pandas.DataFrame({"a": [1]}).shape[0]),
                  "tensorflow": "tensorflow" in sys.modules}))
"""


def test_first_tensorflow_import_leaves_out_what_only_keras_would_load() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    # Before the lean import, Keras loaded all three (MLflow installs them).
    assert report["after_trainer"] == []
    assert report["tensorflow"] and report["prediction_rows"] == 1.0
    assert report["pandas"]


JSON_LOG_PROBE = """
import sys
from edgeloop.platform.logs import configure_logging
from edgeloop.platform.tensorflow_import import import_tensorflow

configure_logging("probe", "DEBUG", "json")
import_tensorflow()
import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)  # still possible after the import
print(int(tf.constant(1) + 1), tf.config.threading.get_intra_op_parallelism_threads())
"""


def test_tensorflows_start_up_lines_are_json_records_in_the_log() -> None:
    result = subprocess.run([sys.executable, "-c", JSON_LOG_PROBE], capture_output=True,
                            text=True, timeout=300, check=True)
    assert result.stdout.split() == ["2", "1"]
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    # this TensorFlow build writes its oneDNN and CUDA start-up lines on every CPU machine
    native = [r for r in records if r["logger"] == "edgeloop.platform.tensorflow_import"]
    assert native and all(r["msg"].startswith("tensorflow: ") and r["source"] for r in native)
