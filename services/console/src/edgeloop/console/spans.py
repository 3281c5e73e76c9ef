"""A frame's span tree from the span files the local stack writes (no OTLP collector needed).

Reading and arranging is :mod:`edgeloop.platform.span_files` (shared with `edgeloop trace`);
this module lays the tree out as the rows of the frame page's indented table.
"""

from __future__ import annotations

from edgeloop.platform.span_files import Span, span_tree

__all__ = ["flatten", "span_tree"]


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
