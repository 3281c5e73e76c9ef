"""Reading the span files the services write, and arranging a trace as a tree.

Without an OTLP endpoint every service writes its finished spans as JSON lines
(:class:`edgeloop.platform.telemetry.FileSpanExporter`, OpenTelemetry's
``ReadableSpan.to_json``), one file per service, plus that file's rotated predecessors
(``<service>.1.jsonl`` ...), read alike. `edgeloop trace` and the console's frame page
both read them from here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 200 * 1024 * 1024
"""Span files larger than this are read from their last part only (recent spans)."""


@dataclass
class Span:
    """One finished span, with its children attached once arranged in a tree."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    start: datetime
    end: datetime
    status: str
    attributes: dict[str, Any]
    links: list[str]
    """Trace ids this span links to (e.g. a features batch to the frames it carries)."""
    children: list[Span] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        """How long the span took, in milliseconds."""
        return (self.end - self.start).total_seconds() * 1000


def _hex(value: str | None) -> str | None:
    return value.removeprefix("0x") if value else value


def parse_span(raw: dict[str, Any]) -> Span:
    """A span from one line of a span file (``ReadableSpan.to_json``), decoded."""
    resource = raw.get("resource", {}).get("attributes", {})
    return Span(
        trace_id=_hex(raw["context"]["trace_id"]) or "",
        span_id=_hex(raw["context"]["span_id"]) or "",
        parent_id=_hex(raw.get("parent_id")),
        name=raw["name"],
        service=resource.get("service.name", "?"),
        start=datetime.fromisoformat(raw["start_time"].replace("Z", "+00:00")),
        end=datetime.fromisoformat(raw["end_time"].replace("Z", "+00:00")),
        status=raw.get("status", {}).get("status_code", "UNSET"),
        attributes=raw.get("attributes") or {},
        links=[_hex(link["context"]["trace_id"]) or "" for link in raw.get("links") or []],
    )


def _lines(path: Path, containing: str | None) -> Iterator[str]:
    with path.open("rb") as handle:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            handle.seek(size - MAX_FILE_BYTES)
            handle.readline()  # the first line may start mid-record
        for line in handle:
            text = line.decode("utf-8", "replace")
            if containing is None or containing in text:
                yield text


def read_spans(folder: Path, containing: str | None = None) -> Iterator[Span]:
    """Every span in the ``*.jsonl`` files of ``folder`` (rotated ones included) whose
    line contains ``containing`` (all when None); unreadable lines are skipped."""
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.jsonl")):
        for line in _lines(path, containing):
            try:
                yield parse_span(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue


def trace_tree(spans: Iterable[Span], trace_id: str) -> list[Span]:
    """The root spans of ``trace_id`` with children attached, in start order.

    Traces with a span that *links* to this trace (a features batch carrying this frame)
    are shown too, as extra roots, so the whole journey of a frame shows.
    """
    trace_id = trace_id.lower().removeprefix("0x")
    spans = list(spans)
    linked = {s.trace_id for s in spans if trace_id in s.links}
    members = {s.span_id: s for s in spans if s.trace_id == trace_id or s.trace_id in linked}
    roots = []
    for span in sorted(members.values(), key=lambda s: s.start):
        parent = members.get(span.parent_id or "")
        if parent is not None and span.trace_id == parent.trace_id:
            parent.children.append(span)
        else:
            roots.append(span)
    return roots


def span_tree(folder: Path, trace_id: str) -> list[Span]:
    """:func:`trace_tree` of ``trace_id`` read from ``folder``, reading only the lines that
    name the trace or a trace linking to it (the trace id appears in every span of the
    trace and in every link to it)."""
    trace_id = trace_id.lower().removeprefix("0x")
    if not trace_id:
        return []
    spans = list(read_spans(folder, trace_id))
    for linked in {s.trace_id for s in spans if trace_id in s.links}:
        spans += read_spans(folder, linked)
    return trace_tree(spans, trace_id)
