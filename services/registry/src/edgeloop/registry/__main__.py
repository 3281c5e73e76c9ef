"""``python -m edgeloop.registry``: run the registry service until SIGTERM."""

from edgeloop.platform.tensorflow_import import import_tensorflow

import_tensorflow()  # before the registry's modules import TensorFlow: see that module

from edgeloop.platform import run_service  # noqa: E402
from edgeloop.registry.app import build_app  # noqa: E402
from edgeloop.registry.settings import Settings  # noqa: E402

raise SystemExit(run_service(build_app, Settings))
