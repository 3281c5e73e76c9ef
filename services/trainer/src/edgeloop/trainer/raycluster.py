"""Ray for the sweeps: an existing cluster (``EDGELOOP_RAY_ADDRESS``), or a local Ray.

``edgeloop up`` runs a Ray head node of its own and gives the trainer its address, so Tune
trials run on that cluster (and on any worker node that joins it with ``ray start
--address``); users scale out by pointing ``EDGELOOP_RAY_ADDRESS`` at a bigger cluster.
Without the variable the trainer starts a local Ray inside itself, so
``python -m edgeloop.trainer`` runs alone.

Trials run in worker processes of the cluster's nodes, which do not inherit the trainer's
environment: the variables a trial reads (its trace exporter) travel in the job's
``runtime_env``.

Token authentication: Ray 2.59+ turns it on by default for local clusters and keeps the
token in ``~/.ray/auth_token``. The trainer sets it deliberately: ``RAY_AUTH_MODE=token``
and, when ``EDGELOOP_RAY_AUTH_TOKEN_FILE`` is set, ``RAY_AUTH_TOKEN_PATH`` to that file
(created with a random token, mode 0600, if missing). The dashboard then asks for that
token once per browser (it is kept in a cookie); ``ray get-auth-token`` prints it too.
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import ray
from edgeloop.platform import rayhead
from edgeloop.platform.errors import ConfigError
from edgeloop.trainer.settings import Settings

log = logging.getLogger(__name__)
START_ATTEMPTS = 3


@dataclass(frozen=True)
class RayInfo:
    """What the trainer knows about the Ray it uses."""

    dashboard_url: str
    total_cpus: float
    started_here: bool
    token_file: str
    node_cpus: float = 0.0
    """The largest node's CPUs: the most one trial can hold."""


def configure_token(token_file: str, create: bool = True) -> str:
    """Turn on Ray token auth for this process and its workers; returns the token file used.

    A missing token file is created only with ``create`` (a Ray started here); joining a
    cluster needs that cluster's token.
    """
    os.environ["RAY_AUTH_MODE"] = "token"
    if not token_file:
        _refresh_ray_config()
        return str(Path.home() / ".ray" / "auth_token")
    path = Path(token_file)
    if not create and not path.exists():
        raise ConfigError(f"EDGELOOP_RAY_AUTH_TOKEN_FILE: {token_file} does not exist; joining "
                          "a Ray cluster needs its token (`ray get-auth-token` on its head)")
    if not path.exists() or not path.read_text().strip():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(path.resolve())
    _refresh_ray_config()
    return str(path.resolve())


def reclaim_signal_handlers() -> None:
    """Give SIGTERM and SIGINT back to the handlers Python has for them, after Ray took them.

    Connecting to Ray installs abseil's failure-signal handler for SIGTERM in this process.
    On ``edgeloop down`` it wrote a stack dump into the trainer's log as if the trainer had
    crashed (``*** SIGTERM received at time=...``, ten lines of addresses), and it arms a
    3-second abort alarm before it chains to the service's own handler
    (ray-project/ray#64830): a graceful shutdown that took longer would end in SIGABRT.
    Installing Python's handlers again puts Python's C-level handler back in its place.
    Only the main thread may set handlers; elsewhere (a trainer run inside a test's thread)
    this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(signum)
        if handler is not None:
            signal.signal(signum, handler)


def _refresh_ray_config() -> None:
    """Make an already imported Ray see the new auth variables (what ray.init does itself)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


_M_ARENA_MAX = -8
"""glibc's mallopt parameter number for the arena limit (malloc.h)."""


def _limit_malloc_arenas(limit: int) -> bool:
    """The limit the environment gives new processes, for this running one: glibc reads
    MALLOC_ARENA_MAX at start only, but arenas are created as threads first allocate, and
    Ray's threads start now. False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_ARENA_MAX, limit))
    except (OSError, AttributeError):
        return False


def start_ray(settings: Settings) -> RayInfo:
    """Connect to ``EDGELOOP_RAY_ADDRESS`` or start a local Ray with its dashboard on loopback."""
    # Tune's checkpoint-frequency warning fires on every improving epoch of small sweeps
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's new console output prints a table and paths to stdout at every sweep's start,
    # whatever the Tuner's verbose=0 says; its classic reporter honours verbose=0
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    rayhead.workers_run_this_python()
    # read by a raylet started here, and inherited by its workers
    for name, value in {**rayhead.NO_IDLE_WORKERS_ENV, **rayhead.FEW_MALLOC_ARENAS_ENV}.items():
        os.environ.setdefault(name, value)
    if (arenas := os.environ[rayhead.MALLOC_ARENA_MAX]).isdigit():  # glibc ignores others
        _limit_malloc_arenas(int(arenas))
    token_file = configure_token(settings.ray_auth_token_file,
                                 create=not settings.ray_address)
    started = False
    if not ray.is_initialized():
        context = _init_with_retries(settings)
        started = not settings.ray_address
        url = context.dashboard_url or ""
    else:
        url = ray.get_runtime_context().gcs_address and _dashboard_url()
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    node_cpus = max((float(node["Resources"].get("CPU", 0.0)) for node in ray.nodes()
                     if node.get("Alive")), default=cpus)
    url = url if not url or url.startswith("http") else f"http://{url}"
    log.info("ray ready", extra={"dashboard": url, "cpus": cpus, "node_cpus": node_cpus,
                                 "token_file": token_file})
    return RayInfo(url, cpus, started, token_file, node_cpus)


TRIAL_ENV = ("EDGELOOP_OTLP_ENDPOINT", "EDGELOOP_TRACE_FILE", "OTEL_EXPORTER_OTLP_ENDPOINT",
             "TF_CPP_MIN_LOG_LEVEL")
"""The trainer's variables its trials read (trial_tracing), passed to the cluster's workers."""


def _runtime_env() -> dict[str, object]:
    env = {name: os.environ[name] for name in TRIAL_ENV if os.environ.get(name)}
    return {"env_vars": env} if env else {}


def _init_once(settings: Settings) -> object:
    if settings.ray_address:
        return ray.init(address=settings.ray_address, log_to_driver=False,
                        runtime_env=_runtime_env())
    # address="local": a new Ray of our own. Without it ray.init joins whatever cluster
    # this machine started last (/tmp/ray/ray_current_cluster), e.g. a stack's head node.
    return ray.init(
        address="local",
        num_cpus=settings.ray_num_cpus or os.cpu_count(),
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=settings.ray_dashboard_port,
        log_to_driver=False,
    )


def _init_with_retries(settings: Settings, attempts: int = START_ATTEMPTS) -> object:
    """ray.init, retried: on a busy machine the raylet gives up when the dashboard agent takes
    longer than a hard-coded 15 s to start (ray-project/ray#65983), and a retry succeeds."""
    for attempt in range(1, attempts + 1):
        try:
            return _init_once(settings)
        except Exception as exc:  # Ray raises bare Exception for a node start-up timeout
            ray.shutdown()
            if attempt == attempts or settings.ray_address:
                raise ConfigError(
                    f"EDGELOOP_RAY_ADDRESS: cannot start or join Ray "
                    f"({settings.ray_address or 'local'}): {exc}"
                ) from exc
            log.warning(
                "ray did not start, retrying", extra={"attempt": attempt, "error": str(exc)}
            )
    raise AssertionError("unreachable")


def _dashboard_url() -> str:
    try:
        from ray._private.worker import global_worker

        return global_worker.node.address_info.get("webui_url", "") or ""
    except Exception:  # private API: the URL is informative only
        return ""


def stop_ray(info: RayInfo) -> None:
    """Shut down the local Ray if this trainer started it."""
    if info.started_here and ray.is_initialized():
        ray.shutdown()
