"""An OTLP/gRPC trace receiver for tests: what a collector (Jaeger, the OpenTelemetry
Collector) would receive, kept in memory.

It serves OpenTelemetry's own ``TraceService`` (from ``opentelemetry-proto``) on a free
loopback port; services under test export to it with ``EDGELOOP_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_ENDPOINT``) as they would to a real collector.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived: ids in hex, its resource's service name and pid."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    pid: int | None
    start_ns: int
    end_ns: int
    status: str
    attributes: dict[str, Any]
    links: list[str]


def _value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: Callable[[list[ReceivedSpan]], None]) -> None:
        self._sink = sink

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,  # noqa: N802
               context: grpc.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(ReceivedSpan(
                        trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex() or None, name=span.name,
                        service=str(resource.get("service.name", "?")),
                        pid=resource.get("process.pid"),
                        start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
                        status=type(span.status).StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
                        attributes=_attributes(span.attributes),
                        links=[link.trace_id.hex() for link in span.links]))
        self._sink(received)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """A running TraceService on 127.0.0.1; use as a context manager (stops on exit)."""

    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._changed = threading.Condition()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self._add),
                                                                   self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"127.0.0.1:{self.port}"

    def _add(self, spans: list[ReceivedSpan]) -> None:
        with self._changed:
            self._spans.extend(spans)
            self._changed.notify_all()

    def __enter__(self) -> OtlpReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)

    @property
    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far."""
        with self._changed:
            return list(self._spans)

    def wait_for(self, condition: Callable[[list[ReceivedSpan]], bool],
                 timeout_s: float = 60.0) -> list[ReceivedSpan]:
        """Block until ``condition(spans)`` holds; return the spans (TimeoutError if never)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not condition(self._spans):
                left = deadline - time.monotonic()
                if left <= 0:
                    names = sorted({s.name for s in self._spans})
                    raise TimeoutError(f"OTLP receiver: condition not met in {timeout_s}s; "
                                       f"{len(self._spans)} spans received: {names}")
                self._changed.wait(left)
            return list(self._spans)
