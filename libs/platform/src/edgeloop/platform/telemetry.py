"""OpenTelemetry tracing: one tracer provider per process, gRPC instrumented.

Spans go to ``EDGELOOP_OTLP_ENDPOINT`` over OTLP/gRPC when it is set, else to
``EDGELOOP_TRACE_FILE`` as JSON lines (read by ``edgeloop trace``), else nowhere.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

log = logging.getLogger(__name__)
_configured = False


class FileSpanExporter(SpanExporter):
    """Appends finished spans to a file, one compact JSON object a line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(json.loads(span.to_json()), separators=(",", ":")) for span in spans]
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release: every export opens and closes the file."""


def configure_tracing(service: str, otlp_endpoint: str = "", trace_file: str = "") -> TracerProvider:
    """Install the process's tracer provider and instrument gRPC clients and servers."""
    global _configured
    provider = TracerProvider(resource=Resource.create({"service.name": f"edgeloop-{service}",
                                                        "service.namespace": "edgeloop"}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint,
                                                                        insecure=True)))
        log.info("exporting traces over OTLP", extra={"endpoint": otlp_endpoint})
    elif trace_file:
        provider.add_span_processor(BatchSpanProcessor(FileSpanExporter(trace_file)))
        log.info("writing traces to a file", extra={"path": trace_file})
    if not _configured:
        trace.set_tracer_provider(provider)
        _instrument_libraries()
        _configured = True
    return provider


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
    )

    GrpcAioInstrumentorServer().instrument()
    GrpcAioInstrumentorClient().instrument()
    _instrument_psycopg()


def _instrument_psycopg() -> None:
    # Database calls get db.* spans; connections opened after this (pools) are covered.
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    instrumentor = PsycopgInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(enable_commenter=False)


def shutdown_tracing() -> None:
    """Flush and stop the tracer provider, if one was installed."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
