"""Tables the CLI prints."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from edgeloop.compose.stack.local import PartStatus
from edgeloop.compose.stack.state import StackState
from edgeloop.compose.stack.topology import Topology

_STYLE = {"SERVING": "green", "NOT_SERVING": "yellow"}


def print_status(rows: list[PartStatus], topology: Topology) -> None:
    """The parts table plus the operator URLs."""
    table = Table(title=f"edgeloop stack ({topology.state_dir})")
    for column in ("part", "address", "pid", "health", "restarts", "log"):
        table.add_column(column)
    for row in rows:
        style = _STYLE.get(row.status, "red")
        table.add_row(row.name, row.address, str(row.pid or "-"),
                      f"[{style}]{row.status}[/{style}]", str(row.restarts), row.detail)
    console = Console()
    console.print(table)
    console.print(f"MLflow UI:      {topology.mlflow_uri}")
    console.print(f"Ray dashboard:  http://{topology.address('ray_dashboard')} "
                  f"(token: {topology.ray_token_file})")
    # What the running stack uses (recorded by `up`), not what EDGELOOP_TLS says now.
    ca = StackState.load(topology.state_dir).tls.get("EDGELOOP_TLS_CA", "")
    transport = f"-cacert {ca}" if ca else "-plaintext"
    console.print(f"grpcurl:        grpcurl {transport} {topology.address('gateway')} list")
    if ca:
        console.print(f"TLS:            CA {ca}; robots: edgeloop-edge drive --tls-ca {ca}")
