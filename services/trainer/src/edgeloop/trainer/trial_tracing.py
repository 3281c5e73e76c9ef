"""Trial spans inside Ray workers, children of the sweep's trace.

Ray workers are separate processes, possibly on other machines (a Ray cluster at
``EDGELOOP_RAY_ADDRESS``) that do not share the trainer's environment. So the trial config
carries both the sweep's context (a W3C ``traceparent``) and where the trainer exports
spans (its OTLP endpoint and span file, :func:`trace_config`); each worker builds a tracer
provider for that destination (one per destination, reused by later trials in the same
worker) and flushes it when the trial's ``sweep.trial`` span ends.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator
from typing import Any

from edgeloop.platform.telemetry import Rotation, resolve_otlp_endpoint, tracer_provider
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT_KEY = "traceparent"
OTLP_KEY, TRACE_FILE_KEY = "trace_otlp_endpoint", "trace_file"
_PROVIDERS: dict[tuple[str, str], TracerProvider] = {}
_PROPAGATOR = TraceContextTextMapPropagator()
_TRIAL_ATTRIBUTES = ("architecture", "learning_rate", "batch_size", "dropout", "filters",
                     "epochs", "dense_units")


def current_traceparent() -> str:
    """The current span's context as a ``traceparent`` header value ('' if none)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT_KEY, "")


def trace_config() -> dict[str, str]:
    """Trial-config entries: the current span's context and this process's span exporters."""
    return {TRACEPARENT_KEY: current_traceparent(),
            OTLP_KEY: resolve_otlp_endpoint(os.environ.get("EDGELOOP_OTLP_ENDPOINT", "")),
            TRACE_FILE_KEY: os.environ.get("EDGELOOP_TRACE_FILE", "")}


def _provider(config: dict[str, Any]) -> TracerProvider | None:
    if OTLP_KEY in config or TRACE_FILE_KEY in config:
        otlp, trace_file = str(config.get(OTLP_KEY, "")), str(config.get(TRACE_FILE_KEY, ""))
    else:  # a config made without trace_config(): the worker's own environment
        otlp = resolve_otlp_endpoint(os.environ.get("EDGELOOP_OTLP_ENDPOINT", ""))
        trace_file = os.environ.get("EDGELOOP_TRACE_FILE", "")
    if not (otlp or trace_file):
        return None
    key = (otlp, trace_file)
    if key not in _PROVIDERS:
        _PROVIDERS[key] = tracer_provider("trainer", otlp, trace_file, Rotation.from_env())
    return _PROVIDERS[key]


def _node_id() -> str:
    """The Ray node this trial runs on (where a sweep's trials ran, in its trace)."""
    try:
        import ray

        # Asking a process outside Ray would start (or join the machine's last) cluster.
        if not ray.is_initialized():
            return ""
        return ray.get_runtime_context().get_node_id() or ""
    except Exception:  # an unusable Ray: the span just names no node
        return ""


@contextlib.contextmanager
def trial_span(config: dict[str, Any], trial_id: str) -> Iterator[trace.Span]:
    """A ``sweep.trial`` span under the sweep's trace; flushed when the trial ends.

    A trial the scheduler stops early never returns: Tune leaves its (daemon) training
    thread blocked in ``tune.report`` and ends the worker process. Spans still open then
    are ended and flushed at the process's exit, marked ``edgeloop.trial_stopped``.
    """
    provider = _provider(config)
    tracer = (provider or trace.get_tracer_provider()).get_tracer("edgeloop.trainer")
    parent = _PROPAGATOR.extract({TRACEPARENT_KEY: config.get(TRACEPARENT_KEY, "")})
    attributes = {f"edgeloop.trial.{k}": str(config[k]) for k in _TRIAL_ATTRIBUTES if k in config}
    attributes["edgeloop.trial_id"] = trial_id
    attributes["edgeloop.ray_node_id"] = _node_id()
    span = tracer.start_span("sweep.trial", context=parent, attributes=attributes)
    _track_open(span, provider)
    try:
        with trace.use_span(span, end_on_exit=False, record_exception=True,
                            set_status_on_exception=True):
            yield span
    finally:
        _OPEN_TRIALS.pop(id(span), None)
        span.end()
        if provider is not None:
            provider.force_flush()


_OPEN_TRIALS: dict[int, tuple[trace.Span, TracerProvider | None]] = {}
_EXIT_HOOK: list[bool] = []


def _track_open(span: trace.Span, provider: TracerProvider | None) -> None:
    if not _EXIT_HOOK:
        # Registered after the first provider, so it runs before the providers' own
        # exit handlers shut them down (atexit runs last-registered first).
        atexit.register(_end_open_trials)
        _EXIT_HOOK.append(True)
    _OPEN_TRIALS[id(span)] = (span, provider)


def _end_open_trials() -> None:
    """End and flush the spans of trials stopped before they returned (at process exit)."""
    for span, provider in list(_OPEN_TRIALS.values()):
        span.set_attribute("edgeloop.trial_stopped", True)
        span.end()
        if provider is not None:
            provider.force_flush(timeout_millis=5000)
    _OPEN_TRIALS.clear()
