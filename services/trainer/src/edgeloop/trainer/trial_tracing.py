"""Trial spans of a sweep's trace: one from the driver, one from the Ray worker.

- ``sweep.trial`` (the driver, :class:`TrialSpans`): from Tune's start of the trial to its
  end as Tune sees it (finished, stopped early by the scheduler, failed), with its
  outcome. One per trial, always, whatever happens to its worker.
- ``sweep.trial.train`` (the worker, :func:`trial_span`): the training itself, with the
  Ray node it ran on. Ray workers are separate processes, possibly on other machines (a Ray
  cluster at ``EDGELOOP_RAY_ADDRESS``) that do not share the trainer's environment. So the
  trial config carries both the sweep's context (a W3C ``traceparent``) and where the
  trainer exports spans (its OTLP endpoint and span file, :func:`trace_config`); each
  worker builds a tracer provider for that destination (one per destination, reused by
  later trials in the same worker) and flushes it when the span ends. A trial the
  scheduler stops or pauses at a rung never returns from ``tune.report``: its span ends
  when Tune hands the worker to the next trial (``reuse_actors``: the blocked
  ``tune.report`` then raises ``SystemExit``) or else at the worker's exit, which may be as
  late as the Ray cluster's shutdown; either way it is marked ``edgeloop.trial_stopped``.
  A paused trial resumed later gets one such span per stretch it trained.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator
from typing import Any

from edgeloop.platform.telemetry import Rotation, resolve_otlp_endpoint, tracer_provider
from opentelemetry import context as otel_context
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
    """A ``sweep.trial.train`` span under the sweep's trace; flushed when the trial ends.

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
    span = tracer.start_span("sweep.trial.train", context=parent, attributes=attributes)
    _track_open(span, provider)
    try:
        with trace.use_span(span, end_on_exit=False, record_exception=True,
                            set_status_on_exception=True):
            yield span
    except SystemExit:
        # Tune reuses the worker for another trial: this stopped one leaves tune.report
        # by SystemExit (not an error, and use_span records only Exceptions)
        span.set_attribute("edgeloop.trial_stopped", True)
        raise
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


class TrialSpans:
    """The driver's ``sweep.trial`` spans, children of the span current at construction."""

    def __init__(self) -> None:
        self.parent = otel_context.get_current()
        self.tracer = trace.get_tracer("edgeloop.trainer")
        self.open: dict[str, trace.Span] = {}

    def started(self, trial_id: str, config: dict[str, Any], resumed: bool = False) -> None:
        """Tune started the trial; again after a pause at a rung (``resumed``) or after its
        worker failed: an event on its span."""
        if trial_id in self.open:
            self.open[trial_id].add_event("resumed after its rung" if resumed
                                          else "started again after its worker failed")
            return
        attributes = {f"edgeloop.trial.{k}": str(config[k])
                      for k in _TRIAL_ATTRIBUTES if k in config}
        attributes["edgeloop.trial_id"] = trial_id
        self.open[trial_id] = self.tracer.start_span("sweep.trial", context=self.parent,
                                                     attributes=attributes)

    def ended(self, trial_id: str, status: str, result: dict[str, Any]) -> None:
        """Tune ended the trial: TERMINATED (finished or stopped early) or ERROR."""
        span = self.open.pop(trial_id, None)
        if span is None:
            return
        span.set_attribute("edgeloop.trial.status", status)
        for key, name in (("best_val_mae_mm", "edgeloop.best_val_mae_mm"),
                          ("epoch", "edgeloop.trial.epochs_done")):
            if key in result:
                span.set_attribute(name, result[key])
        if status == "ERROR":
            span.set_status(trace.Status(trace.StatusCode.ERROR, "the trial failed"))
        span.end()

    def close(self) -> None:
        """End the spans of trials Tune never ended (a cancelled sweep)."""
        for trial_id in list(self.open):
            self.ended(trial_id, "CANCELLED", {})
