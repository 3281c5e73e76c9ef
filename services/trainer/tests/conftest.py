"""Fixtures: the trainer with real neighbours, all on loopback.

- Ray: one real local Ray per test session, started through the trainer's own
  ``start_ray`` (token auth on, dashboard on a free port).
- PostgreSQL: the private test cluster; one database per module shared by the
  features service, the registry and the trainer (each owns its schema).
- features (``edgeloop.features.app``) and registry (``edgeloop.registry.app``) run
  in-process, each on its own event loop thread, exactly as they are shipped.
- MLflow: a real SQLite store in the module's temporary folder.
- Data: a few hundred frames of the simulator's ``beige`` scenario, ingested through
  ``FeatureStore.Ingest``, so the trainer reads them back with ``ListObservations``.
Nothing is faked: TF Serving is not involved (the registry runs without it).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from edgeloop.contracts.features.v1 import (
    feature_store_service_pb2,
    feature_store_service_pb2_grpc,
    observation_pb2,
)
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc
from edgeloop.contracts.trainer.v1 import trainer_service_pb2_grpc
from edgeloop.platform import ServiceApp, ServiceSettings, serve
from edgeloop.testing import free_port
from edgeloop.testing.release import release_after_last_user
from google.protobuf.timestamp_pb2 import Timestamp

ADMIN = "trainer-tests-admin-token-0123456789"
WEBHOOK_SECRET = "grafana-webhook-secret-for-tests"
DEPLOYMENT = "garage-beige"
FRAMES = 240
CARRIED_TRAIN_FRAMES = 60
"""The stack trainer's budget of carried training frames (of the ~170 beige ones)."""


class ServiceThread:
    """A service served with ``edgeloop.platform.serve`` on its own event-loop thread."""

    def __init__(self, app: ServiceApp, settings: ServiceSettings) -> None:
        self.app = app
        self.settings = settings
        self.address = ""
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self.loop.run_until_complete,
            args=(self._main(),),
            daemon=True,
            name=f"svc-{app.name}",
        )

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with serve(self.app, self.settings) as running:
                self.address = running.address
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def start(self) -> ServiceThread:
        self._thread.start()
        started = self._ready.wait(180)
        if self._error is not None:
            self._thread.join(30)
            raise RuntimeError(f"{self.app.name} did not start") from self._error
        if not started:
            self.stop()
            raise RuntimeError(f"{self.app.name} did not start within 180 s")
        return self

    def run(self, coro: Any, timeout: float = 120) -> Any:
        """Run a coroutine on the service's loop (to reach its internals)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(180)


@pytest.fixture(scope="session")
def private_tmp() -> Iterator[Path]:
    """A temporary folder of our own: pytest prunes its numbered tmp folders, and other
    sessions running at the same time on this machine must not delete ours mid-sweep."""
    folder = Path(tempfile.mkdtemp(prefix="edgeloop-trainer-tests-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_info(private_tmp: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """One local Ray, started the way the trainer starts it, shut down once the last module
    that uses it has run (not at the session's end, beside the later directories' stacks)."""
    from edgeloop.trainer.raycluster import start_ray, stop_ray
    from edgeloop.trainer.settings import Settings

    folder = private_tmp / "ray"
    folder.mkdir()
    settings = Settings(
        database_url="unused",
        mlflow_tracking_uri="unused",
        ray_num_cpus=2,
        ray_dashboard_port=free_port(),
        ray_auth_token_file=str(folder / "ray_token"),
    )
    info = start_ray(settings)
    info = type(info)(info.dashboard_url, info.total_cpus, True, info.token_file)
    release_after_last_user(request, lambda: stop_ray(info))
    yield info
    stop_ray(info)


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def beige_observations(count: int, seed: int = 3) -> list[observation_pb2.Observation]:
    """Simulated labelled frames of the beige scenario as observations of one deployment."""
    from edgeloop.edge_client.simulate import render_dataset

    start = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for i, frame in enumerate(render_dataset("beige", count, seed=seed)):
        obs = observation_pb2.Observation(
            observation_id=str(uuid.uuid4()),
            time=_timestamp(start + timedelta(seconds=i)),
            device_id="car-1",
            session_id="s1",
            seq=i,
            deployment=DEPLOYMENT,
            data_group="beige",
            jpeg=frame.jpeg,
        )
        if frame.sensor_mm is not None:
            obs.sensor_mm = frame.sensor_mm
        out.append(obs)
    return out


def ingest(address: str, observations: list[observation_pb2.Observation]) -> None:
    """Store observations through FeatureStore.Ingest."""
    with grpc.insecure_channel(address) as channel:
        stub = feature_store_service_pb2_grpc.FeatureStoreServiceStub(channel)
        batches = [
            feature_store_service_pb2.IngestRequest(observations=observations[i : i + 50])
            for i in range(0, len(observations), 50)
        ]
        reply = stub.Ingest(iter(batches), timeout=300)
    assert not reply.rejected, reply.rejected[:3]


@dataclass
class Stack:
    """The running services and where their state lives."""

    features: ServiceThread
    registry: ServiceThread
    trainer: ServiceThread
    folder: Path
    mlflow_uri: str
    observations: list[observation_pb2.Observation]
    ray: Any

    @property
    def webhook_url(self) -> str:
        return f"http://{self.trainer.app.webhook.address}/hooks/grafana"

    def trainer_stub(self, channel: grpc.Channel) -> trainer_service_pb2_grpc.TrainerServiceStub:
        return trainer_service_pb2_grpc.TrainerServiceStub(channel)

    def registry_stub(self, channel: grpc.Channel) -> registry_service_pb2_grpc.RegistryServiceStub:
        return registry_service_pb2_grpc.RegistryServiceStub(channel)

    def start_registry_again(self) -> None:
        """A new registry on the stopped one's address, database and model store."""
        from edgeloop.registry.app import build_app

        settings = self.registry.settings.model_copy(
            update={"listen_addr": self.registry.address})
        self.registry.stop()
        self.registry = ServiceThread(build_app(settings), settings).start()


def trainer_settings(
    database_url: str, folder: Path, mlflow_uri: str, features: str, registry: str, **extra: Any
) -> Any:
    """Trainer settings for tests (ports picked by the OS)."""
    from edgeloop.trainer.settings import Settings

    return Settings(
        listen_addr="127.0.0.1:0",
        database_url=database_url,
        object_store_dir=str(folder / "objects"),
        mlflow_tracking_uri=mlflow_uri,
        features_addr=features,
        registry_addr=registry,
        registry_token=ADMIN,
        webhook_addr="127.0.0.1:0",
        webhook_secret=WEBHOOK_SECRET,
        work_dir=str(folder / "work"),
        min_observations=30,
        **extra,
    )


@pytest.fixture(scope="module")
def stack(pg_cluster: Any, ray_info: Any, private_tmp: Path) -> Iterator[Stack]:
    """features + registry + trainer on one fresh database, features holding beige frames."""
    from edgeloop.features.app import build_app as build_features
    from edgeloop.features.settings import Settings as FeaturesSettings
    from edgeloop.registry.app import build_app as build_registry
    from edgeloop.registry.settings import Settings as RegistrySettings
    from edgeloop.trainer.app import build_app as build_trainer

    folder = Path(tempfile.mkdtemp(prefix="stack-", dir=private_tmp))
    database_url = pg_cluster.ensure_database(f"trainer_{uuid.uuid4().hex[:10]}")
    mlflow_uri = f"sqlite:///{folder / 'mlflow.db'}"
    # Every started service is stopped on every path, also when a later one fails to start.
    with contextlib.ExitStack() as started:
        features = ServiceThread(
            *_app(
                build_features,
                FeaturesSettings(
                    listen_addr="127.0.0.1:0",
                    database_url=database_url,
                    object_store_dir=str(folder / "objects"),
                ),
            )
        ).start()
        started.callback(features.stop)
        registry = ServiceThread(
            *_app(
                build_registry,
                RegistrySettings(
                    listen_addr="127.0.0.1:0",
                    database_url=database_url,
                    mlflow_tracking_uri=mlflow_uri,
                    admin_token=ADMIN,
                    model_repository=str(folder / "models"),
                ),
            )
        ).start()
        # the registry a test started again is the one to stop
        started.callback(lambda: stack.registry.stop())
        observations = beige_observations(FRAMES)
        ingest(features.address, observations)
        trainer = ServiceThread(
            *_app(
                build_trainer,
                # a budget the beige frames exceed, so a sweep carrying them shows it
                trainer_settings(database_url, folder, mlflow_uri, features.address,
                                 registry.address, carried_train_frames=CARRIED_TRAIN_FRAMES),
            )
        ).start()
        started.callback(trainer.stop)
        stack = Stack(features, registry, trainer, folder, mlflow_uri, observations, ray_info)
        yield stack


def _app(build: Any, settings: Any) -> tuple[Any, Any]:
    return build(settings), settings


@pytest.fixture
def spawned_children() -> Callable[[], list[Any]]:
    """Lists this process's spawned multiprocessing children (the registration's
    TensorFlow child, a ``TensorFlowProcess``), at any depth."""
    import psutil

    def children() -> list[psutil.Process]:
        return [p for p in psutil.Process().children(recursive=True)
                if "--multiprocessing-fork" in p.cmdline()]

    return children
