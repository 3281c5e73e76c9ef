"""A private PostgreSQL cluster started from the machine's binaries.

Used by ``edgeloop up`` and by the tests. PostgreSQL refuses to run as root, so
when the caller is root every server command runs as the ``postgres`` user. The
cluster listens on 127.0.0.1 only and trusts local connections; it loads
TimescaleDB when the extension is installed (unless told not to).

The settings edgeloop owns live in one block at the end of ``postgresql.conf``, rewritten
at every start: a cluster created before TimescaleDB was installed takes the preload on
its next start (the features schema then moves its rows into hypertables).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edgeloop.platform.errors import ConfigError

log = logging.getLogger(__name__)
INSTALL_HINT = ("install the PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`) "
                "or point EDGELOOP_PG_BINDIR at the folder holding initdb and pg_ctl")

CONFIG_MARKER = "\n# edgeloop\n"
"""Starts edgeloop's block in postgresql.conf; everything after it is rewritten at start."""


class PostgresNotInstalled(ConfigError):
    """No PostgreSQL server binaries were found."""


def find_bindir() -> Path:
    """The folder with ``initdb``/``pg_ctl``/``postgres``.

    Looked up in $EDGELOOP_PG_BINDIR, Debian's, or PATH.
    """
    explicit = os.environ.get("EDGELOOP_PG_BINDIR")
    if explicit:
        if all((Path(explicit) / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(explicit)
        raise PostgresNotInstalled(f"EDGELOOP_PG_BINDIR={explicit} does not hold initdb, pg_ctl "
                                   f"and postgres: {INSTALL_HINT}")
    candidates: list[Path] = []
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                    key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0), reverse=True)
    candidates.extend(debian)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for candidate in candidates:
        if all((candidate / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return candidate
    raise PostgresNotInstalled(f"PostgreSQL server binaries not found: {INSTALL_HINT}")


def _sharedir(bindir: Path) -> Path | None:
    pg_config = bindir / "pg_config"
    if pg_config.exists():
        out = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True)
        if out.returncode == 0:
            return Path(out.stdout.strip())
    version = bindir.parent.name
    debian_share = Path("/usr/share/postgresql") / version
    return debian_share if debian_share.exists() else None


def timescaledb_installed(bindir: Path) -> bool:
    """Whether the TimescaleDB extension is installed for these binaries."""
    share = _sharedir(bindir)
    return bool(share and (share / "extension" / "timescaledb.control").exists())


def _is_root() -> bool:
    return os.geteuid() == 0


def _postgres_can_reach(path: Path) -> bool:
    result = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(path)],
                            capture_output=True)
    return result.returncode == 0


OUTSIDE_DATA_ROOT = Path("/var/lib/edgeloop")
"""Where root keeps the data of clusters whose preferred folder the postgres user cannot
reach: a place for a service's lasting data. Not the temporary folder (until 2026-12-07):
many systems keep /tmp in memory or delete its files after days unused (systemd-tmpfiles),
which would have lost a stopped stack's database."""


def outside_data_dir(preferred: Path) -> Path:
    """Where :func:`choose_data_dir` keeps the data it cannot keep at ``preferred``:
    ``/var/lib/edgeloop/postgres-<digest of preferred's path>/data``."""
    digest = hashlib.sha1(str(preferred.resolve()).encode()).hexdigest()[:12]
    return OUTSIDE_DATA_ROOT / f"postgres-{digest}" / "data"


def choose_data_dir(preferred: Path) -> Path:
    """``preferred``, unless we are root and the postgres user cannot reach it.

    In that case (a checkout under a private home folder) the data lives in a
    postgres-reachable folder named after ``preferred``, and the choice is logged.
    """
    preferred = preferred.resolve()
    if not _is_root():
        return preferred
    preferred.parent.mkdir(parents=True, exist_ok=True)
    if _postgres_can_reach(preferred.parent):
        return preferred
    fallback = outside_data_dir(preferred)
    log.info("postgres user cannot reach the state folder; keeping its data elsewhere",
             extra={"preferred": str(preferred), "data_dir": str(fallback)})
    return fallback


@dataclass
class PostgresCluster:
    """One private cluster: a data folder, a port, and the binaries that run it."""

    data_dir: Path
    port: int
    bindir: Path = field(default_factory=find_bindir)
    durable: bool = True
    """False turns off fsync and synchronous commit: for throwaway test clusters."""
    superuser: str = "postgres"
    timescaledb_preload: bool | None = None
    """Preload TimescaleDB: None = whenever it is installed; False = never (a plain
    PostgreSQL server, e.g. to test the features schema's plain branch); True = required."""

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def timescaledb(self) -> bool:
        return timescaledb_installed(self.bindir)

    @property
    def preloads_timescaledb(self) -> bool:
        """Whether the server is (re)started with TimescaleDB in shared_preload_libraries."""
        if self.timescaledb_preload is False:
            return False
        installed = self.timescaledb
        if self.timescaledb_preload and not installed:
            raise ConfigError("TimescaleDB preload requested but the extension is not installed "
                              f"for the PostgreSQL binaries in {self.bindir}")
        return installed

    def dsn(self, database: str = "postgres") -> str:
        """A libpq connection URI for ``database`` over loopback TCP."""
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if _is_root():
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): "
                               f"{(result.stderr or result.stdout).strip()[-2000:]}")
        return result

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the data folder with ``initdb`` unless it exists."""
        if self.initialised():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _is_root():
            shutil.chown(self.data_dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data_dir), "-U", self.superuser, "-A", "trust",
                  "-E", "UTF8", "--no-locale")

    def config_lines(self) -> list[str]:
        """The settings of edgeloop's block in postgresql.conf."""
        lines = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.data_dir}'",
            "max_connections = 200",
            "shared_buffers = 128MB",
        ]
        if not self.durable:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        if self.preloads_timescaledb:
            lines += ["shared_preload_libraries = 'timescaledb'",
                      "timescaledb.telemetry_level = off"]
        return lines

    def write_config(self) -> None:
        """Replace edgeloop's block at the end of postgresql.conf (takes effect at start)."""
        conf = self.data_dir / "postgresql.conf"
        text = conf.read_text()
        base, _, _ = text.partition(CONFIG_MARKER)
        new = base.rstrip("\n") + "\n" + CONFIG_MARKER + "\n".join(self.config_lines()) + "\n"
        if new == text:
            return
        conf.write_text(new)
        if _is_root():
            shutil.chown(conf, "postgres", "postgres")

    def is_running(self) -> bool:
        if not self.initialised():
            return False
        return self._run("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def start(self, timeout_s: int = 60) -> None:
        """Initialise if needed and start the server; wait until it accepts connections."""
        self.init()
        if self.is_running():
            return
        self.write_config()
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                  "-t", str(timeout_s), "-o", f"-p {self.port}", "start")
        log.info("postgres started", extra={"port": self.port, "data_dir": str(self.data_dir),
                                            "timescaledb": self.preloads_timescaledb})

    def stop(self) -> None:
        """Stop the server (fast mode: running transactions are rolled back)."""
        if self.is_running():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            return int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def ensure_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; return its DSN."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)
