"""Free loopback ports for servers started by tests."""

from __future__ import annotations

import socket

_handed_out: set[int] = set()
"""Ports this process has returned: a test asks for several before it starts any server,
and the kernel may give a just-closed port out again (one CI run's Ray head got its client
server and dashboard on the same port)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and no earlier call returned."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
