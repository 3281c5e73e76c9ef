"""docker-compose.yml and the services' Dockerfile, checked without Docker.

Docker cannot run on our machines, so the stack itself is not started here. These
tests parse the compose file and check what can go wrong without it: it is valid under
the Compose specification's JSON schema (``compose/schema``); the components
are there with the ports and options the platform relies on; every ``EDGELOOP_*``
variable given to a service is a field of that service's ``Settings`` and, with the
secrets filled in, the service's own ``load_settings`` accepts the environment; every
address points at a compose service and a port it listens on; no secret is written into
the file; the one Dockerfile (``services/Dockerfile``, the service a build argument)
copies paths that exist for each service, and its build stage for features, replayed
without Docker, installs a service that imports; and the health-check
command, run with this environment's Python, tells a serving gRPC server from one that
is not.
"""

from __future__ import annotations

import asyncio
import copy
import http.server
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import grpc
import jsonschema
import pytest
import yaml
from edgeloop.platform.config import env_name, load_settings
from edgeloop.testing import free_port
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

COMPOSE_DIR = Path(__file__).resolve().parents[1]
REPO = COMPOSE_DIR.parent
COMPOSE = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
EDGELOOP = {"gateway": 50050, "registry": 50051, "features": 50052, "trainer": 50053,
            "console": 8080}
"""The edgeloop services and their ports (CONTRIBUTING.md; the console speaks HTTP)."""
OTHER_PORTS = {"tfserving": {8500, 8501}, "mlflow": {5000}, "minio": {9000}, "jaeger": {4317},
               "timescaledb": {5432}, "ray-head": {10001, 6379, 8265}}
"""Ports the other components listen on inside the compose network."""
_INTERPOLATION = re.compile(r"\$\{(\w+)(?:[:?-][^}]*)?\}")
DOCKERFILE = REPO / "services" / "Dockerfile"
SCHEMA = json.loads((COMPOSE_DIR / "schema" / "compose-spec.json").read_text(encoding="utf-8"))


def interpolate(value: str) -> str:
    """``value`` with every ``${VAR...}`` replaced by a stand-in secret."""
    return _INTERPOLATION.sub(lambda m: f"test-{m.group(1).lower()}-0123456789abcdef", value)


def environment(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service]["environment"].items()}


def settings_class(service: str) -> type:
    return importlib.import_module(f"edgeloop.{service}.settings").Settings


def test_the_real_components_are_composed() -> None:
    assert set(SERVICES) == {"timescaledb", "minio", "mlflow", "tfserving", "jaeger", "grafana",
                             "ray-head", *EDGELOOP}
    assert SERVICES["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert SERVICES["timescaledb"]["image"].endswith("-pg15")
    assert {"4317:4317", "16686:16686"} <= set(SERVICES["jaeger"]["ports"])
    assert "8265:8265" in SERVICES["ray-head"]["ports"]
    tfserving = " ".join(SERVICES["tfserving"]["command"])
    assert "--model_config_file=/models/models.config" in tfserving
    assert "--model_config_file_poll_wait_seconds=" in tfserving
    mlflow = SERVICES["mlflow"]["command"]
    assert any(a.startswith("--backend-store-uri=postgresql://") for a in mlflow)
    assert "--artifacts-destination=s3://edgeloop/mlflow" in mlflow
    # as `edgeloop up` starts it: no job runner for GenAI jobs edgeloop never submits
    assert SERVICES["mlflow"]["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_every_containers_log_is_bounded() -> None:
    for name, service in SERVICES.items():
        logging = service.get("logging", {})
        assert logging.get("driver") == "json-file", name
        assert logging["options"]["max-size"] and int(logging["options"]["max-file"]) >= 1, name


def _schema() -> dict:
    """The vendored 2021 schema plus, by name, what the specification gained since that
    our file uses (compose/schema/README.md)."""
    schema = copy.deepcopy(SCHEMA)
    schema["properties"]["name"] = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"}
    build = schema["definitions"]["service"]["properties"]["build"]["oneOf"][1]
    build["properties"]["dockerfile_inline"] = {"type": "string"}
    return schema


def _violations(document: dict) -> list[str]:
    validator = jsonschema.Draft201909Validator(_schema())
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:300]}"
            for e in validator.iter_errors(document)]


def test_the_file_is_valid_under_the_compose_specification() -> None:
    assert _violations(COMPOSE) == []


@pytest.mark.parametrize(("path", "value"), [
    (("services", "gateway", "enviroment"), {"A": "1"}),  # a misspelt key
    (("services", "gateway", "build", "args"), 3),  # a wrong type
    (("services", "jaeger", "ports"), "4317:4317"),  # a list expected
])
def test_the_schema_catches_mistakes(path: tuple[str, ...], value: object) -> None:
    broken = copy.deepcopy(COMPOSE)
    parent = broken
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    assert _violations(broken), f"{'/'.join(path)}={value!r} passed the schema"


def render_dockerfile(service: str) -> str:
    """services/Dockerfile with the build arguments compose gives ``service`` filled in."""
    args = {k: str(v) for k, v in SERVICES[service]["build"]["args"].items()}
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)),
                  DOCKERFILE.read_text(encoding="utf-8"))


def test_one_build_definition_for_every_service() -> None:
    assert not list((REPO / "services").glob("*/Dockerfile")), "per-service Dockerfiles are back"
    text = DOCKERFILE.read_text(encoding="utf-8")
    build, runtime = text.split("\nFROM ")[1:]
    assert "ARG SERVICE" in build and "ARG SERVICE" in runtime and "ARG PORT" in runtime
    assert "ray-head" in SERVICES and SERVICES["ray-head"]["build"] == SERVICES["trainer"]["build"]


@pytest.mark.parametrize("service", sorted(EDGELOOP))
def test_service_is_built_from_the_dockerfile_with_a_healthcheck(service: str) -> None:
    spec = SERVICES[service]
    port = EDGELOOP[service]
    assert spec["build"] == {"context": "..", "dockerfile": "services/Dockerfile",
                             "args": {"SERVICE": service, "PORT": str(port)}}
    assert (COMPOSE_DIR / spec["build"]["context"] / spec["build"]["dockerfile"]).resolve() \
        == DOCKERFILE
    assert spec["healthcheck"]["test"][:2] == ["CMD", "python"]
    assert environment(service)["EDGELOOP_LISTEN_ADDR"] == f"0.0.0.0:{port}"
    assert f"{port}:{port}" in spec["ports"]


@pytest.mark.parametrize("service", sorted(EDGELOOP))
def test_service_environment_is_what_the_service_reads(service: str) -> None:
    cls = settings_class(service)
    known = {env_name(cls, name) for name in cls.model_fields}
    env = environment(service)
    unknown = sorted(set(env) - known)
    assert not unknown, f"{service} does not read {unknown}"
    required = {env_name(cls, n) for n, f in cls.model_fields.items() if f.is_required()}
    assert required <= set(env), f"{service} needs {sorted(required - set(env))}"


@pytest.mark.parametrize("service", sorted(EDGELOOP))
def test_service_accepts_the_environment(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("EDGELOOP_")]:
        monkeypatch.delenv(name)
    for name, value in environment(service).items():
        monkeypatch.setenv(name, interpolate(value))
    settings = load_settings(settings_class(service))
    assert settings.listen_addr == f"0.0.0.0:{EDGELOOP[service]}"


def _addresses() -> list[tuple[str, str, str]]:
    return [(service, name, value) for service in EDGELOOP
            for name, value in environment(service).items()
            if name.endswith(("_ADDR", "_ENDPOINT")) and name != "EDGELOOP_LISTEN_ADDR"]


@pytest.mark.parametrize(("service", "name", "value"), _addresses())
def test_addresses_point_at_composed_listeners(service: str, name: str, value: str) -> None:
    host, port = value.rsplit(":", 1)
    if name == "EDGELOOP_WEBHOOK_ADDR":
        assert host == "0.0.0.0"
        return
    listening = ({EDGELOOP[host]} if host in EDGELOOP else OTHER_PORTS.get(host, set()))
    assert int(port) in listening, f"{service} {name}={value}: nothing listens there"


def test_webhook_matches_grafana_contact_point() -> None:
    contact = yaml.safe_load((COMPOSE_DIR / "grafana" / "provisioning" / "alerting" /
                              "contact-points.yaml").read_text(encoding="utf-8"))
    url = contact["contactPoints"][0]["receivers"][0]["settings"]["url"]
    port = environment("trainer")["EDGELOOP_WEBHOOK_ADDR"].rsplit(":", 1)[1]
    assert url == f"http://trainer:{port}/hooks/grafana"
    assert f"{port}:{port}" in SERVICES["trainer"]["ports"]
    # Grafana and the trainer get the same secret.
    assert (SERVICES["grafana"]["environment"]["EDGELOOP_WEBHOOK_SECRET"]
            == environment("trainer")["EDGELOOP_WEBHOOK_SECRET"])


def test_operators_alerts_reach_the_consoles_hook_by_default() -> None:
    from edgeloop.console.alerts import PATH

    contact = yaml.safe_load((COMPOSE_DIR / "grafana" / "provisioning" / "alerting" /
                              "contact-points.yaml").read_text(encoding="utf-8"))
    points = {p["name"]: p["receivers"][0]["settings"] for p in contact["contactPoints"]}
    variable = points["edgeloop-operators"]["url"]
    grafana = SERVICES["grafana"]["environment"]
    default = re.fullmatch(r"\$\{EDGELOOP_OPERATOR_ALERTS_URL:-(.+)\}",
                           grafana["EDGELOOP_OPERATOR_ALERTS_URL"])
    assert variable == "${EDGELOOP_OPERATOR_ALERTS_URL}" and default, grafana
    port = environment("console")["EDGELOOP_LISTEN_ADDR"].rsplit(":", 1)[1]
    assert default.group(1) == f"http://console:{port}{PATH}"
    # Grafana sends the secret the console checks.
    assert points["edgeloop-operators"]["authorization_credentials"] == (
        "${EDGELOOP_WEBHOOK_SECRET}")
    assert grafana["EDGELOOP_WEBHOOK_SECRET"] == environment("console")["EDGELOOP_WEBHOOK_SECRET"]


def test_no_secret_is_written_into_the_file() -> None:
    secret = re.compile(r"(TOKEN|SECRET|PASSWORD|ACCESS_KEY|SECRET_KEY)$")
    for name, spec in SERVICES.items():
        values = [(key, str(value)) for key, value in (spec.get("environment") or {}).items()]
        values += [("command", str(arg)) for arg in spec.get("command") or []]
        for key, value in values:
            if secret.search(key):
                assert value.startswith("${"), f"{name}: {key} is written into the file"
            for password in re.findall(r"://[^:/@]+:([^@]+)@", value):
                assert password == "${EDGELOOP_DB_PASSWORD}", f"{name}: {key} holds a password"


def test_grafana_mounts_the_provisioning_files() -> None:
    for volume in SERVICES["grafana"]["volumes"] + SERVICES["timescaledb"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (COMPOSE_DIR / source).is_dir(), volume
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in SERVICES["grafana"]["volumes"]


def _workspace_members() -> list[str]:
    root = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return root["tool"]["uv"]["workspace"]["members"]


@pytest.mark.parametrize("service", sorted(EDGELOOP))
def test_dockerfile(service: str) -> None:
    text = render_dockerfile(service)
    assert "${" not in text.replace("$EDGELOOP_SERVICE", ""), "a build argument left unset"
    assert text.count("FROM python:3.11-slim") == 2
    assert f"uv sync --frozen --no-dev --no-editable --package edgeloop-{service}" in text
    assert re.search(r"^USER edgeloop$", text, re.MULTILINE)
    assert f"EDGELOOP_SERVICE={service}" in text
    assert f"EDGELOOP_LISTEN_ADDR=0.0.0.0:{EDGELOOP[service]}" in text
    assert text.rstrip().endswith(
        'CMD ["sh", "-c", "exec python -m \\"edgeloop.$EDGELOOP_SERVICE\\""]')
    copied = re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE)
    for source in copied:
        assert (REPO / source).exists(), f"Dockerfile copies {source}, which does not exist"
    manifests = {s.removesuffix("/pyproject.toml") for s in copied if s.endswith("/pyproject.toml")}
    assert manifests == set(_workspace_members()), "uv needs every member's pyproject.toml"


async def _health_server(status: int) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    await server.start()
    await servicer.set("", status)
    return server, port


async def _probe(port: int) -> int:
    command = COMPOSE["x-grpc-healthcheck"]["test"][1:]
    env = {**os.environ, "EDGELOOP_LISTEN_ADDR": f"0.0.0.0:{port}"}
    process = await asyncio.create_subprocess_exec(sys.executable, *command[1:], env=env,
                                                   stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL)
    return await process.wait()


@pytest.mark.parametrize(("status", "exit_code"), [
    (health_pb2.HealthCheckResponse.SERVING, 0),
    (health_pb2.HealthCheckResponse.NOT_SERVING, 1),
])
async def test_healthcheck_tells_serving_from_not_serving(status: int, exit_code: int) -> None:
    server, port = await _health_server(status)
    try:
        assert await _probe(port) == exit_code
    finally:
        await server.stop(None)


class _Healthz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (503, 1)])
def test_the_consoles_healthcheck_asks_its_healthz(status: int, exit_code: int) -> None:
    assert SERVICES["console"]["healthcheck"] == COMPOSE["x-http-healthcheck"]
    handler = type("Handler", (_Healthz,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        command = COMPOSE["x-http-healthcheck"]["test"][1:]
        env = {**os.environ, "EDGELOOP_LISTEN_ADDR": f"0.0.0.0:{server.server_port}"}
        result = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True,
                                timeout=60)
        assert result.returncode == exit_code, result.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_the_console_reads_the_gateways_spool_volume_read_only() -> None:
    gateway = environment("gateway")["EDGELOOP_SPOOL_DIR"]
    (mount,) = [v for v in SERVICES["gateway"]["volumes"] if v.endswith(f":{gateway}")]
    volume = mount.split(":")[0]
    console_dir = environment("console")["EDGELOOP_SPOOL_DIRS"]
    assert f"{volume}:{console_dir}:ro" in SERVICES["console"]["volumes"]


def test_the_gateway_reads_the_model_repository_at_the_registrys_path() -> None:
    # Deployments name a version by its path in the registry's repository; robots that
    # predict on the device download the TFLite files the registry writes there, through
    # the gateway. Without the volume at that path every download is NOT_FOUND.
    repository = environment("registry")["EDGELOOP_MODEL_REPOSITORY"]
    (mount,) = [v for v in SERVICES["registry"]["volumes"] if v.endswith(f":{repository}")]
    volume = mount.split(":")[0]
    assert f"{volume}:{repository}:ro" in SERVICES["gateway"]["volumes"]


def test_every_named_volume_of_a_service_is_mounted_on_a_folder_its_user_owns() -> None:
    # An empty named volume takes the owner of the image's folder it is mounted on; on a
    # folder the Dockerfile does not create for the service's user, the service cannot write.
    created = set(re.search(r"mkdir -p ((?:/data/\S+ ?)+)", DOCKERFILE.read_text())[1].split())
    named = set(COMPOSE["volumes"])
    for service, spec in SERVICES.items():
        if spec.get("build", {}).get("dockerfile") != "services/Dockerfile":
            continue
        for mount in spec.get("volumes", []):
            source, target = mount.split(":")[:2]
            assert source in named, f"{service}: {source} is not a declared volume"
            assert target in created, f"{service}: {target} is not created for its user"


def test_the_console_keeps_its_alerts_on_a_volume() -> None:
    alerts = Path(environment("console")["EDGELOOP_ALERTS_FILE"])
    assert any(mount.endswith(f":{alerts.parent}") for mount in SERVICES["console"]["volumes"])


def test_dockerfile_healthcheck_is_the_compose_one() -> None:
    command = COMPOSE["x-grpc-healthcheck"]["test"][3]
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert command.replace('"', '\\"') in text or command in text


def test_every_variable_is_documented() -> None:
    text = (COMPOSE_DIR / "docker-compose.yml").read_text(encoding="utf-8")
    readme = (COMPOSE_DIR / "README.md").read_text(encoding="utf-8")
    for variable in sorted(set(_INTERPOLATION.findall(text))):
        assert f"`{variable}`" in readme, f"compose/README.md does not document {variable}"


def _instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _replay_build_stage(service: str, tmp_path: Path) -> Path:
    """Replays the build stage of services/Dockerfile for ``service`` without Docker: its
    COPY instructions (from the repository) and its ``uv sync`` steps (offline, from uv's
    cache); returns the resulting environment."""
    workdir, venv = tmp_path / "src", tmp_path / "venv"
    workdir.mkdir()
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_LINK_MODE": "copy",
           "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    text = render_dockerfile(service)
    build_stage = text.split("\nFROM ")[1]
    for instruction in _instructions(build_stage):
        if instruction.startswith("COPY ") and "--from" not in instruction:
            *sources, target = instruction.split()[1:]
            for source in sources:
                destination = workdir / target / Path(source).name if target.endswith("/") \
                    else workdir / target
                destination.parent.mkdir(parents=True, exist_ok=True)
                if (REPO / source).is_dir():
                    shutil.copytree(REPO / source, destination,
                                    ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(REPO / source, destination)
        elif instruction.startswith("RUN ") and "uv sync" in instruction:
            command = instruction[instruction.index("uv sync"):].split() + ["--offline"]
            result = subprocess.run(command, cwd=workdir, env=env, capture_output=True,
                                    text=True, timeout=600)
            assert result.returncode == 0, result.stderr
    return venv


def test_features_dockerfile_build_steps_install_a_runnable_service(tmp_path: Path) -> None:
    """The features image's build stage, replayed, yields an environment that imports the
    service by itself. The services share these steps (test_dockerfile); features stands for
    the four because its dependencies install in seconds (the trainer's TensorFlow and Ray
    would not)."""
    venv = _replay_build_stage("features", tmp_path)
    probe = ("import edgeloop.features.app, edgeloop.features.drift as d; "
             "print(d.load_rules().get('saturation_band').name, d.default_rules_path())")
    result = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    name, rules_path = result.stdout.split()
    assert name == "saturation_band"
    assert Path(rules_path).is_relative_to(venv), "the service must not come from the checkout"


def test_console_dockerfile_build_steps_install_the_console_with_its_files(
        tmp_path: Path) -> None:
    """The console's image: its pages need the templates and vendored scripts beside the
    code, which a wheel leaves out unless they are package files."""
    venv = _replay_build_stage("console", tmp_path)
    probe = ("import pathlib, edgeloop.console.app as a; p = pathlib.Path(a.__file__).parent; "
             "print(p, len(list((p / 'templates').glob('*.html'))), "
             "(p / 'static' / 'vendor' / 'htmx-2.0.11.min.js').is_file())")
    result = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    package, templates, htmx = result.stdout.split()
    assert Path(package).is_relative_to(venv), "the console must not come from the checkout"
    assert int(templates) > 0 and htmx == "True"
