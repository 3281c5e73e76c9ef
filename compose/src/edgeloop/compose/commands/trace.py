"""`edgeloop trace TRACE_ID`: print a trace's span tree from the local span files."""

from __future__ import annotations

from pathlib import Path

import click
from edgeloop.compose.endpoints import state_dir
from edgeloop.platform.span_files import Span, span_tree
from rich.console import Console
from rich.tree import Tree

_HIDDEN_ATTRIBUTES = ("rpc.system",)


def _label(span: Span, origin: Span) -> str:
    offset = (span.start - origin.start).total_seconds() * 1000
    linked = ("" if span.trace_id == origin.trace_id
              else f" [magenta](linked, trace {span.trace_id[:8]}…)[/]")
    status = "" if span.status in ("UNSET", "OK") else f" [red]{span.status}[/]"
    return (f"[bold]{span.name}[/] [dim]{span.service}[/] "
            f"[cyan]{span.duration_ms:.1f} ms[/] [dim]@+{offset:.1f} ms[/]{status}{linked}")


def _add(node: Tree, span: Span, origin: Span, attributes: bool) -> None:
    branch = node.add(_label(span, origin))
    if attributes:
        for key, value in sorted(span.attributes.items()):
            if key not in _HIDDEN_ATTRIBUTES:
                branch.add(f"[dim]{key}[/] = {value}")
    for child in sorted(span.children, key=lambda s: s.start):
        _add(branch, child, origin, attributes)


@click.command("trace")
@click.argument("trace_id")
@click.option("--traces-dir", type=click.Path(path_type=Path), default=None,
              help="Folder of *.jsonl span files (default: <state>/traces).")
@click.option("--attributes/--no-attributes", default=True, show_default=True,
              help="Show span attributes.")
def command(trace_id: str, traces_dir: Path | None, attributes: bool) -> None:
    """Print the span tree of TRACE_ID (32 hex digits) with durations and attributes.

    Reads the span files the local stack writes when no OTLP endpoint is configured;
    with Jaeger, open http://localhost:16686/trace/TRACE_ID instead.
    """
    folder = traces_dir or state_dir() / "traces"
    roots = span_tree(folder, trace_id)
    if not roots:
        raise click.ClickException(
            f"no spans of trace {trace_id} in {folder}: not written yet (spans are written "
            "every few seconds), rotated away, or a frame's trace that was not kept (each "
            "gateway keeps EDGELOOP_TRACES_PER_SECOND frame traces a second, 50 by default; "
            "0 keeps every one)")
    origin = min(roots, key=lambda s: s.start)
    tree = Tree(f"trace [bold]{trace_id}[/]")
    for root in roots:
        _add(tree, root, origin, attributes)
    Console().print(tree)
