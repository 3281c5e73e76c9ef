"""Library notices that tell the trainer's operator nothing, dropped from its log.

Each was a warning in the trainer's log at every start or every sweep and asks for no
action, so real warnings drowned among them. Only these notices go; everything else Ray and
MLflow say still reaches the log. Python warnings arrive as records of logger ``py.warnings``
(``edgeloop.platform.logs`` routes them there); a ``warnings`` filter would not do: MLflow
wraps its type-hint check in its own "once" filter, which comes first.
"""

from __future__ import annotations

from edgeloop.platform.logs import drop_library_notices

NOTICES = (
    # ray.init from the service's start-up thread: the trainer handles SIGTERM itself (a
    # service's graceful stop), so Ray's own handler is not wanted anyway.
    ("ray._private.worker", "SIGTERM handler is not set"),
    # A uv environment has no pip; the model's requirements are given explicitly.
    ("mlflow.utils.environment", "Failed to resolve installed pip version"),
    # MLflow registers its local artifact source twice and then says it cannot choose.
    ("py.warnings", "The specified dataset source can be interpreted in multiple ways"),
    # The pyfunc wrapper's signature is logged explicitly; type hints would replace it.
    ("py.warnings", "Add type hints to the `predict` method"),
    # An input example would have MLflow run the model while logging it: TensorFlow in the
    # trainer's process, which keeps it out on purpose. The signature is explicit.
    ("py.warnings", "An input example was not provided when logging the model"),
)


def silence_library_notices() -> None:
    """Drop :data:`NOTICES` from the log (idempotent)."""
    drop_library_notices(NOTICES)
