"""The local topology: which parts run, on which ports, with which environment.

Ports default to CONTRIBUTING.md's table and can be moved with ``EDGELOOP_<PART>_PORT``
(e.g. ``EDGELOOP_REGISTRY_PORT=60051``) when a port is taken. ``EDGELOOP_TLS`` (on, mutual,
off; see :mod:`edgeloop.compose.stack.tls`) chooses the transport of the services.

Ray is one head node for the whole stack (``ray start --head``, token auth, dashboard):
the trainer's Tune sweeps join it, and with ``EDGELOOP_MODEL_HOST=rayserve`` so does the
Ray Serve model host, which the registry reloads and the gateway calls with its TF
Serving client.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from edgeloop.compose.stack.log_rotation import BACKUPS_ENV, MAX_BYTES_ENV, LogLimits
from edgeloop.compose.stack.passed_settings import passed_settings, with_passed
from edgeloop.compose.stack.tls import StackTLS, stack_tls, tls_mode
from edgeloop.platform import rayhead

DEFAULT_PORTS = {
    "postgres": 55432,
    "mlflow": 5000,
    "registry": 50051,
    "features": 50052,
    "trainer": 50053,
    "gateway": 50050,
    "webhook": 50080,
    "ray_dashboard": 8265,
    "console": 8080,
    "ray_gcs": 6379,
}
RAYSERVE_PORTS = {"rayserve_grpc": 50054, "rayserve_http": 50055}
"""Ports of Ray Serve's proxies, only with ``EDGELOOP_MODEL_HOST=rayserve``."""
MODEL_HOSTS = ("embedded", "rayserve")
SERVICES = ("registry", "features", "trainer", "gateway")
"""The edgeloop services, in start order."""
DEFAULT_NICE = {
    "gateway": 0,
    "registry": 5,
    "postgres": 5,
    "features": 10,
    "mlflow": 10,
    "console": 10,
    "modelserver": 0,
    "trainer": 15,
    "ray": 15,
}
"""Scheduling priority (nice) per part: robots wait for the gateway's answers, nothing else
has a robot waiting. Recording, drift checks, MLflow and training yield the CPU to the
answer path; the Ray head's workers (the sweeps' trials) inherit its value and run last.
With ``EDGELOOP_MODEL_HOST=rayserve`` the Serve replicas are Ray workers on the answer path,
so Ray's default becomes 0 then. Each moves with ``EDGELOOP_<PART>_NICE`` (-20..19;
negative values need root)."""
TELEMETRY_VARIABLES = ("EDGELOOP_OTLP_ENDPOINT", "EDGELOOP_TRACE_FILE_MAX_BYTES",
                       "EDGELOOP_TRACE_FILE_MAX_AGE_S", "EDGELOOP_TRACE_FILE_BACKUPS",
                       "EDGELOOP_TRACES_PER_SECOND")
"""Span export settings of the user's environment that every service gets (the services
otherwise see none of the caller's EDGELOOP_* variables): a local stack pointed at a
collector exports to it and keeps its span files for `edgeloop trace`."""
MAX_GATEWAY_PROCESSES = 64
CONSOLE = "console"
"""The operators' web console (HTTP, services/console), started after the services."""


@dataclass(frozen=True)
class Topology:
    """Ports and folders of one local stack."""

    state_dir: Path
    ports: dict[str, int]
    nice: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_NICE))
    tls_mode: str = "on"
    model_host: str = "embedded"
    """``embedded`` (models inside the gateway) or ``rayserve`` (``EDGELOOP_MODEL_HOST``)."""
    rayserve_replicas: int = 1
    gateway_processes: int = 1
    """Gateway processes sharing the gateway port (``EDGELOOP_GATEWAY_PROCESSES``)."""
    passed: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per part, its own settings passed as ``EDGELOOP_<PART>__<SETTING>``
    (:mod:`edgeloop.compose.stack.passed_settings`)."""
    log_limits: LogLimits = field(default_factory=LogLimits)
    """When the supervisor rotates a part's log (``EDGELOOP_LOG_MAX_BYTES``,
    ``EDGELOOP_LOG_BACKUPS``; :mod:`edgeloop.compose.stack.log_rotation`)."""

    @classmethod
    def from_env(cls, state_dir: Path) -> Topology:
        """Default ports and priorities, overridden by ``EDGELOOP_<PART>_PORT`` and
        ``EDGELOOP_<PART>_NICE`` variables; the model host from ``EDGELOOP_MODEL_HOST`` and
        ``EDGELOOP_RAYSERVE_REPLICAS``; services' own settings from
        ``EDGELOOP_<PART>__<SETTING>``."""
        model_host = os.environ.get("EDGELOOP_MODEL_HOST", "") or "embedded"
        if model_host not in MODEL_HOSTS:
            raise ValueError(f"EDGELOOP_MODEL_HOST: {model_host!r} is not one of "
                             f"{', '.join(MODEL_HOSTS)}")
        replicas = os.environ.get("EDGELOOP_RAYSERVE_REPLICAS", "") or "1"
        if not replicas.isdigit() or int(replicas) < 1:
            raise ValueError("EDGELOOP_RAYSERVE_REPLICAS: not a positive number "
                             f"(got {replicas!r})")
        defaults = {**DEFAULT_PORTS, **(RAYSERVE_PORTS if model_host == "rayserve" else {})}
        ports = {}
        for part, default in defaults.items():
            raw = os.environ.get(f"EDGELOOP_{part.upper()}_PORT", "")
            if raw and not raw.isdigit():
                raise ValueError(f"EDGELOOP_{part.upper()}_PORT: not a port number (got {raw!r})")
            ports[part] = int(raw) if raw else default
        return cls(state_dir=state_dir, ports=ports, nice=_nice_from_env(model_host),
                   tls_mode=tls_mode(), model_host=model_host, rayserve_replicas=int(replicas),
                   gateway_processes=_gateway_processes_from_env(),
                   passed=passed_settings(os.environ), log_limits=LogLimits.from_env())

    @property
    def gateway_parts(self) -> list[str]:
        """The gateway processes' part names: ``gateway``, then ``gateway-2``, ``gateway-3``..."""
        return ["gateway", *(f"gateway-{n}" for n in range(2, self.gateway_processes + 1))]

    def gateway_env(self, part: str, secrets: dict[str, str]) -> dict[str, str]:
        """One gateway process's variables: the gateway's, with its own spool, id and span
        file, and the shared port when there are several (each process follows the registry
        and forwards its own spool, so they need nothing else in common)."""
        env = self.service_env("gateway", secrets)
        if self.gateway_processes > 1:
            env["EDGELOOP_REUSE_PORT"] = "true"
        if part != "gateway":
            env.update({"EDGELOOP_SPOOL_DIR": str(self.spool_dir(part)),
                        "EDGELOOP_GATEWAY_ID": f"{socket.gethostname()}-{part}",
                        "EDGELOOP_TRACE_FILE": str(self.folder("traces") / f"{part}.jsonl")})
        return env

    def spool_dir(self, part: str) -> Path:
        """Gateway process ``part``'s spool folder: ``spool``, ``spool-2``, ..."""
        return self.state_dir / part.replace("gateway", "spool")

    def address(self, part: str) -> str:
        return f"127.0.0.1:{self.ports[part]}"

    def folder(self, name: str) -> Path:
        path = self.state_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def tls(self) -> StackTLS | None:
        """The stack's CA and certificates (made once in ``<state>/tls``), or None when off."""
        return stack_tls(self.state_dir, self.tls_mode)

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.ports['postgres']}/edgeloop"

    @property
    def ray_token_file(self) -> Path:
        """The Ray cluster's token (dashboard login, joining nodes), made by `up` (mode 600)."""
        return self.state_dir / "ray_token"

    @property
    def ray_head(self) -> rayhead.RayHeadConfig:
        """The local Ray head node: GCS on ``ray_gcs``, dashboard on ``ray_dashboard``."""
        cpus = os.environ.get("EDGELOOP_RAY_NUM_CPUS", "") or "0"
        if not cpus.isdigit():
            raise ValueError(f"EDGELOOP_RAY_NUM_CPUS: not a number (got {cpus!r})")
        return rayhead.RayHeadConfig(port=self.ports["ray_gcs"],
                                     dashboard_port=self.ports["ray_dashboard"],
                                     token_file=self.ray_token_file,
                                     num_cpus=int(cpus) or None,
                                     temp_dir=str(rayhead.stack_temp_dir(self.state_dir)))

    def ray_head_command(self) -> tuple[list[str], dict[str, str]]:
        """The head node's command and environment (token auth)."""
        rayhead.ensure_token(self.ray_token_file)
        return rayhead.head_command(self.ray_head), rayhead.node_env(self.ray_token_file)

    def modelserver_command(self) -> tuple[list[str], dict[str, str]]:
        """The Ray Serve model host joining the head: command and environment."""
        env = {**rayhead.auth_env(self.ray_token_file),
               "EDGELOOP_RAY_ADDRESS": self.ray_head.address,
               "EDGELOOP_MODEL_REPOSITORY": str(self.folder("models")),
               "EDGELOOP_RAYSERVE_GRPC_PORT": str(self.ports["rayserve_grpc"]),
               "EDGELOOP_RAYSERVE_HTTP_PORT": str(self.ports["rayserve_http"]),
               "EDGELOOP_RAYSERVE_REPLICAS": str(self.rayserve_replicas),
               "EDGELOOP_LOG_FORMAT": "json"}
        return [sys.executable, "-m", "edgeloop.gateway.hosts.rayserve"], env

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    def mlflow_command(self) -> list[str]:
        """The MLflow tracking server on a SQLite store with local, proxied artifacts."""
        folder = self.folder("mlflow")
        return [sys.executable, "-m", "mlflow", "server",
                "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
                "--artifacts-destination", str(folder / "artifacts"),
                "--host", "127.0.0.1", "--port", str(self.ports["mlflow"]), "--workers", "1"]

    @staticmethod
    def mlflow_env() -> dict[str, str]:
        """MLflow 3's job runner off unless the user turned it on.

        Its server otherwise starts a job runner and seven huey consumers (~180 MB each,
        ~1.4 GB together) for GenAI jobs that edgeloop never submits; the tracking server
        and the model registry do not need them.
        """
        return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION":
                os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")}

    def supervisor_env(self) -> dict[str, str]:
        """The supervisor's variables: the log limits it rotates the parts' logs at."""
        return {MAX_BYTES_ENV: str(self.log_limits.max_bytes),
                BACKUPS_ENV: str(self.log_limits.backups)}

    @property
    def console_url(self) -> str:
        return f"http://{self.address(CONSOLE)}"

    def console_env(self, secrets: dict[str, str]) -> dict[str, str]:
        """The console's variables: every service's address, the tokens, the span files, the
        gateways' spool folders, and the local tools' addresses for deep links."""
        return with_passed(CONSOLE, {
            "EDGELOOP_LISTEN_ADDR": self.address(CONSOLE),
            "EDGELOOP_LOG_FORMAT": "json",
            "EDGELOOP_REGISTRY_ADDR": self.address("registry"),
            "EDGELOOP_FEATURES_ADDR": self.address("features"),
            "EDGELOOP_TRAINER_ADDR": self.address("trainer"),
            "EDGELOOP_READ_TOKEN": secrets["read_token"],
            "EDGELOOP_ADMIN_TOKEN": secrets["admin_token"],
            # the trainer's: a Grafana run beside the stack can send operators' alerts too
            "EDGELOOP_WEBHOOK_SECRET": secrets["webhook_secret"],
            "EDGELOOP_ALERTS_FILE": str(self.folder(CONSOLE) / "alerts.json"),
            "EDGELOOP_TRACE_DIR": str(self.folder("traces")),
            "EDGELOOP_SPOOL_DIRS": ",".join(str(self.spool_dir(part))
                                            for part in self.gateway_parts),
            "EDGELOOP_MLFLOW_UI_URL": self.mlflow_uri,
            "EDGELOOP_RAY_DASHBOARD_URL": f"http://{self.address('ray_dashboard')}",
            **(self.tls.client_env() if self.tls else {}),
        }, self.passed)

    def service_env(self, service: str, secrets: dict[str, str]) -> dict[str, str]:
        """The ``EDGELOOP_*`` variables one service reads, and nothing else of ours."""
        common = {
            "EDGELOOP_LISTEN_ADDR": self.address(service),
            "EDGELOOP_LOG_FORMAT": "json",
            "EDGELOOP_TRACE_FILE": str(self.folder("traces") / f"{service}.jsonl"),
            **{name: os.environ[name] for name in TELEMETRY_VARIABLES if os.environ.get(name)},
        }
        objects = str(self.folder("objects"))
        models = str(self.folder("models"))
        specific: dict[str, dict[str, str]] = {
            "registry": {"EDGELOOP_DATABASE_URL": self.database_url,
                         "EDGELOOP_MLFLOW_TRACKING_URI": self.mlflow_uri,
                         "EDGELOOP_ADMIN_TOKEN": secrets["admin_token"],
                         "EDGELOOP_READ_TOKEN": secrets["read_token"],
                         "EDGELOOP_SERVICE_TOKENS": f"trainer={secrets['trainer_token']}",
                         "EDGELOOP_MODEL_REPOSITORY": models},
            "features": {"EDGELOOP_DATABASE_URL": self.database_url,
                         "EDGELOOP_OBJECT_STORE_DIR": objects,
                         "EDGELOOP_REGISTRY_ADDR": self.address("registry"),
                         "EDGELOOP_REGISTRY_TOKEN": secrets["read_token"],
                         "EDGELOOP_TRAINER_ADDR": self.address("trainer")},
            "trainer": {"EDGELOOP_DATABASE_URL": self.database_url,
                        "EDGELOOP_OBJECT_STORE_DIR": objects,
                        "EDGELOOP_MLFLOW_TRACKING_URI": self.mlflow_uri,
                        "EDGELOOP_FEATURES_ADDR": self.address("features"),
                        "EDGELOOP_WEBHOOK_ADDR": self.address("webhook"),
                        "EDGELOOP_WEBHOOK_SECRET": secrets["webhook_secret"],
                        "EDGELOOP_RAY_ADDRESS": self.ray_head.address,
                        "EDGELOOP_RAY_AUTH_TOKEN_FILE": str(self.ray_token_file),
                        "EDGELOOP_WORK_DIR": str(self.folder("trainer")),
                        # its own token: automatic promotions are recorded as service:trainer
                        "EDGELOOP_REGISTRY_ADDR": self.address("registry"),
                        "EDGELOOP_REGISTRY_TOKEN": secrets["trainer_token"]},
            "gateway": {"EDGELOOP_FEATURES_ADDR": self.address("features"),
                        "EDGELOOP_MODEL_HOST": "embedded",
                        "EDGELOOP_MODEL_REPOSITORY": models,
                        "EDGELOOP_MODEL_RUNTIME": os.environ.get("EDGELOOP_MODEL_RUNTIME",
                                                                 "") or "auto",
                        "EDGELOOP_SPOOL_DIR": str(self.spool_dir("gateway")),
                        "EDGELOOP_REGISTRY_ADDR": self.address("registry"),
                        "EDGELOOP_REGISTRY_TOKEN": secrets["read_token"]},
        }
        if self.model_host == "rayserve":
            # The registry reloads Ray Serve and the gateway calls it as it would TF Serving.
            serve = self.address("rayserve_grpc")
            specific["registry"]["EDGELOOP_TFSERVING_ADDR"] = serve
            specific["gateway"].update({"EDGELOOP_MODEL_HOST": "tfserving",
                                        "EDGELOOP_TFSERVING_ADDR": serve})
        tls = self.tls
        env = {**common, **specific[service], **(tls.service_env(service) if tls else {})}
        return with_passed(service, env, self.passed)


def _gateway_processes_from_env() -> int:
    raw = os.environ.get("EDGELOOP_GATEWAY_PROCESSES", "") or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_GATEWAY_PROCESSES:
        raise ValueError(f"EDGELOOP_GATEWAY_PROCESSES: not a number within "
                         f"1..{MAX_GATEWAY_PROCESSES} (got {raw!r})")
    return int(raw)


def _nice_from_env(model_host: str = "embedded") -> dict[str, int]:
    nice = {}
    defaults = {**DEFAULT_NICE, **({"ray": 0} if model_host == "rayserve" else {})}
    for part, default in defaults.items():
        name = f"EDGELOOP_{part.upper()}_NICE"
        raw = os.environ.get(name, "").strip()
        try:
            value = int(raw) if raw else default
        except ValueError:
            raise ValueError(f"{name}: not a number from -20 to 19 (got {raw!r})") from None
        if not -20 <= value <= 19:
            raise ValueError(f"{name}: must be from -20 to 19 (got {value})")
        nice[part] = value
    return nice
