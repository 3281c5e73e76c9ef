"""The MLflow pyfunc wrapper of a distance SavedModel (logged as "model from code").

``mlflow.pyfunc.load_model(...).predict({"image": uint8 [b, h, w, 3]})`` returns the
distances in mm. The file is logged as code, not pickled, so loading needs TensorFlow
and MLflow only, never the trainer package.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class DistanceModel(PythonModel):
    """Runs the SavedModel's ``serving_default`` signature."""

    def load_context(self, context: Any) -> None:
        import tensorflow as tf

        self._serving = tf.saved_model.load(context.artifacts["saved_model"]).signatures[
            "serving_default"
        ]

    # no type hints here on purpose: MLflow would derive a schema from them and the
    # logged signature (image uint8 [b, h, w, 3]) is the contract
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        import tensorflow as tf

        images = model_input["image"] if isinstance(model_input, dict) else model_input
        images = np.asarray(images, dtype=np.uint8)
        return self._serving(image=tf.constant(images))["distance_mm"].numpy()


mlflow.models.set_model(DistanceModel())
