"""A frame's span tree from the span files the local stack writes (no OTLP collector needed).

The services write finished spans as JSON lines (``EDGELOOP_TRACE_FILE``, OpenTelemetry's
``ReadableSpan.to_json``), one file per service; `edgeloop trace` reads the same files.
Traces whose spans *link* to the frame's trace (a features batch carrying the frame) join
the tree as extra roots, so the frame's whole journey shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 200 * 1024 * 1024
"""Span files larger than this are read from their last part only (recent frames)."""


@dataclass
class Span:
    """One finished span, with its children attached."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str
    start: datetime
    end: datetime
    status: str
    attributes: dict[str, Any]
    links: list[str]
    children: list[Span] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start).total_seconds() * 1000


def _hex(value: str | None) -> str:
    return (value or "").removeprefix("0x")


def _parse(raw: dict[str, Any]) -> Span:
    return Span(
        trace_id=_hex(raw["context"]["trace_id"]), span_id=_hex(raw["context"]["span_id"]),
        parent_id=_hex(raw.get("parent_id")), name=raw["name"],
        service=raw.get("resource", {}).get("attributes", {}).get("service.name", "?"),
        start=datetime.fromisoformat(raw["start_time"].replace("Z", "+00:00")),
        end=datetime.fromisoformat(raw["end_time"].replace("Z", "+00:00")),
        status=raw.get("status", {}).get("status_code", "UNSET"),
        attributes=raw.get("attributes") or {},
        links=[_hex(link["context"]["trace_id"]) for link in raw.get("links") or []])


def _lines(path: Path, needle: str) -> Iterator[str]:
    with path.open("rb") as handle:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            handle.seek(size - MAX_FILE_BYTES)
            handle.readline()
        for line in handle:
            text = line.decode("utf-8", "replace")
            if needle in text:
                yield text


def _read(folder: Path, needle: str) -> list[Span]:
    spans = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in _lines(path, needle):
            try:
                spans.append(_parse(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
    return spans


def span_tree(folder: Path, trace_id: str) -> list[Span]:
    """The root spans of ``trace_id`` (and of traces linking to it), children attached."""
    trace_id = trace_id.lower().removeprefix("0x")
    if not trace_id or not folder.is_dir():
        return []
    # The trace id appears in every span of the trace and in every link to it.
    spans = _read(folder, trace_id)
    linked = {s.trace_id for s in spans if trace_id in s.links}
    if linked:
        spans += [s for t in linked for s in _read(folder, t)]
    by_id = {s.span_id: s for s in spans}
    roots = []
    for span in sorted(by_id.values(), key=lambda s: s.start):
        parent = by_id.get(span.parent_id)
        if parent is not None and parent.trace_id == span.trace_id:
            parent.children.append(span)
        else:
            roots.append(span)
    return roots


def flatten(roots: list[Span]) -> list[tuple[int, Span, float]]:
    """(depth, span, offset ms from the first root) in tree order, for an indented table."""
    if not roots:
        return []
    origin = min(r.start for r in roots)
    rows: list[tuple[int, Span, float]] = []

    def walk(span: Span, depth: int) -> None:
        rows.append((depth, span, (span.start - origin).total_seconds() * 1000))
        for child in sorted(span.children, key=lambda s: s.start):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return rows
