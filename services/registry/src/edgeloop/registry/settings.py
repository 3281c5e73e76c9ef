"""The registry service's configuration (``EDGELOOP_*`` variables)."""

from __future__ import annotations

from edgeloop.platform import ServiceSettings
from edgeloop.registry.auth import parse_service_tokens
from pydantic import Field, field_validator

DEFAULT_PORT = 50051


class Settings(ServiceSettings):
    """Configuration of the registry service."""

    listen_addr: str = Field(default=f"127.0.0.1:{DEFAULT_PORT}",
                             description="host:port the gRPC server binds")
    database_url: str = Field(min_length=1, description="libpq URI of the PostgreSQL database; "
                              "the registry owns the schema `registry`")
    mlflow_tracking_uri: str = Field(min_length=1, description="MLflow tracking and model "
                                     "registry URI, e.g. sqlite:///mlflow.db or http://127.0.0.1:5000")
    admin_token: str = Field(min_length=16, description="bearer token for every call, "
                             "including mutating ones (at least 16 characters); its changes "
                             "are recorded as 'admin', or 'admin (on behalf of <name>)' with "
                             "an x-edgeloop-actor header")
    read_token: str = Field(default="", description="bearer token for read-only calls "
                            "(gateways: AuthenticateDevice, WatchDeployments); empty disables it")
    service_tokens: str = Field(default="", description="admin tokens of the platform's own "
                                "services, 'name=token' pairs separated by commas (e.g. "
                                "trainer=...); a change made with one is recorded as "
                                "'service:<name>' (tokens at least 16 characters)")
    model_repository: str = Field(min_length=1, description="folder of published models: "
                                  "<model>/<version>/ SavedModels, <model>/<version>.tflite, "
                                  "models.config")
    tfserving_addr: str = Field(default="", description="TF Serving gRPC address to reload "
                                "with ModelService.HandleReloadConfigRequest; empty: no reload")
    tfserving_model_base: str = Field(default="", description="the model repository as TF "
                                      "Serving sees it (base_path prefix in models.config); "
                                      "empty: EDGELOOP_MODEL_REPOSITORY")
    tensorflow_idle_s: float = Field(default=120.0, ge=0, description="seconds the registry's "
                                     "TensorFlow child process (signature checks, TFLite "
                                     "conversions) stays after its last call; the registry "
                                     "process itself never imports TensorFlow unless "
                                     "EDGELOOP_TFSERVING_ADDR is set")
    tfserving_load_timeout_s: float = Field(default=120.0, gt=0, description="seconds to wait "
                                            "for TF Serving to load new versions before "
                                            "moving version labels")
    promotion_margin_mm: float = Field(default=0.0, ge=0, description="the promotion gate: "
                                       "a candidate's holdout MAE plus this margin must be "
                                       "below the champion's")
    operator_auth_ttl_s: float = Field(default=5.0, ge=0, le=300, description="seconds the "
                                       "active operators' token digests are kept in memory; "
                                       "a change through this instance applies at once, one "
                                       "through another instance sharing the database within "
                                       "this time (0: read them at every call)")
    device_auth_ttl_s: int = Field(default=30, ge=0, le=3600, description="seconds a gateway "
                                   "may cache a successful AuthenticateDevice answer")
    @field_validator("service_tokens")
    @classmethod
    def _service_tokens_parse(cls, value: str) -> str:
        parse_service_tokens(value)
        return value

    def service_token_map(self) -> dict[str, str]:
        """``EDGELOOP_SERVICE_TOKENS`` as {service name: token}."""
        return parse_service_tokens(self.service_tokens)

    refresh_interval_s: float = Field(default=10.0, gt=0, description="seconds between "
                                      "re-reads of the stored state, so changes made in the "
                                      "MLflow UI reach watchers (another registry instance's "
                                      "changes arrive at once by LISTEN/NOTIFY)")
