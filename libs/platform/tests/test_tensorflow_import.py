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
