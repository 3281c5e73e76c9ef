"""The trainer service's configuration (``EDGELOOP_*`` variables)."""

from __future__ import annotations

from typing import Literal

from edgeloop.platform import ServiceSettings
from pydantic import Field

DEFAULT_PORT = 50053


class Settings(ServiceSettings):
    """Configuration of the trainer service."""

    listen_addr: str = Field(
        default=f"127.0.0.1:{DEFAULT_PORT}", description="host:port the gRPC server binds"
    )
    database_url: str = Field(
        min_length=1, description="libpq URI of PostgreSQL; the trainer owns the schema `trainer`"
    )
    object_store_dir: str = Field(
        default="",
        description="local folder of the object store (snapshots under trainer/sweeps/<sweep_id>/)",
    )
    s3_endpoint: str = Field(
        default="", description="S3/MinIO endpoint; when set, objects go to S3"
    )
    s3_access_key: str = Field(default="", description="S3 access key")
    s3_secret_key: str = Field(default="", description="S3 secret key")
    s3_bucket: str = Field(default="edgeloop", description="S3 bucket")
    s3_secure: bool = Field(default=False, description="use HTTPS for S3")
    mlflow_tracking_uri: str = Field(
        min_length=1,
        description="MLflow tracking URI (http://..., or sqlite:///path for a local store)",
    )
    mlflow_artifact_root: str = Field(
        default="",
        description="artifact location of experiments "
        "the trainer creates when the tracking URI is a local store; "
        "default <work dir>/mlflow-artifacts",
    )
    features_addr: str = Field(default="127.0.0.1:50052", description="features service host:port")
    registry_addr: str = Field(default="127.0.0.1:50051", description="registry service host:port")
    registry_token: str = Field(
        default="", description="bearer token sent to the registry (its admin token)"
    )
    registry_wait_s: float = Field(
        default=900.0,
        ge=0,
        description="how long a sweep waits for an unreachable registry before it fails "
        "(the trained model is kept while it waits)",
    )
    webhook_addr: str = Field(
        default="127.0.0.1:50080",
        description="host:port of the HTTP "
        "endpoint for Grafana alert notifications; empty disables it",
    )
    webhook_secret: str = Field(
        default="",
        description="bearer secret Grafana sends to the webhook; empty refuses every notification",
    )
    work_dir: str = Field(
        default="",
        description="local folder for cached arrays, trial "
        "checkpoints and exported models; default a temporary folder",
    )
    ray_address: str = Field(
        default="",
        description="Ray cluster to join: its head's GCS address host:port (edgeloop up sets "
        "its own head node), ray://host:10001 or auto; empty starts a local Ray inside the "
        "trainer",
    )
    ray_dashboard_port: int = Field(
        default=8265, ge=0, le=65535, description="port of the local Ray dashboard (127.0.0.1)"
    )
    ray_num_cpus: int = Field(
        default=0, ge=0, description="CPUs given to the local Ray (0 = all cores of the machine)"
    )
    ray_auth_token_file: str = Field(
        default="",
        description="file holding the Ray token (created with a random token when missing "
        "and the trainer starts Ray itself; must exist to join EDGELOOP_RAY_ADDRESS); empty "
        "uses Ray's default ~/.ray/auth_token",
    )
    tf_threads: int = Field(
        default=0,
        ge=0,
        description="TensorFlow intra- and inter-op threads "
        "per trial (Ray does not cap them); 0 = the trial's CPUs (its share, more once a "
        "rung stopped its rivals)",
    )
    max_concurrent_trials: int = Field(
        default=0,
        ge=0,
        description="trials at once when a sweep's request does not say (the drift "
        "monitor's do not); 0 = fit the CPUs. 1 on a 2-CPU machine without bfloat16 trains "
        "~16 % slower and holds ~380 MiB less at the sweep's peak",
    )
    train_precision: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="arithmetic of the trials: float32; bfloat16 (weights stay float32); auto = "
        "bfloat16 on CPUs that compute it natively (AMX or AVX512-BF16: an epoch costs ~1.5x "
        "less CPU), float32 elsewhere. Fitted to the CPUs, bfloat16 trials get two CPUs each",
    )
    train_epoch_frames: int = Field(
        default=0,
        ge=0,
        description="training frames per epoch at most, drawn afresh every epoch from the "
        "(world-balanced) training rows; 0 = every row. Bounds an epoch's cost on large "
        "snapshots: consecutive frames of a drive are nearly the same image",
    )
    min_observations: int = Field(
        default=30, ge=3, description="smallest dataset a sweep trains on"
    )
    carried_train_frames: int = Field(
        default=800,
        ge=0,
        description="training frames a snapshot takes at most from the snapshots it carries "
        "(include_snapshots_of), shared fairly across their worlds in whole runs; their "
        "validation and holdout frames are always carried whole. 0 = carry everything",
    )
    default_trials: int = Field(default=4, ge=1, description="trials when a request gives none")
