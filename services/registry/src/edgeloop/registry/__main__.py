"""``python -m edgeloop.registry``: run the registry service until SIGTERM."""

from edgeloop.platform import run_service
from edgeloop.registry.app import build_app
from edgeloop.registry.settings import Settings

raise SystemExit(run_service(build_app, Settings))
