"""Per-frame tracing: one span per frame, a child of the device's traceparent when given.

The span's trace id goes into the Prediction and the Observation, and its traceparent
into the Observation, so features can hang its ingest spans under the same trace.
When the process has no SDK tracer provider (the gateway embedded in a test), a
private one still mints real ids; its spans are just not exported.
"""

from __future__ import annotations

from edgeloop.platform.telemetry import FRAME_SPAN
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Link, Span, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_private_provider: TracerProvider | None = None


def frame_tracer() -> Tracer:
    """The tracer for frame spans: the process's provider if it is an SDK one."""
    global _private_provider
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        _private_provider = _private_provider or TracerProvider()
        provider = _private_provider
    return provider.get_tracer("edgeloop.gateway")


def start_frame_span(tracer: Tracer, traceparent: str, device_id: str, seq: int) -> Span:
    """Start the span of one frame: a child of ``traceparent``, else the root of a new trace.

    Each frame is its own trace (a stream lasts a whole drive; one trace per stream would
    grow without bound); the stream's RPC span, if any, is linked instead of being the parent.
    A malformed traceparent starts a new trace.
    """
    stream_span = trace.get_current_span().get_span_context()
    links = [Link(stream_span)] if stream_span.is_valid else []
    parent = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else Context()
    return tracer.start_span(FRAME_SPAN, context=parent, kind=trace.SpanKind.SERVER,
                             links=links,
                             attributes={"edgeloop.device_id": device_id, "edgeloop.seq": seq})


def trace_ids(span: Span) -> tuple[str, str]:
    """The span's W3C trace id (32 hex digits) and its traceparent header value."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return "", ""
    trace_id = format(ctx.trace_id, "032x")
    return trace_id, f"00-{trace_id}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
