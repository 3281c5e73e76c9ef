"""The stack's supervisor: a part that dies is started again, with backoff.

`edgeloop up` writes what each part runs (``<state>/supervise.json``, mode 600: it holds
the parts' environments and so their tokens) and starts this process
(``python -m edgeloop.compose.stack.supervisor <state dir>``), detached like every part.
Once a second it checks each part; a dead one has what is left of its process group
stopped and is started again after a backoff that doubles from 1 s to 30 s per quick
death and resets once the part has lived for a minute. PostgreSQL is restarted through
``pg_ctl``. Restarts are counted in ``stack.json`` (``edgeloop status`` shows them).
`edgeloop down` stops the supervisor first, so nothing comes back while it stops. It also
keeps each part's log to a size (:mod:`~edgeloop.compose.stack.log_rotation`).

Why our own: the parts are already started, tracked and stopped by the stack's own
process code (``processes.py``); a second process manager (supervisord) would need its
own configuration, foreground PostgreSQL and its own pid bookkeeping for the same job.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edgeloop.compose.stack.log_rotation import LogLimits, rotate_if_large
from edgeloop.compose.stack.processes import alive, set_nice, spawn, stop_tree
from edgeloop.compose.stack.state import PartRecord, StackState
from edgeloop.platform.pgcluster import PostgresCluster

log = logging.getLogger("edgeloop.supervisor")

PLAN_FILE = "supervise.json"
LOCK_FILE = "stack.lock"
TICK_S = 1.0
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
HEALTHY_AFTER_S = 60.0
"""A part that lived this long counts as recovered: its next death restarts at once."""


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Exclusive access to ``stack.json`` (the supervisor and `edgeloop up` both write it)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_plan(state_dir: Path, plan: dict[str, dict]) -> None:
    """Record how to start each part again: ``{name: {"command": [...], "env": {...}}}``."""
    path = state_dir / PLAN_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(plan, out)
    tmp.replace(path)


def read_plan(state_dir: Path) -> dict[str, dict]:
    """The plan `edgeloop up` wrote; empty when there is none."""
    try:
        return json.loads((state_dir / PLAN_FILE).read_text())
    except (OSError, ValueError):
        return {}


@dataclass
class _Backoff:
    delay_s: float = FIRST_BACKOFF_S
    next_try: float = 0.0
    started: float = 0.0


class Supervisor:
    """Restarts the dead parts of one state folder's stack."""

    def __init__(self, state_dir: Path, log_limits: LogLimits | None = None) -> None:
        self.state_dir = state_dir
        self.log_limits = log_limits or LogLimits()
        self.backoff: dict[str, _Backoff] = {}
        self.stopping = False

    def tick(self, now: float | None = None) -> list[str]:
        """Check every part once; start the dead ones whose backoff has passed; rotate the
        logs that outgrew their limit."""
        now = time.monotonic() if now is None else now
        plan = read_plan(self.state_dir)
        restarted = []
        with locked(self.state_dir):
            state = StackState.load(self.state_dir)
            for name, record in state.parts.items():
                if name == "supervisor" or self.stopping:
                    continue
                if self._running(record, state):
                    self._note_alive(name, now)
                    continue
                if self._restart(name, record, state, plan.get(name), now):
                    restarted.append(name)
            if restarted:
                state.save(self.state_dir)
        self.rotate_logs(state)
        return restarted

    def rotate_logs(self, state: StackState) -> list[Path]:
        """Rotate every part's log that is larger than the limit; the logs rotated."""
        rotated = []
        for log_path in sorted({Path(record.log) for record in state.parts.values()
                                if record.log}):
            try:
                if rotate_if_large(log_path, self.log_limits):
                    rotated.append(log_path)
                    log.info("rotated %s (over %d bytes; %d copies kept)", log_path,
                             self.log_limits.max_bytes, self.log_limits.backups)
            except OSError as exc:
                log.warning("could not rotate %s: %s", log_path, exc)
        return rotated

    def _running(self, record: PartRecord, state: StackState) -> bool:
        if record.kind == "postgres":
            return self._cluster(state).is_running()
        return alive(record.pid)

    def _cluster(self, state: StackState) -> PostgresCluster:
        return PostgresCluster(data_dir=Path(state.postgres_data_dir), port=state.postgres_port)

    def _note_alive(self, name: str, now: float) -> None:
        backoff = self.backoff.get(name)
        if backoff and backoff.started and now - backoff.started >= HEALTHY_AFTER_S:
            self.backoff.pop(name)

    def _restart(self, name: str, record: PartRecord, state: StackState, spec: dict | None,
                 now: float) -> bool:
        backoff = self.backoff.setdefault(name, _Backoff())
        if now < backoff.next_try or (record.kind != "postgres" and spec is None):
            return False
        log.warning("%s (pid %s) is not running; starting it again (restart %d)",
                    name, record.pid, record.restarts + 1)
        try:
            if record.kind == "postgres":
                cluster = self._cluster(state)
                cluster.start()
                record.pid = cluster.pid()
                if record.pid:
                    set_nice(record.pid, spec.get("nice", 0) if spec else 0)
            else:
                stop_tree(record.pid, timeout_s=5)  # what is left of its group (Ray, workers)
                record.pid = spawn(spec["command"], spec["env"], Path(record.log),
                                   nice=spec.get("nice", 0))
        except Exception:
            log.exception("starting %s again failed; retrying after the backoff", name)
        record.restarts += 1
        record.last_restart = datetime.now(UTC).isoformat(timespec="seconds")
        backoff.started, backoff.next_try = now, now + backoff.delay_s
        backoff.delay_s = min(backoff.delay_s * 2, MAX_BACKOFF_S)
        return True

    def run(self) -> None:
        """Tick until SIGTERM."""
        signal.signal(signal.SIGTERM, self._stop)
        log.info("supervising the stack in %s", self.state_dir)
        while not self.stopping:
            try:
                self.tick()
            except Exception:
                log.exception("supervisor tick failed")
            time.sleep(TICK_S)

    def _stop(self, *_: object) -> None:
        self.stopping = True


def main() -> None:
    """``python -m edgeloop.compose.stack.supervisor STATE_DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state_dir", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    Supervisor(args.state_dir.resolve(), LogLimits.from_env()).run()


if __name__ == "__main__":
    main()
