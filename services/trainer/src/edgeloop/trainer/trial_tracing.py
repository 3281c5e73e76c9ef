"""Trial spans inside Ray workers, children of the sweep's trace.

Ray workers are separate processes: the sweep's context travels in the trial config
as a W3C ``traceparent``, and each worker sets up the same exporter as the trainer
(``EDGELOOP_OTLP_ENDPOINT`` or ``EDGELOOP_TRACE_FILE``, inherited from the trainer's
environment) before it opens its ``sweep.trial`` span.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from edgeloop.platform.telemetry import configure_tracing

TRACEPARENT_KEY = "traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()
_TRIAL_ATTRIBUTES = ("architecture", "learning_rate", "batch_size", "dropout", "filters",
                     "epochs", "dense_units")


def current_traceparent() -> str:
    """The current span's context as a ``traceparent`` header value ('' if none)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT_KEY, "")


def _provider() -> TracerProvider | None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider
    otlp, trace_file = os.environ.get("EDGELOOP_OTLP_ENDPOINT", ""), os.environ.get("EDGELOOP_TRACE_FILE", "")
    if not (otlp or trace_file):
        return None
    return configure_tracing("trainer", otlp, trace_file)


def _node_id() -> str:
    """The Ray node this trial runs on (where a sweep's trials ran, in its trace)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() or ""
    except Exception:  # outside a Ray worker (unit tests call trials directly)
        return ""


@contextlib.contextmanager
def trial_span(config: dict[str, Any], trial_id: str) -> Iterator[trace.Span]:
    """A ``sweep.trial`` span under the sweep's trace; flushed when the trial ends."""
    provider = _provider()
    tracer = (provider or trace.get_tracer_provider()).get_tracer("edgeloop.trainer")
    parent = _PROPAGATOR.extract({TRACEPARENT_KEY: config.get(TRACEPARENT_KEY, "")})
    attributes = {f"edgeloop.trial.{k}": str(config[k]) for k in _TRIAL_ATTRIBUTES if k in config}
    attributes["edgeloop.trial_id"] = trial_id
    attributes["edgeloop.ray_node_id"] = _node_id()
    try:
        with tracer.start_as_current_span("sweep.trial", context=parent, attributes=attributes) as span:
            yield span
    finally:
        if provider is not None:
            provider.force_flush()
