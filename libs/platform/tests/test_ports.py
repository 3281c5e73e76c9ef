"""Ports chosen for servers that start later: below the kernel's ephemeral range, unused,
distinct."""

from __future__ import annotations

import socket

import pytest
from edgeloop.platform import ports


def test_ports_come_from_below_the_kernels_ephemeral_range_and_are_bindable() -> None:
    low, _ = ports.ephemeral_range()
    chosen = ports.unused_ports(20)
    assert len(set(chosen)) == 20
    assert all(ports.LOWEST <= port < low for port in chosen)
    for port in chosen:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("0.0.0.0", port))


@pytest.mark.parametrize("address", [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)])
def test_a_port_something_listens_on_is_never_chosen(address, monkeypatch) -> None:  # noqa: ANN001
    host, family = address
    try:
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} on this machine")
    with listener:
        listener.listen()
        taken = int(listener.getsockname()[1])
        drawn = iter([taken, taken, 25000, taken, 25001])
        monkeypatch.setattr(ports, "ephemeral_range", lambda: (taken + 1, 65000))
        monkeypatch.setattr(ports, "LOWEST", min(taken, 25000))
        monkeypatch.setattr(ports.random, "randrange", lambda _low, _high: next(drawn))
        assert not ports.is_unused(taken)
        assert ports.unused_ports(2) == [25000, 25001]


def test_avoided_and_repeated_draws_are_skipped(monkeypatch) -> None:  # noqa: ANN001
    drawn = iter([30000, 30000, 30001, 30002, 30003])
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (32768, 60999))
    monkeypatch.setattr(ports.random, "randrange", lambda _low, _high: next(drawn))
    monkeypatch.setattr(ports, "is_unused", lambda _port: True)
    assert ports.unused_ports(3, avoid={30001}) == [30000, 30002, 30003]


def test_a_machine_without_room_below_its_ephemeral_range_gets_kernel_chosen_ports(
        monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (ports.LOWEST + 10, 60999))
    chosen = ports.unused_ports(5)
    assert len(set(chosen)) == 5
    assert all(port >= ports.LOWEST + 10 for port in chosen)


def test_the_range_falls_back_to_linuxs_default_when_unreadable(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE_FILE", tmp_path / "missing")
    assert ports.ephemeral_range() == ports.LINUX_DEFAULT_EPHEMERAL_RANGE
    (tmp_path / "range").write_text("40000\t50000\n")
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE_FILE", tmp_path / "range")
    assert ports.ephemeral_range() == (40000, 50000)


def test_too_few_unused_ports_is_a_clear_error(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(ports, "is_unused", lambda _port: False)
    monkeypatch.setattr(ports, "MOST_PROBES", 50)
    with pytest.raises(RuntimeError, match="found only 0 of 1 unused ports"):
        ports.unused_ports(1)
