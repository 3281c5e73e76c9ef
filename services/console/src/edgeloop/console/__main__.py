"""``python -m edgeloop.console``: serve the web console until SIGTERM."""

from __future__ import annotations

import logging

import uvicorn
from edgeloop.console.app import build_app
from edgeloop.console.settings import Settings
from edgeloop.platform import ConfigError, answer_arguments, configure_logging, load_settings

log = logging.getLogger("edgeloop.console")


def main() -> int:
    """Read the settings, then serve HTTP on ``EDGELOOP_LISTEN_ADDR``; 2 on bad settings.
    ``--help`` lists the variables."""
    if (answered := answer_arguments(Settings)) is not None:
        return answered
    try:
        settings = load_settings(Settings)
    except ConfigError as exc:
        configure_logging("console", "INFO", "text")
        log.error("%s", exc)
        return 2
    configure_logging("console", settings.log_level, settings.log_format)
    host, _, port = settings.listen_addr.rpartition(":")
    if not port.isdigit():
        log.error("EDGELOOP_LISTEN_ADDR: expected host:port (got %r)", settings.listen_addr)
        return 2
    log.info("console listening", extra={"address": settings.listen_addr})
    # log_config=None keeps our JSON logging; uvicorn handles SIGTERM gracefully itself.
    uvicorn.run(build_app(settings), host=host or "127.0.0.1", port=int(port), log_config=None,
                access_log=False, timeout_graceful_shutdown=int(settings.shutdown_grace_s))
    return 0


raise SystemExit(main())
