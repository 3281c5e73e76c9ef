"""OpenTelemetry tracing: one tracer provider per process, gRPC and psycopg instrumented.

Spans go over OTLP/gRPC to ``EDGELOOP_OTLP_ENDPOINT`` (or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` when ours is empty) and/or to ``EDGELOOP_TRACE_FILE`` as
JSON lines (read by ``edgeloop trace``; the local stack's default). Both may be set: a
local stack pointed at a collector keeps its files. Span files rotate by size and age
(:class:`FileSpanExporter`), so they stay bounded however long the stack runs.

Which traces are kept: with ``OTEL_TRACES_SAMPLER`` set, the SDK's standard samplers; else
every trace, except that frames (``gateway.frame``, the one trace whose rate grows with the
fleet) are limited to ``EDGELOOP_TRACES_PER_SECOND`` (default 50) a second per process,
a fair share of them kept above that (:class:`RateLimitedSampler`). Drift events, sweeps,
promotions and calls are always kept. A child follows its parent's decision, so a kept
trace is whole.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import SpanContext, format_span_id, format_trace_id

log = logging.getLogger(__name__)
_configured = False
OTEL_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
DEFAULT_TRACES_PER_SECOND = 50.0
FRAME_SPAN = "gateway.frame"
"""The root span of one frame's trace: the span name whose rate grows with the fleet."""


def resolve_otlp_endpoint(explicit: str = "") -> str:
    """``explicit`` (EDGELOOP_OTLP_ENDPOINT), else OpenTelemetry's standard variables."""
    if explicit:
        return explicit
    return next((os.environ[v] for v in OTEL_ENDPOINT_VARIABLES if os.environ.get(v)), "")


@dataclass(frozen=True)
class Rotation:
    """When a span file is rotated, and how many rotated files are kept."""

    max_bytes: int = 50_000_000
    """Rotate once the file is this large (0: never by size)."""
    max_age_s: float = 86_400.0
    """Rotate once the file's first span is this old (0: never by age)."""
    backups: int = 5
    """Rotated files kept (``<name>.1.jsonl`` newest ... ``<name>.N.jsonl``); older ones go."""

    @classmethod
    def from_env(cls) -> Rotation:
        """The rotation of ``EDGELOOP_TRACE_FILE_*`` (for processes without Settings)."""
        env = os.environ
        return cls(int(env.get("EDGELOOP_TRACE_FILE_MAX_BYTES", cls.max_bytes)),
                   float(env.get("EDGELOOP_TRACE_FILE_MAX_AGE_S", cls.max_age_s)),
                   int(env.get("EDGELOOP_TRACE_FILE_BACKUPS", cls.backups)))


def rotated_path(path: Path, number: int) -> Path:
    """The ``number``-th rotated file of ``path``: ``spans.jsonl`` -> ``spans.1.jsonl``.

    The suffix stays last, so readers globbing ``*.jsonl`` read rotated files too.
    """
    return path.with_name(f"{path.stem}.{number}{path.suffix}")


class SpanLineEncoder:
    """A finished span as one compact JSON line: the document ``ReadableSpan.to_json`` makes.

    ``to_json`` rebuilds and re-parses the process's resource for every span and formats
    with indentation; at a fleet's frame rate that was most of a span's cost, so the
    resource is encoded once per resource and the rest of the document built directly.
    """

    def __init__(self) -> None:
        self._resource: Resource | None = None
        self._resource_json = ""

    def line(self, span: ReadableSpan) -> str:
        """The span's JSON document on one line (no newline)."""
        parent = span.parent
        document = {
            "name": span.name,
            "context": _context(span.context) if span.context else None,
            "kind": str(span.kind),
            "parent_id": f"0x{format_span_id(parent.span_id)}" if parent is not None else None,
            "start_time": _iso(span.start_time) if span.start_time else None,
            "end_time": _iso(span.end_time) if span.end_time else None,
            "status": _status(span),
            "attributes": _attributes(span.attributes),
            "events": [{"name": e.name, "timestamp": _iso(e.timestamp),
                        "attributes": _attributes(e.attributes)} for e in span.events],
            "links": [{"context": _context(link.context),
                       "attributes": _attributes(link.attributes)} for link in span.links],
        }
        encoded = json.dumps(document, separators=(",", ":"))
        return f'{encoded[:-1]},"resource":{self._resource_of(span.resource)}}}'

    def _resource_of(self, resource: Resource) -> str:
        # A provider's spans share one resource: encode it again only when another comes.
        if resource is not self._resource:
            self._resource = resource
            self._resource_json = json.dumps(json.loads(resource.to_json()),
                                             separators=(",", ":"))
        return self._resource_json


def _context(context: SpanContext) -> dict[str, str]:
    return {"trace_id": f"0x{format_trace_id(context.trace_id)}",
            "span_id": f"0x{format_span_id(context.span_id)}",
            "trace_state": repr(context.trace_state)}


def _attributes(attributes: Any) -> Any:
    return dict(attributes) if attributes is not None and not isinstance(attributes, dict) \
        else attributes


def _status(span: ReadableSpan) -> dict[str, str]:
    status = {"status_code": span.status.status_code.name}
    if span.status.description:
        status["description"] = span.status.description
    return status


def _iso(nanoseconds: int) -> str:
    return datetime.fromtimestamp(nanoseconds / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FileSpanExporter(SpanExporter):
    """Appends finished spans to a file, one compact JSON object a line, and rotates it.

    Several processes may share one file (the trainer and its Ray workers): every write
    and rotation happens under an exclusive ``flock`` of the file, and a writer whose
    file was renamed away by another process reopens the path.
    """

    def __init__(self, path: str | Path, rotation: Rotation | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rotation = rotation or Rotation()
        self._lock = threading.Lock()
        self._first_span_at: dict[int, float] = {}  # inode -> time of its first span
        self._encoder = SpanLineEncoder()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [self._encoder.line(span) for span in spans]
        with self._lock:
            out = self._open_locked()
            try:
                out.write("".join(line + "\n" for line in lines))
            finally:
                out.close()  # releases the flock
        return SpanExportResult.SUCCESS

    def _open_locked(self) -> IO[str]:
        """The current file, opened for append and locked, rotated first when due."""
        while True:
            out = self.path.open("a", encoding="utf-8")
            fcntl.flock(out, fcntl.LOCK_EX)
            try:
                on_disk = os.stat(self.path)
            except FileNotFoundError:
                out.close()
                continue
            if on_disk.st_ino != os.fstat(out.fileno()).st_ino:
                out.close()  # another process rotated it between open and lock
                continue
            if not self._due(on_disk.st_ino, on_disk.st_size):
                return out
            self._rotate()
            out.close()

    def _due(self, inode: int, size: int) -> bool:
        if size == 0:
            return False
        if self.rotation.max_bytes and size >= self.rotation.max_bytes:
            return True
        if not self.rotation.max_age_s:
            return False
        first = self._first_span_at.get(inode)
        if first is None:
            first = self._first_span_at[inode] = self._read_first_span_time()
        return time.time() - first >= self.rotation.max_age_s

    def _read_first_span_time(self) -> float:
        try:
            with self.path.open(encoding="utf-8") as lines:
                first = json.loads(lines.readline())
            return datetime.fromisoformat(first["start_time"].replace("Z", "+00:00")).timestamp()
        except (OSError, ValueError, KeyError, TypeError):
            return time.time()  # unreadable first line: count its age from now

    def _rotate(self) -> None:
        """Shift ``name.N.jsonl`` up by one (dropping the oldest) and move the file to ``.1``."""
        keep = self.rotation.backups
        if keep <= 0:
            self.path.unlink(missing_ok=True)
            return
        rotated_path(self.path, keep).unlink(missing_ok=True)
        for number in range(keep - 1, 0, -1):
            older = rotated_path(self.path, number)
            if older.exists():
                older.rename(rotated_path(self.path, number + 1))
        self.path.rename(rotated_path(self.path, 1))
        self._first_span_at.clear()
        log.info("rotated the span file", extra={"path": str(self.path), "kept": keep})

    def shutdown(self) -> None:
        """Nothing to release: every export opens and closes the file."""


class RateLimitedSampler(Sampler):
    """Keeps every new trace named in ``limited`` up to ``per_second`` a second, then a
    fair share of them; every other new trace is kept.

    Each one-second window keeps limited traces with the probability that would have kept
    ``per_second`` of the previous window's, decided by the trace id as ``traceidratio``
    does, and never more than ``per_second`` in one window. At a demo's frame rate every
    frame is traced; at a fleet's, the tracing cost stays bounded and every robot's frames
    are equally likely to be kept (not the first to arrive after a refill, as a token
    bucket would choose).
    """

    def __init__(self, per_second: float, limited: frozenset[str] = frozenset({FRAME_SPAN}),
                 clock: Any = time.monotonic) -> None:
        if not per_second > 0:
            raise ValueError("per_second must be above 0")
        self.per_second = per_second
        self.limited = limited
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start = clock()
        self._seen = self._kept = 0
        self._bound = 1 << 64  # keep a trace when its id's low 64 bits are below this

    def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: Any = None,
                      attributes: Any = None, links: Any = None,
                      trace_state: Any = None) -> SamplingResult:
        """Whether to keep the new trace ``trace_id``."""
        if name not in self.limited:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        with self._lock:
            self._roll_window()
            self._seen += 1
            keep = (trace_id & 0xFFFF_FFFF_FFFF_FFFF) < self._bound and self._kept < self.per_second
            self._kept += keep
        decision = Decision.RECORD_AND_SAMPLE if keep else Decision.DROP
        return SamplingResult(decision, attributes if keep else None, trace_state)

    def _roll_window(self) -> None:
        now = self._clock()
        elapsed = now - self._window_start
        if elapsed < 1.0:
            return
        rate = self._seen / elapsed
        ratio = min(1.0, self.per_second / rate) if rate else 1.0
        self._bound = math.ceil(ratio * (1 << 64))
        self._window_start, self._seen, self._kept = now, 0, 0

    def get_description(self) -> str:
        """The sampler's name as the SDK reports it."""
        return f"RateLimitedSampler{{{self.per_second:g}/s}}"


def default_sampler() -> Sampler | None:
    """The sampler of a process that did not choose one.

    ``None`` when ``OTEL_TRACES_SAMPLER`` is set (the SDK reads it and its argument);
    otherwise parent-based, new frame traces limited by ``EDGELOOP_TRACES_PER_SECOND`` (0:
    keep every trace).
    """
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return None
    text = os.environ.get("EDGELOOP_TRACES_PER_SECOND", "")
    try:
        per_second = float(text) if text else DEFAULT_TRACES_PER_SECOND
    except ValueError:
        raise ValueError(f"EDGELOOP_TRACES_PER_SECOND: not a number: {text!r}") from None
    if per_second < 0 or not math.isfinite(per_second):
        raise ValueError(f"EDGELOOP_TRACES_PER_SECOND: must be 0 (every trace) or more, "
                         f"got {text!r}")
    if not per_second:
        return ParentBased(ALWAYS_ON)
    # A robot's frame arrives with a traceparent it marked sampled without deciding
    # anything (it mints one per frame), so a frame with a remote parent is limited too.
    limiter = RateLimitedSampler(per_second)
    return ParentBased(limiter, remote_parent_sampled=limiter)


def tracer_provider(service: str, otlp_endpoint: str = "", trace_file: str = "",
                    rotation: Rotation | None = None) -> TracerProvider:
    """A tracer provider for ``service`` exporting to the OTLP endpoint and/or the file."""
    provider = TracerProvider(sampler=default_sampler(),
                              resource=Resource.create({"service.name": f"edgeloop-{service}",
                                                        "service.namespace": "edgeloop",
                                                        "process.pid": os.getpid()}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        insecure = not otlp_endpoint.startswith("https://")
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint,
                                                                        insecure=insecure)))
        log.info("exporting traces over OTLP", extra={"endpoint": otlp_endpoint})
    if trace_file:
        exporter = FileSpanExporter(trace_file, rotation or Rotation.from_env())
        provider.add_span_processor(BatchSpanProcessor(exporter))
        log.info("writing traces to a file", extra={"path": trace_file})
    return provider


def configure_tracing(service: str, otlp_endpoint: str = "", trace_file: str = "",
                      rotation: Rotation | None = None) -> TracerProvider:
    """Install the process's tracer provider and instrument gRPC clients and servers.

    ``otlp_endpoint`` falls back to ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``.
    """
    global _configured
    provider = tracer_provider(service, resolve_otlp_endpoint(otlp_endpoint), trace_file, rotation)
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
