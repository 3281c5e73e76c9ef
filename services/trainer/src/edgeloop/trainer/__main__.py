"""``python -m edgeloop.trainer``: run the trainer service until SIGTERM."""

from edgeloop.platform import run_service
from edgeloop.trainer.app import build_app
from edgeloop.trainer.settings import Settings

raise SystemExit(run_service(build_app, Settings))
