"""Server interceptor that turns exceptions into status codes at the boundary.

An :class:`~edgeloop.platform.errors.EdgeloopError` becomes its status code and
message; any other exception is logged with its stack trace and answered with
INTERNAL and the trace id, never the trace itself. Until the service is ready,
calls are answered UNAVAILABLE.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from edgeloop.platform.errors import EdgeloopError
from grpc import aio
from opentelemetry import trace

log = logging.getLogger(__name__)
_ALWAYS_OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")


async def _abort(context: aio.ServicerContext, exc: BaseException, method: str) -> None:
    if isinstance(exc, EdgeloopError):
        await context.abort(exc.code, exc.message)
    span = trace.get_current_span().get_span_context()
    trace_id = format(span.trace_id, "032x") if span.is_valid else "none"
    log.error("unhandled error in %s", method, exc_info=exc, extra={"method": method})
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (trace id {trace_id})")


def _passes_through(exc: BaseException) -> bool:
    return isinstance(exc, aio.AbortError | aio.UsageError) or not isinstance(exc, Exception)


class ErrorInterceptor(aio.ServerInterceptor):
    """Maps exceptions to status codes and refuses calls until ``ready`` is set."""

    def __init__(self) -> None:
        self.ready = False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(_ALWAYS_OPEN):
            return handler
        return self._wrap(handler, details.method)

    def _check_ready(self) -> None:
        if not self.ready:
            from edgeloop.platform.errors import Unavailable

            raise Unavailable("the service is starting; retry shortly")

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        codec = {"request_deserializer": handler.request_deserializer,
                 "response_serializer": handler.response_serializer}
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary, method),
                                                       **codec)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(self._unary(handler.stream_unary, method),
                                                        **codec)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(self._stream(handler.unary_stream, method),
                                                        **codec)
        return grpc.stream_stream_rpc_method_handler(self._stream(handler.stream_stream, method),
                                                     **codec)

    def _unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def wrapper(request: Any, context: aio.ServicerContext) -> Any:
            try:
                self._check_ready()
                return await behavior(request, context)
            except BaseException as exc:
                if _passes_through(exc):
                    raise
                await _abort(context, exc, method)

        return wrapper

    def _stream(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def wrapper(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                self._check_ready()
                async for response in behavior(request, context):
                    yield response
            except BaseException as exc:
                if _passes_through(exc):
                    raise
                await _abort(context, exc, method)

        return wrapper
