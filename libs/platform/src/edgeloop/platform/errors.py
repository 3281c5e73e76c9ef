"""Errors of edgeloop: exceptions inside a service, status codes at its boundary.

Hierarchy::

    EdgeloopError                 any error with a gRPC status code (INTERNAL by default)
    ├── InvalidArgument           INVALID_ARGUMENT; names the offending field
    ├── NotFound                  NOT_FOUND
    ├── AlreadyExists             ALREADY_EXISTS
    ├── FailedPrecondition        FAILED_PRECONDITION
    ├── Unauthenticated           UNAUTHENTICATED
    ├── PermissionDenied          PERMISSION_DENIED
    ├── ResourceExhausted         RESOURCE_EXHAUSTED
    ├── Unavailable               UNAVAILABLE
    └── Unimplemented             UNIMPLEMENTED; says which issue brings the RPC
    ConfigError                   a bad or missing EDGELOOP_* variable (start-up only)

Errors from lower libraries (grpc, psycopg, minio) are translated where they are
caught with ``raise X(...) from exc``; :mod:`edgeloop.platform.interceptors` turns an
``EdgeloopError`` into its status, and anything else into INTERNAL without a stack trace.
"""

from __future__ import annotations

from typing import Any

import grpc


class EdgeloopError(Exception):
    """An error that maps to a gRPC status code at the service boundary."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled as message and attributes: subclasses' __init__ take other arguments, and
        # an error raised in a child process (TensorFlowProcess) must arrive whole
        return _rebuild, (type(self), self.message, dict(self.__dict__))


def _rebuild(cls: type[EdgeloopError], message: str, state: dict[str, Any]) -> EdgeloopError:
    error = cls.__new__(cls)
    EdgeloopError.__init__(error, message)
    error.__dict__.update(state)
    return error


class InvalidArgument(EdgeloopError):
    """A request field is invalid; the message names the field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(EdgeloopError):
    """The named entity does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(EdgeloopError):
    """The entity to create exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(EdgeloopError):
    """The system is not in a state where the call can work."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(EdgeloopError):
    """Credentials are missing or wrong."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(EdgeloopError):
    """Credentials are valid but do not allow the call."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(EdgeloopError):
    """A bounded resource (spool, queue) is full."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(EdgeloopError):
    """A dependency is down or the service is not ready; retrying may help."""

    code = grpc.StatusCode.UNAVAILABLE


class Unimplemented(EdgeloopError):
    """The RPC is part of the contract but arrives with a later piece of work."""

    code = grpc.StatusCode.UNIMPLEMENTED

    def __init__(self, rpc: str, arrives_with: str) -> None:
        super().__init__(f"{rpc} is not implemented yet; it arrives with {arrives_with}")


class ConfigError(Exception):
    """A configuration variable is missing or invalid; the message names it."""
