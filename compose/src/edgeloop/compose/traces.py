"""Reading the span files the local stack writes, and arranging a trace as a tree.

Spans are the JSON lines written by ``edgeloop.platform.telemetry.FileSpanExporter``
(OpenTelemetry's ``ReadableSpan.to_json``), one file per service in ``<state>/traces``,
plus that file's rotated predecessors (``<service>.1.jsonl`` ...), read alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass
class Span:
    """One finished span."""

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
    children: list[Span] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start).total_seconds() * 1000


def _hex(value: str | None) -> str | None:
    return value[2:] if value and value.startswith("0x") else value


def _parse(raw: dict[str, Any]) -> Span:
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


def read_spans(folder: Path) -> Iterator[Span]:
    """Every span in the ``*.jsonl`` files of ``folder`` (rotated ones included);
    unreadable lines are skipped."""
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    yield _parse(json.loads(line))
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
    members = [s for s in spans if s.trace_id == trace_id or s.trace_id in linked]
    by_id = {s.span_id: s for s in members}
    roots = []
    for span in sorted(members, key=lambda s: s.start):
        parent = by_id.get(span.parent_id or "")
        if parent is not None and span.trace_id == parent.trace_id:
            parent.children.append(span)
        else:
            roots.append(span)
    return roots
