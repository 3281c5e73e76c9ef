"""TensorFlow imported without the libraries Keras loads only in case they are used.

Keras 3 imports scikit-learn (its scikit-learn wrappers), pandas (to slice DataFrames) and
matplotlib (an image-gallery plot) while it is imported, whenever they are installed, and
MLflow installs all three. No edgeloop process uses them through Keras, yet they are about
a third of TensorFlow's import: on the 2-core dev VM ``import tensorflow, keras`` takes
15 CPU seconds with them and 9–10 without. Every process that imports TensorFlow pays it:
the gateway and the registry at start, each of the trainer's Ray trial workers and its
registration child (on a sweep's critical path) and each Ray Serve replica.

So those processes call :func:`import_tensorflow` before anything else imports TensorFlow.
The three libraries stay importable afterwards (MLflow still uses pandas); only Keras's
optional integrations with them are off in that process.
"""

from __future__ import annotations

import importlib
import sys

KERAS_OPTIONAL_IMPORTS = ("sklearn", "pandas", "matplotlib")
"""Libraries Keras imports at import time only to offer integrations edgeloop does not use."""


def import_tensorflow() -> None:
    """Import TensorFlow and Keras once, without Keras's optional libraries; idempotent.

    A library already imported stays as it is (nothing is unloaded); one not yet imported
    is hidden while TensorFlow and Keras import, and importable again afterwards.
    """
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return
    hidden = [name for name in KERAS_OPTIONAL_IMPORTS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        importlib.import_module("tensorflow")
        importlib.import_module("keras")
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
