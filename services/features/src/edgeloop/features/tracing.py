"""Ingest spans linked to the frames' traces, so a frame's trace leads to its storage."""

from __future__ import annotations

from collections.abc import Sequence

from edgeloop.contracts.features.v1 import observation_pb2
from opentelemetry import trace
from opentelemetry.trace import Link
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

tracer = trace.get_tracer("edgeloop.features")
MAX_LINKS = 128
"""OpenTelemetry's default span link limit; a batch's first frames are linked."""
_propagator = TraceContextTextMapPropagator()


def frame_links(observations: Sequence[observation_pb2.Observation]) -> list[Link]:
    """Links to the spans named by the observations' ``traceparent`` (bad ones skipped)."""
    links = []
    for obs in observations:
        if len(links) == MAX_LINKS:
            break
        if not obs.traceparent:
            continue
        context = _propagator.extract({"traceparent": obs.traceparent})
        span_context = trace.get_current_span(context).get_span_context()
        if span_context.is_valid:
            links.append(Link(span_context, {"observation_id": obs.observation_id}))
    return links
