"""Ports for servers that start later, chosen where the kernel never hands one out itself.

A port the kernel chose (bind to port 0) lies in its ephemeral range; once the probe closes
it, any process's outgoing connection or bind to port 0 may get it before the server meant
for it binds. Ray starts a dozen processes that each bind gRPC servers to port 0: one CI run
lost Ray Serve's gRPC proxy ("Failed to bind to address [::]:50223") to exactly that. Ports
between :data:`LOWEST` and the ephemeral range are taken only by explicit binds.
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Collection
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_DEFAULT_EPHEMERAL_RANGE = (32768, 60999)
LOWEST = 20000
"""Above Ray's worker ports (10002–19999 unless a node is told otherwise)."""
FEWEST_CANDIDATES = 1000
"""Below this many ports between :data:`LOWEST` and the ephemeral range (a machine whose
range was widened), ports come from the kernel after all."""
MOST_PROBES = 10_000


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel picks from for port 0 and outgoing connections."""
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return LINUX_DEFAULT_EPHEMERAL_RANGE
    return low, high


def is_unused(port: int) -> bool:
    """True when no socket of any address family is bound to ``port`` on this host."""
    families = [(socket.AF_INET, "0.0.0.0")]
    if socket.has_ipv6:
        families.append((socket.AF_INET6, "::"))
    for family, wildcard in families:
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # IPv6 switched off: nothing can be bound there
            continue
        with probe:
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind((wildcard, port))
            except OSError:
                return False
    return True


def unused_ports(count: int, avoid: Collection[int] = ()) -> list[int]:
    """``count`` distinct TCP ports nothing is bound to, none of them in ``avoid``, chosen
    at random below the kernel's ephemeral range (so two processes choosing at once rarely
    meet, and the kernel gives none of them to anybody meanwhile)."""
    low, _ = ephemeral_range()
    if low - LOWEST < FEWEST_CANDIDATES:
        return _kernel_chosen(count, avoid)
    chosen: list[int] = []
    for _ in range(MOST_PROBES):
        if len(chosen) == count:
            return chosen
        port = random.randrange(LOWEST, low)
        if port not in avoid and port not in chosen and is_unused(port):
            chosen.append(port)
    if len(chosen) == count:
        return chosen
    raise RuntimeError(f"found only {len(chosen)} of {count} unused ports between {LOWEST} "
                       f"and {low} in {MOST_PROBES} probes")


def _kernel_chosen(count: int, avoid: Collection[int]) -> list[int]:
    """Ports the kernel picks, every probe held until all are chosen (it may otherwise hand
    a just-closed port out twice)."""
    chosen: list[int] = []
    with contextlib.ExitStack() as probes:
        while len(chosen) < count:
            probe = probes.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
            if port not in avoid and port not in chosen:
                chosen.append(port)
    return chosen
