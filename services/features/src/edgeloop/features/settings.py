"""The features service's configuration (``EDGELOOP_*`` variables)."""

from __future__ import annotations

from edgeloop.platform import ServiceSettings
from pydantic import Field, field_validator, model_validator

DEFAULT_PORT = 50052


class Settings(ServiceSettings):
    """Configuration of the features service."""

    listen_addr: str = Field(default=f"127.0.0.1:{DEFAULT_PORT}",
                             description="host:port the gRPC server binds")
    database_url: str = Field(min_length=1, description="libpq URI of the PostgreSQL/TimescaleDB "
                              "database; the service owns its schema `features`")
    object_store_dir: str = Field(default="", description="folder for images when no S3 endpoint "
                                  "is set")
    s3_endpoint: str = Field(default="", description="S3/MinIO endpoint host:port; when set, "
                             "images go to S3 instead of EDGELOOP_OBJECT_STORE_DIR")
    s3_access_key: str = Field(default="", description="S3 access key (with EDGELOOP_S3_ENDPOINT)")
    s3_secret_key: str = Field(default="", description="S3 secret key (with EDGELOOP_S3_ENDPOINT)")
    s3_bucket: str = Field(default="edgeloop", description="S3 bucket for images")
    s3_secure: bool = Field(default=False, description="use HTTPS for S3")
    retention_days: int = Field(default=0, ge=0, description="raw rows (and two days after "
                                "them, their images) older than this many days are deleted: "
                                "TimescaleDB's retention policy, on plain PostgreSQL an hourly "
                                "pass; 0 keeps everything")
    compress_after_days: int = Field(default=7, ge=1, description="TimescaleDB compression policy: "
                                     "compress observation chunks older than this many days")
    ingest_workers: int = Field(default=0, ge=0, le=64, description="threads that decode images, "
                                "compute statistics and write images; 0 = two per CPU")
    db_pool_size: int = Field(default=8, ge=2, le=100, description="maximum database connections")
    db_connect_timeout_s: float = Field(default=30.0, gt=0, description="seconds to keep retrying "
                                        "the database at start before giving up")

    @field_validator("retention_days")
    @classmethod
    def _retention_leaves_room_to_refresh(cls, days: int) -> int:
        # The rollup refresh looks back at least a day and must not reach dropped chunks.
        if days == 1:
            raise ValueError("must be 0 (keep everything) or at least 2 days")
        return days
    registry_addr: str = Field(default="", description="registry host:port; set it to run the "
                               "drift monitor over the registry's active deployments")
    registry_token: str = Field(default="", description="read (or admin) token for the registry; "
                                "required with EDGELOOP_REGISTRY_ADDR")
    trainer_addr: str = Field(default="", description="trainer host:port; set it to let the drift "
                              "monitor start retraining sweeps")
    drift_rules: str = Field(default="", description="path of the drift rules file; empty uses the "
                             "rules.yaml shipped with the service")
    drift_retrain_min_samples: int = Field(default=96, ge=1, description="labelled observations "
                                           "of the drifted world needed before a retraining sweep")
    drift_retrain_min_runs: int = Field(default=4, ge=1, description="drive runs of the drifted "
                                        "world needed before a retraining sweep (the trainer "
                                        "holds whole runs out, so the gate judges unseen runs)")
    drift_retrain_max_samples: int = Field(default=3000, ge=0, description="the newest labelled "
                                           "observations of the drifted world a retraining sweep "
                                           "takes at most (0: all); the old world's snapshot "
                                           "comes on top. A fleet records thousands of frames a "
                                           "second: without a cap one sweep would train on all")
    drift_retrain_consolidate_factor: float = Field(
        default=3.0, ge=0, description="after a drift retrain is promoted, fine-tune the "
        "serving version again once its new world has this many times the labelled frames the "
        "drift retrain had (a fast first recovery learns the world from its first runs only); "
        "0 turns it off")
    drift_retrain_shortfall_ratio: float = Field(
        default=1.5, ge=0, description="when the version a drift retrain promoted serves its new "
        "world at this many times the error the deployment had before the change, its "
        "consolidation starts early, at twice the drift retrain's frames; when a consolidated "
        "version does, one more follows at twice its frames, twice at most (0: off)")
    drift_retrain_warm_start: bool = Field(default=True, description="retraining sweeps "
                                           "fine-tune the version the deployment serves instead "
                                           "of training from scratch (keeps the old world, needs "
                                           "fewer epochs)")
    drift_retrain_trials: int = Field(default=2, ge=0, le=256, description="trials of a "
                                      "retraining sweep (0: the trainer's default); a drift "
                                      "retrain is urgent, two trials run at once on two cores")
    drift_retrain_epochs: int = Field(default=20, ge=0, le=1000, description="epochs of a "
                                      "fine-tuning retraining sweep (0: the trainer's default); "
                                      "a sweep from scratch always gets the trainer's default. "
                                      "20: the first retrain learns the new world from its "
                                      "first runs, and more epochs of them pay (README)")

    @model_validator(mode="after")
    def _registry_token_with_addr(self) -> Settings:
        if self.registry_addr and not self.registry_token:
            raise ValueError("EDGELOOP_REGISTRY_TOKEN is required with EDGELOOP_REGISTRY_ADDR")
        return self
