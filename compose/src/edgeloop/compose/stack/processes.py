"""Starting parts as detached processes and stopping them with everything they spawned."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil


class PortTaken(RuntimeError):
    """A port the stack needs is used by another program."""


def check_port_free(part: str, port: int) -> None:
    """Raise :class:`PortTaken` naming the part and the variable that moves it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortTaken(f"port {port} for {part} is taken ({exc.strerror}); stop what uses it "
                            f"or choose another with EDGELOOP_{part.upper()}_PORT=<port>") from None


def spawn(command: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None,
          nice: int = 0) -> int:
    """Start ``command`` in its own session at priority ``nice`` (inherited by everything it
    starts), output appended to ``log_path``; return its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, env={**_base_env(), **env}, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, cwd=cwd,
                                   preexec_fn=(lambda: set_nice(0, nice)) if nice else None)
    return process.pid


def set_nice(pid: int, nice: int) -> None:
    """Give ``pid`` (0: this process) scheduling priority ``nice`` (absolute, -20..19); its
    later children inherit it. Without root a priority can only be lowered: a value above
    the current one is then kept as it is.

    A part that leads its own session also gets ``nice`` as its session's autogroup
    priority (:func:`set_autogroup_nice`): where the kernel groups sessions, that is the
    value that weighs one part against another.
    """
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    target = pid or os.getpid()
    with contextlib.suppress(ProcessLookupError):
        if os.getsid(target) == target:
            set_autogroup_nice(target, nice)


def set_autogroup_nice(pid: int, nice: int, attempts: int = 10) -> bool:
    """Set the scheduling priority of the autogroup of ``pid``'s session; False where the
    kernel has no autogroups or refused.

    With ``CONFIG_SCHED_AUTOGROUP`` on (most desktop and many server kernels), the kernel
    first shares the CPU fairly between sessions and applies a thread's nice only among
    the threads of its own session (sched(7)). Every part starts in its own session, so
    nice values alone would leave the features service weighing as much as the gateway.
    Without root the kernel accepts 0..19 only (a negative value is refused) and one
    change per 100 ms machine-wide, hence the retries.
    """
    path = Path(f"/proc/{pid}/autogroup")
    if not has_own_autogroup(pid):
        return False
    for attempt in range(attempts):
        try:
            path.write_text(str(nice))
            return True
        except BlockingIOError:  # EAGAIN: another autogroup changed in the last 100 ms
            time.sleep(0.11 * (attempt + 1))
        except OSError:  # no autogroups in this kernel, gone, or not allowed
            return False
    return False


def has_own_autogroup(pid: int) -> bool:
    """Whether ``pid``'s session has an autogroup of its own.

    The file exists wherever the kernel has autogroups, but reads empty for a process in
    the kernel's default group: a tree started by init that never called ``setsid`` (as a
    CI runner or a container's first process may be). The default group's weight cannot
    be changed.
    """
    try:
        return bool(Path(f"/proc/{pid}/autogroup").read_text().strip())
    except OSError:
        return False


def _base_env() -> dict[str, str]:
    # Inherit the caller's environment minus our own variables, so a part reads only what
    # the topology gives it (a stray EDGELOOP_LISTEN_ADDR must not leak into every part).
    return {k: v for k, v in os.environ.items() if not k.startswith("EDGELOOP_")}


def alive(pid: int | None) -> bool:
    """Whether ``pid`` runs (zombies count as gone)."""
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def process_tree(pid: int) -> list[psutil.Process]:
    """``pid``, its descendants, and anything else still in its session (orphaned workers)."""
    found: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(pid)
        found[pid] = root
        found.update({child.pid: child for child in root.children(recursive=True)})
    except psutil.NoSuchProcess:
        pass
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == pid:
                found[process.pid] = process
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return list(found.values())


def stop_tree(pid: int | None, timeout_s: float = 20.0, root_first: bool = True) -> list[int]:
    """SIGTERM the tree of ``pid``, SIGKILL what is left after ``timeout_s``; return survivors.

    With ``root_first`` the root gets SIGTERM alone first, so a service can drain its calls
    and shut its own workers down; otherwise the whole tree is signalled at once (for
    supervisors such as MLflow's server that wait for their workers).
    """
    if not pid:
        return []
    tree = process_tree(pid)
    if not tree:
        return []
    root = next((p for p in tree if p.pid == pid), None)
    if not root_first:
        for process in tree:
            _signal(process, signal.SIGTERM)
    if root is not None:
        _signal(root, signal.SIGTERM)
        psutil.wait_procs([root], timeout=timeout_s)
    rest = [p for p in tree if p.pid != pid and p.is_running()]
    for process in rest:
        _signal(process, signal.SIGTERM)
    _, still = psutil.wait_procs(rest, timeout=5)
    leftovers = [*still, *([root] if root is not None and root.is_running() else [])]
    for process in leftovers:
        _signal(process, signal.SIGKILL)
    _, survivors = psutil.wait_procs(leftovers, timeout=5)
    return [p.pid for p in survivors]


def _signal(process: psutil.Process, signum: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(signum)
