"""``python -m edgeloop.features``: run the features service until SIGTERM."""

from edgeloop.features.app import build_app
from edgeloop.features.settings import Settings
from edgeloop.platform import run_service

raise SystemExit(run_service(build_app, Settings))
