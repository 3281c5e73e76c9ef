"""``python -m edgeloop.gateway``: run the gateway service until SIGTERM."""

from edgeloop.gateway.app import build_app
from edgeloop.gateway.settings import Settings
from edgeloop.platform import run_service

raise SystemExit(run_service(build_app, Settings))
