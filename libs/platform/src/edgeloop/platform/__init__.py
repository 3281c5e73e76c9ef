"""edgeloop's platform library: the small, boring code every service shares.

Public surface (import from here):

- configuration: :class:`ServiceSettings`, :func:`load_settings`, :func:`answer_arguments`
- errors: :mod:`edgeloop.platform.errors` (the hierarchy is drawn in its docstring)
- serving: :class:`ServiceApp`, :func:`run_service`, :func:`serve`
- clients: :func:`open_channel`, :func:`bearer`
- logging: :func:`configure_logging`, :func:`log_context`
- tracing: :func:`configure_tracing`
"""

from edgeloop.platform.channels import DEFAULT_DEADLINE_S, bearer, open_channel
from edgeloop.platform.config import ServiceSettings, answer_arguments, load_settings
from edgeloop.platform.errors import (
    AlreadyExists,
    ConfigError,
    EdgeloopError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from edgeloop.platform.logs import configure_logging, log_context
from edgeloop.platform.server import ServiceApp, run_service, serve
from edgeloop.platform.telemetry import configure_tracing

__all__ = [
    "DEFAULT_DEADLINE_S",
    "AlreadyExists",
    "ConfigError",
    "EdgeloopError",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "ServiceApp",
    "ServiceSettings",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "answer_arguments",
    "bearer",
    "configure_logging",
    "configure_tracing",
    "load_settings",
    "log_context",
    "open_channel",
    "run_service",
    "serve",
]
