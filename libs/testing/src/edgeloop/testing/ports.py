"""Free ports for servers started by tests."""

from __future__ import annotations

from edgeloop.platform.ports import unused_ports

_handed_out: set[int] = set()
"""Ports this process has returned: a test asks for several before it starts any server."""


def free_port() -> int:
    """A TCP port that nothing is bound to now, that no earlier call returned, and that the
    kernel will not give to anybody else meanwhile (see :mod:`edgeloop.platform.ports`)."""
    port = unused_ports(1, avoid=_handed_out)[0]
    _handed_out.add(port)
    return port
