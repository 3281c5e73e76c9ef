"""The Ray node launcher's own logic, without Ray: token file, commands, start-up retries.

(Ray itself is started for real by edgeloop.testing.RayNodes in the gateway, trainer and
cross-service tests.)
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

from edgeloop.platform import ports, rayhead


def test_token_is_created_private_once(tmp_path: Path) -> None:
    token_file = tmp_path / "state" / "ray_token"
    token = rayhead.ensure_token(token_file)
    assert len(token) == 64 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert rayhead.ensure_token(token_file) == token
    env = rayhead.node_env(token_file)
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["RAY_AUTH_TOKEN_PATH"] == str(token_file.resolve())
    # (the trainer's tests check that a raylet started with these keeps no idle worker)
    assert env["RAY_prestart_worker_first_driver"] == env["RAY_enable_worker_prestart"] == "0"
    assert env["MALLOC_ARENA_MAX"] == "2"


def test_head_command_binds_loopback_with_its_ports(tmp_path: Path) -> None:
    config = rayhead.RayHeadConfig(port=61000, dashboard_port=61001,
                                   token_file=tmp_path / "t", num_cpus=0)
    command = rayhead.head_command(config)
    assert command[1:4] == ["-m", "edgeloop.platform.rayhead", "--"]
    for flag, value in (("--port", "61000"), ("--dashboard-port", "61001"),
                        ("--dashboard-host", "127.0.0.1"), ("--include-dashboard", "true")):
        assert command[command.index(flag) + 1] == value
    assert "--head" in command and "--block" in command
    worker = rayhead.worker_command(config.address, 2, {"gpu_box": 1.0})
    assert worker[worker.index("--address") + 1] == "127.0.0.1:61000"
    assert worker[worker.index("--resources") + 1] == '{"gpu_box": 1.0}'


def test_side_ports_are_distinct_and_never_a_named_port(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    # The same port drawn twice, and the GCS's and the dashboard's ports drawn (as in one CI
    # run: the client server and the dashboard got one port, and all four start attempts
    # failed alike).
    drawn = iter([61001, 40000, 40000, 61000, 40001, 40002, 40003, 40004, 40005, 40006])
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (62000, 65000))
    monkeypatch.setattr(ports.random, "randrange", lambda _low, _high: next(drawn))
    monkeypatch.setattr(ports, "is_unused", lambda _port: True)
    config = rayhead.RayHeadConfig(port=61000, dashboard_port=61001, token_file=tmp_path / "t")
    args = rayhead.head_command(config)[4:]
    extra = rayhead.side_port_args(args)
    flags, chosen = extra[0::2], [int(port) for port in extra[1::2]]
    assert sorted(flags) == sorted([*rayhead.NODE_SIDE_PORT_FLAGS,
                                    *rayhead.HEAD_SIDE_PORT_FLAGS])
    assert len(set(chosen)) == len(chosen) == 7
    assert not {61000, 61001} & set(chosen)
    monkeypatch.undo()
    worker = rayhead.worker_command(config.address, 1)[4:]
    assert "--ray-client-server-port" not in rayhead.side_port_args(worker)


def test_side_ports_are_fresh_for_each_start_and_explicit_ones_kept() -> None:
    args = ["start", "--head", "--port", "6379", "--node-manager-port", "6380"]
    first, second = rayhead.side_port_args(args), rayhead.side_port_args(args)
    assert "--node-manager-port" not in first
    assert len(first) == 2 * 6
    assert first != second, "a retry gets ports chosen anew"


def test_a_start_that_fails_before_ready_is_retried(tmp_path: Path, capfd) -> None:  # noqa: ANN001
    attempts = tmp_path / "attempts"
    script = (
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(attempts)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "if n < 3: sys.exit(1)\n"
        f"print({rayhead.READY_LINE!r})\n"
    )
    assert rayhead.supervise([sys.executable, "-c", script], attempts=4) == 0
    assert attempts.read_text() == "3"
    assert "attempt 2 of 4" in capfd.readouterr().out


def test_a_failure_after_ready_is_not_retried(tmp_path: Path) -> None:
    script = f"print({rayhead.READY_LINE!r}); raise SystemExit(3)"
    assert rayhead.supervise([sys.executable, "-c", script], attempts=4) == 3


def test_cpu_count_none_means_all_and_zero_means_none(tmp_path: Path) -> None:
    def cpus(num_cpus: int | None) -> str:
        command = rayhead.head_command(rayhead.RayHeadConfig(1, 2, tmp_path / "t", num_cpus))
        return command[command.index("--num-cpus") + 1]

    assert cpus(0) == "0"
    assert cpus(3) == "3"
    assert int(cpus(None)) >= 1


def test_a_stacks_temp_folder_is_its_own_short_and_stable(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / ".edgeloop", tmp_path / "b" / ".edgeloop"
    assert rayhead.stack_temp_dir(first) == rayhead.stack_temp_dir(first)
    assert rayhead.stack_temp_dir(first) != rayhead.stack_temp_dir(second)
    assert not rayhead.stack_temp_dir(first).is_relative_to(tmp_path)
    # Ray's longest socket path must stay within the 107 bytes of a Unix socket's address
    socket = (rayhead.stack_temp_dir(first) / "session_2026-12-07_11-44-38_709204_4194304"
              / "sockets" / "plasma_store")
    assert len(str(socket)) <= 107


def test_a_head_keeps_its_newest_sessions_and_drops_stale_forkserver_folders(
        tmp_path: Path) -> None:
    names = [f"session_2026-12-0{day}_10-00-00_000000_{pid}" for day, pid in
             ((1, 900), (2, 17), (3, 5000), (4, 12), (5, 333))]
    for name in reversed(names):  # created out of order: the age is in the name
        (tmp_path / name / "logs").mkdir(parents=True)
    (tmp_path / "session_latest").symlink_to(tmp_path / names[-1])
    (tmp_path / "pymp-x1y2z3").mkdir()
    (tmp_path / "ray_current_cluster").write_text("127.0.0.1:6379")

    removed = rayhead.prune_temp_dir(tmp_path, keep=3)

    assert {p.name for p in removed} == {*names[:2], "pymp-x1y2z3"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*names[2:], "session_latest", "ray_current_cluster"])
    assert (tmp_path / "session_latest" / "logs").is_dir()
