"""``python -m edgeloop.trainer``: run the trainer service until SIGTERM."""

from edgeloop.trainer.app import build_app
from edgeloop.trainer.settings import Settings
from edgeloop.platform import run_service

raise SystemExit(run_service(build_app, Settings))
