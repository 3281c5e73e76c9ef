"""``python -m edgeloop.gateway``: run the gateway service until SIGTERM."""

from edgeloop.platform.tensorflow_import import import_tensorflow

import_tensorflow()  # before the gateway's modules import TensorFlow: see that module

from edgeloop.gateway.app import build_app  # noqa: E402
from edgeloop.gateway.settings import Settings  # noqa: E402
from edgeloop.platform import run_service  # noqa: E402

raise SystemExit(run_service(build_app, Settings))
